package plan_test

import (
	"context"
	"testing"
	"time"

	"minipush"
)

// TestRecurringPausedWhilePlanning: a daily 10:00 reminder paused while its run is
// being planned (pausedFrom planning) and resumed at 03:00 the next day. Without
// catchUp the run is stale: the planner closes it with the recipients it had queued
// (send skips those as missed_occurrence) and rolls the campaign to today's 10:00,
// instead of queueing the rest of yesterday's audience at 03:00. With catchUp the
// planner continues the run. Before the fix resume continued planning the stale run.
func TestRecurringPausedWhilePlanning(t *testing.T) {
	t.Parallel()
	const n, page, after = 1500, 500, 1
	for _, tc := range []struct {
		name    string
		catchUp bool
		queued  int
	}{{"Stale", false, after * page}, {"CatchUp", true, n}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			shanghai, err := time.LoadLocation("Asia/Shanghai")
			if err != nil {
				t.Fatal(err)
			}
			first := time.Date(2026, 11, 25, 10, 0, 0, 0, shanghai)
			f.clk.Set(first.Add(30 * time.Second))
			f.mustCampaign(t, "cplan", listAudience, minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}, first)
			f.mustAudience(t, "cplan", n)
			h := f.handler("p")
			h.PageSize = page
			h.Queue = &hookQueue{next: f.queue, on: after, hook: func() error {
				_, err := f.db.OperatorPause(context.Background(), "cplan")
				return err
			}}
			if err := h.Handle(t.Context(), tick); err != nil {
				t.Fatal(err)
			}
			if p := f.mustRun(t, "cplan", 1); p.Status != minipush.RunPlanning || p.Planned != after*page {
				t.Fatalf("paused run: status %q planned %d, want planning %d", p.Status, p.Planned, after*page)
			}

			today := first.AddDate(0, 0, 1)
			f.clk.Set(today.Add(-7 * time.Hour)) // 03:00
			if _, err := f.db.ResumeCampaign(t.Context(), "cplan", tc.catchUp); err != nil {
				t.Fatal(err)
			}
			tickAt(t, f, today.Add(-7*time.Hour+30*time.Second))
			f.drain(t, tc.queued).assertExactlyOnce(t, 1, tc.queued)
			if p := f.mustRun(t, "cplan", 1); p.Status != minipush.RunSending || p.Planned != tc.queued {
				t.Errorf("run 1: status %q planned %d, want sending %d", p.Status, p.Planned, tc.queued)
			}
			if c := f.mustCampaignNow(t, "cplan"); c.Status != minipush.StatusScheduled || c.RunSeq != 1 || !c.NextRunAt.Equal(today) {
				t.Errorf("campaign: %s runSeq %d next %v, want scheduled 1 %v", c.Status, c.RunSeq, c.NextRunAt, today)
			}
		})
	}
}
