package send_test

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/queue"
	"minipush/internal/send"
	"minipush/internal/token"
	"minipush/internal/wechat"
)

// quotaFixture is a fixture whose sandbox, store and sender share one test clock, so
// the sandbox's quota day (Shanghai) rolls when the test moves the clock past midnight.
func quotaFixture(t *testing.T, start time.Time) (*fixture, *atomic.Int64) {
	t.Helper()
	f := newFixture(t)
	var now atomic.Int64
	now.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	f.db.Now = clock
	f.sb = sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: appID, Secret: secret}}, Seed: 7, Now: clock})
	f.sb.AddSubscribeTemplate(appID, subTpl, map[string]string{"thing1": "thing", "time2": "time"})
	srv := httptest.NewServer(f.sb)
	t.Cleanup(srv.Close)
	f.wc = wechat.New(wechat.Options{BaseURL: srv.URL, Logger: quiet, Timeout: 30 * time.Second, HTTPClient: wechat.NewHTTPClient(16)})
	f.tokens = token.New(f.db, func(ctx context.Context, app string) (string, time.Time, error) {
		tok, err := f.wc.StableToken(ctx, app, secret, false)
		return tok.AccessToken, tok.ExpiresAt, err
	})
	f.tokens.PollEvery = 5 * time.Millisecond
	return f, &now
}

// pacedHandler is the fixture's handler with the quota pacer, the app's reserve set,
// and a hold of a second instead of up to 15 minutes (the test clock does not move
// while SQS holds a message).
func (f *fixture) pacedHandler(reservePercent int) *send.Handler {
	h := f.handler(4)
	h.Tokens = f.tokens
	h.WeChat = f.wc
	h.Now = f.db.Now
	h.Apps = map[string]minipush.App{appID: {AppID: appID, QuietHours: &minipush.QuietHours{Off: true}, QuotaReservePercent: &reservePercent}}
	h.Quota = &send.Pacer{Store: f.db, WeChat: f.wc, HoldMax: time.Second}
	return h
}

