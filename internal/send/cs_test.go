package send_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dynamo"
	"minipush/internal/wechat"
)

// csMessage is a subscribe campaign that also says what to send on the
// customer-service channel.
func csMessage() minipush.Message {
	m := subscribeMessage()
	m.CustomerService = &minipush.CustomerService{Text: &minipush.CSText{Content: "您的签到提醒"}}
	return m
}

// openWindow opens the user's customer-service window in our store, as collect does
// from the user's push; atWeChat opens it at the sandbox too.
func (f *fixture) openWindow(t testing.TB, openID string, atWeChat bool) {
	t.Helper()
	now := f.db.Now()
	if _, err := f.db.OpenCSWindow(t.Context(), appID, openID, minipush.CSWindowFrom(now, now)); err != nil {
		t.Fatal(err)
	}
	if atWeChat {
		if _, err := f.sb.OpenCSWindow(appID, openID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCustomerServiceFirst: inside their window users get the campaign on the
// customer-service channel and keep their grants; users WeChat refuses there (window
// closed: 45015, count used up: 45047) get it through a grant in the same run, as do
// users without a window; progress counts the grants saved and the fallbacks.
func TestCustomerServiceFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 5)
	inside, closed, usedUp, none, noGrant := ids[0], ids[1], ids[2], ids[3], f.sb.NewUser(appID)
	f.openWindow(t, inside, true)
	f.openWindow(t, noGrant, true)
	f.openWindow(t, closed, false) // we saw a message; WeChat's window is gone
	f.openWindow(t, usedUp, true)
	// Someone else (a human agent, another system) used the window up at WeChat.
	tok, err := f.tokens.Get(t.Context(), appID)
	if err != nil {
		t.Fatal(err)
	}
	for range sandbox.CSWindowMessages {
		if err := f.wc.SendCustom(t.Context(), tok, wechat.CustomMessage{ToUser: usedUp, MsgType: "text", Text: &wechat.CustomTextBody{Content: "agent"}}); err != nil {
			t.Fatal(err)
		}
	}
	all := []string{inside, closed, usedUp, none, noGrant}
	f.putCampaign(t, "c", csMessage(), minipush.Policy{}, len(all))
	for _, ev := range events10(t, batches("c", all, len(all))) {
		handle(t, f.handler(4), ev)
	}

	got := f.outcomes(t, "c")
	custom, sub := f.acceptedBy(sandbox.PathCustomSend), f.acceptedBy(sandbox.PathSubscribeSend)
	for _, tc := range []struct {
		user, channel, fallback string
		custom, sub, grants     int
	}{
		{inside, minipush.ChannelCustomerService, "", 1, 0, 2},
		{noGrant, minipush.ChannelCustomerService, "", 1, 0, 0},
		{closed, "subscribe", "cs_window_closed", 0, 1, 1},
		{usedUp, "subscribe", "cs_quota", sandbox.CSWindowMessages, 1, 1}, // the agent's 5, none of ours
		{none, "subscribe", "", 0, 1, 1},
	} {
		d := got[tc.user]
		if d.Outcome != minipush.OutcomeSent || d.Channel != tc.channel || d.CSFallback != tc.fallback {
			t.Errorf("%s: %s on %q (fallback %q), want sent on %q (fallback %q)", tc.user, d.Outcome, d.Channel, d.CSFallback, tc.channel, tc.fallback)
		}
		if custom[tc.user] != tc.custom || sub[tc.user] != tc.sub {
			t.Errorf("%s: WeChat accepted %d customer-service and %d subscribe messages, want %d and %d", tc.user, custom[tc.user], sub[tc.user], tc.custom, tc.sub)
		}
		if n := len(f.liveGrants(t, tc.user)); n != tc.grants {
			t.Errorf("%s: %d grants left, want %d", tc.user, n, tc.grants)
		}
	}
	prog, err := f.db.RunCounters(t.Context(), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	if c := prog.Counters; prog.Status != minipush.RunDone || c.Sent != 5 || c.GrantsSaved != 2 || c.CSFallbacks != 2 {
		t.Errorf("run %s %+v, want done with 5 sent, 2 grants saved, 2 fallbacks", prog.Status, c)
	}
	// The refused windows are closed in our copy: the next campaign does not try them.
	for _, u := range []string{closed, usedUp} {
		w, err := f.db.CSWindow(t.Context(), appID, u)
		if err != nil {
			t.Fatal(err)
		}
		if w.Open(f.db.Now()) {
			t.Errorf("%s: window %+v still open after WeChat refused it", u, w)
		}
	}
}

// staleWindows reads every window as fresh, as a read made before other campaigns took
// from it would: only the conditional take may then keep the count.
type staleWindows struct{ *dynamo.DB }

func (s staleWindows) CSWindow(ctx context.Context, appID, openID string) (minipush.CSWindowState, error) {
	return minipush.CSWindowState{Until: s.Now().Add(time.Hour), Left: minipush.CSWindowMessages}, nil
}

// TestCustomerServiceCap: six campaigns at once to users with a fresh window send each
// exactly 5 messages on the customer-service channel and the sixth through a grant;
// WeChat never has to refuse one. Every sender reads the window as fresh (staleWindows),
// so the window's count is kept by the conditional take alone.
func TestCustomerServiceCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const campaigns = sandbox.CSWindowMessages + 1
	var ids []string
	var grants []minipush.Grant
	now := time.Now()
	for range 4 {
		u := f.sb.NewUser(appID)
		ids = append(ids, u)
		f.openWindow(t, u, true)
		for d := range campaigns {
			grants = append(grants, subGrant(u, subTpl, now.Add(time.Duration(d+1)*time.Hour)))
			f.sb.AddSubscribeGrant(appID, u, subTpl)
		}
	}
	f.putGrants(t, grants)
	var wg sync.WaitGroup
	for i := range campaigns {
		id := fmt.Sprintf("c%d", i)
		f.putCampaign(t, id, csMessage(), minipush.Policy{}, len(ids))
		wg.Go(func() {
			h := f.handler(4)
			h.Store = staleWindows{f.db}
			for _, ev := range events10(t, batches(id, ids, len(ids))) {
				handle(t, h, ev)
			}
		})
	}
	wg.Wait()
	custom, sub := f.acceptedBy(sandbox.PathCustomSend), f.acceptedBy(sandbox.PathSubscribeSend)
	for _, u := range ids {
		if custom[u] != sandbox.CSWindowMessages || sub[u] != campaigns-sandbox.CSWindowMessages {
			t.Errorf("%s: %d customer-service and %d subscribe messages, want %d and %d", u, custom[u], sub[u], sandbox.CSWindowMessages, campaigns-sandbox.CSWindowMessages)
		}
	}
	if n := f.sb.Stats().Errcodes[45047]; n != 0 {
		t.Errorf("WeChat refused %d customer-service sends for the count: our count let more through than the window has", n)
	}
}

// TestCustomerServiceWrites: a message sent on the customer-service channel costs 3
// writes, as a grant message does, but none in the grants table: take the window's
// count (users), claim and final (deliveries). A recipient without a window costs
// what a grant message costs (TestWritesPerMessage) and one read more.
func TestCustomerServiceWrites(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 10)
	for _, u := range ids {
		f.openWindow(t, u, true)
	}
	f.putCampaign(t, "c", csMessage(), minipush.Policy{}, len(ids))
	h, wc := f.counted(4)
	for _, ev := range events10(t, batches("c", ids, len(ids))) {
		handle(t, h, ev)
	}
	n := len(ids)
	users, deliveries, grants := wc.writes[f.db.Tables.Users], wc.writes[f.db.Tables.Deliveries], wc.writes[f.db.Tables.Grants]
	t.Logf("customer-service sends: users %d, deliveries %d, grants %d writes for %d messages", users, deliveries, grants, n)
	if users != n || deliveries != 2*n || grants != 0 {
		t.Errorf("writes: users %d, deliveries %d, grants %d; want %d, %d, 0", users, deliveries, grants, n, 2*n)
	}
}

