package scalemodel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush/internal/dev/reqcount"
	"minipush/internal/logs"
)

// AWS's per-partition limits, before scaling.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
const (
	PartitionWriteUnits = 1000     // WCU per second per partition key
	PartitionReadUnits  = 3000     // RCU per second per partition key
	CollectionBytes     = 10 << 30 // an LSI table's item collection
	ItemBytes           = 400 << 10
)

// Options configure the model.
type Options struct {
	// K is the scale factor: every throughput limit and the item collection cap are
	// divided by it. Required, at least 1.
	K float64
	// CollectionLimit overrides the item collection cap in bytes (already scaled);
	// zero means CollectionBytes / K.
	CollectionLimit int64
	// Burst is how many seconds of its scaled limit a key's bucket holds; zero means 1
	// (a key may spend one second's worth at once, and no more).
	Burst float64
	// Window is the length of the window Stats' sustained load is measured over, whole
	// seconds; zero means K/10 seconds (at least 1). Throttling does not use it. Scaling
	// divides rates by K but keeps time, so a key sees K times fewer requests in a
	// second than in AWS and the peak 1-second count is a noisier figure (its Poisson
	// noise grows with √K); a window of K seconds holds as many requests as one second
	// in AWS, K/10 seconds a tenth of them (noise √10 times AWS's 1-second figure: an
	// upper estimate of it for steady traffic).
	Window time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per refused request; nil discards.
	Logger *slog.Logger
}

// Server is a running scale model: an HTTP proxy on 127.0.0.1 in front of DynamoDB
// (Local), speaking DynamoDB's JSON protocol on both sides.
type Server struct {
	// URL is the endpoint clients use instead of the upstream's.
	URL string

	upstream      string
	opts          Options
	log           *slog.Logger
	client        *http.Client
	srv           *http.Server
	schemas       schemas
	lim           *limiter
	collectionCap int64
	transactScale float64
}

// Start starts a model in front of the DynamoDB at upstream and returns once it
// listens. It calibrates the transaction units DynamoDB Local reports against AWS's
// (reqcount.TransactScaleOf) on a probe table it creates and deletes. Close stops it.
func Start(ctx context.Context, upstream string, opts Options) (*Server, error) {
	if opts.K < 1 {
		return nil, fmt.Errorf("scalemodel: scale factor K must be at least 1, got %v", opts.K)
	}
	if opts.CollectionLimit < 0 || opts.Burst < 0 || opts.Window < 0 {
		return nil, errors.New("scalemodel: CollectionLimit, Burst and Window must not be negative")
	}
	if opts.Window == 0 {
		opts.Window = time.Duration(math.Ceil(opts.K/10)) * time.Second
	}
	if opts.Burst == 0 {
		opts.Burst = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		upstream: strings.TrimRight(upstream, "/"),
		opts:     opts,
		log:      opts.Logger,
		// One connection per request in flight: the functions open many at once.
		client:        &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}},
		collectionCap: opts.CollectionLimit,
	}
	s.log = logs.Or(s.log)
	if s.collectionCap == 0 {
		s.collectionCap = int64(CollectionBytes / opts.K)
	}
	s.lim = newLimiter(opts.Now, PartitionReadUnits/opts.K, PartitionWriteUnits/opts.K, opts.Burst,
		int64(math.Ceil(opts.Window.Seconds())))
	s.schemas.call = s.call
	scale, err := s.calibrate(ctx)
	if err != nil {
		return nil, err
	}
	s.transactScale = scale
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("scalemodel: listen: %w", err)
	}
	s.URL = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the proxy.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.client.CloseIdleConnections()
	return err
}

// Stats returns what the model saw since Start or the last Reset.
func (s *Server) Stats() Stats { return s.lim.snapshot() }

// Reset forgets the statistics and refills every bucket (item collection sizes stay:
// they describe the data, not the load).
func (s *Server) Reset() {
	s.lim.mu.Lock()
	defer s.lim.mu.Unlock()
	s.lim.reset()
}

func (s *Server) calibrate(ctx context.Context) (float64, error) {
	db := dynamodb.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")},
		func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(s.upstream) })
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	table := "scalemodel-probe-" + hex.EncodeToString(b)
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		return 0, fmt.Errorf("scalemodel: calibrate: %w", err)
	}
	defer func() {
		_, _ = db.DeleteTable(context.WithoutCancel(ctx), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	}()
	scale, err := reqcount.TransactScaleOf(ctx, db, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "probe"}})
	if err != nil {
		return 0, fmt.Errorf("scalemodel: %w", err)
	}
	return scale, nil
}

// answer is an upstream answer, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// maxBody bounds a request or answer body: a BatchWriteItem of 25 items of 400 KB is
// under 16 MB.
const maxBody = 32 << 20

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "scalemodel: read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "DynamoDB_20120810.")
	if !ok { // DynamoDB Streams and anything else: not throttled
		s.pass(w, r, body)
		return
	}
	req := map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &req); err != nil {
		s.pass(w, r, body) // let DynamoDB answer the malformed request
		return
	}
	x := &exchange{s: s, w: w, r: r, body: body, req: req, op: op}
	switch op {
	case "PutItem", "UpdateItem", "DeleteItem":
		x.itemWrite()
	case "GetItem":
		x.getItem()
	case "Query", "Scan":
		x.query()
	case "BatchWriteItem":
		x.batchWrite()
	case "BatchGetItem":
		x.batchGet()
	case "TransactWriteItems":
		x.transactWrite()
	case "TransactGetItems":
		x.transactGet()
	case "CreateTable", "UpdateTable", "DeleteTable":
		var t struct{ TableName string }
		_ = json.Unmarshal(body, &t)
		s.schemas.forget(t.TableName)
		s.pass(w, r, body)
	default: // control plane, PartiQL: passed through unmodelled
		s.pass(w, r, body)
	}
}

// pass forwards a request unchanged and relays the answer.
func (s *Server) pass(w http.ResponseWriter, r *http.Request, body []byte) {
	a, err := s.forward(r.Context(), r.Header, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	writeBody(w, a.status, a.header, a.body)
}

// forward sends body to the upstream with the client's headers. DynamoDB Local does
// not check signatures, so a rewritten body needs no new one.
func (s *Server) forward(ctx context.Context, header http.Header, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.upstream+"/", bytes.NewReader(body))
	if err != nil {
		return answer{}, fmt.Errorf("scalemodel: forward: %w", err)
	}
	for k, vs := range header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Accept-Encoding", "Connection", "Host":
			continue
		}
		req.Header[k] = vs
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("scalemodel: forward: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{}, fmt.Errorf("scalemodel: forward: read answer: %w", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// call makes one DynamoDB call of the model's own (DescribeTable, reading an item
// image) directly on the upstream, uncharged.
func (s *Server) call(ctx context.Context, op string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	h := http.Header{}
	h.Set("X-Amz-Target", "DynamoDB_20120810."+op)
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("Authorization", "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
	a, err := s.forward(ctx, h, b)
	if err != nil {
		return err
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", op, a.status, bytes.TrimSpace(a.body))
	}
	return json.Unmarshal(a.body, out)
}

// image reads an item's current image (strongly consistent), or nil if there is none.
func (s *Server) image(ctx context.Context, table string, key item) (item, error) {
	var out struct{ Item item }
	err := s.call(ctx, "GetItem", map[string]any{"TableName": table, "Key": key, "ConsistentRead": true}, &out)
	if err != nil {
		return nil, fmt.Errorf("scalemodel: read %s: %w", table, err)
	}
	return out.Item, nil
}
