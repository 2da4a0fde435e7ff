package admin_test

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"minipush"
	"minipush/internal/admin"
)

// route is one method and path pattern of the router, {} for a path parameter.
type route struct{ method, pattern string }

// adminRoutes lists every admin route of openapi.json: TestOpenAPIRoutes fails when
// the router has a route the document lacks, so a new route reaches this test without
// anyone listing it here.
func adminRoutes(t *testing.T) []route {
	t.Helper()
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var routes []route
	for path, ops := range doc.Paths {
		rest, ok := strings.CutPrefix(path, "/v1/admin/")
		if !ok {
			continue
		}
		segs := strings.Split(rest, "/")
		for i, s := range segs {
			if strings.HasPrefix(s, "{") {
				segs[i] = "{}"
			}
		}
		for m := range ops {
			switch m = strings.ToUpper(m); m {
			case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				routes = append(routes, route{m, strings.Join(segs, "/")})
			}
		}
	}
	slices.SortFunc(routes, func(a, b route) int { return strings.Compare(a.method+a.pattern, b.method+b.pattern) })
	return routes
}

const (
	allToken  = "all-apps-token-0123456789"
	app1Token = "app1-only-token-0123456789"
)

// scoped gives h an all-apps token and one scoped to wx1.
func scoped(h *admin.Handler) {
	h.Tokens = []admin.OperatorToken{
		{Name: "ops", Token: allToken, Apps: []string{admin.AllApps}},
		{Name: "team1", Token: app1Token, Apps: []string{"wx1"}},
	}
}

// isolationBodies are requests that would change app wx2's state if the scope let them
// through (an all-apps token gets 2xx for each, checked below); a route not named here
// is sent {} (or nothing for GET).
var isolationBodies = map[string]string{
	"POST campaigns":             strings.Replace(subscribeCampaign, `"wx1"`, `"wx2"`, 1),
	"POST campaigns:validate":    strings.Replace(subscribeCampaign, `"wx1"`, `"wx2"`, 1),
	"PATCH campaigns/{}":         `{"name":"renamed"}`,
	"POST campaigns/{}/audience": `{"openIds":["oIsolationProbe"]}`,
	"POST campaigns/{}/schedule": `{"now":true}`,
	"PUT users/{}":               `{"optOut":true,"region":"probe"}`,
	"POST users:import":          `{"appId":"wx2","users":[{"openId":"oUserB","optOut":true}]}`,
	"PUT apps/{}/webhook":        `{"url":"http://127.0.0.1:9/hook"}`,
	"POST campaigns/{}/cancel":   ``,
	"POST campaigns/{}/pause":    ``,
	"POST campaigns/{}/resume":   ``,
}

// target fills a route's pattern for app (wx1 or wx2) and its campaign, with ?appId=.
func target(pattern, app, campaign string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if s != "{}" {
			continue
		}
		switch {
		case i == 1 && segs[0] == "campaigns":
			segs[i] = campaign
		case i == 1 && segs[0] == "apps":
			segs[i] = app
		case i > 0 && segs[i-1] == "runs":
			segs[i] = "1"
		case i == 1 && segs[0] == "users":
			segs[i] = "oUserB"
		default:
			segs[i] = "x"
		}
	}
	return "/v1/admin/" + strings.Join(segs, "/") + "?status=draft&appId=" + app
}

