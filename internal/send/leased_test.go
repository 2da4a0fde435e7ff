package send_test

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// TestLeasedElsewhere: the recipient's only grant is leased by another live sender
// (a duplicate of this batch in flight, or another campaign). "No spendable grant
// right now" is not "no grant": the recipient stays pending until that lease ends,
// and is sent with the grant if the other sender released it.
func TestLeasedElsewhere(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.sb.NewUser(appID)
	g := subGrant(u, subTpl, time.Now().Add(240*time.Hour))
	f.sb.AddSubscribeGrant(appID, u, subTpl)
	f.putGrants(t, []minipush.Grant{g})
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, 1)
	if _, err := f.db.LeaseGrant(t.Context(), g, "other", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	h := f.handler(2)
	h.Lease = 2 * time.Second // the busy recipient comes back after this handler's lease
	handle(t, h, events10(t, batches("c", []string{u}, 1))[0])
	if d, ok := f.outcomes(t, "c")[u]; ok && d.State == minipush.DeliveryFinal {
		t.Fatalf("recipient final %s/%s while its grant was leased elsewhere, want pending", d.Outcome, d.Reason)
	}
	// The other sender gives the grant back (WeChat said retry); the re-queued
	// recipient is then sent with it.
	if err := f.db.ReleaseGrant(t.Context(), g, "other"); err != nil {
		t.Fatal(err)
	}
	f.drain(t, h, 30*time.Second, f.runDone(t, "c"))
	if d := f.outcomes(t, "c")[u]; d.Outcome != minipush.OutcomeSent {
		t.Errorf("outcome %s/%s, want sent", d.Outcome, d.Reason)
	}
	if acc := f.acceptedBy(sandbox.PathSubscribeSend); acc[u] != 1 {
		t.Errorf("accepted %d, want 1", acc[u])
	}
}

// TestOverlapOneGrant: two senders on overlapping batches of users who hold one
// grant each. Whoever loses a grant's lease race must not decide the recipient's
// outcome: everyone ends sent, once.
func TestOverlapOneGrant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	var ids []string
	var grants []minipush.Grant
	for range 60 {
		u := f.sb.NewUser(appID)
		ids = append(ids, u)
		grants = append(grants, subGrant(u, subTpl, now.Add(240*time.Hour)))
		f.sb.AddSubscribeGrant(appID, u, subTpl)
	}
	f.putGrants(t, grants)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	// Both batches hold everyone, in opposite orders, so the senders meet on every
	// recipient.
	rev := slices.Clone(ids)
	slices.Reverse(rev)
	var wg sync.WaitGroup
	for i, order := range [][]string{ids, rev} {
		h := f.handler(8)
		h.Lease = 3 * time.Second
		b := minipush.Batch{ID: "b" + strconv.Itoa(i), CampaignID: "c", Run: 1, AppID: appID, OpenIDs: order}
		wg.Go(func() { handle(t, h, events10(t, []minipush.Batch{b})[0]) })
	}
	wg.Wait()
	f.drain(t, f.handler(8), 60*time.Second, f.runDone(t, "c"))
	f.allSent(t, "c", ids)
}
