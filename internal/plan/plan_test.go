package plan_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/plan"
)

var tick = events.EventBridgeEvent{ID: "tick", Source: "aws.events", DetailType: "Scheduled Event"}

var listAudience = minipush.Audience{Kind: minipush.AudienceList}

func (f *fixture) assertNotDue(t *testing.T, id string) {
	t.Helper()
	due, err := f.db.DueCampaigns(t.Context(), f.clk.Now().Add(365*24*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range due {
		if c.ID == id {
			t.Fatalf("campaign %s still in the due index (status %s)", id, c.Status)
		}
	}
}

func TestPlanList25k(t *testing.T) {
	t.Parallel()
	const n = 25000
	f := newFixture(t)
	f.oneOff(t, "c25k", listAudience)
	f.mustAudience(t, "c25k", n)

	start := time.Now()
	if err := f.handler("p1").Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	t.Logf("planned %d recipients in %v", n, time.Since(start))

	d := f.drain(t, n)
	d.assertExactlyOnce(t, 1, n)
	if got, want := len(d.batches), n/plan.DefaultBatchSize; got != want {
		t.Errorf("%d batches, want %d", got, want)
	}
	if p := f.mustRun(t, "c25k", 1); p.Status != minipush.RunSending || p.Planned != n {
		t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
	}
	if c := f.mustCampaignNow(t, "c25k"); c.Status != minipush.StatusSending || c.RunSeq != 1 {
		t.Errorf("campaign: status %q runSeq %d, want sending 1", c.Status, c.RunSeq)
	}
	f.assertNotDue(t, "c25k")
	// A later tick finds nothing to do.
	if err := f.handler("p2").Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	if more := f.drain(t, 0); len(more.batches) != 0 {
		t.Errorf("a second tick queued %d more batches", len(more.batches))
	}
}

// cancellingQueue cancels the planner's context after a number of SendBatches calls, or
// fails them from then on.
type cancellingQueue struct {
	plan.Queue
	after  int
	cancel context.CancelFunc // nil: fail instead
	calls  atomic.Int32
}

var errQueueDown = errors.New("queue down")

func (q *cancellingQueue) SendBatches(ctx context.Context, b []minipush.Batch) error {
	n := int(q.calls.Add(1))
	if n > q.after {
		if q.cancel == nil {
			return errQueueDown
		}
		q.cancel()
	}
	return q.Queue.SendBatches(ctx, b)
}

func TestPlanResume(t *testing.T) {
	t.Parallel()
	const n, page = 5000, 500

	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.oneOff(t, "cres", listAudience)
		f.mustAudience(t, "cres", n)

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		h := f.handler("first")
		h.PageSize = page
		h.Queue = &cancellingQueue{Queue: f.queue, after: 2, cancel: cancel}
		if err := h.Handle(ctx, tick); err != nil {
			t.Fatal(err)
		}
		p := f.mustRun(t, "cres", 1)
		if p.Status != minipush.RunPlanning || p.Planned != 3*page {
			t.Fatalf("after cancel: status %q planned %d, want planning %d", p.Status, p.Planned, 3*page)
		}
		// The stopped planner released its lease: the next tick continues at once.
		h2 := f.handler("second")
		h2.PageSize = page
		if err := h2.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, n).assertExactlyOnce(t, 1, n)
		if p := f.mustRun(t, "cres", 1); p.Status != minipush.RunSending || p.Planned != n {
			t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
		}
	})

	t.Run("CrashedLeaseTakeover", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.oneOff(t, "ccrash", listAudience)
		f.mustAudience(t, "ccrash", n)

		h := f.handler("crashing")
		h.PageSize = page
		h.Queue = &cancellingQueue{Queue: f.queue, after: 4}
		if err := h.Handle(t.Context(), tick); !errors.Is(err, errQueueDown) {
			t.Fatalf("crashing planner: %v, want %v", err, errQueueDown)
		}
		// Its lease is still live: another planner must not touch the run.
		h2 := f.handler("second")
		h2.PageSize = page
		if err := h2.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		if p := f.mustRun(t, "ccrash", 1); p.Status != minipush.RunPlanning || p.Planned != 4*page {
			t.Fatalf("under a live lease: status %q planned %d, want planning %d", p.Status, p.Planned, 4*page)
		}
		f.clk.Add(plan.DefaultLease + time.Second)
		if err := h2.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, n).assertExactlyOnce(t, 1, n)
		if p := f.mustRun(t, "ccrash", 1); p.Status != minipush.RunSending || p.Planned != n {
			t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
		}
	})

	t.Run("Deadline", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.oneOff(t, "cdl", listAudience)
		f.mustAudience(t, "cdl", 300)
		// A deadline already inside the margin: the planner starts nothing.
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(time.Minute))
		defer cancel()
		h := f.handler("late")
		h.Margin = 2 * time.Minute
		if err := h.Handle(ctx, tick); err != nil {
			t.Fatal(err)
		}
		if c := f.mustCampaignNow(t, "cdl"); c.Status != minipush.StatusScheduled {
			t.Fatalf("campaign %s, want still scheduled", c.Status)
		}
		if err := f.handler("next").Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, 300).assertExactlyOnce(t, 1, 300)
	})
}

