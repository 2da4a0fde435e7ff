package plan_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/plan"
)

// shanghaiZone is the zone of the quiet-hours tests' app.
var shanghaiZone = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// quietApps is the fixture's app with the default window, 22:00-08:00 in Shanghai,
// named explicitly (an app the planner does not know has no quiet hours).
var quietApps = map[string]minipush.App{appID: {AppID: appID, TimeZone: "Asia/Shanghai",
	QuietHours: &minipush.QuietHours{Start: "22:00", End: "08:00"}}}

// shClock is h:m:s on 25 November 2026 in Shanghai, plus days.
func shClock(days, h, m, s int) time.Time {
	return time.Date(2026, 11, 25+days, h, m, s, 0, shanghaiZone)
}

// clockMover is the send queue, moving the test clock after the first batches it
// queues: the window opens while the planner is between pages.
type clockMover struct {
	plan.Queue
	clk   *clock
	to    time.Time
	moved bool
}

func (m *clockMover) SendBatches(ctx context.Context, batches []minipush.Batch) error {
	err := m.Queue.SendBatches(ctx, batches)
	if !m.moved {
		m.clk.Set(m.to)
		m.moved = true
	}
	return err
}

// quietCampaign creates a one-off list campaign of n recipients with the policy given,
// due at the fixture clock's now.
func (f *fixture) quietCampaign(tb testing.TB, id string, n int, pol minipush.Policy) {
	tb.Helper()
	now := f.clk.Now()
	c := minipush.Campaign{
		ID: id, AppID: appID, Name: id, Message: message(), Audience: minipush.Audience{Kind: minipush.AudienceList},
		Status: minipush.StatusDraft, CreatedAt: now, UpdatedAt: now, Policy: pol,
	}
	if err := f.db.CreateCampaign(context.Background(), c); err != nil {
		tb.Fatal(err)
	}
	f.mustAudience(tb, id, n)
	if _, err := f.db.ScheduleCampaign(context.Background(), id, minipush.Schedule{At: now}, now); err != nil {
		tb.Fatal(err)
	}
}

// tick runs one planner tick at the fixture clock's time.
func (f *fixture) tick(tb testing.TB, h *plan.Handler) {
	tb.Helper()
	if err := h.Handle(context.Background(), events.EventBridgeEvent{ID: "tick"}); err != nil {
		tb.Fatal(err)
	}
}

// TestQuietHoursHoldPlanner: inside the app's quiet hours the planner queues nothing of
// a marketing campaign, whether the run is due inside the window or the window opens
// while it is being planned: the run stays planning with its cursor, a tick a second
// before the window's end still queues nothing, and the first tick at its end queues the
// rest, every recipient once. A transactional campaign and one whose policy turns quiet
// hours off are planned inside the window as if there were none.
func TestQuietHoursHoldPlanner(t *testing.T) {
	t.Parallel()
	const n = 300
	night := shClock(0, 23, 0, 0) // inside 22:00-08:00
	end := shClock(1, 8, 0, 0)    // the window's end, the next morning

	// held checks that the run is still planning with queued recipients planned, and
	// that nothing more is on the queue.
	held := func(t *testing.T, f *fixture, id string, queued int) {
		t.Helper()
		if d := f.drain(t, 0); len(d.recipients) != 0 {
			t.Fatalf("%d recipients queued inside quiet hours", len(d.recipients))
		}
		if p := f.mustRun(t, id, 1); p.Status != minipush.RunPlanning || p.Planned != queued {
			t.Fatalf("run inside quiet hours: %+v, want planning with %d planned", p, queued)
		}
		if c := f.mustCampaignNow(t, id); c.Status != minipush.StatusPlanning {
			t.Fatalf("campaign inside quiet hours is %s, want planning", c.Status)
		}
	}
	// resumes checks that the tick at the window's end queues the rest.
	resumes := func(t *testing.T, f *fixture, h *plan.Handler, id string, queued int) drained {
		t.Helper()
		f.clk.Set(end.Add(-time.Second))
		f.tick(t, h)
		held(t, f, id, queued)
		f.clk.Set(end)
		f.tick(t, h)
		d := f.drain(t, n-queued)
		if p := f.mustRun(t, id, 1); p.Status != minipush.RunSending || p.Planned != n {
			t.Fatalf("run after quiet hours: %+v, want sending with %d planned", p, n)
		}
		return d
	}

	t.Run("DueInside", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.clk.Set(night)
		f.quietCampaign(t, "qh-inside", n, minipush.Policy{SkipOptedOut: true})
		h := f.handler("p1")
		h.Apps = quietApps
		f.tick(t, h)
		held(t, f, "qh-inside", 0)
		resumes(t, f, h, "qh-inside", 0).assertExactlyOnce(t, 1, n)
	})

	t.Run("WindowOpensWhilePlanning", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.clk.Set(shClock(0, 21, 59, 30))
		f.quietCampaign(t, "qh-opens", n, minipush.Policy{SkipOptedOut: true})
		h := f.handler("p1")
		h.Apps, h.PageSize = quietApps, 100
		h.Queue = &clockMover{Queue: f.queue, clk: f.clk, to: shClock(0, 22, 0, 0)}
		f.tick(t, h)
		first := f.drain(t, 100) // the page queued before 22:00
		if len(first.recipients) != 100 {
			t.Fatalf("%d recipients queued before the window opened, want the first page's 100", len(first.recipients))
		}
		held(t, f, "qh-opens", 100)
		rest := resumes(t, f, h, "qh-opens", 100)
		for k, v := range first.recipients {
			rest.recipients[k] += v
		}
		rest.batches = append(rest.batches, first.batches...)
		rest.assertExactlyOnce(t, 1, n)
	})

	for _, tc := range []struct {
		name string
		pol  minipush.Policy
	}{
		{"Transactional", minipush.Policy{SkipOptedOut: true, Transactional: true}},
		{"OverrideOff", minipush.Policy{SkipOptedOut: true, QuietHours: &minipush.QuietHours{Off: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.clk.Set(night)
			f.quietCampaign(t, "qh-"+tc.name, n, tc.pol)
			h := f.handler("p1")
			h.Apps = quietApps
			f.tick(t, h)
			if p := f.mustRun(t, "qh-"+tc.name, 1); p.Status != minipush.RunSending || p.Planned != n {
				t.Fatalf("run inside quiet hours: %+v, want sending with all %d planned", p, n)
			}
			f.drain(t, n).assertExactlyOnce(t, 1, n)
		})
	}
}