// TestQuotaPacing (issue #18 item 3): with the sandbox's daily quota at 30 and a 10 %
// reserve, a marketing campaign of 90 recipients sends its 27 a day and holds the
// rest; a transactional campaign scheduled while it is held sends at once from the
// reserve; a day whose quota another sender of the app used partly ends on WeChat's
// 45009, which pauses the app until the reset and spends no grant; the campaign
// finishes after the resets, each recipient sent once, without a sleep.
func TestQuotaPacing(t *testing.T) {
	t.Parallel()
	const quota, reserve = 30, 10
	const share = quota - quota*reserve/100 // marketing's 27 a day
	sh := minipush.QuotaZone
	y, m, d := time.Now().In(sh).Date()
	day1 := time.Date(y, m, d, 10, 0, 0, 0, sh)
	f, now := quotaFixture(t, day1)
	ctx := t.Context()
	if err := f.sb.SetDailyQuota(appID, quota); err != nil {
		t.Fatal(err)
	}
	h := f.pacedHandler(reserve)
	q := queue.New(f.env.SQS, f.queueURL)
	enqueue := func(campaign string, ids []string) {
		t.Helper()
		for _, b := range batches(campaign, ids, 10) {
			if err := q.Enqueue(ctx, b, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	sent := func(campaign string) int {
		p, err := f.db.RunCounters(ctx, campaign, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p.Counters.Sent
	}
	status := func() minipush.QuotaUse {
		u, err := f.db.QuotaUse(ctx, appID, minipush.QuotaDay(f.db.Now()), minipush.DefaultQuotaShards)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	market := f.grantedUsers(t, 3*quota)
	f.putCampaign(t, "m", subscribeMessage(), minipush.Policy{}, len(market))
	enqueue("m", market)

	t0 := time.Now()
	phase := func(name string) { t.Logf("%s done after %v", name, time.Since(t0).Round(time.Millisecond)) }
	// Day 1: marketing takes its share, then waits for the reset.
	f.drain(t, h, 30*time.Second, func() bool {
		return sent("m") == share && !status().MarketingPausedUntil.IsZero()
	})
	phase("day 1 marketing")
	if got := f.sb.QuotaUsed(appID); got != share {
		t.Fatalf("day 1: WeChat counted %d sends, want marketing's %d", got, share)
	}
	if u := status(); u.PausedUntil.After(f.db.Now()) || !u.MarketingPausedUntil.Equal(minipush.QuotaReset(f.db.Now())) {
		t.Fatalf("day 1: paused until %v, marketing until %v; want marketing alone until the reset %v",
			u.PausedUntil, u.MarketingPausedUntil, minipush.QuotaReset(f.db.Now()))
	}

	// A transactional campaign scheduled meanwhile goes first: the reserve is its.
	owed := f.grantedUsers(t, quota-share)
	f.putCampaignWith(t, minipush.Campaign{ID: "t", Message: subscribeMessage(), Policy: minipush.Policy{Transactional: true}}, len(owed))
	enqueue("t", owed)
	f.drain(t, h, 30*time.Second, f.runDone(t, "t"))
	phase("day 1 transactional")
	if got, s := f.sb.QuotaUsed(appID), sent("m"); got != quota || s != share {
		t.Fatalf("day 1 after the transactional campaign: WeChat counted %d (want %d), marketing sent %d (want still %d)", got, quota, s, share)
	}
	if u := status(); u.Used != quota || u.UsedTransactional != quota-share || u.UsedMarketing != share || u.Read.DailyLimit != quota {
		t.Fatalf("day 1 use %+v, want %d used (%d transactional, %d marketing) of a read limit of %d",
			u, quota, quota-share, share, quota)
	}

	// Day 2: another sender of the app used 5 of WeChat's 30 first. WeChat refuses our
	// 26th with 45009: the app pauses until the reset and no grant is spent.
	now.Store(day1.Add(24 * time.Hour).UnixNano())
	outside := f.grantedUsers(t, 5)
	tok, err := f.wc.StableToken(ctx, appID, secret, false) // the other sender's own token
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range outside {
		if _, err := f.wc.SendSubscribe(ctx, tok.AccessToken, wechat.SubscribeMessage{ToUser: u, TemplateID: subTpl,
			Data: map[string]wechat.Value{"thing1": {Value: "x"}, "time2": {Value: "2026-11-25 10:00"}}}); err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t, h, 30*time.Second, func() bool {
		return sent("m") == share+quota-5 && !status().PausedUntil.IsZero()
	})
	phase("day 2")
	if n := f.sb.Stats().Errcodes[45009]; n == 0 {
		t.Fatal("day 2: WeChat answered no 45009; the test did not reach the quota")
	}
	if u := status(); !u.PausedUntil.Equal(minipush.QuotaReset(f.db.Now())) || u.PauseReason == "" {
		t.Fatalf("day 2: paused until %v (%q), want every send paused until the reset %v", u.PausedUntil, u.PauseReason, minipush.QuotaReset(f.db.Now()))
	}
	c, err := f.db.GetCampaign(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status == minipush.StatusPaused {
		t.Fatal("45009 paused the campaign; it must pause the app's sends until the reset only")
	}
	acc := f.acceptedBy(sandbox.PathSubscribeSend)
	waiting := 0
	for _, u := range market {
		if acc[u] > 0 {
			continue
		}
		waiting++
		gs, err := f.db.LiveGrants(ctx, appID, u)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != 2 {
			t.Fatalf("a recipient not sent yet holds %d grants, want its 2: a refused send spent one", len(gs))
		}
	}
	if waiting != len(market)-(share+quota-5) {
		t.Fatalf("%d recipients waiting, want %d", waiting, len(market)-(share+quota-5))
	}

	// Days 3 and 4: the held batches resume by themselves after each reset.
	now.Store(day1.Add(48 * time.Hour).UnixNano())
	f.drain(t, h, 30*time.Second, func() bool {
		return sent("m") == 2*share+quota-5 && !status().MarketingPausedUntil.IsZero()
	})
	phase("day 3")
	now.Store(day1.Add(72 * time.Hour).UnixNano())
	f.drain(t, h, 30*time.Second, f.runDone(t, "m"))
	phase("day 4")
	f.allSent(t, "m", market)
	f.allSent(t, "t", owed)
	phase("checks")
}

// TestQuotaWritesPerMessage: the shared budget costs at most 0.01 writes a message.
// 400 recipients in 8 SQS messages take 2 chunks of 200 (one conditional write each),
// record WeChat's quota read once and give nothing back (every token was used): 3
// state-table requests, 0.0075 a message. Requests are counted, not consumed units,
// because a failed conditional write is billed too. A token per message (Chunk 1)
// makes it 1.0025 and fails, as does the old chunk of 50 (0.0225).
func TestQuotaWritesPerMessage(t *testing.T) {
	t.Parallel()
	const n = 400
	f := newFixture(t)
	ids := f.grantedUsers(t, n)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, n)
	h, wc := f.counted(16)
	h.Apps = map[string]minipush.App{appID: {AppID: appID, QuietHours: &minipush.QuietHours{Off: true}}}
	h.Quota = &send.Pacer{Store: h.Store.(send.QuotaStore), WeChat: f.wc}
	for _, ev := range events10(t, batches("c", ids, 50)) {
		handle(t, h, ev)
	}
	f.allSent(t, "c", ids)
	state := wc.writes[f.db.Tables.State]
	t.Logf("%d sent: %d state-table writes for the budget (%.3f a message)", n, state, float64(state)/n)
	if per := float64(state) / n; per > 0.01 {
		t.Errorf("the quota budget made %d writes for %d messages (%.4f a message), want at most 0.01 a message", state, n, per)
	}
	u, err := f.db.QuotaUse(t.Context(), appID, minipush.QuotaDay(f.db.Now()), minipush.DefaultQuotaShards)
	if err != nil {
		t.Fatal(err)
	}
	if u.Used != n || u.UsedMarketing != n || u.Read.DailyLimit != sandbox.DefaultDailyQuota {
		t.Errorf("budget after the run: %d used (%d marketing), limit read %d; want %d, %d, %d",
			u.Used, u.UsedMarketing, u.Read.DailyLimit, n, n, sandbox.DefaultDailyQuota)
	}
}
