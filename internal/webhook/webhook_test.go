package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/webhook"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// TestSignVerify: a signed body verifies; a changed body, another secret, a malformed
// header and a timestamp over Tolerance old (a replay) do not.
func TestSignVerify(t *testing.T) {
	t.Parallel()
	secret, body := []byte("whsec_test"), []byte(`{"id":"run.done:c1#1"}`)
	sig := webhook.Sign(secret, now, body)
	if err := webhook.Verify(secret, sig, body, now.Add(time.Minute), webhook.Tolerance); err != nil {
		t.Fatalf("OK: %v", err)
	}
	for name, tc := range map[string]struct {
		secret, body []byte
		header       string
		at           time.Time
		want         error
	}{
		"ErrBody":      {secret, []byte(`{"id":"run.done:c1#2"}`), sig, now, webhook.ErrMismatch},
		"ErrSecret":    {[]byte("other"), body, sig, now, webhook.ErrMismatch},
		"ErrReplay":    {secret, body, sig, now.Add(webhook.Tolerance + time.Second), webhook.ErrStale},
		"ErrFuture":    {secret, body, sig, now.Add(-webhook.Tolerance - time.Second), webhook.ErrStale},
		"ErrMalformed": {secret, body, "v1=abc", now, webhook.ErrMalformed},
		"ErrNotHex":    {secret, body, "t=1,v1=zz", now, webhook.ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			if err := webhook.Verify(tc.secret, tc.header, tc.body, tc.at, webhook.Tolerance); !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
}

// receiver is a webhook endpoint on 127.0.0.1 that verifies what it gets.
type receiver struct {
	mu     sync.Mutex
	secret []byte
	status int
	got    []minipush.WebhookEvent
	errs   []error
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := webhook.Verify(rc.secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), webhook.Tolerance); err != nil {
		rc.errs = append(rc.errs, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ev minipush.WebhookEvent
	_ = json.Unmarshal(body, &ev)
	rc.got = append(rc.got, ev)
	w.WriteHeader(rc.status)
}

// mustWebhook builds the webhook function as it ships (lambdaenv.Webhook) on a fresh
// namespace, with the webhook queue's URL.
func mustWebhook(t *testing.T) (*webhook.Handler, *dynamo.DB, *testenv.Env) {
	t.Helper()
	e := testenv.New(t)
	env := e.MustFunctionEnv(t, "WebhookFunction")
	for _, kv := range e.Endpoints.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	h, err := lambdaenv.Webhook(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	db := dynamo.New(e.DynamoDB, dynamo.Tables{State: e.Table("StateTable")})
	return h, db, e
}

// receive takes up to n messages off the webhook queue, polling until deadline.
func receive(t *testing.T, e *testenv.Env, n int) []events.SQSMessage {
	t.Helper()
	url := e.Queue("WebhookQueue").URL
	var out []events.SQSMessage
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		res, err := e.SQS.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			AttributeNames: []sqstypes.QueueAttributeName{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Messages {
			out = append(out, events.SQSMessage{MessageId: *m.MessageId, ReceiptHandle: *m.ReceiptHandle, Body: *m.Body, Attributes: m.Attributes})
		}
	}
	if len(out) < n {
		t.Fatalf("%d messages on the webhook queue, want %d", len(out), n)
	}
	return out
}

// TestDeliver: an event published as producers do travels through the real webhook
// queue to an endpoint on 127.0.0.1, signed so that it verifies; the status route's
// record shows the success. A failing endpoint is retried (the message is reported
// failed, so SQS redelivers it) and its consecutive failures and last error show on the
// record; once it answers again, failures go back to 0.
func TestDeliver(t *testing.T) {
	t.Parallel()
	h, db, e := mustWebhook(t)
	ctx := t.Context()
	rc := &receiver{secret: []byte("whsec_deliver"), status: http.StatusInternalServerError}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	if err := db.PutWebhook(ctx, minipush.Webhook{AppID: "wx1", URL: srv.URL + "/hook", Secret: string(rc.secret), UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	h.Backoff = time.Second // SQS redelivers after 1 s, not 30

	pub := h.Publisher
	ev := minipush.RunEvent(minipush.EventRunDone, minipush.Campaign{ID: "c1", AppID: "wx1"}, 1, time.Now())
	ev.Counters = &minipush.Counters{Planned: 3, Sent: 1, Failed: map[string]int{"user_refused": 2}}
	pub.Publish(ctx, ev)

	msgs := receive(t, e, 1)
	resp, err := h.Handle(ctx, events.SQSEvent{Records: msgs})
	if err != nil || len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failing endpoint: %+v %v, want the message reported failed", resp, err)
	}
	wh, err := db.GetWebhook(ctx, "wx1")
	if err != nil || wh.Failures != 1 || wh.LastStatus != 500 || !strings.Contains(wh.LastError, "500") || !wh.LastSuccessAt.IsZero() {
		t.Fatalf("after a failure: %+v %v", wh, err)
	}
	// The backoff hid the message for a second; SQS gives it back, and it is posted
	// again, now to an endpoint that answers.
	rc.mu.Lock()
	rc.status = http.StatusNoContent
	rc.mu.Unlock()
	again := receive(t, e, 1)
	if again[0].Body != msgs[0].Body {
		t.Fatalf("redelivered %s, want the same event", again[0].Body)
	}
	if resp, err := h.Handle(ctx, events.SQSEvent{Records: again}); err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("retry: %+v %v", resp, err)
	}
	wh, _ = db.GetWebhook(ctx, "wx1")
	if wh.Failures != 0 || wh.LastStatus != http.StatusNoContent || wh.LastSuccessAt.IsZero() {
		t.Fatalf("after a success: %+v", wh)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.errs) != 0 || len(rc.got) != 2 || rc.got[1].ID != ev.ID || rc.got[1].Counters.Failed["user_refused"] != 2 {
		t.Fatalf("received %+v, verify errors %v", rc.got, rc.errs)
	}
}

// TestDigest: a run's failures count into its app's day once however often its done
// event is delivered, and the day's digest is published once however often the
// schedule ticks.
func TestDigest(t *testing.T) {
	t.Parallel()
	h, db, e := mustWebhook(t)
	ctx := t.Context()
	if err := db.PutWebhook(ctx, minipush.Webhook{AppID: "wx1", URL: "http://127.0.0.1:1/dead", Secret: "s", UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	day := now.AddDate(0, 0, -1).Format(time.DateOnly)
	for range 2 {
		if err := db.AddDigestRun(ctx, "wx1", day, "run.done:c1#1", map[string]int{"user_refused": 2, "errcode_40037": 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddDigestRun(ctx, "wx1", day, "run.done:c2#1", map[string]int{"user_refused": 1}); err != nil {
		t.Fatal(err)
	}
	h.Now = func() time.Time { return now }
	for range 2 {
		if err := h.Digest(ctx); err != nil {
			t.Fatal(err)
		}
	}
	msgs := receive(t, e, 1)
	var ev minipush.WebhookEvent
	if err := json.Unmarshal([]byte(msgs[0].Body), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != minipush.EventDigest || ev.Day != day || ev.Runs != 2 || ev.Failures["user_refused"] != 3 || ev.Failures["errcode_40037"] != 1 {
		t.Fatalf("digest %+v", ev)
	}
	url := e.Queue("WebhookQueue").URL
	res, err := e.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil || len(res.Messages) != 0 {
		t.Fatalf("a second digest was published: %d %v", len(res.Messages), err)
	}
}

// failingSQS refuses or hangs every SendMessage: the queue itself is down.
type failingSQS struct{ hang bool }

func (f failingSQS) SendMessage(ctx context.Context, _ *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if f.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, errors.New("sqs unavailable")
}

// TestPublishNeverBlocks: a producer's Publish returns without an error to handle
// whether the queue refuses or hangs (bounded by Timeout); the endpoint itself is never
// contacted by a producer, so a dead endpoint cannot slow a send at all.
func TestPublishNeverBlocks(t *testing.T) {
	t.Parallel()
	for name, api := range map[string]failingSQS{"Refused": {}, "Hung": {hang: true}} {
		t.Run(name, func(t *testing.T) {
			p := &webhook.Publisher{Client: api, URL: "http://127.0.0.1:1/queue", Timeout: 200 * time.Millisecond}
			start := time.Now()
			p.Publish(t.Context(), minipush.WebhookEvent{ID: "x", Type: minipush.EventRunStarted, AppID: "wx1"})
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Publish took %v", d)
			}
		})
	}
	var nilPub *webhook.Publisher
	nilPub.Publish(t.Context(), minipush.WebhookEvent{}) // no queue configured: nothing, no panic
}
