// Package sandbox is a strict in-process stand-in for the WeChat server API, for
// tests and local runs. It keeps apps, users, login codes, tokens, templates and
// grants the way WeChat does, answers every mistake with WeChat's errcode (and an
// errmsg ending in " rid: ..."), records what it accepted, and injects faults (error
// rates, latency, lost answers) so the sender's classification can be exercised.
//
// It is an http.Handler: mount it on an httptest.Server or a listener on 127.0.0.1.
// Tests drive it through Go methods; other processes through the JSON control API
// under /_sandbox/ (see ControlRoutes).
package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"minipush/internal/logs"
)

// WeChat endpoints the sandbox serves.
const (
	PathCode2Session  = "/sns/jscode2session"
	PathToken         = "/cgi-bin/token"
	PathStableToken   = "/cgi-bin/stable_token"
	PathSubscribeSend = "/cgi-bin/message/subscribe/send"
	PathTemplateSend  = "/cgi-bin/message/wxopen/template/send"
)

// Lifetimes and limits WeChat documents (WECHAT.md §1, §3, §4).
const (
	DefaultTokenTTL      = 7200 * time.Second
	TokenOverlap         = 5 * time.Minute // old /cgi-bin/token token keeps working; stable renews this early
	CodeTTL              = 5 * time.Minute
	FormIDValidity       = 7 * 24 * time.Hour
	ForceRefreshPerDay   = 20
	ForceRefreshInterval = 30 * time.Second
	maxBody              = 1 << 20
)

// App is a mini-program the sandbox knows.
type App struct {
	AppID  string `json:"appid"`
	Secret string `json:"secret"`
}

// Options configures a Sandbox. The zero value gives an empty sandbox with real time.
type Options struct {
	Apps     []App
	Now      func() time.Time // must be safe for concurrent use; default time.Now
	TokenTTL time.Duration    // default DefaultTokenTTL
	Seed     uint64           // seeds every random choice (tokens, ids, fault draws)
	Logger   *slog.Logger     // default discards
}

// Sandbox is the WeChat stand-in. It is safe for concurrent use.
type Sandbox struct {
	now      func() time.Time
	tokenTTL time.Duration
	log      *slog.Logger
	control  *http.ServeMux

	mu          sync.Mutex
	rng         *rand.Rand
	apps        map[string]*app
	faults      []*faultState
	accepted    []Message
	stats       Stats
	setupErrors []string
	rcpt        receipts // sent-event pushes (receipts.go), under their own lock

	quotas map[string]*dailyQuota // subscribe/send daily quotas by appid (quota.go)
}

// app is one mini-program's state at WeChat.
type app struct {
	id, secret    string
	users         map[string]*user      // by openid
	codes         map[string]*jsCode    // by js_code
	forms         map[string]*formGrant // by form_id
	subTemplates  map[string]map[string]string
	tmplInfo      map[string]*templateInfo // by subscribe template id (templates.go); nil until set
	formTemplates map[string][]string
	pages         map[string]bool // nil: any "pages/..." path
	tokens        map[string]*token
	stable        *token // current stable_token token
	legacy        *token // current /cgi-bin/token token
	forced        []time.Time
}

type user struct {
	openID    string
	subGrants map[string]int // template id -> one-time grants left
	cs        csWindow       // customer-service window (custom.go)
}

type jsCode struct {
	openID string
	issued time.Time
	used   bool
}

type formGrant struct {
	openID string
	kind   string
	issued time.Time
	uses   int
}

type token struct {
	value   string
	expires time.Time
	dies    time.Time // zero, or when a superseded legacy token stops working
}

// Message is a send the sandbox accepted.
type Message struct {
	AppID      string            `json:"appid"`
	API        string            `json:"api"` // PathSubscribeSend or PathTemplateSend
	ToUser     string            `json:"touser"`
	TemplateID string            `json:"template_id"`
	FormID     string            `json:"form_id,omitempty"`
	Page       string            `json:"page,omitempty"`
	Data       map[string]string `json:"data"`
	At         time.Time         `json:"at"`
	// AnswerLost is set when a fault dropped the answer after the message was
	// accepted: the sender saw a timeout or a hang-up, yet the message went out.
	AnswerLost bool `json:"answer_lost"`
	// MsgID is the msgid a subscribe send was answered with (0 for a template send),
	// a string in JSON because it is above 2^53.
	MsgID int64 `json:"msgid,omitempty,string"`
}

