package collect_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/collect"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/session"
	"minipush/internal/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	appID      = "wxcollect0000001"
	appSecret  = "collectsecret"
	eventToken = "collect-event-token"
	sessionKey = "collect-test-session-signing-key"
	tplA       = "TPL-A"
	tplB       = "TPL-B"
)

// fixture is one test's world: its own tables on the shared local stack, a sandbox on
// httptest, and the handler built by the production wiring (lambdaenv) from the function's
// environment as template.yaml resolves it, on a fixed clock.
type fixture struct {
	h   *collect.Handler
	db  *dynamo.DB // the handler's own storage, for reading back
	sb  *sandbox.Sandbox
	now time.Time
	// nonces numbers the message pushes: WeChat signs each push with a nonce of its own.
	nonces atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureEnv(t, nil)
}

// newFixtureEnv is newFixture with extra function environment, as a deployment would set.
func newFixtureEnv(t *testing.T, extra map[string]string) *fixture {
	t.Helper()
	return newFixtureSource(t, extra, "")
}

// newFixtureSource is newFixtureEnv with the app's subscribeSource set in the WeChat secret.
func newFixtureSource(t *testing.T, extra map[string]string, subscribeSource string) *fixture {
	t.Helper()
	return newFixtureApp(t, extra, map[string]any{"subscribeSource": subscribeSource})
}

// newFixtureApp is newFixtureEnv with more fields of the app in the WeChat secret. The
// app has receipts on unless appFields turn them off.
func newFixtureApp(t *testing.T, extra map[string]string, appFields map[string]any) *fixture {
	t.Helper()
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: appID, Secret: appSecret}}, Seed: 3})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	env := testenv.NewWithParams(t, map[string]string{"WeChatBaseURL": srv.URL})
	fnEnv := env.MustFunctionEnv(t, "CollectFunction")
	for _, kv := range env.Endpoints.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		fnEnv[k] = v
	}
	app := map[string]any{"appId": appID, "appSecret": appSecret, "eventToken": eventToken, "receipts": true}
	for k, v := range appFields {
		app[k] = v
	}
	wechatSecret, _ := json.Marshal(map[string]any{"apps": []map[string]any{app}})
	secrets, _ := json.Marshal(map[string]string{"WeChatSecret": string(wechatSecret), "SessionSigningSecret": sessionKey})
	fnEnv[lambdaenv.LocalSecretsEnv] = string(secrets)
	for k, v := range extra {
		fnEnv[k] = v
	}
	h, err := lambdaenv.Collect(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return fnEnv[k] }})
	if err != nil {
		t.Fatal(err)
	}
	db, ok := h.Store.(*dynamo.DB)
	if !ok {
		t.Fatalf("lambdaenv store is %T, want *dynamo.DB", h.Store)
	}
	// A fixed clock in the middle of a minute: the rate limit's window never turns
	// during a test.
	now := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	db.Now = func() time.Time { return now }
	h.Now = db.Now
	h.Log = slog.New(slog.DiscardHandler)
	return &fixture{h: h, db: db, sb: sb, now: now}
}

func request(method, path, body string, headers map[string]string, query url.Values) events.APIGatewayV2HTTPRequest {
	req := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: method + " " + path, RawPath: path, Body: body, Headers: map[string]string{},
		RequestContext: events.APIGatewayV2HTTPRequestContext{RequestID: "req-test", HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path}},
	}
	for k, v := range headers {
		req.Headers[strings.ToLower(k)] = v
	}
	if query != nil {
		req.RawQueryString = query.Encode()
		req.QueryStringParameters = map[string]string{}
		for k := range query {
			req.QueryStringParameters[k] = query.Get(k)
		}
	}
	return req
}

func (f *fixture) do(t *testing.T, req events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	t.Helper()
	resp, err := f.h.Handle(t.Context(), req)
	if err != nil {
		t.Fatalf("Handle returned an error: %v", err)
	}
	return resp
}

