package sandbox_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"minipush/internal/wechat"
)

// TestDailyQuota: beyond the app's daily quota subscribe/send answers 45009 and leaves
// the user's grant; quota/get reports the day's use; the count resets at midnight
// Asia/Shanghai on the sandbox clock (16:00 UTC), not at UTC midnight.
func TestDailyQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // 2026-03-01 12:00 UTC = 20:00 in Shanghai
	tok := e.token(t)
	u := e.sb.NewUser(appID)
	for range 4 {
		e.sb.AddSubscribeGrant(appID, u, tmpl)
	}
	control := func(body map[string]any, want int) {
		t.Helper()
		raw, _ := json.Marshal(body)
		resp, err := http.Post(e.srv.URL+"/_sandbox/quota", "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST /_sandbox/quota %v: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	control(map[string]any{"appid": appID, "daily_limit": 2}, 200)
	control(map[string]any{"appid": "nope", "daily_limit": 2}, 400)
	control(map[string]any{"appid": appID, "daily_limit": "x"}, 400)
	body := map[string]any{"touser": u, "template_id": tmpl, "data": validData()}
	wantCode(t, e.subscribe(t, tok, body), 0)
	wantCode(t, e.subscribe(t, tok, body), 0)
	wantCode(t, e.subscribe(t, tok, body), 45009)
	q := e.call(t, "POST", "/cgi-bin/openapi/quota/get", url.Values{"access_token": {tok}}, map[string]string{"cgi_path": "/cgi-bin/message/subscribe/send"})
	wantCode(t, q, 0)
	quota, _ := q["quota"].(map[string]any)
	if quota["daily_limit"] != 2.0 || quota["used"] != 2.0 || quota["remain"] != 0.0 {
		t.Fatalf("quota = %v, want limit 2 used 2 remain 0", quota)
	}
	wantCode(t, e.call(t, "POST", "/cgi-bin/openapi/quota/get", url.Values{"access_token": {tok}}, map[string]string{"cgi_path": "/x"}), 47001)
	// The client reads the same answer (quota and rate_limit are siblings in it).
	got, err := e.client(5*time.Second).GetQuota(t.Context(), tok, wechat.PathSubscribeSend)
	if err != nil || got.DailyLimit != 2 || got.Used != 2 || got.Remain != 0 || got.RateLimit.CallCount == 0 || got.RateLimit.RefreshSecond == 0 {
		t.Fatalf("GetQuota = %+v, %v", got, err)
	}
	_, err = e.client(5*time.Second).SendSubscribe(t.Context(), tok, subscribeMessage(u))
	if a := wechat.Classify(err); a != wechat.Abort || wechat.Reason(err) != "quota_exceeded" {
		t.Fatalf("45009 classified %v %q", a, wechat.Reason(err))
	}

	e.clock.Advance(3*time.Hour + 59*time.Minute) // 23:59 in Shanghai: the same day
	tok = e.token(t)
	wantCode(t, e.subscribe(t, tok, body), 45009)
	e.clock.Advance(time.Minute) // midnight in Shanghai
	tok = e.token(t)
	// The two grants the refused sends were answered with are still there.
	wantCode(t, e.subscribe(t, tok, body), 0)
	wantCode(t, e.subscribe(t, tok, body), 0)
	wantCode(t, e.subscribe(t, tok, body), 43101)
	if got := e.sb.QuotaUsed(appID); got != 2 {
		t.Fatalf("used after the reset = %d, want 2", got)
	}
}
