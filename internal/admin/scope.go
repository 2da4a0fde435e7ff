package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

// Operator tokens and their scopes.
//
// The operator secret (OPERATOR_SECRET_ARN) holds either one plain token, which may
// address every app (as before tokens were scoped), or JSON naming several:
//
//	{"tokens": [{"name": "ops", "token": "...", "apps": ["*"]},
//	            {"name": "shop-team", "token": "...", "apps": ["wxShop"]}]}
//
// A token whose apps are ["*"] addresses every app; any other sees and changes nothing of
// an app it does not list, on every route. The scope is enforced here, once, by path
// (checkScope), before a route runs, so a route added under the layout conventions
// (/v1/admin/apps/{appId}/..., /v1/admin/campaigns/{id}/...) is covered without its
// author's help. A route outside those layouts must be named in topRoutes, or a scoped
// token is refused on it; TestScopeIsolation walks every route of the router and fails
// for one without a decision.

// AllApps in a token's apps lets it address every app.
const AllApps = "*"

// minTokenLen bounds a JSON-listed token from below: tokens are compared in constant
// time, but a short one could still be guessed.
const minTokenLen = 16

// OperatorToken is one operator credential and the apps it may address.
type OperatorToken struct {
	// Name identifies the token in the audit log (never the token itself).
	Name  string   `json:"name"`
	Token string   `json:"token"`
	Apps  []string `json:"apps"`
}

// String hides the token so it can never be logged by accident.
func (t OperatorToken) String() string { return "OperatorToken{" + t.Name + "}" }

