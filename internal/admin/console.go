package admin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/console"
	"minipush/internal/httpapi"
	"minipush/internal/schedule"
)

// OpenAPIPath is where the API description is served, without a token.
const OpenAPIPath = "/v1/openapi.json"

// public answers the routes that need no operator token — the console's static files
// and the API description, neither holding data — and reports whether path is one.
func public(req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, bool) {
	switch path := req.RawPath; {
	case console.Owns(path):
		return console.Serve(req.RequestContext.HTTP.Method, path), true
	case path == OpenAPIPath:
		return openAPI(req.RequestContext.HTTP.Method), true
	}
	return events.APIGatewayV2HTTPResponse{}, false
}

// listApps answers the mini-programs this deployment serves, so the console offers
// them instead of asking the operator to type an appid. GET /v1/admin/apps
func (h *Handler) listApps(ctx context.Context, _ request) (events.APIGatewayV2HTTPResponse, error) {
	sc := scopeOf(ctx)
	apps := []string{}
	for _, a := range h.AppIDs {
		if sc.allows(a) {
			apps = append(apps, a)
		}
	}
	return httpapi.JSON(http.StatusOK, struct {
		Apps []string `json:"apps"`
	}{apps}), nil
}

// validateDraft checks a campaign body exactly as POST /v1/admin/campaigns would and
// stores nothing: the console's live validation, with the API's own rules rather than
// a copy of them in JavaScript that could drift. POST /v1/admin/campaigns:validate
// The checks are createCampaign's own (draft), so the two cannot drift.
func (h *Handler) validateDraft(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	var in campaignIn
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if _, err := h.draft(ctx, in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusOK, struct {
		Valid bool `json:"valid"`
	}{true}), nil
}

// maxNextRuns bounds n of schedule/next: a preview, not a calendar export.
const maxNextRuns = 20

// nextRuns answers the next n occurrences of a cron in a time zone, computed by the
// planner's own schedule package, so what the console shows is when runs will start.
// GET /v1/admin/schedule/next?cron=0+10+*+*+*&timeZone=Asia/Shanghai&n=5
func (h *Handler) nextRuns(_ context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	n := 5
	if v := r.param("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxNextRuns {
			return events.APIGatewayV2HTTPResponse{}, invalid("n %q: want 1 to %d", v, maxNextRuns)
		}
	}
	s := minipush.Schedule{Cron: r.param("cron"), TimeZone: r.param("timeZone")}
	if s.Cron == "" {
		return events.APIGatewayV2HTTPResponse{}, invalid("cron: required, such as \"0 10 * * *\"")
	}
	now := h.Now().UTC().Truncate(time.Second)
	if err := schedule.Validate(s, now); err != nil {
		return events.APIGatewayV2HTTPResponse{}, invalid("%s", err)
	}
	loc, err := schedule.Location(s)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, invalid("%s", err)
	}
	next := make([]string, 0, n)
	for at := now; len(next) < n; {
		t, ok, err := schedule.Next(s, at)
		if err != nil || !ok {
			break // Validate refused a cron that never fires; later ones may end (Feb 30)
		}
		next = append(next, t.In(loc).Format(time.RFC3339))
		at = t
	}
	return httpapi.JSON(http.StatusOK, struct {
		Cron     string   `json:"cron"`
		TimeZone string   `json:"timeZone"`
		Next     []string `json:"next"`
	}{s.Cron, loc.String(), next}), nil
}