// Stats counts what the sandbox saw.
type Stats struct {
	Requests       map[string]int `json:"requests"`        // by endpoint path, including faulted ones
	Errcodes       map[int]int    `json:"errcodes"`        // error answers by errcode
	Injected       map[int]int    `json:"injected"`        // of those, answers an errcode fault injected
	TokensIssued   map[string]int `json:"tokens_issued"`   // new tokens by appid (a repeated stable token is not counted)
	ForceRefreshes map[string]int `json:"force_refreshes"` // by appid
	Accepted       int            `json:"accepted"`
	Faults         int            `json:"faults"` // faults fired
	InFlight       int            `json:"in_flight"`
	PeakInFlight   int            `json:"peak_in_flight"` // max concurrent send requests
	SetupErrors    []string       `json:"setup_errors,omitempty"`
}

// New returns a sandbox with opts.Apps registered.
func New(opts Options) *Sandbox {
	s := &Sandbox{
		now:      opts.Now,
		tokenTTL: opts.TokenTTL,
		log:      opts.Logger,
		rng:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		apps:     map[string]*app{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = DefaultTokenTTL
	}
	s.log = logs.Or(s.log)
	s.resetStats()
	for _, a := range opts.Apps {
		s.AddApp(a.AppID, a.Secret)
	}
	s.control = s.controlMux()
	return s
}

func (s *Sandbox) resetStats() {
	s.stats = Stats{
		Requests:       map[string]int{},
		Errcodes:       map[int]int{},
		Injected:       map[int]int{},
		TokensIssued:   map[string]int{},
		ForceRefreshes: map[string]int{},
	}
}

// AddApp registers a mini-program, or changes its secret.
func (s *Sandbox) AddApp(appID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		a.secret = secret
		return
	}
	s.apps[appID] = &app{
		id: appID, secret: secret,
		users:         map[string]*user{},
		codes:         map[string]*jsCode{},
		forms:         map[string]*formGrant{},
		subTemplates:  map[string]map[string]string{},
		formTemplates: map[string][]string{},
		tokens:        map[string]*token{},
	}
}

// wxError is an errcode answer.
type wxError struct {
	code int
	msg  string
}

func errc(code int, format string, args ...any) *wxError {
	msg := errmsgs[code]
	if format != "" {
		msg = fmt.Sprintf(format, args...)
	}
	return &wxError{code: code, msg: msg}
}

// errmsgs are WeChat's texts for the codes the sandbox answers.
var errmsgs = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40002: "invalid grant_type",
	40003: "invalid openid",
	40013: "invalid appid",
	40029: "invalid code",
	40037: "invalid template_id",
	40125: "invalid appsecret",
	40163: "code been used",
	41001: "access_token missing",
	41008: "missing code",
	41028: "invalid form id",
	41029: "form id used count reach limit",
	41030: "invalid page",
	42001: "access_token expired",
	43002: "require POST method",
	43101: "user refuse to accept the msg",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit mustslower retry next minute",
	47001: "data format error",
	47003: "argument invalid!",
}

// reply is what an endpoint decided: a JSON body, or an errcode, and the index in
// s.accepted of the message it recorded (-1 if none).
type reply struct {
	body    any
	err     *wxError
	message int
}

func okReply(body any) reply     { return reply{body: body, message: -1} }
func failReply(e *wxError) reply { return reply{err: e, message: -1} }
func acceptedReply(i int) reply {
	return reply{body: map[string]any{"errcode": 0, "errmsg": "ok"}, message: i}
}
func (s *Sandbox) ridLocked() string {
	return fmt.Sprintf("%08x-%08x-%08x", s.rng.Uint32(), s.rng.Uint32(), s.rng.Uint32())
}

// endpoint is one WeChat API: its method and handler. Handlers run under s.mu.
type endpoint struct {
	method string
	send   bool
	handle func(s *Sandbox, r *http.Request, body []byte) reply
}

var endpoints = map[string]endpoint{
	PathCode2Session:  {http.MethodGet, false, (*Sandbox).code2Session},
	PathToken:         {http.MethodGet, false, (*Sandbox).legacyToken},
	PathStableToken:   {http.MethodPost, false, (*Sandbox).stableToken},
	PathSubscribeSend: {http.MethodPost, true, (*Sandbox).subscribeSend},
	PathTemplateSend:  {http.MethodPost, true, (*Sandbox).templateSend},
}