// ParseOperatorTokens reads the operator secret: a plain string is one all-apps token
// named "operator"; a JSON object lists scoped tokens. Each listed app must be one the
// deployment serves (served) or "*", each token distinct and at least 16 characters.
// Errors name the token by its name or position, never its value.
func ParseOperatorTokens(raw string, served []string) ([]OperatorToken, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, fmt.Errorf("the operator token secret is empty")
	}
	if !strings.HasPrefix(raw, "{") {
		return []OperatorToken{{Name: "operator", Token: raw, Apps: []string{AllApps}}}, nil
	}
	var in struct {
		Tokens []OperatorToken `json:"tokens"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("the operator token secret is neither a plain token nor {\"tokens\":[{\"name\",\"token\",\"apps\"}]} JSON")
	}
	if len(in.Tokens) == 0 {
		return nil, fmt.Errorf("the operator token secret lists no tokens")
	}
	names := map[string]bool{}
	values := map[string]bool{}
	for i, t := range in.Tokens {
		label := fmt.Sprintf("token %d", i)
		if t.Name != "" {
			label = fmt.Sprintf("token %d (%s)", i, t.Name)
		}
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("operator secret: %s has no name (the audit log names it)", label)
		case names[t.Name]:
			return nil, fmt.Errorf("operator secret: %s: name given twice", label)
		case len(t.Token) < minTokenLen:
			return nil, fmt.Errorf("operator secret: %s: token is %d characters, want at least %d", label, len(t.Token), minTokenLen)
		case values[t.Token]:
			return nil, fmt.Errorf("operator secret: %s: same token as an earlier one", label)
		case len(t.Apps) == 0:
			return nil, fmt.Errorf("operator secret: %s lists no apps; use [\"*\"] for all", label)
		}
		for _, app := range t.Apps {
			if app != AllApps && !slices.Contains(served, app) {
				return nil, fmt.Errorf("operator secret: %s: app %q is not one the WeChat secret lists", label, app)
			}
		}
		names[t.Name], values[t.Token] = true, true
	}
	return in.Tokens, nil
}

// scope is what the token of a request may address.
type scope struct {
	name string
	all  bool
	apps []string
}

// allows reports whether the scope covers appID.
func (s scope) allows(appID string) bool { return s.all || slices.Contains(s.apps, appID) }

type scopeKey struct{}

// scopeOf returns the scope handle put on ctx; a context without one (a handler method
// called directly) addresses every app.
func scopeOf(ctx context.Context) scope {
	if s, ok := ctx.Value(scopeKey{}).(scope); ok {
		return s
	}
	return scope{all: true}
}

// tokens returns the handler's tokens: Tokens, or Token as one all-apps token.
func (h *Handler) tokens() []OperatorToken {
	if len(h.Tokens) > 0 {
		return h.Tokens
	}
	if h.Token == "" {
		return nil
	}
	return []OperatorToken{{Name: "operator", Token: h.Token, Apps: []string{AllApps}}}
}

// authenticate finds the operator token of the request's bearer credential, comparing
// with every token in constant time (hashing both first, so not even the length leaks,
// and not stopping at a match, so the position does not either). Session tokens never
// match.
func (h *Handler) authenticate(req events.APIGatewayV2HTTPRequest) (scope, bool) {
	// The scheme is case-insensitive (RFC 9110 §11.1), as in collect.
	scheme, got, ok := strings.Cut(strings.TrimSpace(httpapi.Header(req, "Authorization")), " ")
	got = strings.TrimSpace(got)
	if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
		return scope{}, false
	}
	sum := sha256.Sum256([]byte(got))
	var found scope
	matched := 0
	for _, t := range h.tokens() {
		want := sha256.Sum256([]byte(t.Token))
		eq := subtle.ConstantTimeCompare(sum[:], want[:])
		if eq == 1 {
			found = scope{name: t.Name, all: slices.Contains(t.Apps, AllApps), apps: t.Apps}
		}
		matched |= eq
	}
	return found, matched == 1
}

// scopeRule is how a route's app is found, so a scoped token can be held to its apps.
type scopeRule string

const (
	// ruleAppPath: /apps/{appId}/... names the app in its path.
	ruleAppPath scopeRule = "app-path"
	// ruleCampaignPath: /campaigns/{id}/... is the stored campaign's app.
	ruleCampaignPath scopeRule = "campaign-path"
	// ruleAppQuery: the appId query parameter.
	ruleAppQuery scopeRule = "app-query"
	// ruleAppBody: the JSON body's appId field.
	ruleAppBody scopeRule = "app-body"
	// ruleFiltered: a listing the handler filters by the scope (scopeOf).
	ruleFiltered scopeRule = "filtered"
	// ruleGlobal: a route that shows and changes no app's data (a cron preview).
	ruleGlobal scopeRule = "global"
	// ruleAllApps: a route only all-apps tokens may use (the default).
	ruleAllApps scopeRule = "all-apps"
)

// topRoutes decides the routes outside the /apps/{appId}/ and /campaigns/{id}/ layouts,
// by method and path after /v1/admin/ ({} is any one segment).
var topRoutes = map[string]scopeRule{
	"GET campaigns":     ruleFiltered,
	"POST campaigns":    ruleAppBody,
	"PUT users/{}":      ruleAppQuery,
	"POST users:import": ruleAppBody,
	"GET inventory":     ruleAppQuery,
	// The console's routes (console.go): the app list is filtered to the token's apps,
	// a validation names its app in the body, and a cron preview reads no app's data.
	"GET apps":                ruleFiltered,
	"POST campaigns:validate": ruleAppBody,
	"GET schedule/next":       ruleGlobal,
}

// scopeRuleFor returns the rule of a request to parts (the path after /v1/admin/), and
// false when no rule decides it.
func scopeRuleFor(method string, parts []string) (scopeRule, bool) {
	if len(parts) >= 2 && parts[1] != "" {
		switch parts[0] {
		case "apps":
			return ruleAppPath, true
		case "campaigns":
			return ruleCampaignPath, true
		}
	}
	for route, rule := range topRoutes {
		m, pattern, _ := strings.Cut(route, " ")
		if m == method && matchPattern(strings.Split(pattern, "/"), parts) {
			return rule, true
		}
	}
	return ruleAllApps, false
}

func matchPattern(pattern, parts []string) bool {
	if len(pattern) != len(parts) {
		return false
	}
	for i, seg := range pattern {
		if parts[i] == "" || (seg != "{}" && seg != parts[i]) {
			return false
		}
	}
	return true
}

// checkScope refuses a request of a scoped token that addresses an app outside its
// scope: 404 for another app's campaign (as if it did not exist, so ids do not leak),
// 403 otherwise. A listing passes, filtered by its handler; so does a request whose app
// cannot be read here (a body that does not decode), which its route then refuses.
func (h *Handler) checkScope(ctx context.Context, req events.APIGatewayV2HTTPRequest, s scope) error {
	if s.all {
		return nil
	}
	rest, ok := strings.CutPrefix(req.RawPath, "/v1/admin/")
	if !ok {
		return nil // no admin route: the router answers 404
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	method := req.RequestContext.HTTP.Method
	rule, _ := scopeRuleFor(method, parts)
	forbidden := func(appID string) error {
		return minipush.Errorf(minipush.EFORBIDDEN, "this operator token may not address app %q", appID)
	}
	switch rule {
	case ruleFiltered, ruleGlobal:
		return nil
	case ruleAppPath:
		if !s.allows(parts[1]) {
			return forbidden(parts[1])
		}
		return nil
	case ruleCampaignPath:
		c, err := h.Store.GetCampaign(ctx, parts[1])
		switch {
		case minipush.ErrorCode(err) == minipush.ENOTFOUND:
			return nil // the route answers the same 404
		case err != nil:
			return fmt.Errorf("admin: scope of campaign: %w", err)
		case !s.allows(c.AppID):
			return minipush.Errorf(minipush.ENOTFOUND, "no campaign %q", parts[1])
		}
		return nil
	case ruleAppQuery, ruleAppBody:
		app, err := requestApp(req, rule)
		if err != nil {
			return err
		}
		if app == "" {
			return invalid("appId: required; this operator token may address %s", strings.Join(s.apps, ", "))
		}
		if !s.allows(app) {
			return forbidden(app)
		}
		return nil
	}
	return minipush.Errorf(minipush.EFORBIDDEN, "%s /v1/admin/%s is open to all-apps operator tokens only", method, strings.Join(parts, "/"))
}

// requestApp reads the appId a request names in its query or body, decoded as its route
// decodes it (encoding/json matches field names case-insensitively, so "APPID" is the
// same field here as there).
func requestApp(req events.APIGatewayV2HTTPRequest, rule scopeRule) (string, error) {
	if rule == ruleAppQuery {
		r, err := parseRequest(req)
		if err != nil {
			return "", err
		}
		return r.param("appId"), nil
	}
	b, err := httpapi.Body(req, maxUsersBody)
	if err != nil {
		return "", err
	}
	var in struct {
		AppID string `json:"appId"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return "", minipush.Errorf(minipush.EMALFORMED, "body is not a JSON object with an appId")
	}
	return in.AppID, nil
}
