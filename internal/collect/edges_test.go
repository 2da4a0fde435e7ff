package collect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/collect"
	"minipush/internal/lambdaenv"
	"minipush/internal/session"
	"minipush/internal/wechat"
)

// Issue #13, items 10 to 13: the edges of collect.

// failingAdd fails AddGrants once, the way a storage failure midway through a push does.
type failingAdd struct {
	collect.Store
	fail atomic.Bool
}

func (s *failingAdd) AddGrants(ctx context.Context, appID, openID string, grants []minipush.Grant, limit int) ([]minipush.AddStatus, error) {
	if s.fail.Swap(false) {
		return nil, errors.New("dynamo: add grants: connection reset")
	}
	return s.Store.AddGrants(ctx, appID, openID, grants, limit)
}

// TestPushReplay (item 10a): a captured signed push URL replayed within its 5 minutes
// with another body changes nothing; WeChat's retry of a push already applied is
// acknowledged without applying it again; its retry of a push that failed is applied.
func TestPushReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	victim := f.sb.NewUser(appID)
	mallory := f.sb.NewUser(appID)

	first := f.push("POST", fmt.Sprintf(popupXML, victim), nil)
	if resp := f.do(t, first); resp.StatusCode != http.StatusOK || resp.Body != "success" {
		t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
	}
	if n := len(f.grantItems(t, victim)); n != 1 {
		t.Fatalf("%d grants after the push, want 1", n)
	}
	replay := func(body string) events.APIGatewayV2HTTPRequest {
		r := first
		r.Body = body
		return r
	}

	t.Run("ErrOtherBodyMintsNothing", func(t *testing.T) {
		before := f.snapshot(t)
		// The same signed URL, with a body granting the attacker's own openid.
		resp := f.do(t, replay(fmt.Sprintf(popupJSON, mallory)))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("replay with another body: %d %s, want 401", resp.StatusCode, resp.Body)
		}
		f.mustUnchanged(t, before)
	})
	t.Run("ErrOtherBodyWipesNothing", func(t *testing.T) {
		before := f.snapshot(t)
		// The same signed URL, with a reject of the victim's template.
		resp := f.do(t, replay(strings.Replace(fmt.Sprintf(changeJSON, victim), "1764057700", "1999999999", 1)))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("replay with a reject: %d %s, want 401", resp.StatusCode, resp.Body)
		}
		f.mustUnchanged(t, before)
		if n := len(f.grantItems(t, victim)); n != 1 {
			t.Fatalf("%d grants left to the victim, want 1", n)
		}
	})
	t.Run("RetryOfAppliedPushAcknowledged", func(t *testing.T) {
		before := f.snapshot(t)
		if resp := f.do(t, first); resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("retry %d %s", resp.StatusCode, resp.Body)
		}
		f.mustUnchanged(t, before)
	})
	t.Run("RetryOfFailedPushApplied", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		store := &failingAdd{Store: f.h.Store}
		store.fail.Store(true)
		f.h.Store = store
		defer func() { f.h.Store = store.Store }()
		req := f.push("POST", fmt.Sprintf(popupJSON, user), nil)
		if resp := f.do(t, req); resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("push with storage failing: %d %s, want 500 so WeChat retries", resp.StatusCode, resp.Body)
		}
		if n := len(f.grantItems(t, user)); n != 0 {
			t.Fatalf("%d grants after the failed push", n)
		}
		for range 2 { // WeChat's retry applies it; a second retry changes nothing
			if resp := f.do(t, req); resp.StatusCode != http.StatusOK || resp.Body != "success" {
				t.Fatalf("retry %d %s", resp.StatusCode, resp.Body)
			}
		}
		if n := len(f.grantItems(t, user)); n != 1 {
			t.Fatalf("%d grants after the retries, want 1", n)
		}
	})
	t.Run("NoRawNonceInKeys", func(t *testing.T) {
		if snap := f.snapshot(t); strings.Contains(snap, "#"+first.QueryStringParameters["nonce"]) {
			t.Fatalf("a nonce is stored raw in a key:\n%s", snap)
		}
	})
}

