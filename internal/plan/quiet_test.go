package plan_test

import (
	"context"
	"testing"
	"time"

	"minipush"
	"minipush/internal/plan"
)

// finalize writes recipients' final deliveries the way send does, but without the
// counter update that follows them: as if every sender died between the two writes,
// or finished before the planner marked the run sending.
func (f *fixture) finalize(tb testing.TB, id string, run int, outcome minipush.Outcome, ids ...string) {
	tb.Helper()
	for _, o := range ids {
		dl := minipush.Delivery{RunKey: minipush.RunKey(id, run), OpenID: o, State: minipush.DeliveryFinal, Outcome: outcome}
		if _, err := f.db.CreateDelivery(tb.Context(), dl); err != nil {
			tb.Fatal(err)
		}
	}
}

func (f *fixture) stalled(tb testing.TB) []minipush.RunRef {
	tb.Helper()
	runs, err := f.db.StalledRuns(tb.Context(), f.clk.Now().Add(-plan.DefaultQuiet), 10)
	if err != nil {
		tb.Fatal(err)
	}
	return runs
}

// TestPlanReconcilesQuietRun: a run whose recipients are all final but whose counters
// never heard of them is finished by the planner once it has been quiet for Quiet,
// and not recounted before; an incomplete quiet run is recounted once per quiet period.
func TestPlanReconcilesQuietRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.oneOff(t, "cquiet", listAudience)
	f.mustAudience(t, "cquiet", 3)
	h := f.handler("p")
	if err := h.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	if p := f.mustRun(t, "cquiet", 1); p.Status != minipush.RunSending || p.Planned != 3 {
		t.Fatalf("run after planning: %+v, want sending with 3 planned", p)
	}
	f.finalize(t, "cquiet", 1, minipush.OutcomeSent, openID(0))
	f.finalize(t, "cquiet", 1, minipush.OutcomeNoGrant, openID(1))

	// Not quiet long enough: nothing is recounted.
	f.clk.Add(plan.DefaultQuiet - time.Second)
	if runs := f.stalled(t); len(runs) != 0 {
		t.Fatalf("stalled before the quiet period ended: %+v", runs)
	}
	// A counter update is progress: it restarts the quiet period.
	if _, err := f.db.AddRunCounters(t.Context(), "cquiet", 1, minipush.Counters{Sent: 1}); err != nil {
		t.Fatal(err)
	}
	f.clk.Add(2 * time.Second)
	if runs := f.stalled(t); len(runs) != 0 {
		t.Fatalf("stalled right after a counter update: %+v", runs)
	}

	// Quiet and incomplete (one recipient still pending): recounted, left sending, and
	// not recounted again on the next tick.
	f.clk.Add(plan.DefaultQuiet)
	if runs := f.stalled(t); len(runs) != 1 || runs[0] != (minipush.RunRef{CampaignID: "cquiet", Run: 1}) {
		t.Fatalf("stalled runs %+v, want cquiet run 1", runs)
	}
	if err := h.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	if p := f.mustRun(t, "cquiet", 1); p.Status != minipush.RunSending {
		t.Fatalf("incomplete run is %q, want still sending", p.Status)
	}
	if runs := f.stalled(t); len(runs) != 0 {
		t.Fatalf("recounted run still stalled: %+v", runs)
	}

	// The last recipient ends without a counter update: the next quiet tick finishes
	// the run with the recount, not the counters (which say 1 sent, 0 no grant).
	f.finalize(t, "cquiet", 1, minipush.OutcomeSent, openID(2))
	f.clk.Add(plan.DefaultQuiet + time.Second)
	if err := h.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	p := f.mustRun(t, "cquiet", 1)
	if p.Status != minipush.RunDone || p.Counters.Sent != 2 || p.Counters.NoGrant != 1 {
		t.Fatalf("run %+v, want done with 2 sent and 1 no grant", p)
	}
	if c := f.mustCampaignNow(t, "cquiet"); c.Status != minipush.StatusDone {
		t.Errorf("campaign %s, want done", c.Status)
	}
	if runs := f.stalled(t); len(runs) != 0 {
		t.Fatalf("done run still watched: %+v", runs)
	}
	// A late counter update (a redelivered message) does not put it back.
	if _, err := f.db.AddRunCounters(t.Context(), "cquiet", 1, minipush.Counters{Sent: 1}); err != nil {
		t.Fatal(err)
	}
	f.clk.Add(plan.DefaultQuiet + time.Second)
	if runs := f.stalled(t); len(runs) != 0 {
		t.Fatalf("done run watched again after a late counter update: %+v", runs)
	}
}

// instantSenders delivers every batch the moment it is queued, counters included, as
// senders that are faster than the planner's last write would.
type instantSenders struct {
	f  *fixture
	tb testing.TB
}

func (q instantSenders) SendBatches(ctx context.Context, batches []minipush.Batch) error {
	if err := q.f.queue.SendBatches(ctx, batches); err != nil {
		return err
	}
	for _, b := range batches {
		q.f.finalize(q.tb, b.CampaignID, b.Run, minipush.OutcomeSent, b.OpenIDs...)
		if _, err := q.f.db.AddRunCounters(ctx, b.CampaignID, b.Run, minipush.Counters{Sent: len(b.OpenIDs)}); err != nil {
			return err
		}
	}
	return nil
}

// TestPlanFinishesRunSentWhilePlanning: when every recipient is final before the planner
// marks the run sending, no sender can finish it; the planner does, in the same tick.
func TestPlanFinishesRunSentWhilePlanning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.oneOff(t, "cfast", listAudience)
	f.mustAudience(t, "cfast", 250)
	h := f.handler("p")
	h.Queue = instantSenders{f: f, tb: t}
	if err := h.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	p := f.mustRun(t, "cfast", 1)
	if p.Status != minipush.RunDone || p.Counters.Sent != 250 || p.Planned != 250 {
		t.Fatalf("run %+v, want done with 250 of 250 sent", p)
	}
	if c := f.mustCampaignNow(t, "cfast"); c.Status != minipush.StatusDone {
		t.Errorf("campaign %s, want done", c.Status)
	}
}