// ServeHTTP serves the WeChat endpoints and the control API under /_sandbox/.
// Unknown paths get a 404 so a wrong base URL or path never looks like success.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		s.control.ServeHTTP(w, r)
		return
	}
	ep, found := endpoints[r.URL.Path]
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]any{"errcode": 404, "errmsg": "sandbox: no such endpoint " + r.URL.Path})
		return
	}
	// Read the whole body first so a client sees its request as written before any
	// fault decides what happens to it.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return // the client went away; nobody to answer
	}

	s.mu.Lock()
	s.stats.Requests[r.URL.Path]++
	if ep.send {
		s.stats.InFlight++
		s.stats.PeakInFlight = max(s.stats.PeakInFlight, s.stats.InFlight)
		defer func() {
			s.mu.Lock()
			s.stats.InFlight--
			s.mu.Unlock()
		}()
	}
	delay, fault := s.drawFaultsLocked(r.URL.Path, s.requestAppLocked(r, body))
	s.mu.Unlock()

	if delay > 0 && !wait(r, delay) {
		return
	}
	switch fault.kind() {
	case FaultHangUpBefore:
		hangUp(w)
		return
	case FaultGatewayBefore:
		gatewayError(w, fault.Status)
		return
	case FaultErrcode:
		s.mu.Lock()
		e := errc(fault.ErrCode, "")
		if e.msg == "" {
			e.msg = "sandbox injected error"
		}
		resp := s.errorBodyLocked(e)
		s.stats.Injected[e.code]++
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, resp)
		return
	}

	s.mu.Lock()
	var rep reply
	switch {
	case r.Method != ep.method && ep.method == http.MethodPost:
		rep = failReply(errc(43002, ""))
	case r.Method != ep.method:
		rep = failReply(errc(43002, "require GET method"))
	case len(body) > maxBody:
		rep = failReply(errc(47001, "data format error, body over 1 MiB"))
	default:
		rep = ep.handle(s, r, body)
	}
	var resp any = rep.body
	if rep.err != nil {
		resp = s.errorBodyLocked(rep.err)
	}
	lost := fault.kind() == FaultLostAnswer || fault.kind() == FaultHangUpAfter || fault.kind() == FaultGatewayAfter
	if lost && rep.message >= 0 {
		s.accepted[rep.message].AnswerLost = true
	}
	s.mu.Unlock()

	switch fault.kind() {
	case FaultLostAnswer:
		// Stall past the client's timeout, then hang up: the client cannot know the
		// message went out.
		wait(r, fault.Stall)
		hangUp(w)
	case FaultHangUpAfter:
		hangUp(w)
	case FaultGatewayAfter:
		gatewayError(w, fault.Status)
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

// gatewayError answers as a load balancer or proxy in front of WeChat does: an HTML
// page with the status and no errcode.
func gatewayError(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html><head><title>%d %s</title></head><body><center><h1>%d %s</h1></center></body></html>\n",
		status, http.StatusText(status), status, http.StatusText(status))
}

// errorBodyLocked builds an error answer with WeChat's rid suffix and counts it.
func (s *Sandbox) errorBodyLocked(e *wxError) map[string]any {
	s.stats.Errcodes[e.code]++
	return map[string]any{"errcode": e.code, "errmsg": e.msg + " rid: " + s.ridLocked()}
}

// wait blocks for d or until the client gives up; it reports whether d passed.
func wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// hangUp closes the connection without an answer, as a dropped link would.
func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	// HTTP/2 cannot be hijacked; ErrAbortHandler is net/http's sanctioned way to
	// abort a response without answering (it is recovered and not logged).
	panic(http.ErrAbortHandler)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		fmt.Fprintf(&buf, `{"errcode":-1,"errmsg":"sandbox: encode answer: %s"}`, strings.ReplaceAll(err.Error(), `"`, `'`))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// randStringLocked returns n random characters from alphabet.
func (s *Sandbox) randStringLocked(n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[s.rng.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	tokenChars = alnum + "_-"
	hexChars   = "0123456789abcdef"
)

// appLocked returns the app or records a setup error: the Go setup methods have no
// error result (tests call them inline), so mistakes surface in Stats.SetupErrors and
// the log instead of vanishing.
func (s *Sandbox) appLocked(appID, op string) *app {
	a, ok := s.apps[appID]
	if !ok {
		s.setupErrorLocked(fmt.Sprintf("%s: unknown appid %q", op, appID))
	}
	return a
}

func (s *Sandbox) setupErrorLocked(msg string) {
	s.setupErrors = append(s.setupErrors, msg)
	s.log.Error("sandbox setup error", "error", msg)
}

// Accepted returns a copy of every message accepted so far, in order.
func (s *Sandbox) Accepted() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.accepted))
	for i, m := range s.accepted {
		m.Data = clone(m.Data)
		out[i] = m
	}
	return out
}

// Stats returns a snapshot of the counters.
func (s *Sandbox) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = clone(st.Requests)
	st.Errcodes = clone(st.Errcodes)
	st.Injected = clone(st.Injected)
	st.TokensIssued = clone(st.TokensIssued)
	st.ForceRefreshes = clone(st.ForceRefreshes)
	st.Accepted = len(s.accepted)
	st.SetupErrors = append([]string(nil), s.setupErrors...)
	return st
}

func clone[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
