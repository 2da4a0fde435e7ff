package send_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dynamo"
	"minipush/internal/send"
	"minipush/internal/wechat"
)

// meetStore is the real store with pairs of calls made to meet: each call announces
// itself, then waits (up to a deadline) until its partner has begun too. When send
// makes a pair one after the other, in either order, the first waits in vain and the
// pair is recorded as sequential. It also records the order of a recipient's final
// write and its grant's spend, and whether the spend let another recipient start.
type meetStore struct {
	send.Store
	claim, look, opt, read pair
	claims                 atomic.Int32 // CreateDelivery calls begun
	users                  int32        // recipients of the test's one message
	finished               sync.Map     // openID -> true once its final write (or sent log) returned
	spendAfterFinish       atomic.Bool  // every spend began after its recipient's final write
	spends                 atomic.Int32
	spendFreedSlot         atomic.Bool // a recipient was claimed while a spend was in flight
}

// pair is one side of a meeting: begun is closed when this call begins, other is the
// partner's.
type pair struct {
	begun chan struct{}
	once  sync.Once
	met   atomic.Bool
}

func newMeetStore(s send.Store) *meetStore {
	m := &meetStore{Store: s}
	for _, p := range []*pair{&m.claim, &m.look, &m.opt, &m.read} {
		p.begun = make(chan struct{})
	}
	m.spendAfterFinish.Store(true)
	return m
}

// meet announces p and waits for other to begin; only p's first call does (later
// calls would find other begun by an earlier recipient's call).
func meet(p, other *pair) {
	first := false
	p.once.Do(func() { close(p.begun); first = true })
	if !first {
		return
	}
	select {
	case <-other.begun:
		p.met.Store(true)
	case <-time.After(3 * time.Second):
	}
}

func (s *meetStore) CreateDelivery(ctx context.Context, d minipush.Delivery) (minipush.Delivery, error) {
	s.claims.Add(1)
	if d.State == minipush.DeliverySending {
		meet(&s.claim, &s.look)
	}
	return s.Store.CreateDelivery(ctx, d)
}

func (s *meetStore) SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error) {
	meet(&s.look, &s.claim)
	return s.Store.SpendableGrant(ctx, appID, openID, channel)
}

func (s *meetStore) FinishDelivery(ctx context.Context, runKey, openID, owner string, leaseUntil time.Time, o minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error {
	err := s.Store.FinishDelivery(ctx, runKey, openID, owner, leaseUntil, o, reason, errcode, msgID, rcptUser)
	s.finished.Store(openID, true)
	return err
}

// RecordSent is the final write of the sent recipients it logs (sentlog.go).
func (s *meetStore) RecordSent(ctx context.Context, owner string, seq int, recs []minipush.SentRecord) error {
	err := s.Store.RecordSent(ctx, owner, seq, recs)
	for _, r := range recs {
		s.finished.Store(r.OpenID, true)
	}
	return err
}

// SpendGrant waits (up to a deadline) until every recipient (users) was claimed: with
// one recipient in flight, the second claim is only made once the first spend no
// longer holds the slot.
func (s *meetStore) SpendGrant(ctx context.Context, g minipush.Grant) error {
	if _, ok := s.finished.Load(g.OpenID); !ok {
		s.spendAfterFinish.Store(false)
	}
	if s.spends.Add(1) == 1 {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && s.claims.Load() < s.users {
			time.Sleep(5 * time.Millisecond) // polling for the other recipient, with a deadline
		}
		s.spendFreedSlot.Store(s.claims.Load() >= s.users)
	}
	return s.Store.SpendGrant(ctx, g)
}

func (s *meetStore) Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error) {
	meet(&s.read, &s.opt)
	return s.Store.Deliveries(ctx, runKey, openIDs)
}

func (s *meetStore) OptedOut(ctx context.Context, appID string, openIDs []string) (map[string]bool, error) {
	meet(&s.opt, &s.read)
	return s.Store.OptedOut(ctx, appID, openIDs)
}

