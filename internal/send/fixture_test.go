package send_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/queue"
	"minipush/internal/send"
	"minipush/internal/token"
	"minipush/internal/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	appID   = "wxsend0000000001"
	secret  = "sendsecret"
	subTpl  = "TPL-SUB-1"
	otherTp = "TPL-SUB-2"
	formTpl = "TPL-FORM-1"
)

var quiet = slog.New(slog.DiscardHandler)

// fixture is one test's world: its own tables and queues on the shared local stack,
// a sandbox on httptest, and a handler wired to both as lambdaenv wires production.
type fixture struct {
	env      *testenv.Env
	db       *dynamo.DB
	sb       *sandbox.Sandbox
	wc       *wechat.Client
	tokens   *token.Cache
	queueURL string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	env := testenv.New(t)
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: appID, Secret: secret}}, Seed: 7})
	sb.AddSubscribeTemplate(appID, subTpl, map[string]string{"thing1": "thing", "time2": "time"})
	sb.AddSubscribeTemplate(appID, otherTp, map[string]string{"thing1": "thing"})
	sb.AddFormTemplate(appID, formTpl, []string{"keyword1", "keyword2"})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	// A connection pool as wide as the test's concurrency: the SDK's default keeps 10
	// idle connections per host and would reconnect for most calls.
	cfg := localstack.Config()
	cfg.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 128 })
	ddb := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(env.Endpoints.DynamoDB) })
	db := dynamo.New(ddb, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
	// A generous timeout: under a loaded CI machine a 3 s answer deadline turned plain
	// sends into (correctly recorded) unknowns; tests about timeouts set their own.
	wc := wechat.New(wechat.Options{BaseURL: srv.URL, Logger: quiet, Timeout: 30 * time.Second, HTTPClient: wechat.NewHTTPClient(128)})
	fetch := func(ctx context.Context, app string) (string, time.Time, error) {
		tok, err := wc.StableToken(ctx, app, secret, false)
		return tok.AccessToken, tok.ExpiresAt, err
	}
	tokens := token.New(db, fetch)
	tokens.PollEvery = 5 * time.Millisecond
	if errs := sb.Stats().SetupErrors; len(errs) > 0 {
		t.Fatalf("sandbox setup: %v", errs)
	}
	return &fixture{env: env, db: db, sb: sb, wc: wc, tokens: tokens, queueURL: env.Queue("SendQueue").URL}
}

// handler returns a handler on the fixture with test timings: no backoff delay.
func (f *fixture) handler(parallelism int) *send.Handler {
	return &send.Handler{
		Store: f.db, Queue: queue.New(f.env.SQS, f.queueURL), WeChat: f.wc, Tokens: f.tokens,
		Now: f.db.Now, Log: quiet, Parallelism: parallelism, RetryBase: -1, Lease: 20 * time.Second,
		HoldDelay: time.Second,
	}
}

func subscribeMessage() minipush.Message {
	return minipush.Message{Kind: minipush.MessageSubscribe, TemplateID: subTpl, Page: "pages/index?from=push",
		Data: map[string]minipush.DataValue{"thing1": {Value: "签到提醒"}, "time2": {Value: "2026-11-25 10:00"}}}
}

func templateMessage() minipush.Message {
	return minipush.Message{Kind: minipush.MessageTemplate, TemplateID: formTpl, Page: "pages/index",
		Data: map[string]minipush.DataValue{"keyword1": {Value: "order", Color: "#173177"}, "keyword2": {Value: "shipped"}}}
}

// putCampaign stores a one-off campaign and its run 1 as the planner leaves them
// (planning finished, planned recipients queued).
func (f *fixture) putCampaign(t testing.TB, id string, msg minipush.Message, policy minipush.Policy, planned int) {
	t.Helper()
	f.putCampaignWith(t, minipush.Campaign{ID: id, Message: msg, Policy: policy}, planned)
}

