package plan_test

import (
	"context"
	"testing"

	"minipush"
)

// TestPlanList25kKilled is TestPlanList25k with the planner killed: its context is
// cancelled after a few pages, a new invocation continues from the saved cursor, and the
// queue still holds each of the 25,000 recipients exactly once, in distinct batches.
func TestPlanList25kKilled(t *testing.T) {
	t.Parallel()
	const n, killedAfter = 25000, 3 // rounds of DefaultPageSize (1,000) queued before the kill
	f := newFixture(t)
	f.oneOff(t, "c25kk", listAudience)
	f.mustAudience(t, "c25kk", n)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := f.handler("killed")
	h.Queue = &cancellingQueue{Queue: f.queue, after: killedAfter, cancel: cancel}
	if err := h.Handle(ctx, tick); err != nil {
		t.Fatal(err)
	}
	p := f.mustRun(t, "c25kk", 1)
	if p.Status != minipush.RunPlanning || p.Planned <= 0 || p.Planned >= n {
		t.Fatalf("after the kill: status %q planned %d, want planning with 0 < planned < %d", p.Status, p.Planned, n)
	}
	t.Logf("killed after %d of %d recipients", p.Planned, n)

	if err := f.handler("next").Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	f.drain(t, n).assertExactlyOnce(t, 1, n)
	if p := f.mustRun(t, "c25kk", 1); p.Status != minipush.RunSending || p.Planned != n {
		t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
	}
	f.assertNotDue(t, "c25kk")
}
