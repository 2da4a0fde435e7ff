package plan_test

import (
	"testing"
	"time"

	"minipush"
	"minipush/internal/schedule"
)

// dailyShanghai creates a daily 10:00 Asia/Shanghai campaign of n list recipients and
// plans its first run at 10:00:30 on day 1; it returns day 1's 10:00.
func dailyShanghai(t *testing.T, f *fixture, id string, n int) time.Time {
	t.Helper()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 11, 25, 10, 0, 0, 0, shanghai)
	f.clk.Set(first.Add(30 * time.Second))
	f.mustCampaign(t, id, listAudience, minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}, first)
	f.mustAudience(t, id, n)
	if err := f.handler("first").Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	f.drain(t, n).assertExactlyOnce(t, 1, n)
	return first
}

// tickAt runs one planner tick at now.
func tickAt(t *testing.T, f *fixture, now time.Time) {
	t.Helper()
	f.clk.Set(now)
	if err := f.handler("tick-"+now.Format("0102T1504")).Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
}

// TestRecurringPausedBySendResumes: send pauses a recurring campaign between its runs
// (45009 while run 1 is still sending, the campaign already scheduled for tomorrow).
// Resume must return it to its schedule, and the planner must run it tomorrow. It once
// resumed to sending, which the planner ignores and schedule refuses: only cancel got
// out.
func TestRecurringPausedBySendResumes(t *testing.T) {
	t.Parallel()
	const n = 20
	f := newFixture(t)
	first := dailyShanghai(t, f, "cquota", n)
	if err := f.db.PauseCampaign(t.Context(), "cquota", "quota_exceeded (errcode 45009)"); err != nil {
		t.Fatal(err)
	}
	f.assertNotDue(t, "cquota")

	f.clk.Set(first.Add(30 * time.Minute))
	c, err := f.db.ResumeCampaign(t.Context(), "cquota", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := first.AddDate(0, 0, 1); c.Status != minipush.StatusScheduled || !c.NextRunAt.Equal(want) {
		t.Fatalf("resumed: status %q next %v, want scheduled %v", c.Status, c.NextRunAt, want)
	}
	// Run 1 still sends (send holds nothing of a scheduled campaign); tomorrow's runs.
	tickAt(t, f, first.AddDate(0, 0, 1).Add(5*time.Second))
	f.drain(t, n).assertExactlyOnce(t, 2, n)
	if c := f.mustCampaignNow(t, "cquota"); c.RunSeq != 2 || c.Status != minipush.StatusScheduled {
		t.Fatalf("after the next occurrence: status %q runSeq %d, want scheduled 2", c.Status, c.RunSeq)
	}
}

// TestRecurringMissedOccurrence: an occurrence missed by more than
// schedule.LateTolerance is skipped, not sent late: a daily 10:00 reminder paused over
// 10:00 and resumed at 03:00 next goes out at 10:00, not at 03:00 (unless the operator
// asks to catch up), and one the planner finds an hour overdue waits for tomorrow.
func TestRecurringMissedOccurrence(t *testing.T) {
	t.Parallel()
	const n = 20

	t.Run("ResumeSkips", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		first := dailyShanghai(t, f, "cskip", n)
		f.clk.Set(first.Add(2 * time.Hour))
		if _, err := f.db.OperatorPause(t.Context(), "cskip"); err != nil {
			t.Fatal(err)
		}
		// Paused over day 2's 10:00; resumed at 03:00 on day 3.
		resumeAt := first.AddDate(0, 0, 2).Add(-7 * time.Hour)
		f.clk.Set(resumeAt)
		c, err := f.db.ResumeCampaign(t.Context(), "cskip", false)
		if err != nil {
			t.Fatal(err)
		}
		if want := first.AddDate(0, 0, 2); !c.NextRunAt.Equal(want) || c.Status != minipush.StatusScheduled {
			t.Fatalf("resumed: status %q next %v, want scheduled %v", c.Status, c.NextRunAt, want)
		}
		tickAt(t, f, resumeAt.Add(30*time.Second))
		if c := f.mustCampaignNow(t, "cskip"); c.RunSeq != 1 {
			t.Fatalf("the missed occurrence ran at 03:00 (runSeq %d)", c.RunSeq)
		}
		tickAt(t, f, first.AddDate(0, 0, 2).Add(5*time.Second))
		f.drain(t, n).assertExactlyOnce(t, 2, n)
	})

	t.Run("ResumeCatchUp", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		first := dailyShanghai(t, f, "ccatch", n)
		f.clk.Set(first.Add(2 * time.Hour))
		if _, err := f.db.OperatorPause(t.Context(), "ccatch"); err != nil {
			t.Fatal(err)
		}
		resumeAt := first.AddDate(0, 0, 2).Add(-7 * time.Hour)
		f.clk.Set(resumeAt)
		if _, err := f.db.ResumeCampaign(t.Context(), "ccatch", true); err != nil {
			t.Fatal(err)
		}
		tickAt(t, f, resumeAt.Add(30*time.Second))
		f.drain(t, n).assertExactlyOnce(t, 2, n)
		// One catch-up run, then the schedule: today's 10:00, not the missed ones.
		if c := f.mustCampaignNow(t, "ccatch"); c.RunSeq != 2 || !c.NextRunAt.Equal(first.AddDate(0, 0, 2)) {
			t.Fatalf("after catching up: runSeq %d next %v, want 2 and %v", c.RunSeq, c.NextRunAt, first.AddDate(0, 0, 2))
		}
	})

	t.Run("PlannerOverdue", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		first := dailyShanghai(t, f, "clate", n)
		// Day 2: the planner was down until 11:00, an hour past the occurrence.
		day2 := first.AddDate(0, 0, 1)
		tickAt(t, f, day2.Add(time.Hour))
		c := f.mustCampaignNow(t, "clate")
		if want := first.AddDate(0, 0, 2); c.RunSeq != 1 || !c.NextRunAt.Equal(want) || c.Status != minipush.StatusScheduled {
			t.Fatalf("an hour late: status %q runSeq %d next %v, want scheduled 1 %v (skipped)", c.Status, c.RunSeq, c.NextRunAt, want)
		}
		if p := f.mustRun(t, "clate", 1); p.Status != minipush.RunSending {
			t.Fatalf("run 1 %q, want still sending", p.Status)
		}
		// Day 3: late, but within the tolerance: it runs.
		tickAt(t, f, first.AddDate(0, 0, 2).Add(schedule.LateTolerance-time.Minute))
		f.drain(t, n).assertExactlyOnce(t, 2, n)
	})
}
