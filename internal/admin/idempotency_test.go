package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/admin"
)

func keyed(key string) map[string]string { return map[string]string{admin.IdempotencyHeader: key} }

// drafts counts the stored draft campaigns.
func drafts(t *testing.T, h *admin.Handler) int {
	t.Helper()
	var list struct {
		Campaigns []minipush.Campaign `json:"campaigns"`
	}
	mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft&limit=100"}, http.StatusOK, &list)
	return len(list.Campaigns)
}

// TestIdempotencyKey: a retried operator POST with the same Idempotency-Key and body gets
// the first answer again, marked replayed, and changes nothing; the key with another
// request is 422; a bad key is 400 and changes nothing.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)

	create := call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed("create-1")}
	first := do(t, h, create)
	if first.StatusCode != http.StatusCreated || first.Headers[admin.ReplayedHeader] != "" {
		t.Fatalf("first: %d %v %s", first.StatusCode, first.Headers, first.Body)
	}
	t.Run("SameKeySameBody", func(t *testing.T) {
		for range 2 {
			again := do(t, h, create)
			if again.StatusCode != http.StatusCreated || again.Body != first.Body || again.Headers[admin.ReplayedHeader] != "true" ||
				again.Headers["Content-Type"] != "application/json" {
				t.Fatalf("retry: %d %v %s, want the first answer replayed", again.StatusCode, again.Headers, again.Body)
			}
		}
		// The draft-ietf form, a structured-field string, is the same key.
		quoted := create
		quoted.header = keyed(`"create-1"`)
		if again := do(t, h, quoted); again.Headers[admin.ReplayedHeader] != "true" || again.Body != first.Body {
			t.Fatalf("quoted key: %d %s, want the replay", again.StatusCode, again.Body)
		}
		if n := drafts(t, h); n != 1 {
			t.Fatalf("%d drafts after retries, want 1", n)
		}
	})
	t.Run("SameKeyOtherRequest", func(t *testing.T) {
		for _, c := range []call{
			{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, "check-in", "check-out", 1)},
			{method: "POST", target: "/v1/admin/campaigns/c1/cancel"},
			{method: "PATCH", target: "/v1/admin/campaigns/c1", body: subscribeCampaign},
		} {
			c.header = keyed("create-1")
			resp := do(t, h, c)
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(resp.Body, admin.IdempotencyHeader) {
				t.Fatalf("%s %s with a used key: %d %s, want 422 naming the header", c.method, c.target, resp.StatusCode, resp.Body)
			}
		}
		if c, err := db.GetCampaign(t.Context(), "c1"); err != nil || c.Status != minipush.StatusDraft || c.Name != "check-in" {
			t.Fatalf("campaign %+v %v, want the untouched draft", c, err)
		}
		if n := drafts(t, h); n != 1 {
			t.Fatalf("%d drafts, want 1", n)
		}
	})
	t.Run("ErrBadKey", func(t *testing.T) {
		for name, key := range map[string]string{
			"Empty": "", "Blank": "  ", "EmptyQuoted": `""`, "TooLong": strings.Repeat("k", 256),
			"Space": "a key", "NonASCII": "ключ", "Control": "k\x01",
		} {
			resp := do(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed(key)})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, admin.IdempotencyHeader) {
				t.Errorf("%s: %d %s, want 400 naming the header", name, resp.StatusCode, resp.Body)
			}
		}
		if n := drafts(t, h); n != 1 {
			t.Fatalf("%d drafts after bad keys, want 1", n)
		}
		long := strings.Repeat("k", 255)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed(long)}, http.StatusCreated, nil)
	})
	t.Run("RefusalsAreKept", func(t *testing.T) {
		// A 4xx is the final answer to that request: the retry gets it again.
		bad := call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"check-in"`, `""`, 1), header: keyed("bad-1")}
		a, b := do(t, h, bad), do(t, h, bad)
		if a.StatusCode != http.StatusUnprocessableEntity || b.StatusCode != a.StatusCode || b.Body != a.Body || b.Headers[admin.ReplayedHeader] != "true" {
			t.Fatalf("refused create retried: %d %s then %d %v %s", a.StatusCode, a.Body, b.StatusCode, b.Headers, b.Body)
		}
	})
	t.Run("GETIgnoresTheHeader", func(t *testing.T) {
		resp := do(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1", header: keyed("create-1")})
		if resp.StatusCode != http.StatusOK || resp.Headers[admin.ReplayedHeader] != "" {
			t.Fatalf("GET with a key: %d %v", resp.StatusCode, resp.Headers)
		}
	})
}

// TestIdempotencyKeyEveryWrite: every POST, PUT and PATCH of the operator API replays
// its first answer. Without the key most of these retries answer differently (a second
// cancel is 409) or change storage again.
func TestIdempotencyKeyEveryWrite(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
	for i, c := range []call{
		{method: "PATCH", target: "/v1/admin/campaigns/c1", body: `{"name":"renamed"}`},
		{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: `{"openIds":["oA","oB"]}`},
		{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"cron":"0 10 * * *","timeZone":"Asia/Shanghai"}`},
		{method: "POST", target: "/v1/admin/campaigns/c1/pause"},
		{method: "POST", target: "/v1/admin/campaigns/c1/resume"},
		{method: "POST", target: "/v1/admin/campaigns/c2/cancel"},
		{method: "PUT", target: "/v1/admin/users/oA?appId=wx1", body: `{"region":"sh"}`},
		{method: "POST", target: "/v1/admin/users:import", body: `{"appId":"wx1","users":[{"openId":"oB","optOut":true}]}`},
	} {
		c.header = keyed("write-" + string(rune('a'+i)))
		first := do(t, h, c)
		if first.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.target, first.StatusCode, first.Body)
		}
		again := do(t, h, c)
		if again.StatusCode != first.StatusCode || again.Body != first.Body || again.Headers[admin.ReplayedHeader] != "true" {
			t.Errorf("%s %s retried: %d %v %s, want the first answer replayed", c.method, c.target, again.StatusCode, again.Headers, again.Body)
		}
	}
}

