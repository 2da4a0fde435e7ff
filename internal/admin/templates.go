package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/msgcheck"
	"minipush/internal/wechat"
)

// The template registry (README, Templates): each app's private subscribe templates,
// synced from WeChat on demand and daily, and what a campaign's data is checked
// against at creation.
//
//	POST /v1/admin/apps/{appId}/templates:sync                 sync now; answers what changed
//	GET  /v1/admin/apps/{appId}/templates                      the registry
//	GET  /v1/admin/apps/{appId}/templates/{priTmplId}          one template
//	POST /v1/admin/apps/{appId}/templates/{priTmplId}/preview  {data} → rendered text + validation

// TemplateStore is the registry's storage; *dynamo.DB implements it. Template returns
// ENOTFOUND for a template the registry lacks.
type TemplateStore interface {
	Templates(ctx context.Context, appID string) (minipush.TemplateRegistry, error)
	Template(ctx context.Context, appID, id string) (minipush.Template, error)
	TemplatesSyncedAt(ctx context.Context, appID string) (time.Time, error)
	ReplaceTemplates(ctx context.Context, appID string, templates []minipush.Template, syncedAt time.Time) (minipush.TemplateSync, error)
}

// TemplateSource reads an app's private templates from WeChat; WeChatTemplates
// implements it.
type TemplateSource interface {
	PrivateTemplates(ctx context.Context, appID string) ([]minipush.Template, error)
}

// DailySyncAge is how old a registry must be before the daily schedule syncs it again:
// less than a day, so a tick that comes a little early still syncs, and more than a
// few hours, so repeated ticks (a retried invocation, the local runner's ticks) cost
// one read per app, not a WeChat call.
const DailySyncAge = 20 * time.Hour

// WeChatTemplates is the WeChat side of a sync: gettemplate with the app's access token.
type WeChatTemplates struct {
	Client interface {
		GetTemplates(ctx context.Context, token string) ([]wechat.PrivateTemplate, error)
	}
	// Token returns the app's access token. fresh asks for another than the one that
	// was just refused (40001/42001).
	Token func(ctx context.Context, appID string, fresh bool) (string, error)
}

// PrivateTemplates lists the app's templates as registry records. A token WeChat
// refuses is fetched again once.
func (w WeChatTemplates) PrivateTemplates(ctx context.Context, appID string) ([]minipush.Template, error) {
	var list []wechat.PrivateTemplate
	for attempt := 0; ; attempt++ {
		tok, err := w.Token(ctx, appID, attempt > 0)
		if err != nil {
			return nil, upstream("access token", err)
		}
		list, err = w.Client.GetTemplates(ctx, tok)
		if err == nil {
			break
		}
		if attempt > 0 || wechat.Classify(err) != wechat.Refresh {
			return nil, upstream("gettemplate", err)
		}
	}
	out := make([]minipush.Template, 0, len(list))
	for _, p := range list {
		enums := map[string][]string{}
		for _, e := range p.KeywordEnumValueList {
			enums[strings.TrimSuffix(e.KeywordCode, ".DATA")] = e.EnumValueList
		}
		out = append(out, minipush.NewTemplate(appID, p.PriTmplID, p.Title, p.Content, p.Example, p.Type, enums))
	}
	return out, nil
}

// upstream names a failed WeChat call for the operator: its errcode and reason, never
// the URL (which carries the token).
func upstream(what string, err error) error {
	var we *wechat.Error
	msg := fmt.Sprintf("wechat %s failed (%s)", what, wechat.Reason(err))
	if errors.As(err, &we) && we.Code != 0 {
		msg = fmt.Sprintf("wechat %s answered errcode %d (%s)", what, we.Code, wechat.Reason(err))
	}
	e := minipush.Errorf(minipush.EUPSTREAM, "%s", msg)
	e.Err = err
	return e
}

