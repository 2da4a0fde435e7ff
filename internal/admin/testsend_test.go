package admin_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dynamo"
	"minipush/internal/send"
	"minipush/internal/wechat"
)

// stableTokens fetches wx1's token from the sandbox's stable_token each time, as the
// admin function's own token source does (without its cache).
type stableTokens struct{ wc *wechat.Client }

func (s stableTokens) Get(ctx context.Context, appID string) (string, error) {
	tok, err := s.wc.StableToken(ctx, appID, "s1", false)
	return tok.AccessToken, err
}

func (s stableTokens) Invalidate(ctx context.Context, appID, _ string) (string, error) {
	return s.Get(ctx, appID)
}

// testSendFixture is an admin handler whose test sends go through send's recipient path
// on DynamoDB Local to the sandbox, with a check-in campaign c1 of wx1 and three known
// users: two hold one grant of its template each (at the sandbox too), one holds none.
type testSendFixture struct {
	h     *admin.Handler
	db    *dynamo.DB
	sb    *sandbox.Sandbox
	users []string // with a grant, with a grant, without
}

func newTestSendFixture(t *testing.T) *testSendFixture {
	t.Helper()
	h, db := MustAdmin(t)
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: "wx1", Secret: "s1"}}})
	sb.AddSubscribeTemplate("wx1", "tplA", map[string]string{"thing1": "thing", "time2": "time"})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	wc := wechat.New(wechat.Options{BaseURL: srv.URL})
	h.TestSender = &send.Handler{Store: db, WeChat: wc, Tokens: stableTokens{wc}, Now: db.Now}
	f := &testSendFixture{h: h, db: db, sb: sb}
	var users []minipush.User
	var grants []minipush.Grant
	for i := range 3 {
		id := sb.NewUser("wx1")
		f.users = append(f.users, id)
		users = append(users, minipush.User{AppID: "wx1", OpenID: id, CreatedAt: now})
		if i < 2 {
			sb.AddSubscribeGrant("wx1", id, "tplA")
			grants = append(grants, minipush.Grant{AppID: "wx1", OpenID: id, Kind: minipush.GrantSubscribe, ID: fmt.Sprintf("g%d", i),
				TemplateID: "tplA", Uses: 1, CollectedAt: now.Add(-time.Hour), ExpiresAt: now.Add(30 * 24 * time.Hour)})
		}
	}
	if err := db.ImportUsers(t.Context(), users); err != nil {
		t.Fatal(err)
	}
	if err := db.ImportGrants(t.Context(), grants); err != nil {
		t.Fatal(err)
	}
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, 201, nil)
	return f
}

func (f *testSendFixture) grants(t *testing.T, openID string) int {
	t.Helper()
	live, err := f.db.LiveGrants(t.Context(), "wx1", openID)
	if err != nil {
		t.Fatal(err)
	}
	return len(live)
}

func body(ids ...string) string {
	return `{"openIds":["` + strings.Join(ids, `","`) + `"]}`
}

