// Package admin is the operator API: campaigns, audiences, user attributes, progress and
// the grant inventory, under /v1/admin/. Every route requires the operator bearer token;
// validation happens here, before anything is stored, so a bad campaign is refused at
// creation rather than failing for every recipient at send time.
package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// Store is the storage the operator API uses; *dynamo.DB implements it. Methods return
// ENOTFOUND for a missing campaign and ECONFLICT for a status that forbids the change.
type Store interface {
	CreateCampaign(ctx context.Context, c minipush.Campaign) error
	GetCampaign(ctx context.Context, id string) (minipush.Campaign, error)
	ListCampaigns(ctx context.Context, status minipush.CampaignStatus, limit int, cursor string) ([]minipush.Campaign, string, error)
	UpdateDraft(ctx context.Context, id string, edit func(*minipush.Campaign) error) (minipush.Campaign, error)
	ScheduleCampaign(ctx context.Context, id string, s minipush.Schedule, next time.Time) (minipush.Campaign, error)
	CancelCampaign(ctx context.Context, id string) (minipush.Campaign, error)
	OperatorPause(ctx context.Context, id string) (minipush.Campaign, error)
	ResumeCampaign(ctx context.Context, id string, catchUp bool) (minipush.Campaign, error)
	CampaignRuns(ctx context.Context, id string) ([]minipush.Run, error)
	AddAudience(ctx context.Context, campaignID string, openIDs []string) (int, error)
	ListDeliveries(ctx context.Context, campaignID string, run int, outcome minipush.Outcome, limit int, cursor string) ([]minipush.Delivery, string, error)
	PutUserAttrs(ctx context.Context, appID string, a minipush.UserAttrs) error
	ImportUserAttrs(ctx context.Context, appID string, users []minipush.UserAttrs) error
	GrantInventory(ctx context.Context, appID string) (minipush.GrantInventory, error)
	// Idempotency-Key records (dynamo/idempotency.go): ClaimIdempotencyKey returns false
	// with the stored record when the key is taken; FinishIdempotencyKey returns
	// ECONFLICT when owner lost the key and ETOOLARGE for an answer too big to keep.
	ClaimIdempotencyKey(ctx context.Context, key, fingerprint, owner string, now, lockUntil time.Time) (minipush.IdempotentRequest, bool, error)
	FinishIdempotencyKey(ctx context.Context, key, owner string, a minipush.IdempotentAnswer) error
	ReleaseIdempotencyKey(ctx context.Context, key, owner string) error
}

// Handler serves the admin routes.
type Handler struct {
	Store Store
	// Token is the operator bearer token (from OPERATOR_SECRET_ARN), addressing every
	// app; Tokens, when set, replaces it with several tokens, each scoped to its apps
	// (ParseOperatorTokens, scope.go).
	Token  string
	Tokens []OperatorToken
	// AppIDs are the mini-programs this deployment serves (the WeChat secret's apps):
	// an appId outside them is refused, since its campaigns could only end no_grant and
	// its users would never log in.
	AppIDs []string
	Now    func() time.Time
	// NewID returns a fresh campaign id: letters and digits only, since campaign ids
	// become part of run keys ("<id>#<run>").
	NewID func() string
	// KeyedID returns the campaign id of a create sent with an Idempotency-Key, from the
	// key and the request's fingerprint: a create whose key is taken over after its
	// first run died (the lock ran out) writes the same campaign again, not a second one.
	KeyedID func(seed string) string
	// Webhooks keeps apps' webhooks (New sets it when the store has them); Events
	// enqueues the operator's pause and cancel as webhook events (nil: none).
	Webhooks WebhookStore
	Events   Publisher
	// Log receives the request log and the audit trail; nil discards.
	Log     *slog.Logger
	Metrics *metrics.Emitter // one EMF flush per request; nil emits nothing
	// Apps are the served apps by appId (the WeChat secret, secrets dropped): their
	// caps, quiet hours, zone and quota, for the forecast and progress's deferred count.
	Apps map[string]minipush.App
	// ForecastRate is the send rate (messages/s) the forecast assumes; 0 is
	// DefaultForecastRate.
	ForecastRate float64
	// Registry is the template registry (templates.go); nil: no template routes, and
	// campaigns get the generic data checks only.
	Registry TemplateStore
	// TemplateSource reads templates from WeChat for a sync; nil refuses syncs.
	TemplateSource TemplateSource
	// TestSender sends a campaign's test (testsend.go); nil refuses test sends (501).
	TestSender TestSender
}

