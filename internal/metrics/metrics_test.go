package metrics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"minipush/internal/metrics"
)

// lines parses every line of out, failing on any that is not valid EMF.
func lines(t *testing.T, out []byte) [][]metrics.Point {
	t.Helper()
	var all [][]metrics.Point
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		pts, err := metrics.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("line %s: %v", sc.Bytes(), err)
		}
		all = append(all, pts)
	}
	return all
}

// TestLineShape checks one flushed invocation against the specification's shape: the
// _aws member with a millisecond Timestamp and one directive, values at the top level,
// every dimension set starting with Function, and one line per set of dimension values.
func TestLineShape(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	e := metrics.New(&buf, "minipush-SendFunction-X", func() time.Time { return at })
	ctx, rec := e.Start(t.Context())
	if metrics.FromContext(ctx) != rec {
		t.Fatal("the context does not carry the recorder")
	}
	app := metrics.Dim{Name: "AppId", Value: "wxapp"}
	rec.Add(metrics.Sent, 3, app)
	rec.Add(metrics.Sent, 2, app)
	rec.Add(metrics.Failed, 1, app, metrics.Dim{Name: "Reason", Value: "user_refused"})
	rec.Duration(metrics.WeChatLatency, 1500*time.Microsecond, metrics.Dim{Name: "API", Value: "subscribe_send"})
	rec.Add(metrics.NoGrant, 0, app) // zero counts are not written
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}

	var raw []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		raw = append(raw, m)
	}
	if len(raw) != 3 {
		t.Fatalf("%d lines, want 3 (one per set of dimension values):\n%s", len(raw), buf.String())
	}
	aws := raw[0]["_aws"].(map[string]any)
	if ts := aws["Timestamp"].(float64); int64(ts) != at.UnixMilli() {
		t.Errorf("Timestamp %v, want %d (milliseconds)", ts, at.UnixMilli())
	}

	got := map[string]metrics.Point{}
	for _, pts := range lines(t, buf.Bytes()) {
		for _, p := range pts {
			if p.Namespace != metrics.Namespace {
				t.Errorf("%s: namespace %q", p.Name, p.Namespace)
			}
			for _, set := range p.DimensionSets {
				if set[0] != metrics.FunctionDimension {
					t.Errorf("%s: dimension set %v does not start with Function", p.Name, set)
				}
			}
			if p.Dims[metrics.FunctionDimension] != "minipush-SendFunction-X" {
				t.Errorf("%s: Function %q", p.Name, p.Dims[metrics.FunctionDimension])
			}
			got[p.Name] = p
		}
	}
	if p := got[metrics.Sent]; !slices.Equal(p.Values, []float64{5}) || p.Unit != metrics.Count || p.Dims["AppId"] != "wxapp" {
		t.Errorf("Sent = %+v, want 5 Count for wxapp", p)
	}
	if p := got[metrics.Failed]; p.Dims["Reason"] != "user_refused" || len(p.DimensionSets) != 3 {
		t.Errorf("Failed = %+v, want Reason user_refused and sets [Function] [Function AppId] [Function Reason]", p)
	}
	if p := got[metrics.WeChatLatency]; !slices.Equal(p.Values, []float64{1.5}) || p.Unit != metrics.Milliseconds {
		t.Errorf("WeChatLatency = %+v, want [1.5] Milliseconds", p)
	}
	if _, ok := got[metrics.NoGrant]; ok {
		t.Error("a zero count was written")
	}

	buf.Reset()
	if err := rec.Flush(); err != nil || buf.Len() != 0 {
		t.Errorf("a second flush wrote %q (%v); it must start afresh", buf.String(), err)
	}
}

