package localrun_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush/internal/dev/localrun"
	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// recorder is a set of fake functions that record what the runner hands them.
type recorder struct {
	mu    sync.Mutex
	http  []events.APIGatewayV2HTTPRequest
	ticks []events.EventBridgeEvent
	// adminTicks are the admin function's schedule events (its template sync).
	adminTicks []events.EventBridgeEvent
	bodies     map[string]int
	stream     []events.DynamoDBEventRecord
	inFlight   atomic.Int64
	peak       atomic.Int64
}

func (rec *recorder) builders() map[string]localrun.Builder {
	httpFn := func(_ context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		rec.mu.Lock()
		rec.http = append(rec.http, req)
		rec.mu.Unlock()
		if req.RawPath == "/v1/admin/boom" {
			return events.APIGatewayV2HTTPResponse{}, io.ErrUnexpectedEOF
		}
		return events.APIGatewayV2HTTPResponse{StatusCode: 201, Headers: map[string]string{"X-Route": req.RouteKey}, Body: `{"ok":true}`}, nil
	}
	httpB := func(context.Context, func(string) string) (any, error) { return httpFn, nil }
	return map[string]localrun.Builder{
		"CollectFunction": httpB,
		// The operator API and its daily template sync, through one raw handler that
		// decodes its event itself, as lambdaenv.Admin's (admin.Handler.Invoke).
		"AdminFunction": func(context.Context, func(string) string) (any, error) {
			return func(ctx context.Context, raw json.RawMessage) (any, error) {
				var tick events.EventBridgeEvent
				if err := json.Unmarshal(raw, &tick); err == nil && tick.DetailType == "Scheduled Event" {
					rec.mu.Lock()
					rec.adminTicks = append(rec.adminTicks, tick)
					rec.mu.Unlock()
					return struct{}{}, nil
				}
				var req events.APIGatewayV2HTTPRequest
				if err := json.Unmarshal(raw, &req); err != nil {
					return nil, err
				}
				return httpFn(ctx, req)
			}, nil
		},
		"PlanFunction": func(context.Context, func(string) string) (any, error) {
			return func(_ context.Context, ev events.EventBridgeEvent) error {
				rec.mu.Lock()
				rec.ticks = append(rec.ticks, ev)
				rec.mu.Unlock()
				return nil
			}, nil
		},
		"SendFunction": func(_ context.Context, getenv func(string) string) (any, error) {
			if getenv("SEND_QUEUE_URL") == "" {
				return nil, io.EOF
			}
			return func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
				n := rec.inFlight.Add(1)
				defer rec.inFlight.Add(-1)
				for p := rec.peak.Load(); n > p && !rec.peak.CompareAndSwap(p, n); p = rec.peak.Load() {
				}
				time.Sleep(20 * time.Millisecond) // simulated work, so invocations overlap
				var resp events.SQSEventResponse
				rec.mu.Lock()
				defer rec.mu.Unlock()
				for _, m := range ev.Records {
					rec.bodies[m.Body]++
					if m.Body == "fail" {
						resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
					}
				}
				return resp, nil
			}, nil
		},
		// The send DLQ's consumer; nothing in these tests reaches the DLQ.
		"DeadLetterFunction": func(context.Context, func(string) string) (any, error) {
			return func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
				return events.SQSEventResponse{}, nil
			}, nil
		},
		// The webhook queue and the digest schedule, through one raw handler as in Lambda;
		// nothing in these tests publishes an event.
		"WebhookFunction": func(context.Context, func(string) string) (any, error) {
			return func(context.Context, json.RawMessage) (any, error) { return nil, nil }, nil
		},
		// A stream handler only: the template's Replay event (an SQS mapping) is disabled
		// by default, and the runner must not start it (it would refuse this handler).
		"ExpireFunction": func(context.Context, func(string) string) (any, error) {
			return func(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
				rec.mu.Lock()
				rec.stream = append(rec.stream, ev.Records...)
				rec.mu.Unlock()
				return events.DynamoDBEventResponse{}, nil
			}, nil
		},
	}
}

