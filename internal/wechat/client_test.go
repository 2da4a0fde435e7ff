package wechat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestClient returns a client for srv whose logs go to the returned buffer.
func newTestClient(tb testing.TB, srv *httptest.Server, opts Options) (*Client, *syncBuffer) {
	tb.Helper()
	buf := &syncBuffer{}
	opts.BaseURL = srv.URL
	opts.HTTPClient = srv.Client()
	opts.Logger = slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(opts), buf
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// answer returns a handler that answers every request with status and body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestClassifyErrcodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   int
		action Action
		reason string
	}{
		{-1, Retry, "system_busy"},
		{45011, Retry, "minute_quota"},
		{40001, Refresh, "token_invalid"},
		{40014, Refresh, "token_invalid"},
		{42001, Refresh, "token_expired"},
		{41001, Refresh, "token_missing"},
		{41028, NextGrant, "grant_invalid"},
		{41029, NextGrant, "grant_used"},
		{41031, NextGrant, "grant_blocked"},
		{43101, FailRecipient, "user_refused"},
		{40003, FailRecipient, "invalid_openid"},
		{47003, FailRecipient, "data_invalid"},
		{41030, Abort, "page_invalid"},
		{43107, Abort, "template_banned"},
		{43108, Retry, "concurrent_send"},
		{45168, FailRecipient, "sensitive_words"},
		{40037, Abort, "template_invalid"},
		{45009, Abort, "quota_exceeded"},
		{48001, Abort, "api_unauthorized"},
		{45103, Abort, "api_unsupported"},
		{45109, Abort, "api_withdrawn"},
		{40013, Abort, "invalid_appid"},
		{40125, Abort, "invalid_secret"},
		{40164, Abort, "ip_not_whitelisted"},
		{40243, Abort, "secret_frozen"},
		{99999, Abort, "errcode_99999"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(answer(200, fmt.Sprintf(`{"errcode":%d,"errmsg":"boom rid: 64f7ae6b-5b2b0b3c-2a3b4c5d"}`, tt.code)))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv, Options{})
			_, err := c.SendSubscribe(t.Context(), "TOKEN", SubscribeMessage{ToUser: "o1", TemplateID: "T"})
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if we.Code != tt.code || we.RID != "64f7ae6b-5b2b0b3c-2a3b4c5d" || we.HTTPStatus != 200 {
				t.Errorf("Error = %+v", we)
			}
			if got := Classify(err); got != tt.action {
				t.Errorf("Classify = %v, want %v", got, tt.action)
			}
			if got := Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestClassifyCode2Session(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   int
		action Action
		reason string
	}{
		{40029, FailRecipient, "code_invalid"},
		{40163, FailRecipient, "code_used"},
		{40226, FailRecipient, "code_blocked"},
		{45011, Retry, "minute_quota"},
		{-1, Retry, "system_busy"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(answer(200, fmt.Sprintf(`{"errcode":%d,"errmsg":"x, hints: [ req_id: Abc123 ]"}`, tt.code)))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv, Options{})
			_, err := c.Code2Session(t.Context(), "wx1", "S", "CODE")
			if got := Classify(err); got != tt.action {
				t.Errorf("Classify = %v, want %v (err %v)", got, tt.action, err)
			}
			if got := Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestClassifyTokenCredential(t *testing.T) {
	t.Parallel()
	// 40001 on a token call means a wrong secret: refreshing would loop.
	srv := httptest.NewServer(answer(200, `{"errcode":40001,"errmsg":"invalid credential rid: r1"}`))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv, Options{})
	_, err := c.StableToken(t.Context(), "wx1", "S", false)
	if got := Classify(err); got != Abort {
		t.Errorf("StableToken: Classify = %v, want abort", got)
	}
	_, err = c.Token(t.Context(), "wx1", "S")
	if got := Classify(err); got != Abort {
		t.Errorf("Token: Classify = %v, want abort", got)
	}
}

func TestClassifyHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		action Action
		reason string
	}{
		// A gateway's 5xx or 429 proves nothing about the send: unknown, never retried.
		{"BadGateway", 502, `<html>bad gateway</html>`, Unknown, "http_502"},
		{"GatewayTimeout", 504, ``, Unknown, "http_504"},
		{"TooMany", 429, ``, Unknown, "http_429"},
		{"BusyWith5xx", 503, `{"errcode":-1,"errmsg":"system error"}`, Retry, "system_busy"},
		{"NotFound", 404, `not found`, Abort, "http_404"},
		{"ErrcodeWinsOverStatus", 500, `{"errcode":43101,"errmsg":"refused"}`, FailRecipient, "user_refused"},
		{"GarbageOK", 200, `<html>proxy</html>`, Unknown, "bad_response"},
		{"Oversized", 200, `{"errcode":0,"errmsg":"` + strings.Repeat("x", MaxResponseBytes) + `"}`, Unknown, "bad_response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(answer(tt.status, tt.body))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv, Options{})
			err := c.SendTemplate(t.Context(), "TOKEN", TemplateMessage{ToUser: "o", TemplateID: "T", FormID: "F"})
			if err == nil {
				t.Fatal("err = nil")
			}
			if got := Classify(err); got != tt.action {
				t.Errorf("Classify = %v, want %v (err %v)", got, tt.action, err)
			}
			if got := Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestClassifyNil(t *testing.T) {
	t.Parallel()
	if Classify(nil) != OK || Reason(nil) != "" {
		t.Errorf("Classify(nil) = %v, Reason(nil) = %q", Classify(nil), Reason(nil))
	}
	if got := Classify(errors.New("other")); got != Unknown {
		t.Errorf("Classify(foreign error) = %v, want unknown", got)
	}
}

func TestExtractRID(t *testing.T) {
	t.Parallel()
	tests := []struct{ msg, want string }{
		{"user refuse to accept the msg rid: 64f7ae6b-5b2b0b3c-2a3b4c5d", "64f7ae6b-5b2b0b3c-2a3b4c5d"},
		{"invalid credential, access_token is invalid or not latest hint: [Tmgu5a0789vr22]", "Tmgu5a0789vr22"},
		{"invalid code, hints: [ req_id: GEbaO6yFe-Yz1B ]", "GEbaO6yFe-Yz1B"},
		{"ok", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ExtractRID(tt.msg); got != tt.want {
			t.Errorf("ExtractRID(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func TestSecretsNotLogged(t *testing.T) {
	t.Parallel()
	const (
		secret = "SECRETabcdef0123456789"
		jsCode = "JSCODE0a1b2c3d4e5f"
		token  = "ACCESSTOKENzyxwvu987"
	)
	// A server that echoes everything it received into errmsg, the worst case.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		msg, _ := json.Marshal("echo " + r.URL.RawQuery + " " + string(b) + " rid: abc")
		fmt.Fprintf(w, `{"errcode":40029,"errmsg":%s}`, msg)
	}))
	t.Cleanup(srv.Close)
	c, logs := newTestClient(t, srv, Options{})

	var errs []error
	_, err := c.Code2Session(t.Context(), "wx1", secret, jsCode)
	errs = append(errs, err)
	_, err = c.StableToken(t.Context(), "wx1", secret, true)
	errs = append(errs, err)
	_, err = c.Token(t.Context(), "wx1", secret)
	errs = append(errs, err)
	errs = append(errs, errOnly(c.SendSubscribe(t.Context(), token, SubscribeMessage{ToUser: "o"})))

	// A transport failure: *url.Error would print the whole URL with the token.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	c2 := New(Options{BaseURL: dead.URL, Logger: c.Logger})
	errs = append(errs, c2.SendTemplate(t.Context(), token, TemplateMessage{}))
	_, err = c2.Code2Session(t.Context(), "wx1", secret, jsCode)
	errs = append(errs, err)

	text := logs.String()
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected every call to fail")
		}
		text += "\n" + err.Error()
	}
	if !strings.Contains(text, "rid") {
		t.Fatalf("logs did not capture the errors: %s", text)
	}
	for _, s := range []string{secret, jsCode, token} {
		if strings.Contains(text, s) {
			t.Errorf("secret %q leaked into logs or errors:\n%s", s, text)
		}
	}
}

func TestTransport(t *testing.T) {
	t.Parallel()

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c := New(Options{BaseURL: "http://" + addr, Logger: slog.New(slog.DiscardHandler)})
		_, err = c.SendSubscribe(t.Context(), "T", SubscribeMessage{})
		var re *RequestError
		if !errors.As(err, &re) || re.Written {
			t.Fatalf("err = %#v, want unwritten *RequestError", err)
		}
		if Classify(err) != Retry || Reason(err) != "connection_refused" {
			t.Errorf("Classify = %v, Reason = %q; want retry, connection_refused", Classify(err), Reason(err))
		}
	})

	t.Run("HangUpAfterReadingBody", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			conn.Close()
		}))
		t.Cleanup(srv.Close)
		c, _ := newTestClient(t, srv, Options{})
		_, err := c.SendSubscribe(t.Context(), "T", SubscribeMessage{ToUser: "o"})
		if Classify(err) != Unknown {
			t.Errorf("Classify = %v (%v), want unknown", Classify(err), err)
		}
		if Reason(err) != "no_answer" {
			t.Errorf("Reason = %q, want no_answer", Reason(err))
		}
	})

	t.Run("TimeoutWaitingForAnswer", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		c, _ := newTestClient(t, srv, Options{Timeout: 100 * time.Millisecond})
		_, err := c.SendSubscribe(t.Context(), "T", SubscribeMessage{ToUser: "o"})
		if Classify(err) != Unknown || Reason(err) != "timeout" {
			t.Errorf("Classify = %v, Reason = %q (%v); want unknown, timeout", Classify(err), Reason(err), err)
		}
	})

	t.Run("HTTPClientTimeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		hc := srv.Client()
		hc.Timeout = 100 * time.Millisecond
		c := New(Options{BaseURL: srv.URL, HTTPClient: hc, Logger: slog.New(slog.DiscardHandler)})
		err := c.SendTemplate(t.Context(), "T", TemplateMessage{})
		if Classify(err) != Unknown || Reason(err) != "timeout" {
			t.Errorf("Classify = %v, Reason = %q (%v); want unknown, timeout", Classify(err), Reason(err), err)
		}
	})
}

