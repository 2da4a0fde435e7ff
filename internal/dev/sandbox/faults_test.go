package sandbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"minipush/internal/dev/sandbox"
	"minipush/internal/wechat"
)

// client returns a wechat client for e with a short timeout.
func (e *env) client(timeout time.Duration) *wechat.Client {
	return wechat.New(wechat.Options{
		BaseURL: e.srv.URL, HTTPClient: e.srv.Client(), Timeout: timeout,
		Logger: slog.New(slog.DiscardHandler), Now: e.clock.Now,
	})
}

func subscribeMessage(openID string) wechat.SubscribeMessage {
	return wechat.SubscribeMessage{
		ToUser: openID, TemplateID: tmpl,
		Data: map[string]wechat.Value{"thing1": {Value: "到货"}, "time2": {Value: "12:00"}, "number3": {Value: "1"}},
	}
}

// grantedUser returns a user with n grants for tmpl.
func (e *env) grantedUser(n int) string {
	u := e.sb.NewUser(appID)
	for range n {
		e.sb.AddSubscribeGrant(appID, u, tmpl)
	}
	return u
}

func TestClientAgainstSandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(time.Second)
	openID, code := e.sb.NewLogin(appID)
	s, err := c.Code2Session(t.Context(), appID, secret, code)
	if err != nil || s.OpenID != openID {
		t.Fatalf("Code2Session = %+v, %v", s, err)
	}
	_, err = c.Code2Session(t.Context(), appID, secret, code)
	if wechat.Reason(err) != "code_used" {
		t.Errorf("reused code: Reason = %q (%v)", wechat.Reason(err), err)
	}
	tok, err := c.StableToken(t.Context(), appID, secret, false)
	if err != nil || !tok.ExpiresAt.Equal(e.clock.Now().Add(sandbox.DefaultTokenTTL)) {
		t.Fatalf("StableToken = %+v, %v", tok, err)
	}
	e.sb.AddSubscribeGrant(appID, openID, tmpl)
	if _, err := c.SendSubscribe(t.Context(), tok.AccessToken, subscribeMessage(openID)); err != nil {
		t.Fatal(err)
	}
	_, err = c.SendSubscribe(t.Context(), tok.AccessToken, subscribeMessage(openID))
	if wechat.Classify(err) != wechat.FailRecipient || wechat.Reason(err) != "user_refused" {
		t.Errorf("second send: %v, %q", wechat.Classify(err), wechat.Reason(err))
	}
	var we *wechat.Error
	if !errors.As(err, &we) || we.RID == "" {
		t.Errorf("no rid in %v", err)
	}
	f := e.sb.MintFormID(appID, openID, sandbox.KindForm)
	e.sb.AddFormTemplate(appID, form, []string{"keyword1"})
	err = c.SendTemplate(t.Context(), tok.AccessToken, wechat.TemplateMessage{ToUser: openID, TemplateID: form, FormID: f,
		Data: map[string]wechat.TemplateValue{"keyword1": {Value: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SendTemplate(t.Context(), tok.AccessToken, wechat.TemplateMessage{ToUser: openID, TemplateID: form, FormID: f})
	if wechat.Classify(err) != wechat.NextGrant || wechat.Reason(err) != "grant_used" {
		t.Errorf("reused formId: %v, %q", wechat.Classify(err), wechat.Reason(err))
	}
}

func TestFaultErrcode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(time.Second)
	tok := e.token(t)
	u := e.grantedUser(1)
	if err := e.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: -1, Times: 2}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		_, err := c.SendSubscribe(t.Context(), tok, subscribeMessage(u))
		if wechat.Classify(err) != wechat.Retry {
			t.Fatalf("send %d: %v, want retry", i, err)
		}
	}
	// The faulted sends consumed nothing: the one grant is still there.
	if _, err := c.SendSubscribe(t.Context(), tok, subscribeMessage(u)); err != nil {
		t.Fatalf("after faults: %v", err)
	}
	if st := e.sb.Stats(); st.Faults != 2 || st.Errcodes[-1] != 2 || st.Injected[-1] != 2 || st.Accepted != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestFaultRateIsSeeded(t *testing.T) {
	t.Parallel()
	run := func() (faulted int) {
		e := newEnv(t)
		c := e.client(time.Second)
		tok := e.token(t)
		u := e.grantedUser(100)
		if err := e.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: -1, Rate: 0.2}); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if _, err := c.SendSubscribe(t.Context(), tok, subscribeMessage(u)); err != nil {
				faulted++
			}
		}
		if got := len(e.sb.Accepted()); got != 100-faulted {
			t.Errorf("accepted %d, want %d", got, 100-faulted)
		}
		return faulted
	}
	a, b := run(), run()
	if a != b {
		t.Errorf("same seed gave %d and %d faults", a, b)
	}
	if a < 5 || a > 40 {
		t.Errorf("%d of 100 faulted at rate 0.2", a)
	}
}

func TestFaultLostAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fault    sandbox.Fault
		recorded bool
	}{
		{"TimeoutAfterAccept", sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLostAnswer}, true},
		{"HangUpAfterAccept", sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultHangUpAfter}, true},
		{"HangUpBeforeProcessing", sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultHangUpBefore}, false},
		// A gateway's 502/504 either side of processing: the client cannot tell them apart.
		{"GatewayAfterAccept", sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultGatewayAfter}, true},
		{"GatewayBeforeProcessing", sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultGatewayBefore, Status: 504}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c := e.client(200 * time.Millisecond)
			tok := e.token(t)
			u := e.grantedUser(1)
			tt.fault.Times = 1
			if err := e.sb.AddFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			_, err := c.SendSubscribe(t.Context(), tok, subscribeMessage(u))
			if wechat.Classify(err) != wechat.Unknown {
				t.Fatalf("Classify = %v (%v), want unknown", wechat.Classify(err), err)
			}
			acc := e.sb.Accepted()
			if got := len(acc) == 1; got != tt.recorded {
				t.Fatalf("recorded = %v, want %v", got, tt.recorded)
			}
			if tt.recorded && !acc[0].AnswerLost {
				t.Error("AnswerLost not set")
			}
			// A retry shows whether the grant went with the lost answer.
			_, err = c.SendSubscribe(t.Context(), tok, subscribeMessage(u))
			if tt.recorded && wechat.Reason(err) != "user_refused" {
				t.Errorf("retry after a delivered send: %v, want 43101", err)
			}
			if !tt.recorded && err != nil {
				t.Errorf("retry after an unprocessed send: %v, want ok", err)
			}
		})
	}
}

func TestFaultLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sb.AddFault(sandbox.Fault{Path: sandbox.PathStableToken, Latency: 150 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.token(t)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("took %v, want at least 150ms", d)
	}
	e.sb.ResetFaults()
	if n := len(e.sb.Faults()); n != 0 {
		t.Errorf("%d faults after reset", n)
	}
}

func TestFaultValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, f := range []sandbox.Fault{
		{Kind: "explode"},
		{Path: "/nope", ErrCode: -1},
		{ErrCode: -1, Rate: 1.5},
		{Kind: sandbox.FaultErrcode},
		{Kind: sandbox.FaultGatewayAfter, Status: 200},
	} {
		if err := e.sb.AddFault(f); err == nil {
			t.Errorf("AddFault(%+v) = nil, want error", f)
		}
	}
}

