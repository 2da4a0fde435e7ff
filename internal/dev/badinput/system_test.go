package badinput_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush/internal/admin"
	"minipush/internal/collect"
	"minipush/internal/dev/apispec"
	"minipush/internal/dev/iamcheck"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/lambdaenv"
)

// The deployment serves two mini-programs: the demo app, registered in the sandbox and
// configured for message push, and a second one without an eventToken, which must
// refuse every push. With two apps an omitted appId no longer names one.
var (
	demo = localrun.DemoApp()
	// other is served (it is in the WeChat secret) but has no eventToken.
	other = localrun.App{AppID: "wx00000000000two", Secret: "second-app-secret-value"}
)

// notServed is an appid the deployment does not serve.
const notServed = "wx0000000000none"

// system is the whole minipush running in-process behind the emulated API Gateway.
type system struct {
	r        *localrun.Runner
	sb       *sandbox.Sandbox
	ddb      *dynamodb.Client
	sqs      *sqs.Client
	logs     *logCapture
	operator string // the operator token, all apps
	scoped   string // an operator token scoped to the other app only
	key      []byte // the session signing key
}

// startSystem starts the local runner on the shared local stack with the production
// builders, against an in-process WeChat sandbox. The TTL reaper is off (Reap 0), so no
// background goroutine deletes anything between two snapshots; the planner's 1-minute
// schedule stays on as deployed, and with no campaign due it only reads.
func startSystem(t *testing.T) *system {
	t.Helper()
	sb := sandbox.New(sandbox.Options{Seed: 8})
	if err := sb.Apply(demo.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	sb.AddApp(other.AppID, other.Secret)
	wx := httptest.NewServer(sb) // 127.0.0.1
	t.Cleanup(wx.Close)

	logs := captureStderr(t)
	ep := testenv.Endpoints(t)
	secret, _ := json.Marshal(map[string]any{"apps": []map[string]string{
		{"appId": demo.AppID, "appSecret": demo.Secret, "eventToken": demo.EventToken},
		{"appId": other.AppID, "appSecret": other.Secret},
	}})
	// Every AWS call the functions make for the suite's requests, good and bad, is
	// checked against their policies in template.yaml when the test ends (iamcheck).
	tpl, err := samtemplate.ReadFile(filepath.Join(testenv.Root(), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("bad%d-", time.Now().UnixNano()%1e9)
	// Two operator tokens: one for every app, one scoped to the other app, whose every
	// request for the demo app must be refused (403, or 404 for its campaigns).
	operator, scoped := rand.Text(), rand.Text()
	tokens, _ := json.Marshal(map[string]any{"tokens": []map[string]any{
		{"name": "ops", "token": operator, "apps": []string{"*"}},
		{"name": "other-team", "token": scoped, "apps": []string{other.AppID}},
	}})
	rec := iamcheck.NewRecorder(tpl, prefix)
	r, err := localrun.Start(t.Context(), localrun.Options{
		Root: testenv.Root(), Stack: &ep, Addr: "127.0.0.1:0",
		Prefix:   prefix,
		Builders: lambdaenv.Builders(),
		Observe:  rec.Observer,
		Params:   map[string]string{"WeChatBaseURL": wx.URL},
		Secrets:  map[string]string{"WeChatSecret": string(secret), "OperatorTokenSecret": string(tokens)},
		Log:      slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop(context.Background())
		if err := r.Resources.Teardown(context.Background(), r.Stack.NewClients()); err != nil {
			t.Logf("teardown: %v", err)
		}
	})
	t.Cleanup(func() {
		violations, err := iamcheck.CheckTemplate(tpl, r.Resources, rec.Calls())
		if err != nil {
			t.Error(err)
		}
		for _, v := range violations {
			t.Errorf("AccessDenied in AWS: %s", v)
		}
	})
	c := r.Stack.NewClients()
	return &system{r: r, sb: sb, ddb: c.DynamoDB, sqs: c.SQS, logs: logs,
		operator: operator, scoped: scoped, key: []byte(r.Secrets["SessionSigningSecret"])}
}

// logCapture collects what the functions log. They log JSON to os.Stderr (collect and
// admin build their loggers in lambdaenv, as in Lambda, where stderr is CloudWatch), so
// the suite points os.Stderr at a pipe while the runner starts and reads the pipe here.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func captureStderr(t *testing.T) *logCapture {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l := &logCapture{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(l, pr)
	}()
	orig := os.Stderr
	os.Stderr = pw
	// Registered before the runner's cleanup, so it runs after the runner stopped.
	t.Cleanup(func() {
		os.Stderr = orig
		pw.Close()
		<-done
		pr.Close()
	})
	return l
}

// snapshot is everything the system stores: every item of every table of the
// namespace, canonical JSON sorted per table, and the message counts of every queue.
type snapshot struct {
	tables map[string][]string // logical id -> items
	queues map[string]string   // logical id -> visible/in flight/delayed
}

func (s *system) snapshot(t *testing.T) snapshot {
	t.Helper()
	ctx := t.Context()
	snap := snapshot{tables: map[string][]string{}, queues: map[string]string{}}
	// Tables and queues are read in parallel: a snapshot follows every case.
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for id, name := range s.r.Resources.Tables {
		wg.Go(func() {
			items, err := s.scan(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("scan %s: %w", id, err))
			}
			snap.tables[id] = items
		})
	}
	for id, q := range s.r.Resources.Queues {
		wg.Go(func() {
			a, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
				QueueUrl: aws.String(q.URL),
				AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
					sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed},
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("queue %s: %w", id, err))
				return
			}
			snap.queues[id] = a.Attributes["ApproximateNumberOfMessages"] + "/" + a.Attributes["ApproximateNumberOfMessagesNotVisible"] +
				"/" + a.Attributes["ApproximateNumberOfMessagesDelayed"]
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return snap
}