// aesKey is a test EncodingAESKey: 43 characters of [A-Za-z0-9], as the console picks.
const aesKey = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"

// sealed builds a safe-mode push: the message encrypted for app with aesKey, in an XML
// or JSON envelope, with msg_signature over it (and the URL's own signature).
func (f *fixture) sealed(t *testing.T, app, message string, asJSON bool, change func(q url.Values)) events.APIGatewayV2HTTPRequest {
	t.Helper()
	cfg := minipush.App{AppID: app, EncodingAESKey: aesKey}
	key, err := cfg.AESKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := collect.EncryptPush(key, app, []byte(message), bytes.Repeat([]byte{7}, 16))
	if err != nil {
		t.Fatal(err)
	}
	body := `<xml><ToUserName><![CDATA[gh_123]]></ToUserName><Encrypt><![CDATA[` + enc + `]]></Encrypt></xml>`
	if asJSON {
		body = `{"ToUserName":"gh_123","Encrypt":"` + enc + `"}`
	}
	return f.push("POST", body, func(q url.Values) {
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", collect.MsgSignature(eventToken, q.Get("timestamp"), q.Get("nonce"), enc))
		if change != nil {
			change(q)
		}
	})
}

// TestPushSafeMode (item 10b): an app with an encodingAESKey takes encrypted pushes
// (XML and JSON envelopes, msg_signature over the ciphertext) and refuses plaintext
// ones, which a captured URL could carry with any body.
func TestPushSafeMode(t *testing.T) {
	t.Parallel()
	f := newFixtureApp(t, nil, map[string]any{"encodingAESKey": aesKey})
	templates := func(openID string) map[string]int {
		m := map[string]int{}
		for _, g := range f.grantItems(t, openID) {
			m[g.TemplateID]++
		}
		return m
	}

	t.Run("XML", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		if resp := f.do(t, f.sealed(t, appID, fmt.Sprintf(popupXML, user), false, nil)); resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if got := templates(user); got[tplA] != 1 || len(got) != 1 {
			t.Fatalf("grants %v, want one TPL-A", got)
		}
	})
	t.Run("JSON", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		if resp := f.do(t, f.sealed(t, appID, fmt.Sprintf(popupJSON, user), true, nil)); resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if got := templates(user); got[tplB] != 1 || len(got) != 1 {
			t.Fatalf("grants %v, want one TPL-B", got)
		}
	})
	t.Run("CompatibleModeReadsTheCiphertext", func(t *testing.T) {
		// Compatible mode sends both; only the signed, encrypted copy counts.
		user, other := f.sb.NewUser(appID), f.sb.NewUser(appID)
		req := f.sealed(t, appID, fmt.Sprintf(popupJSON, user), true, nil)
		req.Body = strings.Replace(req.Body, `{"ToUserName":"gh_123",`, `{"ToUserName":"gh_123","FromUserName":"`+other+`","CreateTime":1764057601,"Event":"subscribe_msg_popup_event","List":{"TemplateId":"TPL-A","SubscribeStatusString":"accept"},`, 1)
		if resp := f.do(t, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if len(f.grantItems(t, user)) != 1 || len(f.grantItems(t, other)) != 0 {
			t.Fatal("the plaintext copy was used instead of the encrypted one")
		}
	})

	user := f.sb.NewUser(appID)
	before := f.snapshot(t)
	for _, tc := range []struct {
		name string
		req  func() events.APIGatewayV2HTTPRequest
		want int
	}{
		{"ErrPlaintext", func() events.APIGatewayV2HTTPRequest { return f.push("POST", fmt.Sprintf(popupXML, user), nil) }, http.StatusUnauthorized},
		{"ErrNoMsgSignature", func() events.APIGatewayV2HTTPRequest {
			return f.sealed(t, appID, fmt.Sprintf(popupXML, user), false, func(q url.Values) { q.Del("msg_signature") })
		}, http.StatusUnauthorized},
		{"ErrMsgSignatureOfOtherCiphertext", func() events.APIGatewayV2HTTPRequest {
			other := f.sealed(t, appID, fmt.Sprintf(popupXML, f.sb.NewUser(appID)), false, nil)
			req := f.sealed(t, appID, fmt.Sprintf(popupXML, user), false, nil)
			req.Body = other.Body // a body swapped under a signed URL
			return req
		}, http.StatusUnauthorized},
		{"ErrSealedForOtherApp", func() events.APIGatewayV2HTTPRequest {
			return f.sealed(t, "wxanotherapp0001", fmt.Sprintf(popupXML, user), false, nil)
		}, http.StatusUnprocessableEntity},
		{"ErrNotCiphertext", func() events.APIGatewayV2HTTPRequest {
			req := f.push("POST", `{"Encrypt":"bm90IHJlYWxseSBlbmNyeXB0ZWQ="}`, nil)
			req.QueryStringParameters["msg_signature"] = collect.MsgSignature(eventToken, req.QueryStringParameters["timestamp"], req.QueryStringParameters["nonce"], "bm90IHJlYWxseSBlbmNyeXB0ZWQ=")
			return req
		}, http.StatusUnprocessableEntity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := f.do(t, tc.req()); resp.StatusCode != tc.want {
				t.Fatalf("answer %d %s, want %d", resp.StatusCode, resp.Body, tc.want)
			}
			f.mustUnchanged(t, before)
		})
	}
}