// New returns a handler on store serving appIDs, with the wall clock and random ids.
func New(store Store, token string, appIDs []string) *Handler {
	h := &Handler{Store: store, Token: token, AppIDs: appIDs, Now: time.Now, NewID: randomID, KeyedID: hashedID}
	h.Webhooks, _ = store.(WebhookStore)
	return h
}

func (h *Handler) log() *slog.Logger { return logs.Or(h.Log) }

// hashedID is a campaign id (24 hex digits, like randomID's) derived from seed.
func hashedID(seed string) string {
	sum := sha256.Sum256([]byte("campaign\n" + seed))
	return hex.EncodeToString(sum[:12])
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// handle answers one HTTP API request (payload format 2.0) for Handle.
func (h *Handler) handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if resp, ok := public(req); ok {
		return resp, nil
	}
	sc, ok := h.authenticate(req)
	if !ok {
		return httpapi.Error(minipush.Errorf(minipush.EUNAUTHORIZED, "operator bearer token missing or wrong")), nil
	}
	ctx = context.WithValue(ctx, scopeKey{}, sc)
	var resp events.APIGatewayV2HTTPResponse
	key, keyed, err := idempotencyKey(req)
	if serr := h.checkScope(ctx, req, sc); serr != nil {
		// Before the Idempotency-Key: a scoped token never gets another app's kept answer.
		key, keyed, err = "", false, serr
	}
	switch {
	case err != nil:
		resp = httpapi.Error(err)
	case keyed:
		resp, err = h.once(ctx, req, key)
	default:
		if resp, err = h.route(ctx, req); err != nil {
			resp = httpapi.Error(err)
		}
	}
	// Errors are logged once, here; every operator change is logged as an audit trail.
	switch {
	case resp.StatusCode >= 500:
		h.log().ErrorContext(ctx, "admin: request failed", append(logAttrs(req, resp), "operator", sc.name, "err", fmt.Sprint(err))...)
	case req.RequestContext.HTTP.Method != http.MethodGet:
		h.log().InfoContext(ctx, "admin: operator request", append(logAttrs(req, resp), "operator", sc.name)...)
	}
	return resp, nil
}

// logAttrs names the request in logs: route, status, request id, and the campaign and
// run it addresses when it does.
func logAttrs(req events.APIGatewayV2HTTPRequest, resp events.APIGatewayV2HTTPResponse) []any {
	attrs := []any{"route", req.RequestContext.HTTP.Method + " " + logPath(req.RawPath), "status", resp.StatusCode,
		"request_id", req.RequestContext.RequestID}
	if resp.Headers[ReplayedHeader] == "true" {
		attrs = append(attrs, "replayed", true)
	}
	p := strings.Split(strings.TrimPrefix(req.RawPath, "/v1/admin/"), "/")
	if len(p) >= 2 && p[0] == "campaigns" {
		attrs = append(attrs, "campaign", p[1])
		if len(p) >= 4 && p[2] == "runs" {
			attrs = append(attrs, "run", p[3])
		}
	}
	return attrs
}

// logPath is the request path with the openid of a users/{openId} route replaced by its
// placeholder: openids never reach logs.
func logPath(path string) string {
	prefix, _, found := strings.Cut(path, "/v1/admin/users/")
	if !found || prefix != "" {
		return path
	}
	return "/v1/admin/users/{openId}"
}

