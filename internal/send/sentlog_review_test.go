package send_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/send"
)

// Regression tests for the review fixes of the sent log (a3a43e0): each was seen
// failing with its fix disabled by hand.

// lateLog is a store on which a lost claim's owner writes its sent log just after the
// taker read the claim open: hook names the read ("CreateDelivery": the claim race
// send's resolve starts from; "Deliveries": the dead-letter handler's batch read).
// The log lands once, through the real RecordSent, naming openID with msgID.
type lateLog struct {
	send.Store
	hook, owner, openID, msgID string

	once   sync.Once
	landed bool
}

// land writes the owner's log of openID, once.
func (s *lateLog) land(ctx context.Context, runKey string) error {
	var err error
	s.once.Do(func() {
		err = s.Store.RecordSent(ctx, s.owner, 0, []minipush.SentRecord{{
			RunKey: runKey, OpenID: s.openID, MsgID: s.msgID, At: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
		}})
		s.landed = err == nil
	})
	if err != nil {
		return fmt.Errorf("late log: %w", err)
	}
	return nil
}

func (s *lateLog) CreateDelivery(ctx context.Context, d minipush.Delivery) (minipush.Delivery, error) {
	was, err := s.Store.CreateDelivery(ctx, d)
	if s.hook == "CreateDelivery" && d.OpenID == s.openID && minipush.ErrorCode(err) == minipush.ECONFLICT && was.Owner == s.owner && !was.Final() {
		if lerr := s.land(ctx, d.RunKey); lerr != nil {
			return was, lerr
		}
	}
	return was, err
}

func (s *lateLog) Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error) {
	got, err := s.Store.Deliveries(ctx, runKey, openIDs)
	if s.hook == "Deliveries" && err == nil {
		if d, ok := got[s.openID]; ok && d.Owner == s.owner && !d.Final() {
			if lerr := s.land(ctx, runKey); lerr != nil {
				return nil, lerr
			}
		}
	}
	return got, err
}

// TestSentLogLandsBeforeTakeover: a claim past its lease, read open (its owner's log not
// written yet), whose owner's log lands between that read and the takeover, is sent:
// the taker must re-read it (finalNow) and leave it, neither recording it unknown (a
// final item would win over the log: a message WeChat took reported lost) nor spending
// a grant for it. Both takers: send's resolve after the claim race, and the dead-letter
// handler after its batch read, for which the recipient is already final. Without
// finalNow both record unknown and spend the second grant.
func TestSentLogLandsBeforeTakeover(t *testing.T) {
	t.Parallel()
	// setup stores the owner's claim of one granted user, its lease over a minute ago,
	// naming the grant the owner pays with, and returns the user.
	setup := func(t *testing.T, f *fixture) string {
		t.Helper()
		u := f.grantedUsers(t, 1)[0]
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, 1)
		g, err := f.db.SpendableGrant(t.Context(), appID, u, subscribeMessage().Channel())
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if _, err := f.db.CreateDelivery(t.Context(), minipush.Delivery{
			RunKey: minipush.RunKey("c", 1), OpenID: u, State: minipush.DeliverySending, Owner: "slow-owner",
			LeaseUntil: now.Add(-time.Minute), GrantID: g.ID, Channel: subscribeMessage().Channel(), ExpiresAt: now.Add(time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
		return u
	}
	// check asserts the owner's log stands: sent with its msgid, no message from the
	// taker, both grants left (the owner's spend would follow its log; this owner is
	// gone), nothing counted unknown.
	check := func(t *testing.T, f *fixture, s *lateLog) {
		t.Helper()
		if !s.landed {
			t.Fatal("the owner's log never landed: the test did not reach its race")
		}
		if d := f.outcomes(t, "c")[s.openID]; d.State != minipush.DeliveryFinal || d.Outcome != minipush.OutcomeSent || d.MsgID != s.msgID {
			t.Errorf("%s %s/%s msgid %q, want sent by its owner's log with msgid %s", d.State, d.Outcome, d.Reason, d.MsgID, s.msgID)
		}
		if n := f.acceptedBy(sandbox.PathSubscribeSend)[s.openID]; n != 0 {
			t.Errorf("WeChat accepted %d messages from the taker, want 0", n)
		}
		f.unleased(t, []string{s.openID}, 2)
		if p := f.mustProgress(t); p.Counters.Unknown != 0 {
			t.Errorf("run %+v, want nothing counted unknown", p.Counters)
		}
	}
	t.Run("Resolve", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		u := setup(t, f)
		s := &lateLog{Store: f.db, hook: "CreateDelivery", owner: "slow-owner", openID: u, msgID: "m-owner"}
		h := f.handler(1)
		h.Store = s
		handle(t, h, events10(t, batches("c", []string{u}, 1))[0])
		check(t, f, s)
	})
	t.Run("DeadLetter", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		u := setup(t, f)
		s := &lateLog{Store: f.db, hook: "Deliveries", owner: "slow-owner", openID: u, msgID: "m-owner"}
		dl := &send.DeadLetter{Store: s, Log: quiet, Now: time.Now}
		b := minipush.Batch{ID: "c-1-0", CampaignID: "c", Run: 1, AppID: appID, OpenIDs: []string{u}, Attempt: 5}
		resp, err := dl.Handle(t.Context(), events10(t, []minipush.Batch{b})[0])
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("dead letter: %+v, %v; want done (the recipient final already)", resp, err)
		}
		check(t, f, s)
	})
}

// takenOver is a store on which every sent log write fails and the own final write of
// the openids in take finds the claim taken over: just before it, another sender (this
// wrapper) records the claim unknown/sender_lost, as a taker does once the lease is
// over, and the write answers ECONFLICT.
type takenOver struct {
	send.Store
	take map[string]bool
}

