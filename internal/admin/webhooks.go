package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

// WebhookStore keeps apps' webhooks; *dynamo.DB implements it. GetWebhook returns
// ENOTFOUND for an app without one.
type WebhookStore interface {
	PutWebhook(ctx context.Context, w minipush.Webhook) error
	GetWebhook(ctx context.Context, appID string) (minipush.Webhook, error)
}

// Publisher enqueues webhook events (*webhook.Publisher); it never fails the request.
type Publisher interface {
	Publish(ctx context.Context, ev minipush.WebhookEvent)
}

// maxWebhookURL bounds a webhook URL.
const maxWebhookURL = 2048

// putWebhook sets the app's webhook URL and generates its signing secret, answered
// this once: a GET never shows it again, and a new PUT replaces it (rotation).
// PUT /v1/admin/apps/{appId}/webhook {"url": "https://..."}
func (h *Handler) putWebhook(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app := r.parts[1]
	if err := h.servedApp("appId", app); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	var in struct {
		URL string `json:"url"`
	}
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if err := validateWebhookURL(in.URL); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if h.Webhooks == nil {
		return httpapi.NotImplemented("webhooks"), nil
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	w := minipush.Webhook{AppID: app, URL: in.URL, Secret: "whsec_" + hex.EncodeToString(b), UpdatedAt: h.Now().UTC()}
	if err := h.Webhooks.PutWebhook(ctx, w); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusOK, struct {
		minipush.Webhook
		Secret string `json:"secret"`
	}{w, w.Secret}), nil
}

// getWebhook answers the app's webhook URL and delivery health (never its secret).
// GET /v1/admin/apps/{appId}/webhook
func (h *Handler) getWebhook(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app := r.parts[1]
	if err := h.servedApp("appId", app); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if h.Webhooks == nil {
		return httpapi.NotImplemented("webhooks"), nil
	}
	return okJSON(h.Webhooks.GetWebhook(ctx, app))
}

// validateWebhookURL wants an absolute https URL without credentials; plain http only
// to a loopback address (a local receiver, the sandbox).
func validateWebhookURL(s string) error {
	if s == "" || len(s) > maxWebhookURL {
		return invalid("url: required, at most %d characters", maxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return invalid("url: want an absolute https URL without user info or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return invalid("url: want https (plain http only to a loopback address)")
}

// publish enqueues ev if a publisher is set.
func (h *Handler) publish(ctx context.Context, ev minipush.WebhookEvent) {
	if h.Events != nil {
		h.Events.Publish(ctx, ev)
	}
}