func TestCode2Session(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method != http.MethodGet || r.URL.Path != "/sns/jscode2session" ||
			q.Get("appid") != "wx1" || q.Get("secret") != "S" || q.Get("js_code") != "C" ||
			q.Get("grant_type") != "authorization_code" {
			answer(200, `{"errcode":40013,"errmsg":"bad request"}`)(w, r)
			return
		}
		answer(200, `{"openid":"o1","session_key":"k1","unionid":"u1"}`)(w, r)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv, Options{})
	s, err := c.Code2Session(t.Context(), "wx1", "S", "C")
	if err != nil {
		t.Fatal(err)
	}
	if s != (Session{OpenID: "o1", UnionID: "u1", SessionKey: "k1"}) {
		t.Errorf("Session = %+v", s)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/cgi-bin/stable_token":
			var b map[string]any
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil ||
				b["grant_type"] != "client_credential" || b["appid"] != "wx1" || b["secret"] != "S" || b["force_refresh"] != true {
				answer(200, `{"errcode":47001,"errmsg":"data format error"}`)(w, r)
				return
			}
			answer(200, `{"access_token":"STABLE","expires_in":7000}`)(w, r)
		case r.Method == http.MethodGet && r.URL.Path == "/cgi-bin/token":
			q := r.URL.Query()
			if q.Get("grant_type") != "client_credential" || q.Get("appid") != "wx1" || q.Get("secret") != "S" {
				answer(200, `{"errcode":40002,"errmsg":"invalid grant_type"}`)(w, r)
				return
			}
			answer(200, `{"access_token":"LEGACY","expires_in":7200}`)(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv, Options{Now: func() time.Time { return now }})

	t.Run("Stable", func(t *testing.T) {
		tok, err := c.StableToken(t.Context(), "wx1", "S", true)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "STABLE" || !tok.ExpiresAt.Equal(now.Add(7000*time.Second)) {
			t.Errorf("Token = %+v", tok)
		}
	})
	t.Run("Legacy", func(t *testing.T) {
		tok, err := c.Token(t.Context(), "wx1", "S")
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "LEGACY" || !tok.ExpiresAt.Equal(now.Add(7200*time.Second)) {
			t.Errorf("Token = %+v", tok)
		}
	})
}

