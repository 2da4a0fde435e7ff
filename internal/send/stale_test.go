package send_test

import (
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/plan"
	"minipush/internal/queue"
)

// testClock is a clock the test moves by hand (a day in a step), shared by the store,
// the planner and send.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestStaleRunAfterResume: a daily 10:00 reminder hits 45009, send pauses it between
// runs (pausedFrom scheduled) and holds its batches; the operator resumes at 03:00 the
// next day. Without catchUp the held recipients of yesterday's run end
// skipped/missed_occurrence, nothing reaches WeChat, their grants stay, the run ends
// done and today's 10:00 run sends to everyone (the one-per-day slot was not taken at
// 03:00). With catchUp they are sent, and a one-off campaign's only occurrence is
// never skipped. Before the fix the 03:00 resume sent them all.
func TestStaleRunAfterResume(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		catchUp bool
		oneOff  bool
	}{{"Skipped", false, false}, {"CatchUp", true, false}, {"OneOff", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 12
			f := newFixture(t)
			shanghai, err := time.LoadLocation("Asia/Shanghai")
			if err != nil {
				t.Fatal(err)
			}
			// The grants expire in real time (10 and 20 days from now), so the occurrence
			// is the next real 10:00 in Shanghai.
			now := time.Now().In(shanghai)
			first := time.Date(now.Year(), now.Month(), now.Day(), 10, 0, 0, 0, shanghai)
			if !first.After(now) {
				first = first.AddDate(0, 0, 1)
			}
			clk := &testClock{t: first.Add(-time.Hour)}
			f.db.Now = clk.Now
			ctx := t.Context()

			ids := f.grantedUsers(t, n)
			c := minipush.Campaign{
				ID: "daily", AppID: appID, Name: "daily", Message: subscribeMessage(), Audience: minipush.Audience{Kind: minipush.AudienceList},
				Policy: minipush.Policy{}, Status: minipush.StatusDraft, CreatedAt: clk.Now(), UpdatedAt: clk.Now(),
			}
			if err := f.db.CreateCampaign(ctx, c); err != nil {
				t.Fatal(err)
			}
			if _, err := f.db.AddAudience(ctx, c.ID, ids); err != nil {
				t.Fatal(err)
			}
			sched := minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}
			if tc.oneOff {
				sched = minipush.Schedule{At: first}
			}
			if _, err := f.db.ScheduleCampaign(ctx, c.ID, sched, first); err != nil {
				t.Fatal(err)
			}
			planner := &plan.Handler{DB: f.db, Queue: queue.New(f.env.SQS, f.queueURL), Log: quiet, Now: clk.Now, BatchSize: 5}
			tick := func(at time.Time) {
				t.Helper()
				clk.Set(at)
				if err := planner.Handle(ctx, events.EventBridgeEvent{}); err != nil {
					t.Fatal(err)
				}
			}
			progress := func(run int) minipush.RunProgress {
				t.Helper()
				p, err := f.db.RunCounters(ctx, c.ID, run)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			runDone := func(run int) func() bool {
				return func() bool { return progress(run).Status == minipush.RunDone }
			}

			// Day 1, 10:00: run 1 planned; the campaign waits for tomorrow. At 10:20 the
			// first call answers 45009: send pauses the campaign and holds every batch.
			tick(first.Add(30 * time.Second))
			if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: 45009, Times: 1}); err != nil {
				t.Fatal(err)
			}
			clk.Set(first.Add(20 * time.Minute))
			h := f.handler(1)
			h.Apps = cappedApp(minipush.Caps{PerDay: 1})
			f.drain(t, h, 30*time.Second, func() bool {
				got, err := f.db.GetCampaign(ctx, c.ID)
				if err != nil {
					t.Fatal(err)
				}
				return got.Status == minipush.StatusPaused
			})
			if acc := f.sb.Stats().Accepted; acc != 0 {
				t.Fatalf("WeChat accepted %d messages before the pause, want 0", acc)
			}

			// Day 2, 03:00: the operator resumes.
			clk.Set(first.AddDate(0, 0, 1).Add(-7 * time.Hour))
			resumed, err := f.db.ResumeCampaign(ctx, c.ID, tc.catchUp)
			if err != nil {
				t.Fatal(err)
			}
			if want := first.AddDate(0, 0, 1); !tc.oneOff && (resumed.Status != minipush.StatusScheduled || !resumed.NextRunAt.Equal(want)) {
				t.Fatalf("resumed: %s next %v, want scheduled %v", resumed.Status, resumed.NextRunAt, want)
			}
			f.drain(t, h, 60*time.Second, runDone(1))
			got, acc := f.outcomes(t, c.ID), f.acceptedBy(sandbox.PathSubscribeSend)
			p := progress(1)
			if tc.catchUp || tc.oneOff {
				f.allSent(t, c.ID, ids)
				if p.Counters.Sent != n {
					t.Errorf("run 1 counters %+v, want %d sent", p.Counters, n)
				}
				return
			}
			for _, u := range ids {
				if d := got[u]; d.Outcome != minipush.OutcomeSkipped || d.Reason != minipush.ReasonMissedOccurrence {
					t.Errorf("%s: %s/%s, want skipped/%s", u, d.Outcome, d.Reason, minipush.ReasonMissedOccurrence)
				}
				if acc[u] != 0 {
					t.Errorf("%s: WeChat accepted %d messages of yesterday's run at 03:00", u, acc[u])
				}
				if gs := f.liveGrants(t, u); len(gs) != 2 {
					t.Errorf("%s: grants %+v, want both", u, gs)
				}
			}
			if p.Counters.Skipped != n || p.Counters.Sent != 0 {
				t.Errorf("run 1 counters %+v, want %d skipped", p.Counters, n)
			}

			// Day 2, 10:00: today's run goes to everyone, once.
			tick(first.AddDate(0, 0, 1).Add(5 * time.Second))
			f.drain(t, h, 60*time.Second, runDone(2))
			if p := progress(2); p.Counters.Sent != n {
				t.Errorf("run 2 counters %+v, want %d sent", p.Counters, n)
			}
			for u, k := range f.acceptedBy(sandbox.PathSubscribeSend) {
				if k != 1 {
					t.Errorf("%s: WeChat accepted %d messages, want today's one", u, k)
				}
			}
		})
	}
}