// blockingCreate holds CreateCampaign until release is closed, telling entered when a
// request is inside it; failNext makes the next CreateCampaign fail as DynamoDB would.
type blockingCreate struct {
	admin.Store
	entered  chan struct{}
	release  chan struct{}
	failNext atomic.Bool
}

func (s *blockingCreate) CreateCampaign(ctx context.Context, c minipush.Campaign) error {
	if s.failNext.CompareAndSwap(true, false) {
		return errors.New("dynamo: put campaign: connection reset")
	}
	if s.entered != nil {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Store.CreateCampaign(ctx, c)
}

// TestIdempotencyKeyInFlight: a retry while the first request with its key still runs
// is 409 with Retry-After and runs nothing; once the first answers, the retry gets that
// answer. A 5xx is not kept: its retry runs again and can succeed.
func TestIdempotencyKeyInFlight(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	store := &blockingCreate{Store: h.Store, entered: make(chan struct{}, 2), release: make(chan struct{})}
	h.Store = store
	released := false
	t.Cleanup(func() {
		if !released {
			close(store.release) // let a request stuck in the store end
		}
	})
	create := call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed("slow-1")}

	done := make(chan events.APIGatewayV2HTTPResponse, 1)
	go func() {
		resp, _ := h.Handle(context.Background(), request(create))
		done <- resp
	}()
	select {
	case <-store.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first request never reached the store")
	}
	// The retry must answer at once; one that runs the create blocks in the store.
	retried := make(chan events.APIGatewayV2HTTPResponse, 1)
	go func() {
		resp, _ := h.Handle(context.Background(), request(create))
		retried <- resp
	}()
	var busy events.APIGatewayV2HTTPResponse
	select {
	case busy = <-retried:
	case <-time.After(10 * time.Second):
		t.Fatal("the retry ran the create again instead of answering 409")
	}
	if busy.StatusCode != http.StatusConflict || busy.Headers["Retry-After"] == "" || !strings.Contains(busy.Body, "in progress") {
		t.Fatalf("retry during the first: %d %v %s, want 409 with Retry-After", busy.StatusCode, busy.Headers, busy.Body)
	}
	close(store.release)
	released = true
	var first events.APIGatewayV2HTTPResponse
	select {
	case first = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the first request never answered")
	}
	if first.StatusCode != http.StatusCreated {
		t.Fatalf("first: %d %s", first.StatusCode, first.Body)
	}
	store.entered = nil
	if again := do(t, h, create); again.Body != first.Body || again.Headers[admin.ReplayedHeader] != "true" {
		t.Fatalf("retry after the first: %d %s, want its answer", again.StatusCode, again.Body)
	}

	t.Run("ServerErrorNotKept", func(t *testing.T) {
		c := call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed("flaky-1")}
		store.failNext.Store(true)
		if resp := do(t, h, c); resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("failing create: %d %s", resp.StatusCode, resp.Body)
		}
		resp := do(t, h, c)
		var got minipush.Campaign
		if resp.StatusCode != http.StatusCreated || resp.Headers[admin.ReplayedHeader] != "" || json.Unmarshal([]byte(resp.Body), &got) != nil || got.ID == "" {
			t.Fatalf("retry after a 500: %d %v %s, want it run and created", resp.StatusCode, resp.Headers, resp.Body)
		}
	})
}

// request builds the HTTP API event do sends, for callers that run Handle themselves.
func request(c call) events.APIGatewayV2HTTPRequest {
	path, query, _ := strings.Cut(c.target, "?")
	headers := map[string]string{"authorization": "Bearer " + token, "content-type": "application/json"}
	for k, v := range c.header {
		headers[k] = v
	}
	return events.APIGatewayV2HTTPRequest{
		RouteKey: "ANY /v1/admin/{proxy+}", RawPath: path, RawQueryString: query, Headers: headers, Body: c.body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: c.method, Path: path}},
	}
}