// login logs a new sandbox user in through POST /v1/session and returns their openid
// and session token.
func (f *fixture) login(t *testing.T) (openID, token string) {
	t.Helper()
	openID, code := f.sb.NewLogin(appID)
	resp := f.do(t, request("POST", "/v1/session", `{"code":"`+code+`","appId":"`+appID+`"}`, nil, nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", resp.StatusCode, resp.Body)
	}
	var ans collect.SessionAnswer
	if err := json.Unmarshal([]byte(resp.Body), &ans); err != nil || ans.Token == "" {
		t.Fatalf("login answer %s: %v", resp.Body, err)
	}
	if strings.Contains(resp.Body, openID) || strings.Contains(resp.Body, "session_key") {
		t.Fatalf("login answer leaks the openid or session key: %s", resp.Body)
	}
	return openID, ans.Token
}

func (f *fixture) upload(t *testing.T, token, body string) (int, collect.UploadAnswer) {
	t.Helper()
	resp := f.do(t, request("POST", "/v1/grants", body, map[string]string{"Authorization": "Bearer " + token}, nil))
	var ans collect.UploadAnswer
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnprocessableEntity {
		if err := json.Unmarshal([]byte(resp.Body), &ans); err != nil {
			t.Fatalf("upload answer %s: %v", resp.Body, err)
		}
	}
	return resp.StatusCode, ans
}

// grantItems reads a user's stored grants through the adapter. Every grant these tests
// store is live at the fixture's fixed clock, so the live ones are all of them.
func (f *fixture) grantItems(t *testing.T, openID string) []minipush.Grant {
	t.Helper()
	gs, err := f.db.LiveGrants(t.Context(), appID, openID)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// snapshot reads every item of the tables collect writes (grants, users and the state
// table with the rate counters) as sorted canonical JSON, so two snapshots differ when
// any item was added, removed or changed.
func (f *fixture) snapshot(t *testing.T) string {
	t.Helper()
	var all []string
	for _, table := range []string{f.db.Tables.Grants, f.db.Tables.Users, f.db.Tables.State} {
		p := dynamodb.NewScanPaginator(f.db.Client, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
		for p.HasMorePages() {
			out, err := p.NextPage(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var items []map[string]any
			if err := attributevalue.UnmarshalListOfMaps(out.Items, &items); err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				b, err := json.Marshal(it) // map keys are sorted
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, table+" "+string(b))
			}
		}
	}
	sort.Strings(all)
	return strings.Join(all, "\n")
}

// mustUnchanged fails when storage differs from the snapshot taken before, leaving out
// the items whose pk starts with one of except (state the request may write: a rate
// counter, a remembered push URL).
func (f *fixture) mustUnchanged(t *testing.T, before string, except ...string) {
	t.Helper()
	after := f.snapshot(t)
	if b, a := without(before, except), without(after, except); a != b {
		t.Fatalf("storage changed:\nbefore:\n%s\nafter:\n%s", b, a)
	}
}

// without drops the snapshot lines of items whose pk starts with one of prefixes.
func without(snapshot string, prefixes []string) string {
	var keep []string
	for line := range strings.Lines(snapshot) {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.Contains(line, `"pk":"`+p) }) {
			keep = append(keep, strings.TrimSuffix(line, "\n"))
		}
	}
	return strings.Join(keep, "\n")
}

func statuses(ans collect.UploadAnswer) string {
	var s []string
	for _, r := range ans.Results {
		if r.Reason != "" {
			s = append(s, r.Status+":"+r.Reason)
		} else {
			s = append(s, r.Status)
		}
	}
	return strings.Join(s, ",")
}

const mixedBatch = `{"grants":[
	{"type":"form","formId":"form-1","collectedAt":"%s"},
	{"type":"prepay","prepayId":"prepay-1"},
	{"type":"subscribe","key":"tap-1","results":{"TPL-A":"accept","TPL-B":"reject"}},
	{"type":"form","formId":"the formId is a mock one"},
	{"type":"form","formId":""},
	{"type":"coupon","formId":"x"}
]}`

