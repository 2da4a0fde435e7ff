package admin

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

type userIn struct {
	Region   string   `json:"region"`
	Industry string   `json:"industry"`
	Tags     []string `json:"tags"`
	OptOut   bool     `json:"optOut"`
}

func (u userIn) attrs(openID string) minipush.UserAttrs {
	return minipush.UserAttrs{OpenID: openID, Region: u.Region, Industry: u.Industry, Tags: u.Tags, OptOut: u.OptOut}
}

func validateUser(field string, a minipush.UserAttrs) error {
	if err := validateOpenID(field+"openId", a.OpenID); err != nil {
		return err
	}
	for name, v := range map[string]string{"region": a.Region, "industry": a.Industry} {
		if v != "" {
			if err := validateAttr(field+name, v); err != nil {
				return err
			}
		}
	}
	return validateAttrs(field+"tags", a.Tags, maxTags)
}

// appIDParam returns the appId query parameter, which must name an app the deployment
// serves.
func (h *Handler) appIDParam(r request) (string, error) {
	app := r.param("appId")
	if app == "" || len(app) > 64 {
		return "", invalid("appId: required query parameter")
	}
	return app, h.servedApp("appId", app)
}

// servedApp refuses an appId the deployment does not serve: a typo would otherwise store
// users no login ever reaches, or a campaign whose every recipient ends no_grant.
func (h *Handler) servedApp(field, appID string) error {
	if slices.Contains(h.AppIDs, appID) {
		return nil
	}
	return invalid("%s: %q is not an app this deployment serves (its WeChat secret lists %s)", field, appID, strings.Join(h.AppIDs, ", "))
}

// putUser replaces one user's segment attributes and opt-out.
// PUT /v1/admin/users/{openId}?appId=wx...
func (h *Handler) putUser(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.appIDParam(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	var in userIn
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	a := in.attrs(r.parts[1])
	if err := validateUser("", a); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if err := h.Store.PutUserAttrs(ctx, app, a); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusOK, a), nil
}

// importUsers replaces the attributes of up to 1000 users of one app:
// {"appId": "wx...", "users": [{"openId": ..., "region": ..., "tags": [...], "optOut": false}]}.
// The whole request is validated before anything is written. POST /v1/admin/users:import
func (h *Handler) importUsers(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	var in struct {
		AppID string               `json:"appId"`
		Users []minipush.UserAttrs `json:"users"`
	}
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxUsersBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if in.AppID == "" || len(in.AppID) > 64 {
		return events.APIGatewayV2HTTPResponse{}, invalid("appId: required")
	}
	if err := h.servedApp("appId", in.AppID); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if len(in.Users) > maxImport {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ETOOLARGE, "users: %d in one request, at most %d; split the import", len(in.Users), maxImport)
	}
	if len(in.Users) == 0 {
		return events.APIGatewayV2HTTPResponse{}, invalid("users: none given")
	}
	// The writes run in parallel, so two entries for one user would race and either
	// could win: refuse the request instead of guessing which the operator meant.
	first := make(map[string]int, len(in.Users))
	for i, u := range in.Users {
		if err := validateUser("users["+strconv.Itoa(i)+"].", u); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		if j, dup := first[u.OpenID]; dup {
			return events.APIGatewayV2HTTPResponse{}, invalid("users[%d].openId: %s already given in users[%d]", i, u.OpenID, j)
		}
		first[u.OpenID] = i
	}
	if err := h.Store.ImportUserAttrs(ctx, in.AppID, in.Users); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusOK, struct {
		Imported int `json:"imported"`
	}{len(in.Users)}), nil
}

// inventory answers an app's grant stock. GET /v1/admin/inventory?appId=wx...
func (h *Handler) inventory(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.appIDParam(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return okJSON(h.Store.GrantInventory(ctx, app))
}