func TestPlanConcurrentPlanners(t *testing.T) {
	t.Parallel()
	const n = 5000
	f := newFixture(t)
	f.oneOff(t, "cconc", listAudience)
	f.mustAudience(t, "cconc", n)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		h := f.handler("planner" + strconv.Itoa(i))
		h.PageSize = 250
		wg.Go(func() { errs[i] = h.Handle(t.Context(), tick) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t, n).assertExactlyOnce(t, 1, n)
	if p := f.mustRun(t, "cconc", 1); p.Status != minipush.RunSending || p.Planned != n {
		t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
	}
	if c := f.mustCampaignNow(t, "cconc"); c.RunSeq != 1 {
		t.Errorf("runSeq %d, want 1: one run planned", c.RunSeq)
	}
}

func TestPlanSegment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := f.clk.Now()
	regions := []string{"gd", "sh", "bj"}
	industries := []string{"retail", "food"}
	var users []user
	for i := range 2000 {
		u := user{
			appID: appID, openID: openID(i), region: regions[i%3], industry: industries[i%2],
			optOut: i%7 == 0, liveGrants: i % 4, latestExpiry: now.Add(time.Duration(i%5-1) * time.Hour),
		}
		if i%5 == 0 {
			u.tags = []string{"vip", "new"}
		} else if i%5 == 1 {
			u.tags = []string{"vip"}
		}
		if i%11 == 0 {
			u.appID = "wxother"
		}
		if i%13 == 0 {
			u.region = "" // no region: matches no region filter
		}
		users = append(users, u)
	}
	f.mustUsers(t, users)

	cases := []struct {
		name  string
		aud   minipush.Audience
		match func(u user) bool
	}{
		{"Segment", minipush.Audience{Kind: minipush.AudienceSegment, Segment: &minipush.Segment{
			Regions: []string{"gd", "bj"}, Industries: []string{"retail"}, Tags: []string{"vip"}}},
			func(u user) bool {
				return (u.region == "gd" || u.region == "bj") && u.industry == "retail" && slices.Contains(u.tags, "vip")
			}},
		{"EverySegmentUser", minipush.Audience{Kind: minipush.AudienceSegment}, func(user) bool { return true }},
		// Reachable audiences read the grants table: TestPlanReachable.
	}
	for i, tc := range cases {
		id := "cseg" + strconv.Itoa(i)
		f.oneOff(t, id, tc.aud)
		want := map[string]bool{}
		for _, u := range users {
			if u.appID == appID && !u.optOut && tc.match(u) {
				want[u.openID] = true
			}
		}
		if len(want) == 0 || len(want) == len(users) {
			t.Fatalf("%s: fixture selects %d users; want a proper subset", tc.name, len(want))
		}
		cases[i].match = func(u user) bool { return want[u.openID] }
	}
	h := f.handler("seg")
	h.PageSize = 300 // several pages per segment
	if err := h.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, tc := range cases {
		for _, u := range users {
			if tc.match(u) {
				total++
			}
		}
	}
	d := f.drain(t, total)
	d.assertBatches(t)
	got := map[string]map[string]int{}
	for _, b := range d.batches {
		if got[b.CampaignID] == nil {
			got[b.CampaignID] = map[string]int{}
		}
		for _, id := range b.OpenIDs {
			got[b.CampaignID][id]++
		}
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "cseg" + strconv.Itoa(i)
			want := 0
			for _, u := range users {
				if tc.match(u) {
					want++
					if got[id][u.openID] != 1 {
						t.Errorf("user %s queued %d times, want 1", u.openID, got[id][u.openID])
					}
				}
			}
			if len(got[id]) != want {
				t.Errorf("%d users queued, want %d", len(got[id]), want)
			}
			if p := f.mustRun(t, id, 1); p.Planned != want || p.Status != minipush.RunSending {
				t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, want)
			}
		})
	}
}