// TestScopeIsolation walks every route of the router with a token scoped to wx1,
// addressing wx2's campaign, app, users and listings: each is refused (or, for a
// listing, shows nothing of wx2), wx2's campaign and users are unchanged afterwards,
// and each route has a scope decision, so a new route without one fails here. The same
// requests for wx1 pass the scope check.
func TestScopeIsolation(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	scoped(h)
	ctx := t.Context()
	var a, b minipush.Campaign
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, auth: "Bearer " + allToken}, http.StatusCreated, &a)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: isolationBodies["POST campaigns"], auth: "Bearer " + allToken}, http.StatusCreated, &b)
	mustOK(t, h, call{method: "PUT", target: "/v1/admin/users/oUserB?appId=wx2", body: `{"region":"east"}`, auth: "Bearer " + allToken}, http.StatusOK, nil)
	snapshot := func() string {
		c, err := db.GetCampaign(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		u, err := db.GetUser(ctx, "wx2", "oUserB")
		if err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal([]any{c, u})
		return string(out)
	}
	before := snapshot()

	routes := adminRoutes(t)
	if len(routes) < 10 {
		t.Fatalf("derived %d routes from admin.go, fewer than the router has: %v", len(routes), routes)
	}
	for _, rt := range routes {
		key := rt.method + " " + rt.pattern
		t.Run(strings.NewReplacer("/", "_", "{}", "id").Replace(key), func(t *testing.T) {
			path := strings.TrimPrefix(strings.Split(target(rt.pattern, "wx2", b.ID), "?")[0], "/v1/admin/")
			rule, ok := admin.ScopeRuleFor(rt.method, path)
			if !ok {
				t.Fatalf("%s has no scope decision: put it under apps/{appId}/ or campaigns/{id}/, or name it in scope.go's topRoutes", key)
			}
			body, named := isolationBodies[key]
			if !named && rt.method != http.MethodGet {
				body = `{}`
			}
			resp := do(t, h, call{method: rt.method, target: target(rt.pattern, "wx2", b.ID), body: body, auth: "Bearer " + app1Token})
			if rule == "global" {
				if resp.StatusCode == http.StatusForbidden || strings.Contains(resp.Body, b.ID) {
					t.Fatalf("global route: %d %s, want it open and showing nothing of wx2", resp.StatusCode, resp.Body)
				}
				return
			}
			if rule == "filtered" {
				if resp.StatusCode != http.StatusOK || strings.Contains(resp.Body, b.ID) || strings.Contains(resp.Body, "wx2") {
					t.Fatalf("scoped listing: %d %s, want 200 with nothing of wx2", resp.StatusCode, resp.Body)
				}
				own := do(t, h, call{method: rt.method, target: target(rt.pattern, "wx1", a.ID), auth: "Bearer " + app1Token})
				if !strings.Contains(own.Body, a.ID) && !strings.Contains(own.Body, `"wx1"`) {
					t.Fatalf("scoped listing of wx1: %d %s, want wx1's", own.StatusCode, own.Body)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
				t.Fatalf("wx1's token on wx2 (%s): %d %s, want 403 or 404", rule, resp.StatusCode, resp.Body)
			}
			if rule == "campaign-path" && (resp.StatusCode != http.StatusNotFound || !strings.Contains(resp.Body, "no campaign")) {
				t.Fatalf("wx1's token on wx2's campaign: %d %s, want 404 as if it did not exist", resp.StatusCode, resp.Body)
			}
			// The same request for wx1 is not refused by the scope.
			own := do(t, h, call{method: rt.method, target: target(rt.pattern, "wx1", a.ID), body: strings.ReplaceAll(body, `"wx2"`, `"wx1"`), auth: "Bearer " + app1Token})
			if own.StatusCode == http.StatusForbidden || strings.Contains(own.Body, "no campaign") {
				t.Fatalf("wx1's token on wx1: %d %s, want past the scope check", own.StatusCode, own.Body)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("wx2's state changed through wx1's token:\nbefore %s\nafter  %s", before, after)
	}
	// Only now, the same requests with the all-apps token change wx2: proof that the
	// requests above were ones the scope alone refused.
	resp := do(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/" + b.ID, body: `{"name":"renamed"}`, auth: "Bearer " + allToken})
	if resp.StatusCode != http.StatusOK || snapshot() == before {
		t.Fatalf("all-apps token: %d %s, want wx2's campaign renamed", resp.StatusCode, resp.Body)
	}
}

// TestOperatorTokens: the plain-string secret is one all-apps token; JSON lists scoped
// tokens, checked at init; every token is compared, the scheme as before.
func TestOperatorTokens(t *testing.T) {
	t.Parallel()
	served := []string{"wx1", "wx2"}
	t.Run("PlainString", func(t *testing.T) {
		toks, err := admin.ParseOperatorTokens("  plain-token\n", served)
		if err != nil || len(toks) != 1 || toks[0].Token != "plain-token" || toks[0].Apps[0] != admin.AllApps {
			t.Fatalf("%v %v, want one all-apps token", toks, err)
		}
	})
	t.Run("Scoped", func(t *testing.T) {
		toks, err := admin.ParseOperatorTokens(`{"tokens":[{"name":"ops","token":"`+allToken+`","apps":["*"]},{"name":"team1","token":"`+app1Token+`","apps":["wx1"]}]}`, served)
		if err != nil || len(toks) != 2 || toks[1].Apps[0] != "wx1" {
			t.Fatalf("%v %v", toks, err)
		}
	})
	for name, raw := range map[string]string{
		"ErrEmpty":      " ",
		"ErrNoTokens":   `{"tokens":[]}`,
		"ErrShort":      `{"tokens":[{"name":"a","token":"short","apps":["*"]}]}`,
		"ErrUnserved":   `{"tokens":[{"name":"a","token":"` + allToken + `","apps":["wx9"]}]}`,
		"ErrNoApps":     `{"tokens":[{"name":"a","token":"` + allToken + `","apps":[]}]}`,
		"ErrNoName":     `{"tokens":[{"token":"` + allToken + `","apps":["*"]}]}`,
		"ErrSameToken":  `{"tokens":[{"name":"a","token":"` + allToken + `","apps":["*"]},{"name":"b","token":"` + allToken + `","apps":["wx1"]}]}`,
		"ErrUnknownKey": `{"tokens":[{"name":"a","token":"` + allToken + `","apps":["*"],"scope":"x"}]}`,
		"ErrMalformed":  `{"tokens":`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := admin.ParseOperatorTokens(raw, served)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), allToken) {
				t.Fatalf("error quotes the token: %v", err)
			}
		})
	}
	t.Run("Authenticate", func(t *testing.T) {
		h, _ := MustAdmin(t)
		scoped(h)
		for _, tc := range []struct {
			auth string
			want int
		}{
			{"Bearer " + allToken, http.StatusOK},
			{"bearer " + app1Token, http.StatusOK},
			{"Bearer " + token, http.StatusUnauthorized}, // Token is replaced by Tokens
			{"Bearer " + app1Token + "x", http.StatusUnauthorized},
		} {
			if resp := do(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft", auth: tc.auth}); resp.StatusCode != tc.want {
				t.Errorf("%q: %d %s, want %d", tc.auth, resp.StatusCode, resp.Body, tc.want)
			}
		}
	})
}
