package badinput_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"minipush/internal/dev/testenv"
	"minipush/internal/session"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// kind is the sort of bad input a case sends. Every route of the template must have at
// least one case of every kind.
type kind string

const (
	malformed kind = "malformed"     // not the format at all: bad or truncated JSON, wrong content type, binary junk
	oversized kind = "oversized"     // over a documented limit, or API Gateway's payload limit
	wrongType kind = "wrongly typed" // the format, with wrong types, unknown fields, bad enum values
	forged    kind = "forged"        // credentials that are missing, garbage, expired, another app's, wrongly signed
	replayed  kind = "replayed"      // a request sent again: refused, or idempotent (2xx, nothing changed)
)

var kinds = []kind{malformed, oversized, wrongType, forged, replayed}

// tcase is one bad request and the answer it must get.
type tcase struct {
	route string // the template route it reaches ("METHOD path" as in template.yaml); "" for none
	op    string // the admin operation behind the greedy admin route, e.g. "POST campaigns/{id}/audience"
	kind  kind
	name  string
	req   request
	want  int
	// code is the error code of the {code, message} answer; "" when the answer is
	// API Gateway's own ({"message"} only: 404 no route, 413 over the payload limit)
	// or a 2xx.
	code string
	// says is part of the message (or, for a 2xx, of the body): what was wrong.
	says string
	// rateOf is the rate-limit key (the one collect passes to the limiter) whose
	// counter the request may (and must) raise by one: the upload limiter counts every
	// upload that carries a valid grant, before the store knows it is a duplicate, and
	// the login limiter every code WeChat refuses (valid logins are not counted). Nothing
	// else may change.
	rateOf string
	// pushClaim, on an acknowledged push, means the request may (and must) add one
	// remembered push URL (a state item push#<appid>#…), and nothing else.
	pushClaim bool
}

// TestBadInput starts the whole system, stores a fixture through the public API, and
// sends every case over HTTP to the emulated API Gateway: each must get its status with a
// clear {code, message} (or the expected 2xx for an idempotent replay), echo no secret,
// and leave every table and queue exactly as before, read back after each case.
//
// "Nothing changed" is strict: every item of every table, byte for byte, and every
// queue's counts. The collect rate limiter needs no exclusion for refused requests: it
// runs only after authentication and validation, so a 400/401/413/422 never reaches
// it (and a 429 is a failed conditional update). The one exclusion is the idempotent
// re-upload (rateOf): a 200 whose only change must be its caller's counter, up by one.
// Background work cannot move the snapshot: the runner's TTL reaper is off, no
// campaign is due so the planner's ticks only read, and no queue has messages.
func TestBadInput(t *testing.T) {
	began := time.Now()
	s := startSystem(t)
	fx := setUp(t, s)
	cases := fx.cases()
	checkCoverage(t, cases)
	t.Logf("system up and fixture stored in %s; %d cases", time.Since(began).Round(time.Millisecond), len(cases))

	secrets := map[string]string{
		"operator token": s.operator, "scoped operator token": s.scoped, "session signing key": string(s.key), "app secret": demo.Secret,
		"other app's secret": other.Secret, "event token": demo.EventToken, "session token": fx.token,
	}
	base := s.snapshot(t)
	// The fixture's two valid logins came from this machine's address and wrote no
	// login counter: only refused codes are counted per source.
	if n := rateCount(base, "session#"+session.Pseudonym(s.key, "ip", "127.0.0.1")); n != 0 {
		t.Fatalf("the fixture's valid logins counted %d against their source, want 0", n)
	}
	// The fixture is in the snapshot, so "unchanged" compares real data.
	for table, least := range map[string]int{"GrantsTable": 3, "UsersTable": 3, "CampaignsTable": 3, "AudienceTable": 2, "StateTable": 1} {
		if n := len(base.tables[table]); n < least {
			t.Fatalf("the snapshot has %d items of %s, want the fixture's %d or more", n, table, least)
		}
	}
	for _, tc := range cases {
		t.Run(string(tc.kind)+"/"+tc.name, func(t *testing.T) {
			a := s.do(t, tc.req)
			checkAnswer(t, tc, a)
			for what, v := range secrets {
				leaked(t, a, what, v)
			}
			if tok, ok := strings.CutPrefix(tc.req.header["Authorization"], "Bearer "); ok && len(tok) >= 16 {
				leaked(t, a, "the presented token", tok)
			}
			after := s.snapshot(t)
			if tc.pushClaim {
				isClaim := func(table, item string) bool {
					return table == "StateTable" && strings.Contains(item, `"pk":"push#`+demo.AppID+`#`)
				}
				if d := diff(base, after, isClaim); d != "" {
					t.Fatalf("storage changed beyond the push's URL:\n%s", d)
				}
				if d := diff(base, after, nil); strings.Contains(d, "\n") || !strings.HasPrefix(d, "StateTable: + ") {
					t.Fatalf("want exactly one remembered push URL added, got:\n%s", d)
				}
				base = after
				return
			}
			if tc.rateOf == "" {
				if d := diff(base, after, nil); d != "" {
					t.Fatalf("%d answer, but storage changed:\n%s", a.status, d)
				}
				return
			}
			// Only the caller's counter may differ, and by exactly one request.
			isRate := func(table, item string) bool {
				return table == "StateTable" && strings.Contains(item, `"pk":"`+rateKey(tc.rateOf)+`"`)
			}
			if d := diff(base, after, isRate); d != "" {
				t.Fatalf("storage changed beyond the rate counter:\n%s", d)
			}
			if b, a := rateCount(base, tc.rateOf), rateCount(after, tc.rateOf); a != b+1 {
				t.Fatalf("rate counter %d -> %d, want one more", b, a)
			}
			base = after
		})
	}

	t.Run("LogsHoldNoSecret", func(t *testing.T) {
		logs := s.logs.String()
		// Both functions' loggers reach the capture: the check below is not vacuous.
		for _, want := range []string{`"msg":"request failed"`, `"msg":"admin: operator request"`} {
			if !strings.Contains(logs, want) {
				t.Fatalf("captured logs lack %s: the functions' logs were not captured", want)
			}
		}
		for what, v := range secrets {
			if strings.Contains(logs, v) {
				t.Errorf("the logs hold the %s", what)
			}
		}
		for _, tc := range cases {
			if tok, ok := strings.CutPrefix(tc.req.header["Authorization"], "Bearer "); ok && len(tok) >= 16 && strings.Contains(logs, tok) {
				t.Errorf("the logs hold the token presented by %s", tc.name)
			}
		}
	})
	t.Run("OpenAPI", fx.checkOpenAPI)
	t.Logf("%d cases in %s", len(cases), time.Since(began).Round(time.Millisecond))
}

