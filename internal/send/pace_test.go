package send_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/send"
)

// readOrderStore records, at each read of a message's delivery items, how many
// recipients of the invocation were claimed by then.
type readOrderStore struct {
	send.Store
	claimed atomic.Int64
	mu      sync.Mutex
	atRead  []int64
}

func (s *readOrderStore) Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error) {
	s.mu.Lock()
	s.atRead = append(s.atRead, s.claimed.Load())
	s.mu.Unlock()
	return s.Store.Deliveries(ctx, runKey, openIDs)
}

// CreateDelivery counts the recipients begun: a claim is made once the recipient
// holds a slot of the pool, so with parallelism p at least claims - p have finished.
func (s *readOrderStore) CreateDelivery(ctx context.Context, d minipush.Delivery) (minipush.Delivery, error) {
	s.claimed.Add(1)
	return s.Store.CreateDelivery(ctx, d)
}

// TestReadsFollowThePool: an invocation's messages read their recipients' delivery items
// one after another, each once the previous message's recipients are all in the pool,
// not all at its start: on AWS those ten reads at once (about 1,000 keys over the run's
// delivery shards, per instance) were the run's hottest reads (issue #12). With 10
// messages of 12 recipients and 4 in flight, the k-th read comes after at least
// 12k - 4 recipients finished (at least 12k - 4 claimed: a recipient's final write
// may be a sent log written later); reading all at the start, every read sees 0.
func TestReadsFollowThePool(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n, perMessage, parallelism = 120, 12, 4
	ids := f.grantedUsers(t, n)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, n)
	h := f.handler(parallelism)
	st := &readOrderStore{Store: h.Store}
	h.Store = st
	evs := events10(t, batches("c", ids, perMessage))
	if len(evs) != 1 {
		t.Fatalf("%d events, want one invocation of 10 messages", len(evs))
	}
	handle(t, h, evs[0])
	f.allSent(t, "c", ids)
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.atRead) != n/perMessage {
		t.Fatalf("%d reads of delivery items, want one per message (%d)", len(st.atRead), n/perMessage)
	}
	for k, done := range st.atRead {
		if want := int64(k*perMessage - parallelism); done < want {
			t.Errorf("read %d of the invocation came after %d finished recipients, want at least %d (reads at %v)", k, done, want, st.atRead)
			break
		}
	}
}

// TestProgressWhileRunning: a long invocation adds what it finalized to the run's
// counters while it runs (every CounterFlush), not only at its end, so the operator's
// progress is fresh; the run still ends with exact counters. Recipients count as they
// end, not when their message does: with one message of 40 (as in make demo, where the
// ten messages of an invocation end together) a per-message tally showed nothing until
// the end, while receipts already counted "delivered".
func TestProgressWhileRunning(t *testing.T) {
	t.Parallel()
	for _, perMessage := range []int{10, 40} {
		t.Run(fmt.Sprintf("%dPerMessage", perMessage), func(t *testing.T) {
			t.Parallel()
			progressWhileRunning(t, perMessage)
		})
	}
}

func progressWhileRunning(t *testing.T, perMessage int) {
	f := newFixture(t)
	const n = 40
	ids := f.grantedUsers(t, n)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, n)
	// 40 recipients, 2 at a time, 100 ms each: the invocation takes about 2 s.
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLatency, Latency: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	h := f.handler(2)
	h.CounterFlush = 200 * time.Millisecond
	evs := events10(t, batches("c", ids, perMessage))
	var running atomic.Bool
	running.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer running.Store(false)
		handle(t, h, evs[0])
	}()
	seen := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p, err := f.db.RunCounters(t.Context(), "c", 1)
		if err != nil {
			t.Fatal(err)
		}
		if p.Counters.Sent > 0 && p.Counters.Sent < n {
			seen = p.Counters.Sent
			break
		}
		if !running.Load() {
			break
		}
	}
	<-done
	if seen == 0 {
		t.Fatalf("the run's counters showed no sent recipient while the invocation ran")
	}
	p, err := f.db.RunCounters(t.Context(), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	if p.Counters.Sent != n || p.Status != minipush.RunDone {
		t.Fatalf("after the invocation: %+v, want %d sent and the run done", p, n)
	}
	t.Logf("progress while running: %d of %d sent", seen, n)
}
