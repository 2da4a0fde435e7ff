package admin_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/plan"
	"minipush/internal/queue"
	"minipush/internal/send"
	tokencache "minipush/internal/token"
	"minipush/internal/wechat"
)

// TestForecast25k: the forecast of a 25,000-recipient list campaign, asked through
// the operator API, is exact (under MaxExactForecast) and the run that follows does
// what it said: as many sent, held out, opted out, without a grant and capped. The
// mix: 2,000 users hold a grant (300 of them expiring before the scheduled time, 150
// others capped by earlier messages today), 500 opted out, holdout 10 %. The
// forecast itself writes nothing: no grant spent, no cap counted, nothing sent.
func TestForecast25k(t *testing.T) {
	t.Parallel()
	const n, granted, expiring, capped, opted = 25000, 2000, 300, 150, 500
	t0 := time.Now()
	lap := func(what string) { t.Logf("TIMING %s %v", what, time.Since(t0)); t0 = time.Now() }
	env := testenv.New(t)
	lap("env")
	db := dynamo.New(env.DynamoDB, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
	clock := time.Now().UTC().Truncate(time.Second)
	db.Now = func() time.Time { return clock }
	const app, tpl = "wxf", "tplF"
	apps := map[string]minipush.App{app: {AppID: app, Caps: minipush.Caps{PerDay: 1}, QuietHours: &minipush.QuietHours{Off: true}}}
	h := admin.New(db, token, []string{app})
	h.Now, h.NewID, h.Apps = db.Now, func() string { return "fc" }, apps

	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: app, Secret: "s"}}, Seed: 3})
	sb.AddSubscribeTemplate(app, tpl, map[string]string{"thing1": "thing"})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)

	ctx := t.Context()
	ids := make([]string, n)
	var grants []minipush.Grant
	var optOuts []minipush.UserAttrs
	at := clock.Add(time.Hour) // the scheduled time the forecast is asked about
	for i := range n {
		switch {
		case i < granted:
			ids[i] = sb.NewUser(app)
			sb.AddSubscribeGrant(app, ids[i], tpl)
			exp := clock.Add(240 * time.Hour)
			if i < expiring {
				exp = clock.Add(30 * time.Minute) // spendable now, gone by the send
			}
			grants = append(grants, minipush.Grant{AppID: app, OpenID: ids[i], Kind: minipush.GrantSubscribe,
				ID: minipush.GrantID(minipush.GrantSubscribe, tpl, ids[i]), TemplateID: tpl, Uses: 1, CollectedAt: clock, ExpiresAt: exp})
		default:
			ids[i] = fmt.Sprintf("u%06d", i)
		}
		if i >= granted-opted/2 && i < granted+opted/2 {
			optOuts = append(optOuts, minipush.UserAttrs{OpenID: ids[i], OptOut: true})
		}
	}
	for i := 0; i < len(grants); i += 25 {
		if err := db.ImportGrants(ctx, grants[i:min(i+25, len(grants))]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(optOuts); i += 100 {
		if err := db.ImportUserAttrs(ctx, app, optOuts[i:min(i+100, len(optOuts))]); err != nil {
			t.Fatal(err)
		}
	}
	lap("grants+optouts")
	day, week := minipush.CapPeriod(at, apps[app].Location())
	for i := expiring; i < expiring+capped; i++ { // an earlier campaign reached them today
		if err := db.TakeCapSlot(ctx, app, ids[i], day, week, "earlier#1", minipush.Caps{PerDay: 1}); err != nil {
			t.Fatal(err)
		}
	}

	body := `{"appId":"wxf","name":"lift","message":{"kind":"subscribe","templateId":"tplF","data":{"thing1":{"value":"新品"}}},
"audience":{"kind":"list"},"policy":{"holdoutPercent":10,"canaryPercent":0}}` // one planner tick, then the sends: no canary hold
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: body}, 201, nil)
	for i := 0; i < n; i += admin.MaxAudiencePage {
		page := `{"openIds":["` + strings.Join(ids[i:min(i+admin.MaxAudiencePage, n)], `","`) + `"]}`
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/fc/audience", body: page}, 200, nil)
	}
	lap("caps+campaign+audience")
	var fc admin.Forecast
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/fc/forecast", body: `{"at":"` + at.Format(time.RFC3339) + `"}`}, 200, &fc)
	lap("forecast")
	t.Logf("forecast: %+v", fc)
	if !fc.Exact || fc.Audience != n || fc.ErrorBound != 0 || fc.GrantNow != granted || fc.GrantAtSend != granted-expiring {
		t.Fatalf("forecast %+v: want exact, audience %d, %d grants now, %d at the send", fc, n, granted, granted-expiring)
	}
	if fc.Holdout < n/20 || fc.Holdout > n*3/20 || fc.FrequencyCap == 0 || fc.OptedOut == 0 || fc.CostUSD <= 0 || fc.DurationSec <= 0 {
		t.Fatalf("forecast %+v: holdout near 10 %%, some capped and opted out, a cost and a duration", fc)
	}
	if len(sb.Accepted()) != 0 {
		t.Fatal("the forecast sent messages")
	}

	// The run, at the scheduled time.
	clock = at
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/fc/schedule", body: `{"now":true}`}, 200, nil)
	url := env.Queue("SendQueue").URL
	q := queue.New(env.SQS, url)
	quiet := slog.New(slog.DiscardHandler)
	p := &plan.Handler{DB: db, Queue: q, Now: db.Now, Log: quiet, Apps: apps, BatchSize: 100}
	if err := p.Handle(ctx, events.EventBridgeEvent{}); err != nil {
		t.Fatal(err)
	}
	lap("plan")
	wc := wechat.New(wechat.Options{BaseURL: srv.URL, Logger: quiet, Timeout: 30 * time.Second})
	s := &send.Handler{Store: db, Queue: q, WeChat: wc, Apps: apps, Now: db.Now, Log: quiet, Parallelism: 32, RetryBase: -1,
		Tokens: tokencache.New(db, func(ctx context.Context, a string) (string, time.Time, error) {
			tok, err := wc.StableToken(ctx, a, "s", false)
			return tok.AccessToken, tok.ExpiresAt, err
		})}
	var run minipush.RunProgress
	for deadline := time.Now().Add(3 * time.Minute); ; {
		var err error
		if run, err = db.RunCounters(ctx, "fc", 1); err != nil {
			t.Fatal(err)
		}
		if run.Status == minipush.RunDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not done: %+v", run)
		}
		out, err := env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		var ev events.SQSEvent
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)})
		}
		if len(ev.Records) == 0 {
			continue
		}
		if resp, err := s.Handle(ctx, ev); err != nil || len(resp.BatchItemFailures) > 0 {
			t.Fatalf("send: %v %+v", err, resp)
		}
		for _, m := range out.Messages {
			if _, err := env.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	lap("send")
	c := run.Counters
	t.Logf("run: %+v", c)
	// Exact forecast: the run matches it recipient for recipient.
	capSkips := c.Skipped - c.Holdout - fc.OptedOut
	if c.Planned != fc.Audience || c.Sent != fc.ExpectedSends || c.Holdout != fc.Holdout || c.NoGrant != fc.NoGrant ||
		capSkips != fc.FrequencyCap || len(sb.Accepted()) != fc.ExpectedSends {
		t.Errorf("run %+v (capped %d, WeChat accepted %d) differs from the exact forecast %+v", c, capSkips, len(sb.Accepted()), fc)
	}
}