// TestServedApps: every route that takes an appId refuses one the deployment does not
// serve with 422 naming the field, and stores nothing.
func TestServedApps(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
	for _, c := range []call{
		{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"wx1"`, `"wx1typo"`, 1)},
		{method: "PUT", target: "/v1/admin/users/oA?appId=wx1typo", body: `{"region":"sh"}`},
		{method: "POST", target: "/v1/admin/users:import", body: `{"appId":"wx1typo","users":[{"openId":"oA"}]}`},
		{method: "GET", target: "/v1/admin/inventory?appId=wx1typo"},
	} {
		resp := do(t, h, c)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(resp.Body, `appId: \"wx1typo\" is not an app this deployment serves`) {
			t.Errorf("%s %s: %d %s, want 422 naming appId", c.method, c.target, resp.StatusCode, resp.Body)
		}
	}
	if n := drafts(t, h); n != 1 {
		t.Errorf("%d drafts, want 1", n)
	}
	if _, err := db.GetUser(t.Context(), "wx1typo", "oA"); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Errorf("user of an unserved app: %v, want none stored", err)
	}
	t.Run("PatchOfAnAppNoLongerServed", func(t *testing.T) {
		h.AppIDs = []string{"wx2"}
		resp := do(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/c1", body: `{"name":"renamed"}`})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(resp.Body, "appId") {
			t.Fatalf("patch: %d %s, want 422 naming appId", resp.StatusCode, resp.Body)
		}
	})
}

// lostAnswer fails to keep the answer of a keyed request, as a Lambda that timed out or
// lost DynamoDB between its write and FinishIdempotencyKey would; and, when retryLanded
// is set, answers the first CreateCampaign with a conflict after writing it, as the
// SDK's retry of a PutItem that landed but whose answer was lost does.
type lostAnswer struct {
	admin.Store
	retryLanded atomic.Bool
}

func (s *lostAnswer) FinishIdempotencyKey(context.Context, string, string, minipush.IdempotentAnswer) error {
	return errors.New("dynamo: keep idempotent answer: connection reset")
}

func (s *lostAnswer) CreateCampaign(ctx context.Context, c minipush.Campaign) error {
	if err := s.Store.CreateCampaign(ctx, c); err != nil {
		return err
	}
	if s.retryLanded.CompareAndSwap(true, false) {
		return minipush.Errorf(minipush.ECONFLICT, "campaign %s exists", c.ID)
	}
	return nil
}

// TestIdempotencyKeyCrashedFirst: a keyed create that wrote its campaign but never kept
// its answer is not run a second time when the key's lock runs out and the client
// retries: the retry answers the same campaign, and one draft exists.
func TestIdempotencyKeyCrashedFirst(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	store := &lostAnswer{Store: h.Store}
	h.Store = store
	clock := now
	h.Now = func() time.Time { return clock }
	create := call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed("crash-1")}

	var first, again minipush.Campaign
	mustOK(t, h, create, http.StatusCreated, &first)
	clock = clock.Add(2 * time.Minute) // past the key's lock: the first request is presumed dead
	mustOK(t, h, create, http.StatusCreated, &again)
	if again.ID != first.ID {
		t.Fatalf("retry created %s after %s, want the same campaign", again.ID, first.ID)
	}
	if n := drafts(t, h); n != 1 {
		t.Fatalf("%d drafts, want 1", n)
	}

	t.Run("RetriedWriteLanded", func(t *testing.T) {
		store.retryLanded.Store(true)
		var got minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, header: keyed("landed-1")}, http.StatusCreated, &got)
		if got.ID == "" || got.Name != "check-in" {
			t.Fatalf("answer %+v, want the campaign the landed write stored", got)
		}
		if n := drafts(t, h); n != 2 {
			t.Fatalf("%d drafts, want 2", n)
		}
	})
}

// TestIdempotencyKeyConflictNotKept: a 409 changed nothing and may not hold for ever (a
// lost race, a status that changes), so its retry runs again instead of replaying it.
func TestIdempotencyKeyConflictNotKept(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
	resume := call{method: "POST", target: "/v1/admin/campaigns/c1/resume", header: keyed("resume-1")}
	if resp := do(t, h, resume); resp.StatusCode != http.StatusConflict {
		t.Fatalf("resume of a draft: %d %s, want 409", resp.StatusCode, resp.Body)
	}
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"cron":"0 10 * * *","timeZone":"Asia/Shanghai"}`}, http.StatusOK, nil)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/pause"}, http.StatusOK, nil)
	if resp := do(t, h, resume); resp.StatusCode != http.StatusOK || resp.Headers[admin.ReplayedHeader] != "" {
		t.Fatalf("the retried resume: %d %v %s, want it run now that the campaign is paused", resp.StatusCode, resp.Headers, resp.Body)
	}
}