// putCampaignWith is putCampaign for a campaign with more fields set (a schedule). It
// writes through the adapter's own writes, the planner's in order: the campaign as it
// starts run 1, the run claimed, then finished with planned recipients, so the items
// carry exactly the layout production writes.
func (f *fixture) putCampaignWith(t testing.TB, c minipush.Campaign, planned int) {
	t.Helper()
	ctx := t.Context()
	c.AppID, c.Name, c.Status, c.RunSeq = appID, c.ID, minipush.StatusPlanning, 1
	c.CreatedAt, c.UpdatedAt = time.Unix(1, 0), time.Unix(1, 0)
	if err := f.db.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	now := f.db.Now()
	if _, err := f.db.ClaimRun(ctx, c.ID, 1, appID, "fixture", now, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.db.FinishRun(ctx, c.ID, 1, "fixture", planned, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
}

// putGrants stores grants as they are with the adapter's bulk load (ImportGrants, 25
// per BatchWriteItem), 16 loads at once: seeding thousands through AddGrants (a
// transaction and an inventory read each) would dominate the test's run time. One
// test (TestAbortPausesCampaign) seeds through AddGrants.
func (f *fixture) putGrants(t testing.TB, grants []minipush.Grant) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(grants)/250+1)
	sem := make(chan struct{}, 16)
	for start := 0; start < len(grants); start += 250 {
		chunk := grants[start:min(start+250, len(grants))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f.db.ImportGrants(context.Background(), chunk); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func subGrant(openID, tpl string, expires time.Time) minipush.Grant {
	id := minipush.GrantID(minipush.GrantSubscribe, tpl, openID, expires.String())
	return minipush.Grant{AppID: appID, OpenID: openID, Kind: minipush.GrantSubscribe, ID: id, TemplateID: tpl,
		Uses: 1, CollectedAt: expires.Add(-time.Hour), ExpiresAt: expires}
}

func formGrant(openID, value string, kind minipush.GrantKind, collected time.Time) minipush.Grant {
	return minipush.Grant{AppID: appID, OpenID: openID, Kind: kind, ID: minipush.GrantID(kind, value), Value: value,
		Uses: kind.Uses(), CollectedAt: collected, ExpiresAt: collected.Add(minipush.FormGrantValidity)}
}

// batches splits recipients into batch bodies of size n.
func batches(campaign string, openIDs []string, n int) []minipush.Batch {
	var out []minipush.Batch
	for i := 0; i < len(openIDs); i += n {
		out = append(out, minipush.Batch{
			ID: fmt.Sprintf("%s-1-%d", campaign, i/n), CampaignID: campaign, Run: 1, AppID: appID,
			OpenIDs: openIDs[i:min(i+n, len(openIDs))],
		})
	}
	return out
}

// event packs batches into SQS events of at most 10 records, as the event source does.
func events10(t testing.TB, bs []minipush.Batch) []events.SQSEvent {
	t.Helper()
	var out []events.SQSEvent
	for i := 0; i < len(bs); i += 10 {
		var ev events.SQSEvent
		for j, b := range bs[i:min(i+10, len(bs))] {
			body, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprintf("m-%s-%d", b.ID, j), Body: string(body)})
		}
		out = append(out, ev)
	}
	return out
}

// handle runs one event and fails the test on batchItemFailures.
func handle(t testing.TB, h *send.Handler, ev events.SQSEvent) {
	t.Helper()
	resp, err := h.Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(resp.BatchItemFailures) > 0 {
		t.Fatalf("Handle reported %d failures", len(resp.BatchItemFailures))
	}
}

// drain feeds the handler whatever the send queue holds, as the event source would,
// until done reports true or the deadline passes.
func (f *fixture) drain(t testing.TB, h *send.Handler, deadline time.Duration, done func() bool) {
	t.Helper()
	ctx := t.Context()
	end := time.Now().Add(deadline)
	for !done() {
		if time.Now().After(end) {
			t.Fatalf("queue not drained within %v", deadline)
		}
		out, err := f.env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(f.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			continue
		}
		var ev events.SQSEvent
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)})
		}
		resp, err := h.Handle(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		failed := map[string]bool{}
		for _, fl := range resp.BatchItemFailures {
			failed[fl.ItemIdentifier] = true
		}
		for _, m := range out.Messages {
			if failed[aws.ToString(m.MessageId)] {
				continue
			}
			if _, err := f.env.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(f.queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// runDone reports whether the run is marked done.
func (f *fixture) runDone(t testing.TB, campaign string) func() bool {
	return func() bool {
		p, err := f.db.RunCounters(t.Context(), campaign, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p.Status == minipush.RunDone
	}
}

// outcomes returns every delivery of the run by openid, claims included, read page by
// page through the adapter's listing.
func (f *fixture) outcomes(t testing.TB, campaign string) map[string]minipush.Delivery {
	t.Helper()
	out := map[string]minipush.Delivery{}
	for cursor := ""; ; {
		page, next, err := f.db.ListDeliveries(t.Context(), campaign, 1, "", minipush.MaxListLimit, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			out[d.OpenID] = d
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// acceptedBy counts the sandbox's accepted messages per recipient for one API.
func (f *fixture) acceptedBy(api string) map[string]int {
	out := map[string]int{}
	for _, m := range f.sb.Accepted() {
		if m.API == api {
			out[m.ToUser]++
		}
	}
	return out
}
