package send_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
	"minipush/internal/send"
)

// meetStore is the real store with two pairs of calls made to meet: each call
// announces itself, then waits (up to a deadline) until its partner has begun too.
// When send makes a pair one after the other, in either order, the first waits in
// vain and the pair is recorded as sequential.
type meetStore struct {
	send.Store
	spend, finish, opt, read pair
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
	for _, p := range []*pair{&m.spend, &m.finish, &m.opt, &m.read} {
		p.begun = make(chan struct{})
	}
	return m
}

// meet announces p and waits for other to begin.
func meet(p, other *pair) {
	p.once.Do(func() { close(p.begun) })
	select {
	case <-other.begun:
		p.met.Store(true)
	case <-time.After(3 * time.Second):
	}
}

func (s *meetStore) FinishDelivery(ctx context.Context, runKey, openID, owner string, leaseUntil time.Time, o minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error {
	meet(&s.finish, &s.spend)
	return s.Store.FinishDelivery(ctx, runKey, openID, owner, leaseUntil, o, reason, errcode, msgID, rcptUser)
}

func (s *meetStore) SpendGrant(ctx context.Context, g minipush.Grant) error {
	meet(&s.spend, &s.finish)
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
// #12, send next to the naive loop): the grant's spend and the final write after
// WeChat's OK, and a batch's opt-out read and delivery-item read. The message still
// goes out once and the grant is spent.
func TestIndependentCallsOverlap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.sb.NewUser(appID)
	g := subGrant(u, subTpl, time.Now().Add(240*time.Hour))
	f.sb.AddSubscribeGrant(appID, u, subTpl)
	f.putGrants(t, []minipush.Grant{g})
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{SkipOptedOut: true}, 1)
	st := newMeetStore(f.db)
	h := f.handler(2)
	h.Store = st
	handle(t, h, events10(t, batches("c", []string{u}, 1))[0])
	if !st.spend.met.Load() || !st.finish.met.Load() {
		t.Error("the grant's spend waited for the final write or the other way round: one round trip more per recipient")
	}
	if !st.opt.met.Load() || !st.read.met.Load() {
		t.Error("the opt-out read waited for the delivery items: one round trip more per batch")
	}
	if d := f.outcomes(t, "c")[u]; d.Outcome != minipush.OutcomeSent {
		t.Errorf("outcome %s/%s, want sent", d.Outcome, d.Reason)
	}
	if _, err := f.db.SpendableGrant(t.Context(), appID, u, subscribeMessage().Channel()); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Errorf("grant after the send: %v, want spent (ENOTFOUND)", err)
	}
}