func TestUpload(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	openID, token := f.login(t)
	collected := f.now.Add(-48 * time.Hour)
	body := fmt.Sprintf(mixedBatch, collected.Format(time.RFC3339))

	t.Run("OK", func(t *testing.T) {
		code, ans := f.upload(t, token, body)
		want := "accepted,accepted,accepted,rejected:mock_form_id,rejected:empty,rejected:unknown_type"
		if code != http.StatusOK || statuses(ans) != want {
			t.Fatalf("upload %d %s, want 200 %s", code, statuses(ans), want)
		}
		if ans.Accepted != 3 || ans.Rejected != 3 || ans.Results[2].Templates[tplA] != "accepted" {
			t.Fatalf("answer %+v", ans)
		}
		items := f.grantItems(t, openID)
		if len(items) != 3 {
			t.Fatalf("%d grants stored, want 3", len(items))
		}
		u, err := f.db.GetUser(t.Context(), appID, openID)
		if err != nil {
			t.Fatal(err)
		}
		if u.LiveGrants != 3 || !u.LatestExpiry.Equal(f.now.Add(minipush.DefaultSubscribeRetention)) {
			t.Fatalf("inventory %d %v", u.LiveGrants, u.LatestExpiry)
		}
	})

	t.Run("ReuploadIsDuplicate", func(t *testing.T) {
		code, ans := f.upload(t, token, body)
		want := "duplicate,duplicate,duplicate,rejected:mock_form_id,rejected:empty,rejected:unknown_type"
		if code != http.StatusOK || statuses(ans) != want {
			t.Fatalf("re-upload %d %s, want 200 %s", code, statuses(ans), want)
		}
		if n := len(f.grantItems(t, openID)); n != 3 {
			t.Fatalf("%d grants stored after a re-upload, want 3", n)
		}
	})

	t.Run("SpendableGrantOneQuery", func(t *testing.T) {
		// The form grant collected 2 days ago expires first of the template channel;
		// send reads it with one Query on the expiry index.
		counter := &countingQueries{API: f.db.Client}
		db := &dynamo.DB{Client: counter, Tables: f.db.Tables, Now: f.db.Now}
		g, err := db.SpendableGrant(t.Context(), appID, openID, minipush.GrantChannel(minipush.GrantForm, ""))
		if err != nil {
			t.Fatal(err)
		}
		if g.Kind != minipush.GrantForm || g.Value != "form-1" || !g.ExpiresAt.Equal(collected.Add(minipush.FormGrantValidity)) {
			t.Fatalf("earliest grant %+v", g)
		}
		if counter.n != 1 {
			t.Fatalf("%d queries, want 1", counter.n)
		}
		sub, err := db.SpendableGrant(t.Context(), appID, openID, minipush.GrantChannel(minipush.GrantSubscribe, tplA))
		if err != nil || sub.TemplateID != tplA {
			t.Fatalf("subscribe grant %+v %v", sub, err)
		}
		if _, err := db.SpendableGrant(t.Context(), appID, openID, minipush.GrantChannel(minipush.GrantSubscribe, tplB)); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Fatalf("rejected template has a grant: %v", err)
		}
	})

	t.Run("ErrAllInvalid", func(t *testing.T) {
		before := f.snapshot(t)
		code, ans := f.upload(t, token, `{"grants":[{"type":"form","formId":"the formId is a mock one"},{"type":"subscribe","results":{"TPL-A":"accept"}}]}`)
		if code != http.StatusUnprocessableEntity || ans.Code != minipush.EINVALID || statuses(ans) != "rejected:mock_form_id,rejected:missing_key" {
			t.Fatalf("all-invalid upload %d %+v", code, ans)
		}
		f.mustUnchanged(t, before) // not even the rate counter
	})
}

type countingQueries struct {
	dynamo.API
	n int
}

func (c *countingQueries) Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	c.n++
	return c.API.Query(ctx, in, optFns...)
}

func TestUserLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.h.MaxLiveGrants = 3
	openID, token := f.login(t)
	code, ans := f.upload(t, token, `{"grants":[{"type":"form","formId":"a"},{"type":"form","formId":"b"}]}`)
	if code != http.StatusOK || ans.Accepted != 2 {
		t.Fatalf("first upload %d %s", code, statuses(ans))
	}
	code, ans = f.upload(t, token, `{"grants":[{"type":"form","formId":"c"},{"type":"form","formId":"d"},{"type":"subscribe","key":"k","results":{"TPL-A":"accept"}}]}`)
	if want := "accepted,rejected:over_user_limit,rejected:over_user_limit"; code != http.StatusOK || statuses(ans) != want {
		t.Fatalf("upload over the limit %d %s, want %s", code, statuses(ans), want)
	}
	if ans.Results[2].Templates[tplA] != "over_user_limit" {
		t.Fatalf("template status %+v", ans.Results[2])
	}
	if n := len(f.grantItems(t, openID)); n != 3 {
		t.Fatalf("%d grants stored, want the limit 3", n)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	victim, victimToken := f.login(t)
	if code, _ := f.upload(t, victimToken, `{"grants":[{"type":"form","formId":"victim-form"}]}`); code != http.StatusOK {
		t.Fatalf("victim upload %d", code)
	}
	attacker, attackerToken := f.login(t)
	body := `{"grants":[{"type":"form","formId":"attacker-form"}]}`

	t.Run("OtherUsersTokenWritesOnlyToThem", func(t *testing.T) {
		if code, _ := f.upload(t, attackerToken, body); code != http.StatusOK {
			t.Fatalf("attacker upload %d", code)
		}
		if n := len(f.grantItems(t, victim)); n != 1 {
			t.Fatalf("victim holds %d grants, want 1", n)
		}
		if n := len(f.grantItems(t, attacker)); n != 1 {
			t.Fatalf("attacker holds %d grants, want 1", n)
		}
	})

	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		resp := f.do(t, request("POST", "/v1/grants", `{"grants":[{"type":"form","formId":"lower-bearer"}]}`,
			map[string]string{"Authorization": "bearer " + attackerToken}, nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("answer %d %s, want 200", resp.StatusCode, resp.Body)
		}
		if n := len(f.grantItems(t, attacker)); n != 2 {
			t.Fatalf("attacker holds %d grants, want 2", n)
		}
	})

	t.Run("ErrBodyNamesUser", func(t *testing.T) {
		// The user is the token's, never the body's: naming one is an unknown field.
		before := f.snapshot(t)
		code, _ := f.upload(t, attackerToken, `{"openId":"`+victim+`","grants":[{"type":"form","formId":"planted"}]}`)
		if code != http.StatusBadRequest {
			t.Fatalf("upload naming another user answered %d, want 400", code)
		}
		f.mustUnchanged(t, before)
	})

	before := f.snapshot(t)
	tampered := []byte(victimToken)
	tampered[len(tampered)/2] ^= 1
	for _, tc := range []struct {
		name, header string
	}{
		{"ErrMissing", ""},
		{"ErrNotBearer", "Basic " + victimToken},
		{"ErrNoScheme", victimToken},
		{"ErrBearerOnly", "Bearer "},
		{"ErrTampered", "Bearer " + string(tampered)},
		{"ErrForgedKey", "Bearer " + session.Sign([]byte("not-the-key"), appID, victim, f.now.Add(time.Hour))},
		{"ErrExpired", "Bearer " + session.Sign([]byte(sessionKey), appID, victim, f.now.Add(-time.Second))},
		{"ErrUnknownApp", "Bearer " + session.Sign([]byte(sessionKey), "wxother", victim, f.now.Add(time.Hour))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string]string{}
			if tc.header != "" {
				headers["Authorization"] = tc.header
			}
			resp := f.do(t, request("POST", "/v1/grants", `{"grants":[{"type":"form","formId":"forged"}]}`, headers, nil))
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Body, `"code":"unauthorized"`) {
				t.Fatalf("answer %d %s, want 401", resp.StatusCode, resp.Body)
			}
		})
	}
	f.mustUnchanged(t, before)
}

func TestErrorsChangeNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, token := f.login(t)
	auth := map[string]string{"Authorization": "Bearer " + token}
	// A code already exchanged once (WeChat's 40163).
	_, usedCode := f.sb.NewLogin(appID)
	if resp := f.do(t, request("POST", "/v1/session", `{"code":"`+usedCode+`"}`, nil, nil)); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use of a code: %d %s", resp.StatusCode, resp.Body)
	}
	tooMany := `{"grants":[` + strings.TrimSuffix(strings.Repeat(`{"type":"form","formId":"f"},`, collect.MaxBatch+1), ",") + `]}`
	huge := `{"grants":[{"type":"form","formId":"` + strings.Repeat("x", collect.MaxUploadBytes) + `"}]}`
	before := f.snapshot(t)
	for _, tc := range []struct {
		name   string
		req    events.APIGatewayV2HTTPRequest
		status int
	}{
		{"ErrMalformed", request("POST", "/v1/grants", `{"grants":[{"type":"form",`, auth, nil), http.StatusBadRequest},
		{"ErrUnknownField", request("POST", "/v1/grants", `{"grants":[],"openId":"someone"}`, auth, nil), http.StatusBadRequest},
		{"ErrTooManyItems", request("POST", "/v1/grants", tooMany, auth, nil), http.StatusRequestEntityTooLarge},
		{"ErrTooLarge", request("POST", "/v1/grants", huge, auth, nil), http.StatusRequestEntityTooLarge},
		{"ErrEmptyBatch", request("POST", "/v1/grants", `{"grants":[]}`, auth, nil), http.StatusUnprocessableEntity},
		{"ErrEveryItemInvalid", request("POST", "/v1/grants", `{"grants":[{"type":"form","formId":"the formId is a mock one"}]}`, auth, nil), http.StatusUnprocessableEntity},
		{"ErrNotJSONObject", request("POST", "/v1/grants", `[]`, auth, nil), http.StatusBadRequest},
		{"ErrSessionUsedCode", request("POST", "/v1/session", `{"code":"`+usedCode+`"}`, nil, nil), http.StatusUnauthorized},
		{"ErrSessionMalformed", request("POST", "/v1/session", `{"code":`, nil, nil), http.StatusBadRequest},
		{"ErrSessionNoCode", request("POST", "/v1/session", `{"appId":"`+appID+`"}`, nil, nil), http.StatusBadRequest},
		{"ErrSessionBadCode", request("POST", "/v1/session", `{"code":"not-a-code"}`, nil, nil), http.StatusUnauthorized},
		{"ErrSessionUnknownApp", request("POST", "/v1/session", `{"code":"c","appId":"wxnope"}`, nil, nil), http.StatusUnprocessableEntity},
		{"ErrNoRoute", request("DELETE", "/v1/grants", ``, auth, nil), http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.do(t, tc.req)
			var eb struct{ Code, Message string }
			if resp.StatusCode != tc.status || json.Unmarshal([]byte(resp.Body), &eb) != nil || eb.Code == "" || eb.Message == "" {
				t.Fatalf("answer %d %s, want %d with {code, message}", resp.StatusCode, resp.Body, tc.status)
			}
		})
	}
	t.Run("ErrWeChatDown", func(t *testing.T) {
		if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathCode2Session, ErrCode: -1}); err != nil {
			t.Fatal(err)
		}
		defer f.sb.ResetFaults()
		_, code := f.sb.NewLogin(appID)
		resp := f.do(t, request("POST", "/v1/session", `{"code":"`+code+`"}`, nil, nil))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("answer %d %s, want 502", resp.StatusCode, resp.Body)
		}
	})
	// A login refused by WeChat was counted against its source's rate (the limit is
	// checked before WeChat is called); nothing else changed.
	f.mustUnchanged(t, before, "rate#session#")
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.h.RatePerMinute = 2
	openID, token := f.login(t)
	auth := map[string]string{"Authorization": "Bearer " + token}

	t.Run("RefusedUploadsDoNotCount", func(t *testing.T) {
		for _, body := range []string{`{"grants":[`, `{"grants":[]}`, `{"grants":[{"type":"form","formId":""}]}`} {
			if resp := f.do(t, request("POST", "/v1/grants", body, auth, nil)); resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusTooManyRequests {
				t.Fatalf("upload %s answered %d", body, resp.StatusCode)
			}
		}
	})
	t.Run("OK", func(t *testing.T) {
		for i := range 2 {
			if code, _ := f.upload(t, token, fmt.Sprintf(`{"grants":[{"type":"form","formId":"f%d"}]}`, i)); code != http.StatusOK {
				t.Fatalf("upload %d: %d", i, code)
			}
		}
	})
	t.Run("ErrOverRate", func(t *testing.T) {
		before := f.snapshot(t)
		resp := f.do(t, request("POST", "/v1/grants", `{"grants":[{"type":"form","formId":"f9"}]}`, auth, nil))
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(resp.Body, `"code":"rate_limited"`) {
			t.Fatalf("third upload %d %s, want 429", resp.StatusCode, resp.Body)
		}
		// The fixture's clock sits 30 s into its minute.
		if got := resp.Headers["Retry-After"]; got != "30" {
			t.Fatalf("Retry-After %q, want 30", got)
		}
		f.mustUnchanged(t, before)
		if n := len(f.grantItems(t, openID)); n != 2 {
			t.Fatalf("%d grants stored, want 2", n)
		}
	})
	t.Run("OtherUserOwnBudget", func(t *testing.T) {
		_, other := f.login(t)
		if code, _ := f.upload(t, other, `{"grants":[{"type":"form","formId":"g"}]}`); code != http.StatusOK {
			t.Fatalf("other user's upload %d", code)
		}
	})
}