// TestLimits records more values and metrics than one line may carry: they are split
// over lines within MaxValues and MaxMetrics, and nothing is lost.
func TestLimits(t *testing.T) {
	var buf bytes.Buffer
	_, rec := metrics.New(&buf, "f", nil).Start(t.Context())
	for i := range 250 {
		rec.Observe(metrics.WeChatLatency, float64(i))
	}
	for i := range 150 {
		rec.Add("M"+strings.Repeat("x", i%3)+string(rune('A'+i%26))+string(rune('a'+i/26)), 1)
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	var values, metricsSeen int
	for _, pts := range lines(t, buf.Bytes()) {
		if len(pts) > metrics.MaxMetrics {
			t.Errorf("a line with %d metrics", len(pts))
		}
		for _, p := range pts {
			if p.Name == metrics.WeChatLatency {
				values += len(p.Values)
			} else {
				metricsSeen++
			}
		}
	}
	if values != 250 || metricsSeen != 150 {
		t.Errorf("%d values and %d counts came out, want 250 and 150", values, metricsSeen)
	}
}

// TestParseRefuses checks Parse refuses what CloudWatch would drop.
func TestParseRefuses(t *testing.T) {
	for name, line := range map[string]string{
		"NoTimestamp":   `{"_aws":{"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"A"}]}]},"A":1}`,
		"NoNamespace":   `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Dimensions":[[]],"Metrics":[{"Name":"A"}]}]},"A":1}`,
		"MissingValue":  `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"A"}]}]}}`,
		"StringValue":   `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"A"}]}]},"A":"1"}`,
		"MissingDim":    `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["D"]],"Metrics":[{"Name":"A"}]}]},"A":1}`,
		"BadUnit":       `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"A","Unit":"Furlongs"}]}]},"A":1}`,
		"TooManyValues": `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"A"}]}]},"A":[` + strings.Repeat("1,", 100) + `1]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := metrics.Parse([]byte(line)); err == nil {
				t.Errorf("accepted %s", line)
			}
		})
	}
	if _, err := metrics.Parse([]byte(`{"level":"INFO","msg":"send: batch processed"}`)); err != metrics.ErrNotEMF {
		t.Errorf("a log line: %v, want ErrNotEMF", err)
	}
}

// TestNil checks a handler without an emitter records and writes nothing.
func TestNil(t *testing.T) {
	var e *metrics.Emitter
	ctx, rec := e.Start(t.Context())
	rec.Add(metrics.Sent, 1)
	rec.Observe(metrics.WeChatLatency, 1)
	metrics.FromContext(ctx).Add(metrics.Sent, 1)
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestFromEnv checks the function's name and the writer the local runner injects.
func TestFromEnv(t *testing.T) {
	var buf bytes.Buffer
	env := map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "stack-SendFunction-1"}
	e := metrics.FromEnv(metrics.WithWriter(t.Context(), &buf), func(k string) string { return env[k] }, "send")
	_, rec := e.Start(t.Context())
	rec.Add(metrics.Sent, 1)
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	pts := lines(t, buf.Bytes())
	if len(pts) != 1 || pts[0][0].Dims[metrics.FunctionDimension] != "stack-SendFunction-1" {
		t.Errorf("got %+v, want one line from stack-SendFunction-1", pts)
	}
}

// TestSDKThrottles sends a DynamoDB request through the real SDK to a server that
// throttles twice before answering: both throttled attempts are counted, although the
// SDK's retries hide them from the caller.
func TestSDKThrottles(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}`))
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		Retryer: func() aws.Retryer {
			return retry.AddWithMaxBackoffDelay(retry.NewStandard(), time.Millisecond)
		},
		APIOptions: []func(*middleware.Stack) error{metrics.SDKThrottles},
	}
	client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(srv.URL) })

	var buf bytes.Buffer
	ctx, rec := metrics.New(&buf, "f", nil).Start(context.Background())
	if _, err := client.DescribeLimits(ctx, &dynamodb.DescribeLimitsInput{}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	pts := lines(t, buf.Bytes())
	if len(pts) != 1 || pts[0][0].Name != metrics.Throttles || pts[0][0].Values[0] != 2 || pts[0][0].Dims["Service"] != "DynamoDB" {
		t.Fatalf("got %+v, want Throttles 2 for Service DynamoDB", pts)
	}
}
