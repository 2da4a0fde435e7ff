package send_test

import (
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// cappedApp is the fixture's app with caps and no quiet hours (tests run at any hour).
func cappedApp(caps minipush.Caps) map[string]minipush.App {
	return map[string]minipush.App{appID: {AppID: appID, Caps: caps, QuietHours: &minipush.QuietHours{Off: true}}}
}

// TestCapRaceLastSlot: two campaigns of one app send to the same users at the same
// moment, each user with one slot left today. The cap check and count are one
// conditional write, so each user gets exactly one message; the other campaign ends
// them skipped/frequency_cap and leaves their grant.
func TestCapRaceLastSlot(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 20)
	for _, c := range []string{"ra", "rb"} {
		f.putCampaign(t, c, subscribeMessage(), minipush.Policy{}, len(ids))
	}
	var wg sync.WaitGroup
	for _, c := range []string{"ra", "rb"} {
		h := f.handler(8)
		h.Apps = cappedApp(minipush.Caps{PerDay: 1, PerWeek: 5})
		ev := events10(t, batches(c, ids, 5))[0]
		wg.Go(func() { handle(t, h, ev) })
	}
	wg.Wait()
	acc := f.acceptedBy(sandbox.PathSubscribeSend)
	a, b := f.outcomes(t, "ra"), f.outcomes(t, "rb")
	for _, u := range ids {
		if acc[u] != 1 {
			t.Errorf("WeChat accepted %d messages for a user with one slot, want 1", acc[u])
		}
		sent, capped := 0, 0
		for _, d := range []minipush.Delivery{a[u], b[u]} {
			switch {
			case d.Outcome == minipush.OutcomeSent:
				sent++
			case d.Outcome == minipush.OutcomeSkipped && d.Reason == minipush.ReasonFrequencyCap:
				capped++
			}
		}
		if sent != 1 || capped != 1 {
			t.Errorf("outcomes %s/%s and %s/%s, want one sent and one skipped/frequency_cap", a[u].Outcome, a[u].Reason, b[u].Outcome, b[u].Reason)
		}
		if gs := f.liveGrants(t, u); len(gs) != 1 {
			t.Errorf("user holds %d grants, want 1 (the capped campaign keeps it)", len(gs))
		}
	}
}

// TestCapWeekAndGiveBack: with perWeek 2 a third campaign in the week is capped
// whatever the day; a send WeChat refuses (43101: nothing sent) gives its slot back,
// so that campaign does not count, and transactional campaigns count nowhere.
func TestCapWeekAndGiveBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	// A Monday noon in Shanghai, and the days after it in the same ISO week.
	monday := time.Date(2026, 11, 30, 12, 0, 0, 0, shanghai)
	clk := &testClock{t: monday}
	f.db.Now = clk.Now
	u := f.sb.NewUser(appID)
	var grants []minipush.Grant
	for d := 1; d <= 6; d++ {
		grants = append(grants, subGrant(u, subTpl, time.Now().Add(time.Duration(d)*240*time.Hour)))
		f.sb.AddSubscribeGrant(appID, u, subTpl)
	}
	f.putGrants(t, grants)
	run := func(id string, day int, p minipush.Policy) minipush.Delivery {
		t.Helper()
		clk.Set(monday.AddDate(0, 0, day))
		f.putCampaign(t, id, subscribeMessage(), p, 1)
		h := f.handler(1)
		h.Now = clk.Now
		h.Apps = cappedApp(minipush.Caps{PerWeek: 2})
		handle(t, h, events10(t, batches(id, []string{u}, 1))[0])
		return f.outcomes(t, id)[u]
	}
	if d := run("w1", 0, minipush.Policy{}); d.Outcome != minipush.OutcomeSent {
		t.Fatalf("first of the week: %s/%s", d.Outcome, d.Reason)
	}
	// WeChat refuses once: the recipient fails and the slot comes back.
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: 43101, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if d := run("w2", 1, minipush.Policy{}); d.Outcome != minipush.OutcomeFailed {
		t.Fatalf("refused send: %s/%s, want failed", d.Outcome, d.Reason)
	}
	if d := run("tx", 2, minipush.Policy{Transactional: true}); d.Outcome != minipush.OutcomeSent {
		t.Fatalf("transactional: %s/%s, want sent (no cap)", d.Outcome, d.Reason)
	}
	if d := run("w3", 3, minipush.Policy{}); d.Outcome != minipush.OutcomeSent {
		t.Fatalf("second counted of the week: %s/%s, want sent (the refused one gave its slot back)", d.Outcome, d.Reason)
	}
	if d := run("w4", 4, minipush.Policy{}); d.Outcome != minipush.OutcomeSkipped || d.Reason != minipush.ReasonFrequencyCap {
		t.Fatalf("third of the week: %s/%s, want skipped/frequency_cap", d.Outcome, d.Reason)
	}
	if d := run("w5", 7, minipush.Policy{}); d.Outcome != minipush.OutcomeSent {
		t.Fatalf("next ISO week: %s/%s, want sent", d.Outcome, d.Reason)
	}
}