func TestPlanRecurring(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	// Daily 10:00 in Shanghai; the clock starts at 10:00:30 there.
	first := time.Date(2026, 11, 25, 10, 0, 0, 0, shanghai)
	f.clk.Set(first.Add(30 * time.Second))
	f.mustCampaign(t, "cdaily", listAudience, minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}, first)
	f.mustAudience(t, "cdaily", 250)

	t.Run("FirstRun", func(t *testing.T) {
		if err := f.handler("a").Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, 250).assertExactlyOnce(t, 1, 250)
		c := f.mustCampaignNow(t, "cdaily")
		if want := first.AddDate(0, 0, 1); c.Status != minipush.StatusScheduled || c.RunSeq != 1 || !c.NextRunAt.Equal(want) {
			t.Fatalf("campaign after run 1: status %q runSeq %d next %v, want scheduled 1 %v", c.Status, c.RunSeq, c.NextRunAt, want)
		}
	})
	t.Run("NotDueYet", func(t *testing.T) {
		f.clk.Add(time.Hour)
		if err := f.handler("b").Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		if c := f.mustCampaignNow(t, "cdaily"); c.RunSeq != 1 {
			t.Fatalf("runSeq %d before the next occurrence, want 1", c.RunSeq)
		}
	})
	t.Run("NextRun", func(t *testing.T) {
		f.clk.Set(first.AddDate(0, 0, 1).Add(5 * time.Second))
		if err := f.handler("c").Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, 250).assertExactlyOnce(t, 2, 250)
		c := f.mustCampaignNow(t, "cdaily")
		if want := first.AddDate(0, 0, 2); c.RunSeq != 2 || !c.NextRunAt.Equal(want) || c.Status != minipush.StatusScheduled {
			t.Fatalf("campaign after run 2: status %q runSeq %d next %v, want scheduled 2 %v", c.Status, c.RunSeq, c.NextRunAt, want)
		}
		if p := f.mustRun(t, "cdaily", 2); p.Planned != 250 || p.Status != minipush.RunSending {
			t.Fatalf("run 2: status %q planned %d", p.Status, p.Planned)
		}
	})
}

func TestPlanEmptyAudience(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.oneOff(t, "cempty", listAudience)
	if err := f.handler("p").Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	if p := f.mustRun(t, "cempty", 1); p.Status != minipush.RunDone || p.Planned != 0 {
		t.Errorf("run: status %q planned %d, want done 0", p.Status, p.Planned)
	}
	if c := f.mustCampaignNow(t, "cempty"); c.Status != minipush.StatusDone {
		t.Errorf("campaign %s, want done", c.Status)
	}
	f.assertNotDue(t, "cempty")
	if d := f.drain(t, 0); len(d.batches) != 0 {
		t.Errorf("%d batches queued for nobody", len(d.batches))
	}
}