// TestPushEncryptedWithoutKey: an encrypted push to an app with no encodingAESKey is
// refused loudly (422 naming the key), not acknowledged and lost.
func TestPushEncryptedWithoutKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	before := f.snapshot(t)
	resp := f.do(t, f.sealed(t, appID, fmt.Sprintf(popupXML, f.sb.NewUser(appID)), false, nil))
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(resp.Body, "encodingAESKey") {
		t.Fatalf("answer %d %s, want 422 naming encodingAESKey", resp.StatusCode, resp.Body)
	}
	f.mustUnchanged(t, before)
}

// TestRejectAppliesToOlderAccepts (item 10c): a subscribe_msg_change_event reject drops
// only the accepts given before its CreateTime, so an old reject that arrives late (or
// is retried) cannot wipe an accept the user gave after it.
func TestRejectAppliesToOlderAccepts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	user, token := f.login(t)
	at := func(created int64, body string) string {
		return strings.Replace(fmt.Sprintf(body, user), "1764057600", strconv.FormatInt(created, 10), 1)
	}
	const accepted = 1764057600
	if resp := f.do(t, f.push("POST", at(accepted, popupXML), nil)); resp.StatusCode != http.StatusOK {
		t.Fatalf("accept %d %s", resp.StatusCode, resp.Body)
	}
	// The client uploads an accept of the same template now (collected at f.now).
	if code, ans := f.upload(t, token, `{"grants":[{"type":"subscribe","key":"k-new","results":{"TPL-A":"accept"}}]}`); code != http.StatusOK || ans.Accepted != 1 {
		t.Fatalf("upload %d %+v", code, ans)
	}
	reject := func(created int64) {
		t.Helper()
		body := strings.Replace(strings.Replace(fmt.Sprintf(changeJSON, user), "1764057700", strconv.FormatInt(created, 10), 1), "TPL-A", tplA, 1)
		if resp := f.do(t, f.push("POST", body, nil)); resp.StatusCode != http.StatusOK {
			t.Fatalf("reject %d %s", resp.StatusCode, resp.Body)
		}
	}
	count := func() int { return len(f.grantItems(t, user)) }

	reject(accepted - 60) // an old reject, delivered late
	if n := count(); n != 2 {
		t.Fatalf("%d grants after a reject older than both accepts, want 2", n)
	}
	reject(accepted) // the same second: order unknown, the accept is kept
	if n := count(); n != 2 {
		t.Fatalf("%d grants after a reject in the accept's second, want 2", n)
	}
	reject(accepted + 60) // after the pushed accept, before the upload
	if n := count(); n != 1 {
		t.Fatalf("%d grants after a reject between the accepts, want 1", n)
	}
	u, err := f.db.GetUser(t.Context(), appID, user)
	if err != nil || u.LiveGrants != 1 {
		t.Fatalf("inventory %d %v, want 1", u.LiveGrants, err)
	}
	reject(f.now.Unix() + 1) // after both
	if n := count(); n != 0 {
		t.Fatalf("%d grants after a reject after both accepts, want 0", n)
	}
}

