package admin_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
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
	"minipush/internal/plan"
	"minipush/internal/queue"
	"minipush/internal/send"
	tokencache "minipush/internal/token"
	"minipush/internal/wechat"
)

// Knobs of TestForecastMatchesRun. make test runs the short form (defaultForecastUsers
// recipients); make chaos runs the 25,000 (over a minute on 2 cores, most of
// it the run) and appends the comparison to CHAOS.md.
const (
	forecastUsersEnv     = "MINIPUSH_FORECAST_USERS"  // recipients; default defaultForecastUsers
	forecastReportEnv    = "MINIPUSH_FORECAST_REPORT" // append the comparison as markdown to this file
	defaultForecastUsers = 3000
)

// TestForecastMatchesRun: the forecast of a list campaign, asked through the operator
// API, is exact (under MaxExactForecast) and the run that follows does what it said:
// as many sent, held out, opted out, without a grant and capped, each counted from the
// run's deliveries by reason. The mix, scaled to the audience (at 25,000: 2,000 users
// hold a grant, 300 of them expiring before the scheduled time and 150 others capped
// by an earlier message today; 500 opted out, half of them holding a grant), holdout
// 10 %. The forecast itself writes nothing: no grant spent, no cap counted, nothing
// sent. Most of the time is the run (a grant lookup and a delivery write for every
// recipient) and the forecast's grant query per recipient, so the full 25,000 run is
// left to make chaos.
func TestForecastMatchesRun(t *testing.T) {
	t.Parallel()
	n := defaultForecastUsers
	if v := os.Getenv(forecastUsersEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 || n > admin.MaxExactForecast {
			t.Fatalf("%s=%q: want a count of recipients from 1000 to %d", forecastUsersEnv, v, admin.MaxExactForecast)
		}
	}
	granted := n * 2 / 25        // 8 %
	expiring := granted * 3 / 20 // of them, 15 % expire between now and the send
	capped := granted * 3 / 40   // 7.5 % already had today's message
	opted := n / 50              // 2 %, straddling the granted ones
	began := time.Now()

	env := testenv.New(t)
	db := envDB(env)
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

	// The fixture goes in with the bulk loads (25 items per BatchWriteItem): users
	// first, since ImportUsers replaces a user item whole.
	ctx := t.Context()
	ids := make([]string, n)
	var grants []minipush.Grant
	var optOuts []minipush.User
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
			optOuts = append(optOuts, minipush.User{AppID: app, OpenID: ids[i], OptOut: true, CreatedAt: clock})
		}
	}
	if err := db.ImportUsers(ctx, optOuts); err != nil {
		t.Fatal(err)
	}
	if err := db.ImportGrants(ctx, grants); err != nil {
		t.Fatal(err)
	}
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
	setup := time.Since(began)

	var fc admin.Forecast
	asked := time.Now()
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/fc/forecast", body: `{"at":"` + at.Format(time.RFC3339) + `"}`}, 200, &fc)
	took := time.Since(asked)
	t.Logf("forecast (%v): %+v", took.Round(time.Millisecond), fc)
	if !fc.Exact || fc.Audience != n || fc.ErrorBound != 0 || fc.GrantNow != granted || fc.GrantAtSend != granted-expiring {
		t.Fatalf("forecast %+v: want exact, audience %d, %d grants now, %d at the send", fc, n, granted, granted-expiring)
	}
	if fc.Holdout < n/20 || fc.Holdout > n*3/20 || fc.FrequencyCap == 0 || fc.OptedOut == 0 || fc.CostUSD <= 0 ||
		math.Abs(fc.DurationSec-float64(fc.ExpectedSends)/fc.RatePerSecond) > 0.05 {
		t.Fatalf("forecast %+v: holdout near 10 %%, some capped and opted out, a cost and the sends' duration at the rate", fc)
	}
	if len(sb.Accepted()) != 0 {
		t.Fatal("the forecast sent messages")
	}

	// The run, at the scheduled time.
	clock = at
	ran := time.Now()
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/fc/schedule", body: `{"now":true}`}, 200, nil)
	url := env.Queue("SendQueue").URL
	q := queue.New(env.SQS, url)
	quiet := slog.New(slog.DiscardHandler)
	p := &plan.Handler{DB: db, Queue: q, Now: db.Now, Log: quiet, Apps: apps, BatchSize: 100}
	if err := p.Handle(ctx, events.EventBridgeEvent{}); err != nil {
		t.Fatal(err)
	}
	wc := wechat.New(wechat.Options{BaseURL: srv.URL, Logger: quiet, Timeout: 30 * time.Second})
	s := &send.Handler{Store: db, Queue: q, WeChat: wc, Apps: apps, Now: db.Now, Log: quiet, Parallelism: 32, RetryBase: -1,
		Tokens: tokencache.New(db, func(ctx context.Context, a string) (string, time.Time, error) {
			tok, err := wc.StableToken(ctx, a, "s", false)
			return tok.AccessToken, tok.ExpiresAt, err
		})}
	var run minipush.RunProgress
	for deadline := time.Now().Add(10 * time.Minute); ; {
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
	runTook := time.Since(ran)
	c := run.Counters
	// The skips by reason, from the run's deliveries through the operator API: the
	// counters hold holdout apart but not opt-outs from caps.
	skips := map[string]int{}
	for cursor := ""; ; {
		var page struct {
			Deliveries []struct{ Reason string } `json:"deliveries"`
			Cursor     string                    `json:"cursor"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/fc/runs/1/deliveries?outcome=skipped&limit=100&cursor=" + cursor}, 200, &page)
		for _, d := range page.Deliveries {
			skips[d.Reason]++
		}
		if cursor = page.Cursor; cursor == "" {
			break
		}
	}
	t.Logf("run (%v): %+v, skipped by reason %v", runTook.Round(time.Millisecond), c, skips)
	rows := []forecastRow{
		{"audience / planned", fc.Audience, c.Planned},
		{"held out (skipped/holdout)", fc.Holdout, skips[minipush.ReasonHoldout]},
		{"opted out (skipped/opted_out)", fc.OptedOut, skips["opted_out"]},
		{"no grant at the send (no_grant)", fc.NoGrant, c.NoGrant},
		{"capped (skipped/frequency_cap)", fc.FrequencyCap, skips[minipush.ReasonFrequencyCap]},
		{"sent", fc.ExpectedSends, c.Sent},
		{"messages WeChat (the sandbox) accepted", fc.ExpectedSends, len(sb.Accepted())},
		{"holdout in the run's counters", fc.Holdout, c.Holdout},
		{"skipped in all", fc.Holdout + fc.OptedOut + fc.FrequencyCap, c.Skipped},
	}
	// Exact forecast: the run matches it recipient for recipient.
	for _, r := range rows {
		if r.forecast != r.run {
			t.Errorf("%s: the exact forecast said %d, the run did %d", r.what, r.forecast, r.run)
		}
	}
	if c.Final() != n || c.Unknown != 0 || len(c.Failed) != 0 {
		t.Errorf("run %+v: want %d recipients final, none unknown or failed", c, n)
	}
	if path := os.Getenv(forecastReportEnv); path != "" {
		md := forecastReport(n, granted, expiring, capped, opted, fc, rows, setup, took, runTook, !t.Failed())
		if err := replaceSection(path, md); err != nil {
			t.Error(err)
		}
	}
}

// forecastRow is one count the forecast and the run are compared on.
type forecastRow struct {
	what          string
	forecast, run int
}

// forecastReport is the comparison as a markdown section for CHAOS.md.
func forecastReport(n, granted, expiring, capped, opted int, fc admin.Forecast, rows []forecastRow, setup, took, runTook time.Duration, pass bool) string {
	verdict := "**PASS** — the run did exactly what the forecast said"
	if !pass {
		verdict = "**FAIL** — see the rows that differ"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Forecast against the run\n\n")
	fmt.Fprintf(&b, "`make chaos` (internal/admin, TestForecastMatchesRun with %s=%d), %s: %s.\n\n",
		forecastUsersEnv, n, time.Now().UTC().Format("2006-01-02 15:04 UTC"), verdict)
	fmt.Fprintf(&b, "`POST campaigns/{id}/forecast` for a list campaign of %d recipients, an hour before its send: %d hold a\n", n, granted)
	fmt.Fprintf(&b, "grant (%d of them expiring in between), %d of those already had their one message of the day\n", expiring, capped)
	fmt.Fprintf(&b, "(caps perDay 1), %d opted out, holdout 10 %%; then the campaign is run at that time through the\n", opted)
	fmt.Fprintf(&b, "planner and send against the WeChat sandbox, and each count compared with the run's (skips by\n")
	fmt.Fprintf(&b, "reason from its deliveries). The forecast is exact up to %d recipients (`exact:%v`, error bound %d).\n\n",
		admin.MaxExactForecast, fc.Exact, fc.ErrorBound)
	fmt.Fprintf(&b, "| | forecast | run |\n|---|---|---|\n")
	for _, r := range rows {
		mark := ""
		if r.forecast != r.run {
			mark = " **differs**"
		}
		fmt.Fprintf(&b, "| %s | %d | %d%s |\n", r.what, r.forecast, r.run, mark)
	}
	fmt.Fprintf(&b, "\nGrants spendable now %d, at the send %d; forecast duration %.1f s at %.0f/s, quota share %.6f,\n",
		fc.GrantNow, fc.GrantAtSend, fc.DurationSec, fc.RatePerSecond, fc.QuotaShare)
	fmt.Fprintf(&b, "cost $%.4f. Setup %s, the forecast answered in %s, the run took %s (one test process\n",
		fc.CostUSD, setup.Round(time.Second), took.Round(time.Millisecond), runTook.Round(time.Second))
	fmt.Fprintf(&b, "against DynamoDB Local: the local stack's speed, not Lambda's).\n")
	return b.String()
}

// forecastSection is the report's own section of CHAOS.md, up to the next section.
var forecastSection = regexp.MustCompile(`(?s)\n*## Forecast against the run\n.*?(\n## |\z)`)

// replaceSection puts md into the file at path in place of its previous forecast
// section, or at the end: TestChaos writes CHAOS.md whole first, and a rerun of this
// test alone replaces its own section only.
func replaceSection(path, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("forecast report: %w", err)
	}
	rest := forecastSection.ReplaceAllStringFunc(string(old), func(m string) string {
		if strings.HasSuffix(m, "\n## ") {
			return "\n\n## "
		}
		return ""
	})
	rest = strings.TrimRight(rest, "\n")
	if rest != "" {
		rest += "\n\n"
	}
	if err := os.WriteFile(path, []byte(rest+md), 0o644); err != nil {
		return fmt.Errorf("forecast report: %w", err)
	}
	return nil
}
