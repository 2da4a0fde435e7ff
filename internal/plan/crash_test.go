package plan_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
	"minipush/internal/plan"
)

// crashAfterQueue queues every call's batches and then, on call number crashOn, reports
// a failure anyway: the planner dies after its batches reached SQS but before it saved
// the cursor past them, the one window in which batches can be queued twice.
type crashAfterQueue struct {
	plan.Queue
	crashOn int32
	calls   atomic.Int32
}

var errCrashed = errors.New("planner crashed after queueing")

func (q *crashAfterQueue) SendBatches(ctx context.Context, b []minipush.Batch) error {
	if err := q.Queue.SendBatches(ctx, b); err != nil {
		return err
	}
	if q.calls.Add(1) == q.crashOn {
		return errCrashed
	}
	return nil
}

// TestPlanCrashBetweenQueueAndCursor kills the planner between queueing a page and saving
// its cursor. The planner that takes over after the lease runs out re-reads that one page
// from the saved cursor and re-queues it under the same batch ids with the same
// recipients (send dedupes those per run and openid); nothing else is queued twice and
// every recipient is queued.
func TestPlanCrashBetweenQueueAndCursor(t *testing.T) {
	t.Parallel()
	const n, page, crashOn = 3000, 500, 3
	f := newFixture(t)
	f.oneOff(t, "cwin", listAudience)
	f.mustAudience(t, "cwin", n)

	h := f.handler("crashing")
	h.PageSize = page
	h.Queue = &crashAfterQueue{Queue: f.queue, crashOn: crashOn}
	if err := h.Handle(t.Context(), tick); !errors.Is(err, errCrashed) {
		t.Fatalf("crashing planner: %v, want %v", err, errCrashed)
	}
	if p := f.mustRun(t, "cwin", 1); p.Status != minipush.RunPlanning || p.Planned != (crashOn-1)*page {
		t.Fatalf("after the crash: status %q planned %d, want planning %d", p.Status, p.Planned, (crashOn-1)*page)
	}
	f.clk.Add(plan.DefaultLease + time.Second)
	h2 := f.handler("takeover")
	h2.PageSize = page
	if err := h2.Handle(t.Context(), tick); err != nil {
		t.Fatal(err)
	}
	if p := f.mustRun(t, "cwin", 1); p.Status != minipush.RunSending || p.Planned != n {
		t.Fatalf("run: status %q planned %d, want sending %d", p.Status, p.Planned, n)
	}

	d := f.drain(t, n+page)
	copies := map[string][][]string{} // batch id -> the recipients of each copy
	for _, b := range d.batches {
		copies[b.ID] = append(copies[b.ID], b.OpenIDs)
	}
	// The page the crash interrupted: openID((crashOn-1)*page) up to crashOn*page.
	inCrashedPage := func(id string) bool {
		return id >= openID((crashOn-1)*page) && id < openID(crashOn*page)
	}
	owner := map[string]string{} // openid -> the one batch id that carries it
	var twice []string
	for id, cs := range copies {
		switch len(cs) {
		case 1:
		case 2:
			twice = append(twice, id)
			if !slices.Equal(cs[0], cs[1]) {
				t.Fatalf("batch %s queued twice with different recipients", id)
			}
		default:
			t.Fatalf("batch %s queued %d times", id, len(cs))
		}
		for _, r := range cs[0] {
			if prev, ok := owner[r]; ok {
				t.Fatalf("recipient %s in batches %s and %s", r, prev, id)
			}
			owner[r] = id
			if len(cs) == 2 && !inCrashedPage(r) {
				t.Fatalf("recipient %s outside the crashed page re-queued (batch %s)", r, id)
			}
		}
	}
	if len(owner) != n {
		t.Fatalf("%d distinct recipients queued, want %d", len(owner), n)
	}
	for i := range n {
		if _, ok := owner[openID(i)]; !ok {
			t.Fatalf("recipient %d never queued", i)
		}
	}
	if want := page / plan.DefaultBatchSize; len(twice) != want {
		t.Fatalf("%d batches queued twice, want the crashed page's %d", len(twice), want)
	}
}