// checkCoverage fails unless every HttpApi route of template.yaml has cases of every
// kind, every admin operation has cases, and every case's route is in the template: a
// new route cannot ship without its bad input.
func checkCoverage(t *testing.T, cases []tcase) {
	t.Helper()
	tpl := testenv.Template(t)
	routes := map[string]map[kind]int{}
	for _, id := range tpl.FunctionIDs() {
		for _, ev := range tpl.Functions[id].Events {
			if ev.HTTPAPI != nil {
				routes[ev.HTTPAPI.Method+" "+ev.HTTPAPI.Path] = map[kind]int{}
			}
		}
	}
	if len(routes) == 0 {
		t.Fatal("template.yaml has no HttpApi routes: the suite would check nothing")
	}
	ops := map[string]int{}
	for _, op := range adminOps {
		ops[op] = 0
	}
	for _, tc := range cases {
		if tc.route == "" {
			continue
		}
		byKind, ok := routes[tc.route]
		if !ok {
			t.Fatalf("case %s names route %q, which template.yaml does not have", tc.name, tc.route)
		}
		if !reaches(tc.route, tc.req) {
			t.Fatalf("case %s: %s %s does not reach route %s", tc.name, tc.req.method, tc.req.target, tc.route)
		}
		byKind[tc.kind]++
		if tc.route == adminRoute {
			if _, ok := ops[tc.op]; !ok {
				t.Fatalf("case %s names admin operation %q, not in adminOps", tc.name, tc.op)
			}
			ops[tc.op]++
		}
	}
	for _, r := range slices.Sorted(maps.Keys(routes)) {
		for _, k := range kinds {
			if routes[r][k] == 0 {
				t.Errorf("route %s has no %s case", r, k)
			}
		}
		t.Logf("route %-28s %v", r, routes[r])
	}
	if _, ok := routes[adminRoute]; !ok {
		t.Errorf("template.yaml no longer has %s: update adminOps and the admin cases", adminRoute)
	}
	for _, op := range adminOps {
		if ops[op] == 0 {
			t.Errorf("admin operation %s has no case", op)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// reaches reports whether req matches the template route (method and path, {proxy+}
// greedy), so a case cannot claim coverage of a route it does not hit.
func reaches(route string, req request) bool {
	method, path, _ := strings.Cut(route, " ")
	if method != "ANY" && method != req.method {
		return false
	}
	p, _, _ := strings.Cut(req.target, "?")
	if prefix, ok := strings.CutSuffix(path, "{proxy+}"); ok {
		return strings.HasPrefix(p, prefix) && len(p) > len(prefix)
	}
	return p == path
}

// checkAnswer checks the status and that the body says clearly what was wrong.
func checkAnswer(t *testing.T, tc tcase, a answer) {
	t.Helper()
	if a.status != tc.want {
		t.Fatalf("status %d, want %d; body %s", a.status, tc.want, a.body)
	}
	if a.status < 400 {
		if !strings.Contains(string(a.body), tc.says) {
			t.Fatalf("body %s, want it to say %q", a.body, tc.says)
		}
		return
	}
	if ct := a.headers.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var eb struct {
		Code    *string `json:"code"`
		Message string  `json:"message"`
	}
	if err := json.Unmarshal(a.body, &eb); err != nil {
		t.Fatalf("body %q is not JSON: %v", a.body, err)
	}
	switch {
	case tc.code == "" && eb.Code != nil:
		t.Fatalf("body %s: want API Gateway's own answer, without a code", a.body)
	case tc.code != "" && (eb.Code == nil || *eb.Code != tc.code):
		t.Fatalf("body %s: want code %q", a.body, tc.code)
	case eb.Message == "" || !strings.Contains(strings.ToLower(eb.Message), strings.ToLower(tc.says)):
		t.Fatalf("message %q, want it to say %q", eb.Message, tc.says)
	}
	if a.status == http.StatusTooManyRequests && a.headers.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	t.Logf("%d %s", a.status, a.body)
}

// leaked fails when an answer's body or headers hold a secret.
func leaked(t *testing.T, a answer, what, v string) {
	t.Helper()
	if v == "" {
		return
	}
	if strings.Contains(string(a.body), v) {
		t.Errorf("the answer's body holds the %s", what)
	}
	for k, vs := range a.headers {
		for _, hv := range vs {
			if strings.Contains(hv, v) {
				t.Errorf("the answer's %s header holds the %s", k, what)
			}
		}
	}
}