// TestQuietHoursDefer: a batch reached at 23:00 in the app's zone is not attempted:
// its recipients are re-queued (delay to the window's end, at most 15 min) and stay
// pending; once the clock passes 08:00 the re-queued batch sends them. A transactional
// campaign is sent at once.
func TestQuietHoursDefer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	night := time.Date(2026, 12, 1, 23, 0, 0, 0, shanghai)
	clk := &testClock{t: night}
	ids, txIDs := f.grantedUsers(t, 6), f.grantedUsers(t, 3)
	f.db.Now = clk.Now
	f.putCampaign(t, "night", subscribeMessage(), minipush.Policy{}, len(ids))
	f.putCampaign(t, "txn", subscribeMessage(), minipush.Policy{Transactional: true}, len(txIDs))
	h := f.handler(4)
	h.Now = clk.Now
	h.Apps = map[string]minipush.App{appID: {AppID: appID}} // default window 22:00–08:00
	handle(t, h, events10(t, batches("night", ids, 6))[0])
	handle(t, h, events10(t, batches("txn", txIDs, 6))[0])
	if n := len(f.sb.Accepted()); n != len(txIDs) {
		t.Fatalf("WeChat accepted %d messages at 23:00, want %d (the transactional ones only)", n, len(ids))
	}
	if got := f.outcomes(t, "night"); len(got) != 0 {
		t.Fatalf("%d deliveries recorded inside quiet hours, want none", len(got))
	}
	// The deferred recipients went back on the queue with the longest delay SQS takes
	// (the window ends in 9 h); the transactional batch left nothing behind.
	attrs, err := f.env.SQS.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(f.queueURL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := attrs.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)]; n != "1" {
		t.Fatalf("%s delayed messages after the deferral, want 1", n)
	}
	// That message arrives 15 minutes later, still inside the window, and again at
	// 08:01 (the test does not wait for SQS's delay: it hands the same batch over).
	for _, at := range []time.Time{night.Add(15 * time.Minute), night.Add(9*time.Hour + time.Minute)} {
		clk.Set(at)
		handle(t, h, events10(t, batches("night", ids, 6))[0])
	}
	f.allSent(t, "night", ids)
}

// TestHoldout: holdoutPercent 20 holds out the same recipients on every rerun (a
// hash of campaign and openid), about a fifth of them; they end skipped/holdout with
// their grants, counted apart in the run's holdout counter.
func TestHoldout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 200)
	want := 0
	for _, u := range ids {
		if minipush.HeldOut("hold", u, 20) {
			want++
		}
	}
	if want < 20 || want > 60 {
		t.Fatalf("%d of 200 held out at 20 %%: not a fifth", want)
	}
	f.putCampaign(t, "hold", subscribeMessage(), minipush.Policy{HoldoutPercent: 20}, len(ids))
	h := f.handler(8)
	for _, ev := range events10(t, batches("hold", ids, 100)) {
		handle(t, h, ev)
	}
	got := f.outcomes(t, "hold")
	acc := f.acceptedBy(sandbox.PathSubscribeSend)
	for _, u := range ids {
		held := minipush.HeldOut("hold", u, 20)
		if d := got[u]; held != (d.Outcome == minipush.OutcomeSkipped && d.Reason == minipush.ReasonHoldout) {
			t.Errorf("held out %v, outcome %s/%s", held, d.Outcome, d.Reason)
		}
		if held && acc[u] != 0 {
			t.Errorf("a held-out user got %d messages", acc[u])
		}
	}
	p, err := f.db.RunCounters(t.Context(), "hold", 1)
	if err != nil {
		t.Fatal(err)
	}
	if p.Counters.Holdout != want || p.Counters.Sent != len(ids)-want {
		t.Errorf("counters %+v, want holdout %d sent %d", p.Counters, want, len(ids)-want)
	}
}
