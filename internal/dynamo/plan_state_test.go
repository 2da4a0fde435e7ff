package dynamo_test

import (
	"testing"
	"time"

	"minipush"
	"minipush/internal/dynamo"
)

// mustDue creates a campaign scheduled (due) at now.
func mustDue(t *testing.T, db *dynamo.DB, id string, sched minipush.Schedule, now time.Time) {
	t.Helper()
	c := draft(id, now)
	if err := db.CreateCampaign(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ScheduleCampaign(t.Context(), id, sched, now); err != nil {
		t.Fatal(err)
	}
}

func dueIDs(t *testing.T, db *dynamo.DB, now time.Time) []string {
	t.Helper()
	due, err := db.DueCampaigns(t.Context(), now, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range due {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestPlanState(t *testing.T) {
	t.Parallel()

	t.Run("DueIsOneQueryOfDueCampaigns", func(t *testing.T) {
		t.Parallel()
		db, api, clk := MustDB(t)
		now := clk.Now()
		mustDue(t, db, "early", minipush.Schedule{At: now}, now.Add(-time.Minute))
		mustDue(t, db, "late", minipush.Schedule{At: now.Add(time.Hour)}, now.Add(time.Hour))
		if err := db.CreateCampaign(t.Context(), draft("drafted", now)); err != nil {
			t.Fatal(err)
		}
		before := api.queries.Load()
		if got := dueIDs(t, db, now); len(got) != 1 || got[0] != "early" {
			t.Fatalf("due %v, want [early]", got)
		}
		if q := api.queries.Load() - before; q != 1 {
			t.Fatalf("%d queries, want 1", q)
		}
	})

	t.Run("BeginRunOnce", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
		run, err := db.BeginRun(t.Context(), "c1", now)
		if err != nil || run != 1 {
			t.Fatalf("begin: run %d, %v; want 1", run, err)
		}
		if _, err := db.BeginRun(t.Context(), "c1", now); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("second begin: %v, want ECONFLICT", err)
		}
		if c, _ := db.GetCampaign(t.Context(), "c1"); c.Status != minipush.StatusPlanning || c.RunSeq != 1 {
			t.Fatalf("campaign %s runSeq %d, want planning 1", c.Status, c.RunSeq)
		}
		// Still due while planning, so a stopped planner is continued.
		if got := dueIDs(t, db, now); len(got) != 1 {
			t.Fatalf("due while planning: %v", got)
		}
	})

	t.Run("ErrBeginNotDue", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now.Add(time.Hour)}, now.Add(time.Hour))
		if _, err := db.BeginRun(t.Context(), "c1", now); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("begin before due: %v, want ECONFLICT", err)
		}
	})

	t.Run("LeaseAndCursor", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		ctx := t.Context()
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
		if _, err := db.BeginRun(ctx, "c1", now); err != nil {
			t.Fatal(err)
		}
		st, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now.Add(time.Minute))
		if err != nil || st.Status != dynamo.RunPlanning || st.Planned != 0 {
			t.Fatalf("claim: %+v, %v", st, err)
		}
		if _, err := db.ClaimRun(ctx, "c1", 1, "wx1", "b", now, now.Add(time.Minute)); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("claim under a live lease: %v, want ECONFLICT", err)
		}
		st.Cursor = dynamo.PlanCursor{Segments: []dynamo.SegmentCursor{{After: "o5"}, {Done: true}}}
		st.NextSeq, st.Planned = 3, 250
		if err := db.SavePlanCursor(ctx, "c1", 1, "a", st, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		// After the lease runs out, b takes over from a's cursor and a must stop.
		later := now.Add(2 * time.Minute)
		got, err := db.ClaimRun(ctx, "c1", 1, "wx1", "b", later, later.Add(time.Minute))
		if err != nil || got.NextSeq != 3 || got.Planned != 250 || len(got.Cursor.Segments) != 2 ||
			got.Cursor.Segments[0].After != "o5" || !got.Cursor.Segments[1].Done {
			t.Fatalf("takeover: %+v, %v", got, err)
		}
		if err := db.SavePlanCursor(ctx, "c1", 1, "a", st, later.Add(time.Minute)); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("save by the old owner: %v, want ECONFLICT", err)
		}
		if err := db.FinishRun(ctx, "c1", 1, "a", 250, time.Time{}, later); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("finish by the old owner: %v, want ECONFLICT", err)
		}
		if err := db.FinishRun(ctx, "c1", 1, "b", 260, time.Time{}, later); err != nil {
			t.Fatal(err)
		}
		p, err := db.RunCounters(ctx, "c1", 1)
		if err != nil || p.Status != dynamo.RunSending || p.Planned != 260 {
			t.Fatalf("run after finish: %+v, %v", p, err)
		}
		if c, _ := db.GetCampaign(ctx, "c1"); c.Status != minipush.StatusSending {
			t.Fatalf("campaign %s, want sending", c.Status)
		}
		if got := dueIDs(t, db, later.Add(time.Hour)); len(got) != 0 {
			t.Fatalf("finished one-off still due: %v", got)
		}
		// A finished run is returned as is, without a lease.
		if st, err := db.ClaimRun(ctx, "c1", 1, "wx1", "c", later, later.Add(time.Minute)); err != nil || st.Status != dynamo.RunSending {
			t.Fatalf("claim of a finished run: %+v, %v", st, err)
		}
	})

	t.Run("FinishWhilePausedFinishesRunOnly", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		ctx := t.Context()
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
		if _, err := db.BeginRun(ctx, "c1", now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.OperatorPause(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishRun(ctx, "c1", 1, "a", 7, time.Time{}, now); err != nil {
			t.Fatal(err)
		}
		if p, _ := db.RunCounters(ctx, "c1", 1); p.Status != dynamo.RunSending || p.Planned != 7 {
			t.Fatalf("run %+v, want sending 7", p)
		}
		// Resume brings it back planning and due; rolling then takes it out.
		c, err := db.ResumeCampaign(ctx, "c1", false)
		if err != nil || c.Status != minipush.StatusPlanning {
			t.Fatalf("resume: %s, %v", c.Status, err)
		}
		if err := db.RollCampaign(ctx, "c1", 1, time.Time{}, now); err != nil {
			t.Fatal(err)
		}
		if got := dueIDs(t, db, now.Add(time.Hour)); len(got) != 0 {
			t.Fatalf("rolled one-off still due: %v", got)
		}
	})

	t.Run("RollRecurring", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		ctx := t.Context()
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{Cron: "0 10 * * *"}, now)
		if _, err := db.BeginRun(ctx, "c1", now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		next := now.Add(24 * time.Hour)
		if err := db.FinishRun(ctx, "c1", 1, "a", 1, next, now); err != nil {
			t.Fatal(err)
		}
		c, _ := db.GetCampaign(ctx, "c1")
		if c.Status != minipush.StatusScheduled || !c.NextRunAt.Equal(next) || c.RunSeq != 1 {
			t.Fatalf("campaign %s next %v runSeq %d", c.Status, c.NextRunAt, c.RunSeq)
		}
		if got := dueIDs(t, db, next); len(got) != 1 {
			t.Fatalf("not due at its next run: %v", got)
		}
		if run, err := db.BeginRun(ctx, "c1", next); err != nil || run != 2 {
			t.Fatalf("next run: %d, %v", run, err)
		}
	})
}
