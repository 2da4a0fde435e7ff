package dynamo_test

import (
	"testing"
	"time"

	"minipush"
)

// TestAbortRunClearsHold: a run the planner held for quiet hours and then aborted on
// its canary is no longer held; the runs listing must not show a hold on a run that
// will never plan again (FinishRun clears it the same way).
func TestAbortRunClearsHold(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
	if _, err := db.BeginRun(ctx, "c1", now); err != nil {
		t.Fatal(err)
	}
	st, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	st.Planned, st.HeldUntil = 20, now.Add(8*time.Hour)
	if err := db.SavePlanCursor(ctx, "c1", 1, "a", st, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.AbortRun(ctx, "c1", 1, "a", 20, "canary: 47003 above 10%", now); err != nil {
		t.Fatal(err)
	}
	runs, err := db.CampaignRuns(ctx, "c1")
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %+v, %v", runs, err)
	}
	if !runs[0].HeldUntil.IsZero() {
		t.Errorf("aborted run still held until %v", runs[0].HeldUntil)
	}
}