// TestTestSend: POST campaigns/{id}/test sends the campaign's message at once to known
// users through send's recipient path, answers each outcome, spends the grants as a run
// would, is counted in no run, never sends twice under one test key, and refuses bad
// input naming the field before anything is sent or spent.
func TestTestSend(t *testing.T) {
	t.Parallel()
	f := newTestSendFixture(t)
	u := f.users

	t.Run("ErrBadInput", func(t *testing.T) {
		many := make([]string, admin.MaxTestRecipients+1)
		for i := range many {
			many[i] = fmt.Sprintf("o%02d", i)
		}
		for _, c := range []struct{ name, body, want string }{
			{"Empty", `{"openIds":[]}`, "openIds: 0 openids"},
			{"Missing", `{}`, "openIds: 0 openids"},
			{"TooMany", body(many...), "openIds: 21 openids, want 1 to 20"},
			{"NotAnOpenID", body(u[0], "no spaces"), "openIds[1]"},
			{"Repeated", body(u[0], u[1], u[0]), "openIds[2]: repeats openIds[0]"},
			{"UnknownUser", body(u[0], "oUnknownUser"), "openIds[1]: no user of app wx1"},
			{"UnknownField", `{"openIds":["x"],"dryRun":true}`, "dryRun"},
		} {
			resp := do(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/test", body: c.body})
			if resp.StatusCode/100 != 4 || !strings.Contains(resp.Body, c.want) {
				t.Errorf("%s: %d %s, want 4xx naming %q", c.name, resp.StatusCode, resp.Body, c.want)
			}
		}
		if n := len(f.sb.Accepted()); n != 0 {
			t.Fatalf("bad input sent %d messages", n)
		}
		if f.grants(t, u[0]) != 1 || f.grants(t, u[1]) != 1 {
			t.Fatal("bad input spent a grant")
		}
		resp := do(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/cnone/test", body: body(u[0])})
		if resp.StatusCode != 404 {
			t.Fatalf("unknown campaign: %d %s", resp.StatusCode, resp.Body)
		}
	})

	t.Run("ErrNoTokenSource", func(t *testing.T) {
		// TOKEN_ENDPOINT=legacy: lambdaenv gives admin no test sender.
		ts := f.h.TestSender
		f.h.TestSender = nil
		defer func() { f.h.TestSender = ts }()
		resp := do(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/test", body: body(u[0])})
		if resp.StatusCode != 501 || !strings.Contains(resp.Body, "stable") {
			t.Fatalf("no test sender: %d %s, want 501", resp.StatusCode, resp.Body)
		}
	})

	var ans admin.TestSendAnswer
	mustOK(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/test", body: body(u...),
		header: map[string]string{"Idempotency-Key": "test-1"}}, 200, &ans)
	t.Run("OK", func(t *testing.T) {
		if len(ans.Results) != 3 || ans.TestID == "" {
			t.Fatalf("answer %+v", ans)
		}
		for i, want := range []minipush.Outcome{minipush.OutcomeSent, minipush.OutcomeSent, minipush.OutcomeNoGrant} {
			r := ans.Results[i]
			if r.OpenID != u[i] || r.Outcome != want || (want == minipush.OutcomeSent) != (r.MsgID != "") {
				t.Errorf("result %d = %+v, want %s", i, r, want)
			}
		}
		if ans.Summary["sent"] != 2 || ans.Summary["no_grant"] != 1 {
			t.Errorf("summary %v", ans.Summary)
		}
		acc := f.sb.Accepted()
		if len(acc) != 2 || acc[0].TemplateID != "tplA" || acc[0].Data["thing1"] != "Daily check-in" {
			t.Fatalf("sandbox accepted %+v", acc)
		}
		// The grants were spent, as a run spends them.
		if f.grants(t, u[0]) != 0 || f.grants(t, u[1]) != 0 {
			t.Fatal("a sent test kept its grant")
		}
	})

	t.Run("CountedInNoRun", func(t *testing.T) {
		var c minipush.Campaign
		mustOK(t, f.h, call{method: "GET", target: "/v1/admin/campaigns/c1"}, 200, &c)
		if c.Status != minipush.StatusDraft || c.RunSeq != 0 {
			t.Fatalf("campaign after a test: %s, %d runs", c.Status, c.RunSeq)
		}
		runs, err := f.db.CampaignRuns(t.Context(), "c1")
		if err != nil || len(runs) != 0 {
			t.Fatalf("runs after a test: %v %v", runs, err)
		}
	})

	t.Run("SameKeyNeverSendsTwice", func(t *testing.T) {
		// The key's test again, below the admin layer's replay (as after a 5xx, which
		// releases the key): every recipient is final under the test's key.
		c, err := f.db.GetCampaign(t.Context(), "c1")
		if err != nil {
			t.Fatal(err)
		}
		f.sb.AddSubscribeGrant("wx1", u[0], "tplA")
		if err := f.db.ImportGrants(t.Context(), []minipush.Grant{{AppID: "wx1", OpenID: u[0], Kind: minipush.GrantSubscribe, ID: "again",
			TemplateID: "tplA", Uses: 1, CollectedAt: now.Add(-time.Minute), ExpiresAt: now.Add(24 * time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		again, err := f.h.TestSender.SendTest(t.Context(), c, send.TestRunKey("c1", ans.TestID), u[:1])
		if err != nil {
			t.Fatal(err)
		}
		if len(again) != 1 || again[0].Outcome != minipush.OutcomeSent || again[0].MsgID != ans.Results[0].MsgID {
			t.Fatalf("again %+v, want the first test's sent", again)
		}
		if n := len(f.sb.Accepted()); n != 2 || f.grants(t, u[0]) != 1 {
			t.Fatalf("the same test key sent again: %d accepted, %d grants left", n, f.grants(t, u[0]))
		}
	})

	t.Run("FailedAndNotSent", func(t *testing.T) {
		// u[0] holds the grant added above. 47003: failed, the grant gone (WeChat took it).
		if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: 47003, Times: 1}); err != nil {
			t.Fatal(err)
		}
		var a admin.TestSendAnswer
		mustOK(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/test", body: body(u[0])}, 200, &a)
		if r := a.Results[0]; r.Outcome != minipush.OutcomeFailed || r.ErrCode != 47003 || r.Reason == "" {
			t.Fatalf("47003: %+v", r)
		}
		// A scheduled campaign: 45009 would pause it in a run; a test reports it and
		// leaves the campaign and the grant alone.
		mustOK(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: body(u[0]), contentType: "application/json"}, 200, nil)
		mustOK(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"at":"2026-11-26T10:00:00Z"}`}, 200, nil)
		f.sb.AddSubscribeGrant("wx1", u[1], "tplA")
		if err := f.db.ImportGrants(t.Context(), []minipush.Grant{{AppID: "wx1", OpenID: u[1], Kind: minipush.GrantSubscribe, ID: "quota",
			TemplateID: "tplA", Uses: 1, CollectedAt: now.Add(-time.Minute), ExpiresAt: now.Add(24 * time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: 45009, Times: 1}); err != nil {
			t.Fatal(err)
		}
		mustOK(t, f.h, call{method: "POST", target: "/v1/admin/campaigns/c1/test", body: body(u[1])}, 200, &a)
		if r := a.Results[0]; r.Outcome != send.OutcomeNotSent || r.ErrCode != 45009 || r.Reason != "quota_exceeded" {
			t.Fatalf("45009: %+v", r)
		}
		c, err := f.db.GetCampaign(t.Context(), "c1")
		if err != nil || c.Status != minipush.StatusScheduled {
			t.Fatalf("campaign after a refused test: %s %v, want scheduled", c.Status, err)
		}
		if f.grants(t, u[1]) != 1 {
			t.Fatal("a refused test spent the grant")
		}
	})
}
