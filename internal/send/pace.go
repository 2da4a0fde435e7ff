package send

import (
	"context"
	"sync"
	"time"
)

// turns orders when the messages of one invocation read their recipients' delivery
// items (and opt-outs): message i reads once message i-1 has handed every recipient
// it works on to the pool (or finished), not all ten at the invocation's start.
//
// Why: the invocation's messages share one pool of Parallelism recipients, so message
// i's recipients cannot start before most of message i-1's anyway; reading all ten
// messages' items at once (about 1,000 keys over the run's 64 delivery shards, each
// instance, all in the same second) was the hottest read of a run on the scale model:
// three campaigns at once throttled delivery shards at 160 % of their read limit. Read
// when the recipients are about to start, the same reads spread over the invocation's
// run time, at most one message (about 100 keys) per instance at a time, and the pool
// does not wait for them: the next message's read is in flight while the previous
// message's last recipients (up to Parallelism of them) are.
type turns struct {
	ch   []chan struct{} // ch[i] is closed when message i may read
	once []sync.Once
}

// newTurns returns the turns of n messages, the first one's open.
func newTurns(n int) *turns {
	t := &turns{ch: make([]chan struct{}, n+1), once: make([]sync.Once, n+1)}
	for i := range t.ch {
		t.ch[i] = make(chan struct{})
	}
	close(t.ch[0])
	t.once[0].Do(func() {})
	return t
}

// wait blocks until message i may read, or ctx ends (the reads then fail on ctx). A
// nil turns (an invocation built elsewhere, e.g. a test send) never waits.
func (t *turns) wait(ctx context.Context, i int) {
	if t == nil || i < 0 || i >= len(t.ch) {
		return
	}
	select {
	case <-t.ch[i]:
	case <-ctx.Done():
	}
}

// pass lets message i+1 read. Idempotent: message i calls it when its recipients are
// all in the pool, and again (deferred) on every way out.
func (t *turns) pass(i int) {
	if t == nil || i < 0 || i+1 >= len(t.ch) {
		return
	}
	t.once[i+1].Do(func() { close(t.ch[i+1]) })
}

// DefaultCounterFlush is how often a running invocation adds what its messages
// finalized so far to their runs' counters (Handler.CounterFlush).
const DefaultCounterFlush = time.Second

// flushEvery adds the invocation's tallies to the runs' counters every CounterFlush
// while its messages run, so a run's progress (sent, failed…) is at most about a
// second old, not an invocation's length (up to a minute with a slow WeChat, while
// receipts, counted as they arrive, showed "sent 20, delivered 255"). It costs one
// counter update per run per instance per second that finalized something (an idle
// tick writes nothing), against 3 writes per recipient. The returned stop ends the
// ticker and waits for a flush in progress, so the invocation's final flush
// (flushCounters after every message) never runs next to one.
func (inv *invocation) flushEvery(ctx context.Context) (stop func()) {
	every := inv.h.CounterFlush
	if every == 0 {
		every = DefaultCounterFlush
	}
	if every < 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				inv.flushCounters(ctx, false)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