func TestRunnerWiring(t *testing.T) {
	t.Parallel()
	ep := testenv.Endpoints(t)
	rec := &recorder{bodies: map[string]int{}}
	began := time.Now()
	r, err := localrun.Start(t.Context(), localrun.Options{
		Root: testenv.Root(), Stack: &ep, Addr: "127.0.0.1:0", Prefix: "run" + strings.ToLower(t.Name()[:4]) + time.Now().Format("150405.000")[7:] + "-",
		Builders: rec.builders(), Params: map[string]string{"SendMaxConcurrency": "2", "WeChatBaseURL": "http://127.0.0.1:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s", time.Since(began))
	t.Cleanup(func() { s := time.Now(); r.Stop(context.Background()); t.Logf("stopped in %s", time.Since(s)) })
	ctx := t.Context()

	t.Run("HTTPRoutes", func(t *testing.T) {
		resp, err := http.Post(r.URL+"/v1/session", "application/json", strings.NewReader(`{"code":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 || resp.Header.Get("X-Route") != "POST /v1/session" {
			t.Fatalf("status %d route %q", resp.StatusCode, resp.Header.Get("X-Route"))
		}
		resp, _ = http.Get(r.URL + "/v1/admin/campaigns/c1?status=draft")
		resp.Body.Close()
		resp2, _ := http.Get(r.URL + "/v1/nowhere")
		resp2.Body.Close()
		if resp2.StatusCode != 404 {
			t.Fatalf("unrouted path: %d, want 404", resp2.StatusCode)
		}
		resp3, _ := http.Post(r.URL+"/v1/admin/boom", "application/json", nil)
		resp3.Body.Close()
		if resp3.StatusCode != 500 {
			t.Fatalf("function error: %d, want 500 as API Gateway answers", resp3.StatusCode)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		first, admin := rec.http[0], rec.http[1]
		if first.Body != `{"code":"x"}` || first.IsBase64Encoded || first.Headers["content-type"] != "application/json" || first.Version != "2.0" {
			t.Errorf("session event = %+v", first)
		}
		if admin.RouteKey != "ANY /v1/admin/{proxy+}" || admin.PathParameters["proxy"] != "campaigns/c1" || admin.QueryStringParameters["status"] != "draft" {
			t.Errorf("admin event route %q params %v query %v", admin.RouteKey, admin.PathParameters, admin.QueryStringParameters)
		}
	})

	t.Run("Schedule", func(t *testing.T) {
		if err := r.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.ticks) != 1 || rec.ticks[0].DetailType != "Scheduled Event" {
			t.Fatalf("ticks = %+v", rec.ticks)
		}
		// A raw handler gets its schedule's event too, decoded by itself.
		if len(rec.adminTicks) != 1 || rec.adminTicks[0].Source != "aws.events" {
			t.Fatalf("admin ticks = %+v", rec.adminTicks)
		}
	})

	t.Run("SQSMapping", func(t *testing.T) {
		q := r.Resources.Queue("SendQueue")
		const n = 40
		for i := range n {
			body := "m" + string(rune('A'+i%26)) + string(rune('a'+i/26))
			if i == 0 {
				body = "fail"
			}
			if _, err := r.Stack.NewClients().SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(body)}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.bodies) == n
		})
		var last map[string]string
		defer func() { t.Logf("queue attributes: %v", last) }()
		// Everything but the reported failure is deleted; the failure waits out its
		// visibility timeout in flight.
		waitFor(t, func() bool {
			a, err := r.Stack.NewClients().SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
				QueueUrl: aws.String(q.URL), AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"},
			})
			if err != nil {
				t.Log(err)
				return false
			}
			last = a.Attributes
			// local-aws-sqs counts in-flight messages in ApproximateNumberOfMessages too.
			return a.Attributes["ApproximateNumberOfMessages"] == "1" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
		})
		if p := rec.peak.Load(); p > 2 || p < 1 {
			t.Fatalf("peak concurrent invocations %d, want within MaximumConcurrency 2", p)
		}
	})

	t.Run("StreamFilter", func(t *testing.T) {
		table := r.Resources.Table("GrantsTable")
		key := map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "u"}, "sk": &ddbtypes.AttributeValueMemberS{Value: "g#1"}}
		item := map[string]ddbtypes.AttributeValue{"pk": key["pk"], "sk": key["sk"], "ek": &ddbtypes.AttributeValueMemberS{Value: "t#1"}}
		db := r.Stack.NewClients().DynamoDB
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.stream) > 0
		})
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.stream) != 1 || rec.stream[0].EventName != "REMOVE" {
			b, _ := json.Marshal(rec.stream)
			t.Fatalf("stream records = %s, want the REMOVE only (INSERT filtered out)", b)
		}
	})
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling shared state with a deadline
	}
}