func TestSendBodies(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = r.Method + " " + r.URL.Query().Get("access_token") + " " + r.Header.Get("Content-Type") + " " + string(b)
		mu.Unlock()
		answer(200, `{"errcode":0,"errmsg":"ok"}`)(w, r)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv, Options{})

	_, err := c.SendSubscribe(t.Context(), "TOK", SubscribeMessage{
		ToUser: "o1", TemplateID: "T1", Data: map[string]Value{"thing1": {Value: "hi"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SendTemplate(t.Context(), "TOK", TemplateMessage{
		ToUser: "o1", TemplateID: "T2", FormID: "F1", Page: "pages/a",
		Data: map[string]TemplateValue{"keyword1": {Value: "v", Color: "#173177"}}, EmphasisKeyword: "keyword1.DATA",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/cgi-bin/message/subscribe/send":       `POST TOK application/json {"touser":"o1","template_id":"T1","data":{"thing1":{"value":"hi"}}}`,
		"/cgi-bin/message/wxopen/template/send": `POST TOK application/json {"touser":"o1","template_id":"T2","page":"pages/a","form_id":"F1","data":{"keyword1":{"value":"v","color":"#173177"}},"emphasis_keyword":"keyword1.DATA"}`,
	}
	mu.Lock()
	defer mu.Unlock()
	for path, w := range want {
		if got[path] != w {
			t.Errorf("%s:\n got %s\nwant %s", path, got[path], w)
		}
	}
}

// errOnly drops SendSubscribe's msgid where a test wants only the error.
func errOnly(_ string, err error) error { return err }

// TestSendSubscribeMsgID checks the msgid of a successful send is decoded exactly:
// 2^53+1 is the first integer float64 cannot hold, so a float64 decode turns it into
// 2^53. WeChat sends it as a number; some answers carry it as a string, and not every
// answer has one.
func TestSendSubscribeMsgID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{"Number", `{"errcode":0,"errmsg":"ok","msgid":9007199254740993}`, "9007199254740993"},
		{"String", `{"errcode":0,"errmsg":"ok","msgid":"9007199254740993"}`, "9007199254740993"},
		{"MaxInt64", `{"errcode":0,"errmsg":"ok","msgid":9223372036854775807}`, "9223372036854775807"},
		{"Absent", `{"errcode":0,"errmsg":"ok"}`, ""},
		{"Null", `{"errcode":0,"errmsg":"ok","msgid":null}`, ""},
		{"NotAnInteger", `{"errcode":0,"errmsg":"ok","msgid":1.5}`, ""}, // sent all the same
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(answer(200, tt.body))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, srv, Options{})
			id, err := c.SendSubscribe(t.Context(), "TOKEN", SubscribeMessage{ToUser: "o1", TemplateID: "T"})
			if err != nil || id != tt.want {
				t.Errorf("SendSubscribe = %q, %v; want %q", id, err, tt.want)
			}
		})
	}
}
