package plan_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"minipush"
	"minipush/internal/plan"
)

// hookQueue queues every call's batches and then, after call number on, runs hook: an
// operator acting while the planner is mid-run.
type hookQueue struct {
	next interface {
		SendBatches(context.Context, []minipush.Batch) error
	}
	on    int32
	hook  func() error
	calls atomic.Int32
}

func (q *hookQueue) SendBatches(ctx context.Context, b []minipush.Batch) error {
	if err := q.next.SendBatches(ctx, b); err != nil {
		return err
	}
	if q.calls.Add(1) == q.on {
		return q.hook()
	}
	return nil
}

// TestPlanOperatorStops pauses or cancels a campaign while its run is being planned: the
// planner stops at the next page instead of queueing the whole audience.
func TestPlanOperatorStops(t *testing.T) {
	t.Parallel()
	const n, page, after = 3000, 500, 2

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.oneOff(t, "cstop", listAudience)
		f.mustAudience(t, "cstop", n)
		h := f.handler("p")
		h.PageSize = page
		h.Queue = &hookQueue{next: f.queue, on: after, hook: func() error {
			_, err := f.db.CancelCampaign(context.Background(), "cstop")
			return err
		}}
		if err := h.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		// Only what was queued before the cancel; the run is closed with that count so
		// send can reconcile it, and nothing is left for a later tick.
		f.drain(t, after*page).assertExactlyOnce(t, 1, after*page)
		if p := f.mustRun(t, "cstop", 1); p.Status != minipush.RunSending || p.Planned != after*page {
			t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, after*page)
		}
		if c := f.mustCampaignNow(t, "cstop"); c.Status != minipush.StatusCancelled {
			t.Errorf("campaign %s, want cancelled", c.Status)
		}
		f.assertNotDue(t, "cstop")
	})

	t.Run("PauseResume", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.oneOff(t, "cpause", listAudience)
		f.mustAudience(t, "cpause", n)
		h := f.handler("p")
		h.PageSize = page
		h.Queue = &hookQueue{next: f.queue, on: after, hook: func() error {
			_, err := f.db.OperatorPause(context.Background(), "cpause")
			return err
		}}
		if err := h.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		if p := f.mustRun(t, "cpause", 1); p.Status != minipush.RunPlanning || p.Planned != after*page {
			t.Fatalf("paused run: status %q planned %d, want planning %d", p.Status, p.Planned, after*page)
		}
		f.assertNotDue(t, "cpause")
		// A tick while paused plans nothing.
		if err := f.handler("q").Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		if p := f.mustRun(t, "cpause", 1); p.Planned != after*page {
			t.Fatalf("planned %d while paused, want %d", p.Planned, after*page)
		}
		if _, err := f.db.ResumeCampaign(t.Context(), "cpause", false); err != nil {
			t.Fatal(err)
		}
		h2 := f.handler("r")
		h2.PageSize = page
		if err := h2.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, n).assertExactlyOnce(t, 1, n)
		if p := f.mustRun(t, "cpause", 1); p.Status != minipush.RunSending || p.Planned != n {
			t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
		}
		if c := f.mustCampaignNow(t, "cpause"); c.Status != minipush.StatusSending {
			t.Errorf("campaign %s, want sending", c.Status)
		}
	})
}

// cancelOnRead is the planner's storage, cancelling the invocation during its on-th
// campaign read: the planner is stopped between the deadline check and the re-read.
type cancelOnRead struct {
	plan.Store
	on     int32
	cancel context.CancelFunc
	calls  atomic.Int32
}

func (s *cancelOnRead) GetCampaign(ctx context.Context, id string) (minipush.Campaign, error) {
	if s.calls.Add(1) == s.on {
		s.cancel()
		return minipush.Campaign{}, ctx.Err()
	}
	return s.Store.GetCampaign(ctx, id)
}

// TestPlanCancelledDuringReRead: an invocation cancelled while re-reading the campaign
// stops cleanly (no error, lease released), and the next tick finishes the run with
// every recipient queued once.
func TestPlanCancelledDuringReRead(t *testing.T) {
	t.Parallel()
	const n, page = 2000, 500
	f := newFixture(t)
	f.oneOff(t, "creread", listAudience)
	f.mustAudience(t, "creread", n)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := f.handler("first")
	h.PageSize = page
	h.DB = &cancelOnRead{Store: f.db, on: 3, cancel: cancel}
	if err := h.Handle(ctx, tick); err != nil {
		t.Fatalf("cancelled planner: %v, want a clean stop", err)
	}
	if p := f.mustRun(t, "creread", 1); p.Status != minipush.RunPlanning || p.Planned != 2*page {
		t.Fatalf("after cancel: status %q planned %d, want planning %d", p.Status, p.Planned, 2*page)
	}
	// Released: another planner continues at once, without waiting out the lease.
	h2 := f.handler("second")
	h2.PageSize = page
	if err := h2.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	f.drain(t, n).assertExactlyOnce(t, 1, n)
	if p := f.mustRun(t, "creread", 1); p.Status != minipush.RunSending || p.Planned != n {
		t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
	}
}

// cancelOnPage is the planner's storage, cancelling the invocation during its on-th
// audience page read, as a deadline or a kill would.
type cancelOnPage struct {
	plan.Store
	on     int32
	cancel context.CancelFunc
	calls  atomic.Int32
}

func (s *cancelOnPage) AudiencePage(ctx context.Context, id, after string, limit int) ([]string, string, error) {
	if s.calls.Add(1) == s.on {
		s.cancel()
		return nil, "", fmt.Errorf("dynamo: audience page of %s: %w", id, ctx.Err())
	}
	return s.Store.AudiencePage(ctx, id, after, limit)
}

// TestPlanCancelledDuringAudienceRead: an invocation cancelled while reading an audience
// page stops cleanly (no error, cursor kept, lease released), and the next tick, at the
// same instant, finishes the run with every recipient queued once.
func TestPlanCancelledDuringAudienceRead(t *testing.T) {
	t.Parallel()
	const n, page = 2000, 500
	f := newFixture(t)
	f.oneOff(t, "cpage", listAudience)
	f.mustAudience(t, "cpage", n)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := f.handler("first")
	h.PageSize = page
	h.DB = &cancelOnPage{Store: f.db, on: 3, cancel: cancel}
	if err := h.Handle(ctx, tick); err != nil {
		t.Fatalf("cancelled planner: %v, want a clean stop", err)
	}
	if p := f.mustRun(t, "cpage", 1); p.Status != minipush.RunPlanning || p.Planned != 2*page {
		t.Fatalf("after cancel: status %q planned %d, want planning %d", p.Status, p.Planned, 2*page)
	}
	h2 := f.handler("second")
	h2.PageSize = page
	if err := h2.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	f.drain(t, n).assertExactlyOnce(t, 1, n)
	if p := f.mustRun(t, "cpage", 1); p.Status != minipush.RunSending || p.Planned != n {
		t.Errorf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
	}
}