// request is what a route handler sees of the HTTP request.
type request struct {
	events.APIGatewayV2HTTPRequest
	method string
	parts  []string // path segments after /v1/admin/
	query  url.Values
}

func (r request) param(name string) string { return r.query.Get(name) }

// parseRequest splits the path after /v1/admin/ and parses the query, for route and
// for checkScope, which must read the same appId the route will.
func parseRequest(ev events.APIGatewayV2HTTPRequest) (request, error) {
	rest, _ := strings.CutPrefix(ev.RawPath, "/v1/admin/")
	q, err := url.ParseQuery(ev.RawQueryString)
	if err != nil {
		return request{}, minipush.Errorf(minipush.EMALFORMED, "query string does not parse")
	}
	for k, v := range ev.QueryStringParameters {
		if !q.Has(k) {
			q.Set(k, v)
		}
	}
	return request{APIGatewayV2HTTPRequest: ev, method: ev.RequestContext.HTTP.Method, parts: strings.Split(strings.TrimSuffix(rest, "/"), "/"), query: q}, nil
}

func (h *Handler) route(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	path := ev.RawPath
	if !strings.HasPrefix(path, "/v1/admin/") {
		return notFound(path)
	}
	r, err := parseRequest(ev)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	p := r.parts
	switch {
	case len(p) == 1 && p[0] == "campaigns":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.listCampaigns, http.MethodPost: h.createCampaign})
	case len(p) == 2 && p[0] == "campaigns":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.getCampaign, http.MethodPatch: h.patchCampaign})
	case len(p) == 3 && p[0] == "campaigns":
		switch p[2] {
		case "audience":
			return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.uploadAudience})
		case "schedule":
			return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.scheduleCampaign})
		case "cancel", "pause", "resume":
			return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.transition})
		case "progress":
			return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.progress})
		case "forecast":
			return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.forecast})
		case "test":
			return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.testSend})
		}
	case len(p) == 5 && p[0] == "campaigns" && p[2] == "runs" && p[4] == "deliveries":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.deliveries})
	case len(p) == 2 && p[0] == "users":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodPut: h.putUser})
	case len(p) == 1 && p[0] == "users:import":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.importUsers})
	case len(p) == 3 && p[0] == "apps" && p[2] == "templates:sync":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.syncTemplatesRoute})
	case len(p) == 3 && p[0] == "apps" && p[2] == "templates":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.listTemplates})
	case len(p) == 4 && p[0] == "apps" && p[2] == "templates":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.getTemplate})
	case len(p) == 5 && p[0] == "apps" && p[2] == "templates" && p[4] == "preview":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.previewTemplate})
	case len(p) == 3 && p[0] == "apps" && p[2] == "quota":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.getQuota})
	case len(p) == 3 && p[0] == "apps" && p[2] == "webhook":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.getWebhook, http.MethodPut: h.putWebhook})
	case len(p) == 1 && p[0] == "inventory":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.inventory})
	case len(p) == 1 && p[0] == "apps":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.listApps})
	case len(p) == 1 && p[0] == "campaigns:validate":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodPost: h.validateDraft})
	case len(p) == 2 && p[0] == "schedule" && p[1] == "next":
		return h.methods(ctx, r, map[string]routeFunc{http.MethodGet: h.nextRuns})
	}
	return notFound(path)
}

type routeFunc func(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error)

func (h *Handler) methods(ctx context.Context, r request, fns map[string]routeFunc) (events.APIGatewayV2HTTPResponse, error) {
	if fn, ok := fns[r.method]; ok {
		return fn(ctx, r)
	}
	allowed := make([]string, 0, len(fns))
	for m := range fns {
		allowed = append(allowed, m)
	}
	resp := httpapi.JSON(http.StatusMethodNotAllowed, httpapi.ErrorBody{
		Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed here", r.method),
	})
	resp.Headers["Allow"] = strings.Join(allowed, ", ")
	return resp, nil
}

func notFound(path string) (events.APIGatewayV2HTTPResponse, error) {
	return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ENOTFOUND, "no admin route %s", path)
}