// TestCustomerServiceConflictNoGrantKeepsSlot: a user whose window our copy showed open
// when read, but whose count other campaigns used up before the take (the take
// conflicts), goes on to the grant path; without a grant they end no_grant, and the
// frequency-cap slot the customer-service step took for them goes back, so with one
// message a day they still get the next campaign's. (The slot used to stay taken: the
// unclaimed no-grant record gave nothing back.)
func TestCustomerServiceConflictNoGrantKeepsSlot(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.sb.NewUser(appID) // no grant yet
	f.openWindow(t, u, true)
	for range minipush.CSWindowMessages {
		if _, err := f.db.TakeCSMessage(t.Context(), appID, u, f.db.Now()); err != nil {
			t.Fatal(err)
		}
	}
	caps := cappedApp(minipush.Caps{PerDay: 1})
	f.putCampaign(t, "cs", csMessage(), minipush.Policy{}, 1)
	h := f.handler(1)
	h.Store, h.Apps = staleWindows{f.db}, caps // the read sees the window fresh; the take conflicts
	handle(t, h, events10(t, batches("cs", []string{u}, 1))[0])
	if d := f.outcomes(t, "cs")[u]; d.Outcome != minipush.OutcomeNoGrant {
		t.Fatalf("customer-service campaign: %s/%s, want no_grant", d.Outcome, d.Reason)
	}
	if n := len(f.sb.Accepted()); n != 0 {
		t.Fatalf("WeChat accepted %d messages, want none", n)
	}

	f.putGrants(t, []minipush.Grant{subGrant(u, subTpl, time.Now().Add(240*time.Hour))})
	f.sb.AddSubscribeGrant(appID, u, subTpl)
	f.putCampaign(t, "next", subscribeMessage(), minipush.Policy{}, 1)
	h = f.handler(1)
	h.Apps = caps
	handle(t, h, events10(t, batches("next", []string{u}, 1))[0])
	if d := f.outcomes(t, "next")[u]; d.Outcome != minipush.OutcomeSent {
		t.Errorf("next campaign the same day: %s/%s, want sent (the no_grant recipient's slot was given back)", d.Outcome, d.Reason)
	}
}