// registryApp is the app a registry route names (p[1]), once the deployment serves it
// and has a registry. The four routes are plain cases of admin.go's switch, so
// TestOpenAPIRoutes reads them like any other.
func (h *Handler) registryApp(r request) (string, error) {
	app := r.parts[1]
	if !slices.Contains(h.AppIDs, app) {
		return "", minipush.Errorf(minipush.ENOTFOUND, "no app %q in this deployment", app)
	}
	if h.Registry == nil {
		return "", minipush.Errorf(minipush.ENOTIMPL, "this deployment has no template registry")
	}
	return app, nil
}

// syncTemplatesRoute: POST /v1/admin/apps/{appId}/templates:sync.
func (h *Handler) syncTemplatesRoute(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.registryApp(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return okJSON(h.SyncTemplates(ctx, app))
}

// listTemplates: GET /v1/admin/apps/{appId}/templates.
func (h *Handler) listTemplates(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.registryApp(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return okJSON(h.Registry.Templates(ctx, app))
}

// getTemplate: GET /v1/admin/apps/{appId}/templates/{priTmplId}.
func (h *Handler) getTemplate(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.registryApp(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return okJSON(h.template(ctx, app, r.parts[3]))
}

// previewTemplate: POST /v1/admin/apps/{appId}/templates/{priTmplId}/preview.
func (h *Handler) previewTemplate(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.registryApp(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return h.preview(ctx, r, app, r.parts[3])
}

// template reads one template, ENOTFOUND for an id that cannot be one.
func (h *Handler) template(ctx context.Context, app, id string) (minipush.Template, error) {
	if msgcheck.ValidateTemplateID(id) != nil {
		return minipush.Template{}, minipush.Errorf(minipush.ENOTFOUND, "no template %q", id)
	}
	return h.Registry.Template(ctx, app, id)
}

// SyncTemplates replaces app's registry with the templates WeChat lists now.
func (h *Handler) SyncTemplates(ctx context.Context, app string) (minipush.TemplateSync, error) {
	if h.TemplateSource == nil {
		return minipush.TemplateSync{}, minipush.Errorf(minipush.ENOTIMPL,
			"template sync needs its own access token, which only TOKEN_ENDPOINT=stable gives without invalidating the sender's")
	}
	list, err := h.TemplateSource.PrivateTemplates(ctx, app)
	if err != nil {
		return minipush.TemplateSync{}, err
	}
	sync, err := h.Registry.ReplaceTemplates(ctx, app, list, h.Now().UTC().Truncate(time.Second))
	if err != nil {
		return minipush.TemplateSync{}, fmt.Errorf("admin: sync templates of %s: %w", app, err)
	}
	h.log().InfoContext(ctx, "admin: templates synced", "app", app, "templates", len(sync.Templates),
		"added", len(sync.Added), "changed", len(sync.Changed), "removed", len(sync.Removed))
	return sync, nil
}

// SyncAllTemplates is the daily sync: every served app whose registry is older than
// DailySyncAge. A failing app is logged (with WeChat's errcode) and the others still
// sync; the invocation itself succeeds, because retrying it would re-sync the apps
// that worked, and tomorrow's tick or an on-demand sync retries the one that did not.
func (h *Handler) SyncAllTemplates(ctx context.Context) error {
	if h.Registry == nil || h.TemplateSource == nil {
		h.log().InfoContext(ctx, "admin: daily template sync skipped: no registry or no template source")
		return nil
	}
	now := h.Now()
	for _, app := range h.AppIDs {
		last, err := h.Registry.TemplatesSyncedAt(ctx, app)
		if err == nil && now.Sub(last) < DailySyncAge {
			continue
		}
		if err == nil {
			_, err = h.SyncTemplates(ctx, app)
		}
		if err != nil {
			h.log().ErrorContext(ctx, "admin: daily template sync failed", "app", app, "err", err.Error())
		}
	}
	return nil
}

// Invoke is the admin function's entry point (lambda.Start): the HTTP API's requests,
// and the daily EventBridge schedule's ticks (source aws.events, detail-type
// "Scheduled Event"), which sync the template registries. One function serves both so
// the sync runs with the admin role, the one that already reads the WeChat secret and
// writes the state table, and no role gains a permission for it.
func (h *Handler) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Source     string `json:"source"`
		DetailType string `json:"detail-type"`
	}
	if err := json.Unmarshal(raw, &probe); err == nil && probe.Source == "aws.events" && probe.DetailType == "Scheduled Event" {
		return struct{}{}, h.SyncAllTemplates(ctx)
	}
	var req events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("admin: decode request: %w", err)
	}
	return h.Handle(ctx, req)
}

// checkTemplate checks a subscribe message's data against the template it names, when
// the registry has the app's templates: the keys the content uses, no others, each
// value by its rule (enums by their list). A template id the registry lacks is refused
// once the app was synced at least once (the app has no such template: every send
// would answer 40037); before any sync, the generic checks of validateMessage are all
// there is.
func (h *Handler) checkTemplate(ctx context.Context, appID string, m minipush.Message) error {
	if h.Registry == nil || m.Kind != minipush.MessageSubscribe {
		return nil
	}
	t, err := h.Registry.Template(ctx, appID, m.TemplateID)
	if minipush.ErrorCode(err) == minipush.ENOTFOUND {
		synced, serr := h.Registry.TemplatesSyncedAt(ctx, appID)
		switch {
		case serr != nil:
			return serr
		case synced.IsZero():
			return nil
		}
		return invalid("message.templateId %q: app %s has no such template (registry synced %s; sync again after adding it: POST /v1/admin/apps/%s/templates:sync)",
			m.TemplateID, appID, synced.Format(time.RFC3339), appID)
	}
	if err != nil {
		return err
	}
	if errs := validateForTemplate(t, m.Data); len(errs) > 0 {
		return invalid("message: %s", strings.Join(errs, "; "))
	}
	return nil
}

// validateForTemplate applies msgcheck.ValidateForTemplate to data and returns each
// problem as text.
func validateForTemplate(t minipush.Template, data map[string]minipush.DataValue) []string {
	fields := make([]msgcheck.Field, len(t.Fields))
	for i, f := range t.Fields {
		fields[i] = msgcheck.Field{Key: f.Key, Type: msgcheck.FieldType(f.Rule), Enum: f.Enum}
	}
	var out []string
	for _, fe := range msgcheck.ValidateForTemplate(fields, values(data)) {
		out = append(out, fe.Error())
	}
	return out
}

func values(data map[string]minipush.DataValue) map[string]string {
	out := make(map[string]string, len(data))
	for k, v := range data {
		out[k] = v.Value
	}
	return out
}

// Preview is the answer of a preview: the message as the user's card reads it and
// whether a campaign with this data would be accepted.
type Preview struct {
	TemplateID string   `json:"priTmplId"`
	Title      string   `json:"title"`
	Text       string   `json:"text"`
	Valid      bool     `json:"valid"`
	Errors     []string `json:"errors"`
}

// preview renders data into a template and validates it as creation would.
// POST /v1/admin/apps/{appId}/templates/{priTmplId}/preview {"data": {...}}
func (h *Handler) preview(ctx context.Context, r request, app, id string) (events.APIGatewayV2HTTPResponse, error) {
	var in struct {
		Data map[string]minipush.DataValue `json:"data"`
	}
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if len(in.Data) > msgcheck.MaxFields {
		return events.APIGatewayV2HTTPResponse{}, invalid("data: %d fields, more than %d", len(in.Data), msgcheck.MaxFields)
	}
	t, err := h.template(ctx, app, id)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	errs := validateForTemplate(t, in.Data)
	if errs == nil {
		errs = []string{}
	}
	return httpapi.JSON(http.StatusOK, Preview{TemplateID: t.ID, Title: t.Title, Text: t.Render(values(in.Data)), Valid: len(errs) == 0, Errors: errs}), nil
}