// recordingLogin remembers the session keys WeChat handed out, so a test can look for
// them where they must never be.
type recordingLogin struct {
	collect.Login
	mu   sync.Mutex
	keys []string
}

func (r *recordingLogin) Code2Session(ctx context.Context, appID, secret, code string) (wechat.Session, error) {
	s, err := r.Login.Code2Session(ctx, appID, secret, code)
	if err == nil {
		r.mu.Lock()
		r.keys = append(r.keys, s.SessionKey)
		r.mu.Unlock()
	}
	return s, err
}

func TestLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var logs strings.Builder
	var logMu sync.Mutex
	f.h.Log = slog.New(slog.NewJSONHandler(lockedWriter{&logMu, &logs}, nil))
	rec := &recordingLogin{Login: f.h.WeChat}
	f.h.WeChat = rec

	openID, token := f.login(t)

	t.Run("UserUpserted", func(t *testing.T) {
		u, err := f.db.GetUser(t.Context(), appID, openID)
		if err != nil || u.OpenID != openID || u.AppID != appID {
			t.Fatalf("user %+v %v", u, err)
		}
	})
	t.Run("TokenNamesUserForSevenDays", func(t *testing.T) {
		app, who, err := session.Verify([]byte(sessionKey), token, f.now.Add(7*24*time.Hour-time.Second))
		if err != nil || app != appID || who != openID {
			t.Fatalf("token verifies as %q %q %v", app, who, err)
		}
		if _, _, err := session.Verify([]byte(sessionKey), token, f.now.Add(7*24*time.Hour)); !errors.Is(err, session.ErrExpired) {
			t.Fatalf("token after 7 days: %v, want expired", err)
		}
	})
	t.Run("SecondLoginSameUser", func(t *testing.T) {
		code := f.sb.LoginCode(appID, openID)
		resp := f.do(t, request("POST", "/v1/session", `{"code":"`+code+`"}`, nil, nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("second login %d %s", resp.StatusCode, resp.Body)
		}
	})
	t.Run("LogsCarryRequestAndAppNotSecrets", func(t *testing.T) {
		logMu.Lock()
		out := logs.String()
		logMu.Unlock()
		if !strings.Contains(out, `"request_id":"req-test"`) || !strings.Contains(out, `"appid":"`+appID+`"`) {
			t.Fatalf("logs lack request_id or appid:\n%s", out)
		}
		rec.mu.Lock()
		keys := rec.keys
		rec.mu.Unlock()
		if len(keys) != 2 {
			t.Fatalf("%d logins recorded, want 2", len(keys))
		}
		for _, secret := range append(keys, token, sessionKey, appSecret) {
			if strings.Contains(out, secret) {
				t.Fatalf("logs contain a secret %q:\n%s", secret, out)
			}
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// push builds a signed message-push request with a nonce of its own.
func (f *fixture) push(method, body string, sign func(q url.Values)) events.APIGatewayV2HTTPRequest {
	ts := strconv.FormatInt(f.now.Unix(), 10)
	nonce := "n" + strconv.FormatInt(f.nonces.Add(1), 10)
	q := url.Values{"appId": {appID}, "timestamp": {ts}, "nonce": {nonce}, "signature": {collect.Signature(eventToken, ts, nonce)}}
	if method == "GET" {
		q.Set("echostr", "echo-123")
	}
	if sign != nil {
		sign(q)
	}
	return request(method, "/v1/wechat/events", body, nil, q)
}

const popupXML = `<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>
<CreateTime>1764057600</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>
<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[TPL-A]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>0</PopupScene></List>
<List><TemplateId><![CDATA[TPL-B]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>0</PopupScene></List></SubscribeMsgPopupEvent></xml>`

const popupJSON = `{"ToUserName":"gh_123","FromUserName":"%s","CreateTime":"1764057601","MsgType":"event","Event":"subscribe_msg_popup_event",
"List":[{"TemplateId":"TPL-B","SubscribeStatusString":"accept","PopupScene":"0"}]}`

const changeJSON = `{"ToUserName":"gh_123","FromUserName":"%s","CreateTime":1764057700,"MsgType":"event","Event":"subscribe_msg_change_event",
"List":{"TemplateId":"TPL-A","SubscribeStatusString":"reject"}}`

const changeXML = `<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>
<CreateTime>1764057800</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_change_event]]></Event>
<SubscribeMsgChangeEvent><List><TemplateId><![CDATA[TPL-B]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString></List></SubscribeMsgChangeEvent></xml>`

func TestEventPush(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	openID, _ := f.login(t)
	templates := func() map[string]int {
		m := map[string]int{}
		for _, g := range f.grantItems(t, openID) {
			if g.TemplateID != "" {
				m[g.TemplateID]++
			}
		}
		return m
	}

	t.Run("Handshake", func(t *testing.T) {
		resp := f.do(t, f.push("GET", "", nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "echo-123" {
			t.Fatalf("handshake %d %q", resp.StatusCode, resp.Body)
		}
	})

	before := f.snapshot(t)
	for _, tc := range []struct {
		name string
		sign func(q url.Values)
	}{
		{"ErrBadSignature", func(q url.Values) {
			q.Set("signature", collect.Signature("wrong-token", q.Get("timestamp"), q.Get("nonce")))
		}},
		{"ErrNoSignature", func(q url.Values) { q.Del("signature") }},
		{"ErrSignedOtherNonce", func(q url.Values) { q.Set("nonce", "other") }},
		{"ErrStale", func(q url.Values) {
			ts := strconv.FormatInt(f.now.Add(-collect.MaxPushAge-time.Second).Unix(), 10)
			q.Set("timestamp", ts)
			q.Set("signature", collect.Signature(eventToken, ts, q.Get("nonce")))
		}},
		{"ErrFuture", func(q url.Values) {
			ts := strconv.FormatInt(f.now.Add(collect.MaxPushAge+time.Second).Unix(), 10)
			q.Set("timestamp", ts)
			q.Set("signature", collect.Signature(eventToken, ts, q.Get("nonce")))
		}},
		{"ErrUnknownApp", func(q url.Values) { q.Set("appId", "wxother") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "POST"} {
				resp := f.do(t, f.push(method, fmt.Sprintf(popupXML, openID), tc.sign))
				if resp.StatusCode != http.StatusUnauthorized || strings.Contains(resp.Body, "echo-123") {
					t.Fatalf("%s answer %d %s, want 401", method, resp.StatusCode, resp.Body)
				}
			}
		})
	}
	f.mustUnchanged(t, before)

	t.Run("PopupXML", func(t *testing.T) {
		req := f.push("POST", fmt.Sprintf(popupXML, openID), nil)
		for range 2 { // WeChat retries a push it got no answer to: stored once
			resp := f.do(t, req)
			if resp.StatusCode != http.StatusOK || resp.Body != "success" {
				t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
			}
		}
		if got := templates(); got[tplA] != 1 || got[tplB] != 0 {
			t.Fatalf("grants by template %v, want one TPL-A", got)
		}
	})

	t.Run("PopupJSON", func(t *testing.T) {
		resp := f.do(t, f.push("POST", fmt.Sprintf(popupJSON, openID), nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if got := templates(); got[tplA] != 1 || got[tplB] != 1 {
			t.Fatalf("grants by template %v", got)
		}
	})

	t.Run("ChangeRejectDropsTemplate", func(t *testing.T) {
		resp := f.do(t, f.push("POST", fmt.Sprintf(changeJSON, openID), nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if got := templates(); got[tplA] != 0 || got[tplB] != 1 {
			t.Fatalf("grants by template %v, want only TPL-B", got)
		}
		u, err := f.db.GetUser(t.Context(), appID, openID)
		if err != nil || u.LiveGrants != 1 {
			t.Fatalf("inventory %d %v, want 1", u.LiveGrants, err)
		}
	})

	t.Run("ChangeRejectXML", func(t *testing.T) {
		resp := f.do(t, f.push("POST", fmt.Sprintf(changeXML, openID), nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if got := templates(); got[tplA] != 0 || got[tplB] != 0 {
			t.Fatalf("grants by template %v, want none", got)
		}
		u, err := f.db.GetUser(t.Context(), appID, openID)
		if err != nil || u.LiveGrants != 0 {
			t.Fatalf("inventory %d %v, want 0", u.LiveGrants, err)
		}
	})

	t.Run("PopupForUserNeverLoggedIn", func(t *testing.T) {
		// WeChat's push is trusted on its own: the user need not have called the API.
		stranger := f.sb.NewUser(appID)
		resp := f.do(t, f.push("POST", fmt.Sprintf(popupXML, stranger), nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		u, err := f.db.GetUser(t.Context(), appID, stranger)
		if err != nil || u.LiveGrants != 1 || len(f.grantItems(t, stranger)) != 1 {
			t.Fatalf("stranger's inventory %+v %v, want one grant", u, err)
		}
	})

	t.Run("ErrSafeMode", func(t *testing.T) {
		// An encrypted push is refused loudly, not acknowledged and lost.
		before := f.snapshot(t)
		for _, body := range []string{
			`<xml><ToUserName><![CDATA[gh_123]]></ToUserName><Encrypt><![CDATA[c2VjcmV0]]></Encrypt></xml>`,
			`{"ToUserName":"gh_123","Encrypt":"c2VjcmV0"}`,
		} {
			resp := f.do(t, f.push("POST", body, nil))
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(resp.Body, "safe-mode") {
				t.Fatalf("answer %d %s, want 422 naming safe mode", resp.StatusCode, resp.Body)
			}
		}
		f.mustUnchanged(t, before)
	})

	t.Run("ErrMalformedBody", func(t *testing.T) {
		resp := f.do(t, f.push("POST", `<xml><Event>subscribe_msg_popup_event</Event>`, nil))
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("answer %d %s, want 400", resp.StatusCode, resp.Body)
		}
	})
}

func TestRouteFallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, code := f.sb.NewLogin(appID)
	// The local runner and a $default route send no route key: method and path decide.
	req := request("POST", "/v1/session", `{"code":"`+code+`"}`, nil, nil)
	req.RouteKey = "$default"
	resp := f.do(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("answer %d %s", resp.StatusCode, resp.Body)
	}
	var ans collect.SessionAnswer
	if err := json.Unmarshal([]byte(resp.Body), &ans); err != nil || !ans.ExpiresAt.Equal(f.now.Add(collect.DefaultSessionTTL)) {
		t.Fatalf("answer %s (%v), want expiry %v", resp.Body, err, f.now.Add(collect.DefaultSessionTTL))
	}
}

func TestSessionTTLFromEnv(t *testing.T) {
	t.Parallel()
	f := newFixtureEnv(t, map[string]string{lambdaenv.SessionTTLEnv: "72h"})
	openID, token := f.login(t)
	if _, who, err := session.Verify([]byte(sessionKey), token, f.now.Add(72*time.Hour-time.Second)); err != nil || who != openID {
		t.Fatalf("token just before 72h: %q %v", who, err)
	}
	if _, _, err := session.Verify([]byte(sessionKey), token, f.now.Add(72*time.Hour)); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("token at 72h: %v, want expired", err)
	}
}

func TestFromEnvMissing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"ErrNoTables", map[string]string{}, "GRANTS_TABLE"},
		{"ErrNoSessionSecret", map[string]string{"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W"}, "SESSION_SECRET_ARN"},
		{"ErrBadRate", map[string]string{"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W", "SESSION_SECRET_ARN": "local:S", lambdaenv.CollectRateEnv: "0"}, lambdaenv.CollectRateEnv},
		{"ErrBadSessionRefusals", map[string]string{"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W", "SESSION_SECRET_ARN": "local:S", lambdaenv.SessionRefusalsEnv: "-1"}, lambdaenv.SessionRefusalsEnv},
		{"ErrBadSessionTTL", map[string]string{"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W", "SESSION_SECRET_ARN": "local:S", lambdaenv.SessionTTLEnv: "7d"}, lambdaenv.SessionTTLEnv},
		{"ErrShortSessionTTL", map[string]string{"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W", "SESSION_SECRET_ARN": "local:S", lambdaenv.SessionTTLEnv: "30s"}, lambdaenv.SessionTTLEnv},
		{"ErrShortSessionKey", map[string]string{
			"GRANTS_TABLE": "g", "USERS_TABLE": "u", "STATE_TABLE": "s", "WECHAT_SECRET_ARN": "local:W", "SESSION_SECRET_ARN": "local:S",
			"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
			lambdaenv.LocalSecretsEnv: `{"W":"{\"apps\":[{\"appId\":\"wx1\",\"appSecret\":\"s\"}]}","S":"short"}`,
		}, "SESSION_SECRET_ARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := lambdaenv.Collect(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return tc.env[k] }})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// TestConcurrentRetries uploads one batch from several goroutines at once, as a client
// retrying over a flaky network might: each grant is stored, and answered accepted,
// exactly once.
func TestConcurrentRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	openID, token := f.login(t)
	body := `{"grants":[{"type":"form","formId":"c1"},{"type":"prepay","prepayId":"c2"},{"type":"subscribe","key":"c3","results":{"TPL-A":"accept"}}]}`
	const uploads = 5
	answers := make(chan collect.UploadAnswer, uploads)
	codes := make(chan int, uploads)
	var wg sync.WaitGroup
	for range uploads {
		wg.Go(func() {
			resp, err := f.h.Handle(t.Context(), request("POST", "/v1/grants", body, map[string]string{"Authorization": "Bearer " + token}, nil))
			if err != nil {
				codes <- 0
				return
			}
			var ans collect.UploadAnswer
			_ = json.Unmarshal([]byte(resp.Body), &ans)
			codes <- resp.StatusCode
			answers <- ans
		})
	}
	wg.Wait()
	close(codes)
	close(answers)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("a concurrent upload answered %d", c)
		}
	}
	accepted := make([]int, 3)
	for ans := range answers {
		for _, r := range ans.Results {
			if r.Status == collect.StatusAccepted {
				accepted[r.Index]++
			} else if r.Status != collect.StatusDuplicate {
				t.Fatalf("item %d answered %s %s", r.Index, r.Status, r.Reason)
			}
		}
	}
	for i, n := range accepted {
		if n != 1 {
			t.Fatalf("item %d accepted %d times, want once", i, n)
		}
	}
	if n := len(f.grantItems(t, openID)); n != 3 {
		t.Fatalf("%d grants stored, want 3", n)
	}
	u, err := f.db.GetUser(t.Context(), appID, openID)
	if err != nil || u.LiveGrants != 3 {
		t.Fatalf("inventory %d %v, want 3", u.LiveGrants, err)
	}
}

func TestBase64Body(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	openID, token := f.login(t)
	// API Gateway base64-encodes bodies it does not consider text.
	req := request("POST", "/v1/grants", base64.StdEncoding.EncodeToString([]byte(`{"grants":[{"type":"form","formId":"b64"}]}`)),
		map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/octet-stream"}, nil)
	req.IsBase64Encoded = true
	if resp := f.do(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("answer %d %s", resp.StatusCode, resp.Body)
	}
	items := f.grantItems(t, openID)
	if len(items) != 1 || items[0].Value != "b64" {
		t.Fatalf("stored %v", items)
	}
}
