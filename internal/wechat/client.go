// Package wechat is the adapter for the WeChat mini-program server API: login
// (code2Session), access tokens, and the subscribe and legacy template sends.
//
// Every answer goes through one place, checkResponse, which turns WeChat's
// {"errcode":N,"errmsg":"..."} (usually sent with HTTP 200) into an *Error, and every
// failure is classified at this boundary (see Classify) so callers decide between
// retry, token refresh, next grant, failing the recipient and aborting without
// knowing WeChat's error table.
package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// Defaults applied by New.
const (
	DefaultBaseURL = "https://api.weixin.qq.com"
	DefaultTimeout = 5 * time.Second
	// MaxResponseBytes caps how much of an answer is read: WeChat's answers are a few
	// hundred bytes, so anything bigger is a proxy error page or an attack.
	MaxResponseBytes = 1 << 20
)

// Options configures a Client. The zero value is usable.
type Options struct {
	BaseURL    string        // default DefaultBaseURL; tests point it at a sandbox
	HTTPClient *http.Client  // default a new client; inject one for proxies or transports
	Timeout    time.Duration // per call, applied through the context; default DefaultTimeout
	Logger     *slog.Logger  // nil discards
	Now        func() time.Time
}

// Client calls the WeChat server API. It is safe for concurrent use. It holds no
// credentials: app secrets and access tokens are passed per call, so one Client serves
// every mini-program and the token cache lives elsewhere (WeChat wants one token owner).
type Client struct {
	BaseURL    *url.URL
	HTTPClient *http.Client
	Timeout    time.Duration
	Logger     *slog.Logger
	Now        func() time.Time // computes Token.ExpiresAt; a field so tests control it
}

// New returns a Client with the defaults filled in. An unparsable BaseURL falls back
// to DefaultBaseURL and is logged, because failing later with a clear errcode-free
// transport error would be harder to diagnose than a log line at start-up.
func New(opts Options) *Client {
	c := &Client{
		HTTPClient: opts.HTTPClient,
		Timeout:    opts.Timeout,
		Logger:     opts.Logger,
		Now:        opts.Now,
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	c.Logger = logs.Or(c.Logger)
	if c.Now == nil {
		c.Now = time.Now
	}
	raw := opts.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		c.Logger.Error("wechat: bad base URL, using default", "base_url", raw)
		u, _ = url.Parse(DefaultBaseURL)
	}
	c.BaseURL = u
	return c
}

// RequestError is a call that got no WeChat answer: the connection failed, timed out
// or was dropped. Written tells whether the whole request had been sent, which decides
// whether WeChat may have acted on it (see Classify). The underlying *url.Error is
// unwrapped on purpose: its text contains the full URL, and with it the access_token,
// secret or js_code from the query.
type RequestError struct {
	Method  string
	Path    string // URL path only, never the query
	Written bool
	Err     error
}

// Error implements the error interface.
func (e *RequestError) Error() string {
	state := "before the request was sent"
	if e.Written {
		state = "after the request was sent"
	}
	return fmt.Sprintf("wechat: %s %s: %v (%s)", e.Method, e.Path, e.Err, state)
}

// Unwrap returns the transport cause, so errors.Is(err, context.DeadlineExceeded) works.
func (e *RequestError) Unwrap() error { return e.Err }

// call is one API call: where it goes, what it carries, and which values must never
// show up in an error or a log line even if WeChat echoes them.
type call struct {
	method  string
	path    string
	query   url.Values
	body    any // JSON-encoded when non-nil
	secrets []string
}

// do performs c and decodes a successful answer into out (nil to discard).
func (c *Client) do(ctx context.Context, cl call, out any) (err error) {
	defer observe(ctx, cl.path, time.Now(), &err)
	u := *c.BaseURL
	u.Path = strings.TrimRight(u.Path, "/") + cl.path
	u.RawQuery = cl.query.Encode()

	var body io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return fmt.Errorf("wechat: %s: encode body: %w", cl.path, err)
		}
		body = bytes.NewReader(b)
	}

	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// WroteRequest is the line between "nothing reached WeChat" (safe to retry) and
	// "WeChat may have acted" (the outcome is unknown); net/http's errors alone
	// cannot tell a refused dial from a reset after the body was sent.
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return fmt.Errorf("wechat: %s: build request: %w", cl.path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		rerr := &RequestError{Method: cl.method, Path: cl.path, Written: written.Load(), Err: unwrapURLError(err)}
		c.Logger.LogAttrs(ctx, slog.LevelWarn, "wechat call failed",
			slog.String("api", cl.path), slog.Bool("written", rerr.Written),
			slog.String("err", redact(rerr.Err.Error(), cl.secrets)),
			slog.Duration("elapsed", time.Since(start)))
		return rerr
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		// Headers arrived, so WeChat has the request; losing the body means the
		// outcome is unknown.
		return &RequestError{Method: cl.method, Path: cl.path, Written: true, Err: unwrapURLError(err)}
	}
	if err := c.checkResponse(ctx, cl, resp, raw); err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return c.malformed(ctx, cl, resp.StatusCode, err)
		}
	}
	c.Logger.LogAttrs(ctx, slog.LevelDebug, "wechat call ok",
		slog.String("api", cl.path), slog.Duration("elapsed", time.Since(start)))
	return nil
}