func TestConcurrentSends(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(5 * time.Second)
	tok := e.token(t)
	const n = 40
	users := make([]string, n)
	for i := range users {
		users[i] = e.grantedUser(1)
	}
	// Latency keeps requests in flight together so the peak is observable.
	if err := e.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Latency: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*2)
	for _, u := range users {
		wg.Go(func() {
			errs <- errOnly(c.SendSubscribe(t.Context(), tok, subscribeMessage(u)))
			// Same user again: must be refused, never double-accepted.
			if _, err := c.SendSubscribe(t.Context(), tok, subscribeMessage(u)); wechat.Reason(err) != "user_refused" {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	st := e.sb.Stats()
	if st.Accepted != n || st.InFlight != 0 || st.PeakInFlight < 2 || st.PeakInFlight > n {
		t.Errorf("Stats: accepted %d, in flight %d, peak %d", st.Accepted, st.InFlight, st.PeakInFlight)
	}
}

func TestControlAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	post := func(t *testing.T, path string, body any, wantStatus int) map[string]any {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+path, bytes.NewReader(raw))
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != wantStatus {
			t.Fatalf("POST %s: status %d (%v), want %d", path, resp.StatusCode, out, wantStatus)
		}
		return out
	}
	get := func(t *testing.T, path string, out any) {
		t.Helper()
		resp, err := e.srv.Client().Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}

	post(t, "/_sandbox/apps", map[string]string{"appid": "wx2", "secret": "s2"}, 200)
	post(t, "/_sandbox/templates", map[string]any{"appid": "wx2", "template_id": "T", "fields": map[string]string{"thing1": "thing"}}, 200)
	post(t, "/_sandbox/templates", map[string]any{"appid": "wx2", "template_id": "F", "kind": "form", "keywords": []string{"keyword1"}}, 200)
	login := post(t, "/_sandbox/codes", map[string]string{"appid": "wx2"}, 200)
	openID, _ := login["openid"].(string)
	if openID == "" || login["code"] == "" {
		t.Fatalf("codes = %v", login)
	}
	post(t, "/_sandbox/grants/subscribe", map[string]any{"appid": "wx2", "openid": openID, "template_id": "T", "count": 2}, 200)
	formID := post(t, "/_sandbox/grants/form", map[string]any{"appid": "wx2", "openid": openID, "kind": "prepay"}, 200)["form_id"].(string)
	post(t, "/_sandbox/pages", map[string]any{"appid": "wx2", "pages": []string{"pages/a/a"}}, 200)
	post(t, "/_sandbox/faults", map[string]any{"path": sandbox.PathSubscribeSend, "kind": "errcode", "errcode": 45009, "times": 1}, 200)

	c := e.client(time.Second)
	s, err := c.Code2Session(t.Context(), "wx2", "s2", login["code"].(string))
	if err != nil || s.OpenID != openID {
		t.Fatalf("Code2Session = %+v, %v", s, err)
	}
	tok, err := c.StableToken(t.Context(), "wx2", "s2", false)
	if err != nil {
		t.Fatal(err)
	}
	m := wechat.SubscribeMessage{ToUser: openID, TemplateID: "T", Page: "pages/a/a", Data: map[string]wechat.Value{"thing1": {Value: "x"}}}
	if _, err := c.SendSubscribe(t.Context(), tok.AccessToken, m); wechat.Reason(err) != "quota_exceeded" {
		t.Errorf("faulted send: %v", err)
	}
	if _, err := c.SendSubscribe(t.Context(), tok.AccessToken, m); err != nil {
		t.Error(err)
	}
	if err := c.SendTemplate(t.Context(), tok.AccessToken, wechat.TemplateMessage{ToUser: openID, TemplateID: "F", FormID: formID}); err != nil {
		t.Error(err)
	}

	var faults []sandbox.Fault
	get(t, "/_sandbox/faults", &faults)
	if len(faults) != 1 || faults[0].ErrCode != 45009 {
		t.Errorf("faults = %+v", faults)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, e.srv.URL+"/_sandbox/faults", nil)
	resp, err := e.srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("DELETE faults: %v %v", resp, err)
	}
	resp.Body.Close()
	if len(e.sb.Faults()) != 0 {
		t.Error("faults not reset")
	}

	var acc []sandbox.Message
	get(t, "/_sandbox/accepted", &acc)
	if len(acc) != 2 || acc[0].AppID != "wx2" || acc[1].FormID != formID {
		t.Errorf("accepted = %+v", acc)
	}
	var st sandbox.Stats
	get(t, "/_sandbox/stats", &st)
	if st.TokensIssued["wx2"] != 1 || st.Requests[sandbox.PathSubscribeSend] != 2 {
		t.Errorf("stats = %+v", st)
	}

	post(t, "/_sandbox/tokens/invalidate", map[string]string{"appid": "wx2"}, 200)
	if _, err := c.SendSubscribe(t.Context(), tok.AccessToken, m); wechat.Classify(err) != wechat.Refresh {
		t.Errorf("after invalidate: %v", err)
	}

	t.Run("ErrBadRequests", func(t *testing.T) {
		post(t, "/_sandbox/users", map[string]string{"appid": "wxnope"}, 400)
		post(t, "/_sandbox/users", map[string]string{"app_id": "wx2"}, 400)
		post(t, "/_sandbox/faults", map[string]any{"kind": "explode"}, 400)
		post(t, "/_sandbox/grants/subscribe", map[string]any{"appid": "wx2", "openid": openID, "template_id": "NOPE"}, 400)
		post(t, "/_sandbox/templates", map[string]any{"appid": "wx2", "template_id": "X", "fields": map[string]string{"a1": "bogus"}}, 400)
		post(t, "/_sandbox/nope", map[string]any{}, 404)
	})
	t.Run("Users", func(t *testing.T) {
		if out := post(t, "/_sandbox/users", map[string]string{"appid": "wx2"}, 200); out["openid"] == "" {
			t.Errorf("users = %v", out)
		}
	})
}

// errOnly drops SendSubscribe's msgid where a test wants only the error.
func errOnly(_ string, err error) error { return err }

// TestSubscribeMsgID checks the sandbox answers each accepted subscribe send with its
// own msgid above 2^53, and the client reads it exactly.
func TestSubscribeMsgID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(time.Second)
	tok := e.token(t)
	u := e.grantedUser(2)
	var ids []string
	for range 2 {
		id, err := c.SendSubscribe(t.Context(), tok, subscribeMessage(u))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	acc := e.sb.Accepted()
	if len(acc) != 2 || ids[0] != "9007199254740993" || ids[1] != "9007199254740994" ||
		acc[0].MsgID != sandbox.MsgIDBase || acc[1].MsgID != sandbox.MsgIDBase+1 {
		t.Errorf("msgids = %v, accepted %+v", ids, acc)
	}
}