// scan reads every item of a table, consistently, as sorted canonical JSON.
func (s *system) scan(ctx context.Context, table string) ([]string, error) {
	items := []string{}
	p := dynamodb.NewScanPaginator(s.ddb, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, av := range page.Items {
			var m map[string]any
			if err := attributevalue.UnmarshalMap(av, &m); err != nil {
				return nil, err
			}
			b, _ := json.Marshal(m) // map keys sorted: canonical
			items = append(items, string(b))
		}
	}
	slices.Sort(items)
	return items, nil
}

// diff describes how after differs from before, item by item; "" when it does not.
// skip leaves out items for which it returns true (nil skips nothing).
func diff(before, after snapshot, skip func(table, item string) bool) string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(after.tables)) {
		b, a := setOf(before.tables[id]), setOf(after.tables[id])
		for _, it := range after.tables[id] {
			if !b[it] && (skip == nil || !skip(id, it)) {
				out = append(out, fmt.Sprintf("%s: + %s", id, it))
			}
		}
		for _, it := range before.tables[id] {
			if !a[it] && (skip == nil || !skip(id, it)) {
				out = append(out, fmt.Sprintf("%s: - %s", id, it))
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(after.queues)) {
		if before.queues[id] != after.queues[id] {
			out = append(out, fmt.Sprintf("queue %s: %s -> %s", id, before.queues[id], after.queues[id]))
		}
	}
	return strings.Join(out, "\n")
}

func setOf(items []string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, it := range items {
		m[it] = true
	}
	return m
}

// rateCount sums one rate counter over the windows in the state table.
func rateCount(snap snapshot, key string) int {
	n := 0
	for _, it := range snap.tables["StateTable"] {
		var item struct {
			PK string `json:"pk"`
			N  int    `json:"n"`
		}
		if json.Unmarshal([]byte(it), &item) == nil && item.PK == rateKey(key) {
			n += item.N
		}
	}
	return n
}

// rateKey is the state-table pk of a rate counter (dynamo.DB.Allow's "rate#" + the key
// collect passes).
func rateKey(key string) string { return "rate#" + key }

// answer is what came back over HTTP.
type answer struct {
	status  int
	headers http.Header
	body    []byte
}

// request is one HTTP request to the API.
type request struct {
	method string
	target string // path and query
	header map[string]string
	body   []byte
}

func (s *system) do(t *testing.T, req request) answer {
	t.Helper()
	hr, err := http.NewRequestWithContext(t.Context(), req.method, s.r.URL+req.target, bytes.NewReader(req.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	// The client follows redirects as a browser does; each redirect it follows is an
	// answer too, checked against openapi.json like the final one.
	client := &http.Client{CheckRedirect: func(next *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return http.ErrUseLastResponse
		}
		observe(t, next.Response, nil)
		return nil
	}}
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", req.method, req.target, err)
	}
	observe(t, resp, b)
	return answer{status: resp.StatusCode, headers: resp.Header, body: b}
}

// spec is openapi.json, recording every answer the suite gets (do): each must be as
// documented, and TestBadInput's OpenAPI step fails for a documented status no answer
// produced.
var spec = func() *apispec.Doc {
	d, err := apispec.Parse(admin.OpenAPI)
	if err != nil {
		panic(err)
	}
	return d
}()

// observe checks one answer against openapi.json and records its status as seen.
func observe(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if err := spec.Observe(resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), body); err != nil {
		t.Errorf("answer not as documented in openapi.json: %v", err)
	}
}

// pushQuery is the query WeChat adds to a message push to app, signed with token at ts.
func pushQuery(appID, token string, ts time.Time, nonce string) string {
	sec := fmt.Sprint(ts.Unix())
	q := "timestamp=" + sec + "&nonce=" + nonce + "&signature=" + collect.Signature(token, sec, nonce)
	if appID != "" {
		q = "appId=" + appID + "&" + q
	}
	return q
}

// mustJSON answers the body of a successful call, decoded.
func mustJSON[T any](t *testing.T, a answer, want int) T {
	t.Helper()
	var v T
	if a.status != want {
		t.Fatalf("answer %d %s, want %d", a.status, a.body, want)
	}
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	return v
}