// errorBody is the error envelope every WeChat API shares.
type errorBody struct {
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// checkResponse is the one place an answer becomes an error: a non-zero errcode
// (WeChat sends those with HTTP 200), a non-2xx status, an oversized or non-JSON
// body. It logs the rid so WeChat support can trace the request.
func (c *Client) checkResponse(ctx context.Context, cl call, resp *http.Response, raw []byte) error {
	if len(raw) > MaxResponseBytes {
		return c.malformed(ctx, cl, resp.StatusCode, errors.New("response body over 1 MiB"))
	}
	var eb errorBody
	jsonErr := json.Unmarshal(raw, &eb)
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode < 300
	switch {
	case jsonErr == nil && eb.ErrCode != nil && *eb.ErrCode != 0:
		// The errcode wins over the status: it says what WeChat decided.
	case !ok2xx:
		eb = errorBody{ErrMsg: http.StatusText(resp.StatusCode)}
	case jsonErr != nil:
		return c.malformed(ctx, cl, resp.StatusCode, jsonErr)
	default:
		return nil
	}
	code := 0
	if eb.ErrCode != nil {
		code = *eb.ErrCode
	}
	msg := redact(eb.ErrMsg, cl.secrets)
	e := &Error{Code: code, Msg: msg, RID: ExtractRID(msg), HTTPStatus: resp.StatusCode, API: cl.path}
	c.Logger.LogAttrs(ctx, slog.LevelWarn, "wechat error",
		slog.String("api", cl.path), slog.Int("errcode", code), slog.String("errmsg", msg),
		slog.String("rid", e.RID), slog.Int("http_status", resp.StatusCode),
		slog.String("action", Classify(e).String()), slog.String("reason", Reason(e)))
	return e
}

// malformed reports an answer that came back but cannot be read. WeChat got the
// request, so the outcome of a send is unknown (see Classify).
func (c *Client) malformed(ctx context.Context, cl call, status int, cause error) error {
	e := &Error{Msg: "malformed response: " + redact(cause.Error(), cl.secrets), HTTPStatus: status, API: cl.path}
	c.Logger.LogAttrs(ctx, slog.LevelWarn, "wechat malformed response",
		slog.String("api", cl.path), slog.Int("http_status", status), slog.String("err", e.Msg))
	return e
}

// unwrapURLError drops the *url.Error layer because its message carries the URL
// and with it the credentials in the query.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact removes the call's secrets from text WeChat or net/http produced, in case
// either echoes them.
func redact(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
			s = strings.ReplaceAll(s, url.QueryEscape(v), "[redacted]")
		}
	}
	return s
}

// observe records the call's latency by API and, when WeChat refused it for quota
// (45009 daily, 45011 per minute, or an HTTP 429 from its gateway), a WeChat throttle,
// in the invocation's metrics.
func observe(ctx context.Context, path string, start time.Time, err *error) {
	rec := metrics.FromContext(ctx)
	if rec == nil {
		return
	}
	rec.Duration(metrics.WeChatLatency, time.Since(start), metrics.Dim{Name: "API", Value: strings.TrimPrefix(path, "/")})
	var we *Error
	if errors.As(*err, &we) && (we.Code == 45009 || we.Code == 45011 || (we.Code == 0 && we.HTTPStatus == http.StatusTooManyRequests)) {
		rec.Add(metrics.Throttles, 1, metrics.Dim{Name: "Service", Value: "WeChat"})
	}
}

// NewHTTPClient returns an HTTP client for WeChat that keeps up to conns idle
// connections to it: net/http's default keeps 2 per host, so a sender with more calls
// in flight would open (and TLS-handshake) a new connection for most of them.
func NewHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(conns, 2)
	tr.MaxIdleConns = max(conns, tr.MaxIdleConns)
	return &http.Client{Transport: tr}
}