func (s *takenOver) RecordSent(context.Context, string, int, []minipush.SentRecord) error {
	return errors.New("takenOver: sent log not written")
}

func (s *takenOver) FinishDelivery(ctx context.Context, runKey, openID, owner string, lease time.Time, o minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error {
	if o == minipush.OutcomeSent && s.take[openID] {
		got, err := s.Store.Deliveries(ctx, runKey, []string{openID})
		if err != nil {
			return fmt.Errorf("takenOver: read claim: %w", err)
		}
		d := got[openID]
		if err := s.Store.FinishDelivery(ctx, runKey, openID, d.Owner, d.LeaseUntil, minipush.OutcomeUnknown, "sender_lost", 0, "", ""); err != nil {
			return fmt.Errorf("takenOver: take over: %w", err)
		}
	}
	return s.Store.FinishDelivery(ctx, runKey, openID, owner, lease, o, reason, errcode, msgID, rcptUser)
}

// TestSentLogCountedWhenRecorded: a logged recipient is counted sent once its record is
// written, not when it ends. When its log fails and its own final write finds the claim
// taken over (unknown, counted by the taker), the sender must not count it: the run
// would count it twice, once sent and once unknown. The recipients recorded by their
// own writes are counted sent. Before the fix the sender counted all four sent as they
// ended.
func TestSentLogCountedWhenRecorded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 4)
	// Far more planned than these: a run near its end is recounted from the items
	// (flushCounters), which would hide a wrong count here.
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, 100)
	taken, ok := ids[:2], ids[2:]
	s := &takenOver{Store: f.db, take: map[string]bool{}}
	for _, u := range taken {
		s.take[u] = true
	}
	h := f.handler(4)
	h.Store = s
	handle(t, h, events10(t, batches("c", ids, len(ids)))[0])
	got := f.outcomes(t, "c")
	for _, u := range taken {
		if d := got[u]; d.Outcome != minipush.OutcomeUnknown || d.Reason != "sender_lost" {
			t.Errorf("%s: %s %s/%s, want the taker's unknown/sender_lost", u, d.State, d.Outcome, d.Reason)
		}
	}
	for _, u := range ok {
		if d := got[u]; d.Outcome != minipush.OutcomeSent {
			t.Errorf("%s: %s %s, want sent by its own write", u, d.State, d.Outcome)
		}
	}
	// The taker here counts nothing; in production it counts its unknowns itself.
	if p := f.mustProgress(t); p.Counters.Sent != len(ok) || p.Counters.Final() != len(ok) {
		t.Errorf("run %+v, want %d sent (those recorded), the taken-over ones not counted by the sender", p.Counters, len(ok))
	}
	f.unleased(t, ok, 1)
	f.unleased(t, taken, 2) // the sender spends nothing for a claim it lost
}

// delayQueue records the delay of every re-queued batch, then queues it.
type delayQueue struct {
	send.Queue
	mu     sync.Mutex
	delays []time.Duration
}

func (q *delayQueue) Enqueue(ctx context.Context, b minipush.Batch, delay time.Duration) error {
	q.mu.Lock()
	q.delays = append(q.delays, delay)
	q.mu.Unlock()
	return q.Queue.Enqueue(ctx, b, delay)
}

// TestBusyFloor: a recipient another live sender holds is looked at again after two
// counter flushes at the soonest, when that sender's log (written with its counters)
// records whatever it had finished at our look, even when the first look's jittered
// delay is 1 s (busyDelay's 2 s times 0.5): a second look at 1 s could find it busy
// again and back off twice as long. Before busyFloor the delay was 1 s.
func TestBusyFloor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.grantedUsers(t, 1)[0]
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, 1)
	now := time.Now()
	if _, err := f.db.CreateDelivery(t.Context(), minipush.Delivery{
		RunKey: minipush.RunKey("c", 1), OpenID: u, State: minipush.DeliverySending, Owner: "live-sender",
		LeaseUntil: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	q := &delayQueue{Queue: f.handler(1).Queue}
	h := f.handler(1)
	h.Queue = q
	h.Jitter = func() float64 { return 0.5 }
	handle(t, h, events10(t, batches("c", []string{u}, 1))[0])
	want := 2 * send.DefaultCounterFlush
	if len(q.delays) != 1 || q.delays[0] < want {
		t.Errorf("re-queue delays %v, want one of at least %v (two counter flushes)", q.delays, want)
	}
}

// TestSentLogShortLease: under an 8 s lease (4 s here) no recipient is logged: the
// margin, a quarter of the lease, would be shorter than clock skew between instances
// plus a log write in flight past its deadline, so a log could land after a taker
// found the claim open. Each sent recipient gets its own final write. Before
// minSentLogMargin these recipients were logged.
func TestSentLogShortLease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 4)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	spy := &logSpy{Store: f.db}
	h := f.handler(4)
	h.Store = spy
	h.Lease = 4 * time.Second
	handle(t, h, events10(t, batches("c", ids, len(ids)))[0])
	f.allSent(t, "c", ids)
	own := 0
	for _, u := range ids {
		got := spy.of(u)
		if !slices.Equal(got, []string{evOwn, evSpend}) {
			t.Errorf("%s: %v, want its own final write, then its spend", u, got)
		}
		if len(got) > 0 && got[0] == evOwn {
			own++
		}
	}
	spy.mu.Lock()
	records := spy.records
	spy.mu.Unlock()
	if records != 0 || own != len(ids) {
		t.Errorf("%d RecordSent calls and %d own sent writes, want 0 and %d", records, own, len(ids))
	}
}