// TestIndependentCallsOverlap: calls on the send path that need nothing from each
// other are in flight at once, so a recipient waits for fewer round trips (issue
// #12, send next to the naive loop): a subscribe recipient's claim and grant lookup,
// and a batch's opt-out read and delivery-item read; and the grant's spend runs after
// the final write (the order a claim naming only the channel needs) without holding
// the recipient's slot: with one recipient in flight, the next one is claimed while
// the first one's spend is still waiting. Every message still goes out once and
// every grant is spent.
func TestIndependentCallsOverlap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var users []string
	var grants []minipush.Grant
	for range 2 {
		u := f.sb.NewUser(appID)
		f.sb.AddSubscribeGrant(appID, u, subTpl)
		users = append(users, u)
		grants = append(grants, subGrant(u, subTpl, time.Now().Add(240*time.Hour)))
	}
	f.putGrants(t, grants)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{SkipOptedOut: true}, len(users))
	st := newMeetStore(f.db)
	st.users = int32(len(users))
	h := f.handler(1)
	h.Store = st
	handle(t, h, events10(t, batches("c", users, len(users)))[0])
	if !st.claim.met.Load() || !st.look.met.Load() {
		t.Error("the claim waited for the grant lookup or the other way round: one round trip more per recipient")
	}
	if !st.opt.met.Load() || !st.read.met.Load() {
		t.Error("the opt-out read waited for the delivery items: one round trip more per batch")
	}
	if !st.spendAfterFinish.Load() {
		t.Error("a grant was spent before its recipient's final write: a sender lost in between would have its channel claim spend a second grant")
	}
	if !st.spendFreedSlot.Load() {
		t.Error("the next recipient waited for the previous one's spend: one round trip more per recipient")
	}
	got := f.outcomes(t, "c")
	for _, u := range users {
		if d := got[u]; d.Outcome != minipush.OutcomeSent {
			t.Errorf("outcome %s/%s, want sent", d.Outcome, d.Reason)
		}
		if _, err := f.db.SpendableGrant(t.Context(), appID, u, subscribeMessage().Channel()); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Errorf("grant after the send: %v, want spent (ENOTFOUND)", err)
		}
	}
}

// claimCheckingSender is the WeChat client checking, when each message is about to
// go out, that its recipient's claim is in the deliveries table: the claim must
// precede the call even though it now runs next to the grant lookup.
type claimCheckingSender struct {
	send.Sender
	db       *dynamo.DB
	runKey   string
	calls    atomic.Int32
	unclaims atomic.Int32
}

func (s *claimCheckingSender) SendSubscribe(ctx context.Context, tok string, m wechat.SubscribeMessage) (string, error) {
	s.calls.Add(1)
	got, err := s.db.Deliveries(ctx, s.runKey, []string{m.ToUser})
	if d, ok := got[m.ToUser]; err != nil || !ok || d.State != minipush.DeliverySending || d.Owner == "" {
		s.unclaims.Add(1)
	}
	return s.Sender.SendSubscribe(ctx, tok, m)
}

// TestClaimPrecedesCall: every WeChat call finds its recipient claimed by a sender.
func TestClaimPrecedesCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 12)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	h := f.handler(6)
	wc := &claimCheckingSender{Sender: f.wc, db: f.db, runKey: minipush.RunKey("c", 1)}
	h.WeChat = wc
	handle(t, h, events10(t, batches("c", ids, len(ids)))[0])
	f.allSent(t, "c", ids)
	if n := wc.unclaims.Load(); n > 0 || wc.calls.Load() != int32(len(ids)) {
		t.Errorf("%d of %d calls found their recipient unclaimed, want 0 of %d", n, wc.calls.Load(), len(ids))
	}
}

// racingStore lets another sender claim the recipient between the batch read and this
// sender's claim, which then fails while its grant lookup (made at the same time)
// finds the grant.
type racingStore struct {
	send.Store
	looked atomic.Bool
}

func (s *racingStore) CreateDelivery(ctx context.Context, d minipush.Delivery) (minipush.Delivery, error) {
	if d.State == minipush.DeliverySending {
		if _, err := s.Store.CreateDelivery(ctx, minipush.Delivery{RunKey: d.RunKey, OpenID: d.OpenID, State: minipush.DeliverySending,
			Owner: "other", LeaseUntil: time.Now().Add(time.Hour), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			return minipush.Delivery{}, err
		}
	}
	return s.Store.CreateDelivery(ctx, d)
}

func (s *racingStore) SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error) {
	g, err := s.Store.SpendableGrant(ctx, appID, openID, channel)
	if err == nil {
		s.looked.Store(true)
	}
	return g, err
}

// TestLostClaimNeverCalls: a sender whose claim fails drops what its concurrent grant
// lookup found: WeChat is not called, the grant is not spent, the other sender's
// claim is left to it.
func TestLostClaimNeverCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 1)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	h := f.handler(2)
	st := &racingStore{Store: f.db}
	h.Store = st
	handle(t, h, events10(t, batches("c", ids, 1))[0])
	if !st.looked.Load() {
		t.Fatal("the grant lookup did not run: the test no longer covers a lookup next to a failed claim")
	}
	if acc := f.acceptedBy(sandbox.PathSubscribeSend); acc[ids[0]] != 0 {
		t.Errorf("WeChat accepted %d messages for a recipient another sender claimed, want 0", acc[ids[0]])
	}
	if d := f.outcomes(t, "c")[ids[0]]; d.State != minipush.DeliverySending || d.Owner != "other" {
		t.Errorf("the other sender's claim became %+v, want it untouched", d)
	}
	f.unleased(t, ids, 2) // grantedUsers gives each two grants; none was spent
}