// TestSessionSourceLimit (issue #13 review): per source address only the login codes
// WeChat refuses are counted, in the state table under a keyed hash of the address.
// Valid logins from one address (thousands of users behind a carrier NAT) all succeed
// and write no counter; once the refusals reach the limit, the address is answered 429
// with Retry-After without calling WeChat until the window ends.
func TestSessionSourceLimit(t *testing.T) {
	t.Parallel()
	f := newFixtureEnv(t, map[string]string{lambdaenv.SessionRefusalsEnv: "2"})
	rec := &countingLogin{Login: f.h.WeChat}
	f.h.WeChat = rec
	const ip, other = "203.0.113.7", "198.51.100.20"
	login := func(source, code string) events.APIGatewayV2HTTPResponse {
		req := request("POST", "/v1/session", `{"code":"`+code+`"}`, nil, nil)
		req.RequestContext.HTTP.SourceIP = source
		return f.do(t, req)
	}
	valid := func() string { _, code := f.sb.NewLogin(appID); return code }
	counterKey := "rate#session#" + session.Pseudonym([]byte(sessionKey), "ip", ip)

	for i := range 10 { // five times the refusal limit
		if resp := login(ip, valid()); resp.StatusCode != http.StatusOK {
			t.Fatalf("valid login %d from one address: %d %s", i, resp.StatusCode, resp.Body)
		}
	}
	if snap := f.snapshot(t); strings.Contains(snap, "rate#session#") {
		t.Fatalf("valid logins wrote a login counter:\n%s", snap)
	}
	for i := range 2 {
		if resp := login(ip, "forged-code-"+strconv.Itoa(i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged code %d: %d %s, want 401", i, resp.StatusCode, resp.Body)
		}
	}
	calls := rec.n.Load()
	before := f.snapshot(t)
	for _, code := range []string{"forged-code-2", valid()} {
		resp := login(ip, code)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(resp.Body, `"code":"rate_limited"`) {
			t.Fatalf("login after 2 refusals: %d %s, want 429", resp.StatusCode, resp.Body)
		}
		if got := resp.Headers["Retry-After"]; got != "30" { // the fixture's clock is 30 s into its minute
			t.Fatalf("Retry-After %q, want 30", got)
		}
	}
	if n := rec.n.Load(); n != calls {
		t.Fatalf("jscode2session was called %d times for logins over the limit", n-calls)
	}
	f.mustUnchanged(t, before)
	if resp := login(other, valid()); resp.StatusCode != http.StatusOK {
		t.Fatalf("login from another address: %d %s", resp.StatusCode, resp.Body)
	}
	snap := f.snapshot(t)
	if strings.Contains(snap, ip) || !strings.Contains(snap, counterKey) {
		t.Fatalf("the counter is not keyed by a keyed hash of the address:\n%s", snap)
	}
}

// countingLogin counts jscode2session calls.
type countingLogin struct {
	collect.Login
	n atomic.Int64
}

func (c *countingLogin) Code2Session(ctx context.Context, appID, secret, code string) (wechat.Session, error) {
	c.n.Add(1)
	return c.Login.Code2Session(ctx, appID, secret, code)
}

// TestKeySeparators (item 12): a template id or idempotency key holding a character
// that storage keys use as a separator is refused with bad_characters, and changes
// nothing: "TPL-A#0" would otherwise sort into template TPL-A's key range.
func TestKeySeparators(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	user, token := f.login(t)
	before := f.snapshot(t)
	for name, body := range map[string]string{
		"ErrHashInTemplate": `{"grants":[{"type":"subscribe","key":"k1","results":{"TPL-A#0":"accept"}}]}`,
		"ErrHashInKey":      `{"grants":[{"type":"subscribe","key":"k#1","results":{"TPL-A":"accept"}}]}`,
		"ErrNULInKey":       `{"grants":[{"type":"subscribe","key":"k\u00001","results":{"TPL-A":"accept"}}]}`,
		"ErrNULInTemplate":  `{"grants":[{"type":"subscribe","key":"k1","results":{"TPL\u0000A":"accept"}}]}`,
		"ErrNewlineInKey":   `{"grants":[{"type":"subscribe","key":"k\n1","results":{"TPL-A":"accept"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			code, ans := f.upload(t, token, body)
			if code != http.StatusUnprocessableEntity || statuses(ans) != "rejected:"+collect.ReasonBadCharacters {
				t.Fatalf("answer %d %s, want 422 with bad_characters", code, statuses(ans))
			}
			f.mustUnchanged(t, before)
		})
	}
	t.Run("ErrHashInPushedTemplate", func(t *testing.T) {
		body := strings.Replace(fmt.Sprintf(popupJSON, user), "TPL-B", "TPL-A#0", 1)
		if resp := f.do(t, f.push("POST", body, nil)); resp.StatusCode != http.StatusOK {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		f.mustUnchanged(t, before, "push#") // acknowledged, nothing stored
	})
}

// TestLogsHoldNoOpenID (item 13): collect logs no openid on any path (session, upload,
// push accept, push reject, ignored push, refused requests); it logs a keyed hash.
func TestLogsHoldNoOpenID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var mu sync.Mutex
	var logs strings.Builder
	f.h.Log = slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	user, token := f.login(t)
	f.upload(t, token, `{"grants":[{"type":"form","formId":"log-1"},{"type":"subscribe","key":"log-2","results":{"TPL-A":"accept"}}]}`)
	f.upload(t, token, `{"grants":[{"type":"form","formId":""}]}`)
	f.do(t, f.push("POST", fmt.Sprintf(popupXML, user), nil))
	f.do(t, f.push("POST", fmt.Sprintf(changeJSON, user), nil))
	f.do(t, f.push("POST", strings.Replace(fmt.Sprintf(popupJSON, user), "subscribe_msg_popup_event", "wxa_nickname_audit", 1), nil)) // an event collect does not act on
	replayed := f.push("POST", fmt.Sprintf(popupJSON, user), nil)
	f.do(t, replayed)
	replayed.Body = fmt.Sprintf(popupXML, user)
	f.do(t, replayed) // refused: another body under a used URL
	failing := &failingAdd{Store: f.h.Store}
	failing.fail.Store(true)
	f.h.Store = failing
	f.do(t, f.push("POST", strings.Replace(fmt.Sprintf(popupJSON, user), "1764057601", "1764057999", 1), nil)) // a 500
	f.h.Store = failing.Store

	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, want := range []string{`"msg":"session issued"`, `"msg":"grants uploaded"`, `"msg":"push accepts stored"`, `"msg":"template turned off"`, `"msg":"push ignored"`, `"msg":"request failed"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("logs lack %s, so the check below would prove little:\n%s", want, out)
		}
	}
	if strings.Contains(out, user) {
		t.Fatalf("logs hold the openid %s:\n%s", user, out)
	}
	if tag := session.Pseudonym([]byte(sessionKey), "log", minipush.UserKey(appID, user)); !strings.Contains(out, `"user":"`+tag+`"`) {
		t.Fatalf("logs lack the user's keyed hash %s:\n%s", tag, out)
	}
}

// TestSessionKeyMinimum (item 13): a signing key under 32 bytes is refused at init.
func TestSessionKeyMinimum(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  string
		ok   bool
	}{
		{"Err31Bytes", strings.Repeat("k", 31), false},
		{"OK32Bytes", strings.Repeat("k", 32), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W", "SESSION_SECRET_ARN": "local:S",
				"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
				lambdaenv.LocalSecretsEnv: `{"W":"{\"apps\":[{\"appId\":\"wx1\",\"appSecret\":\"s\"}]}","S":"` + tc.key + `"}`,
			}
			_, err := lambdaenv.Collect(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return env[k] }})
			if tc.ok != (err == nil) {
				t.Fatalf("lambdaenv.Collect with a %d-byte key: %v", len(tc.key), err)
			}
			if err != nil && (!strings.Contains(err.Error(), "at least 32") || strings.Contains(err.Error(), tc.key)) {
				t.Fatalf("error %v: want one naming the minimum and not the key", err)
			}
		})
	}
}
