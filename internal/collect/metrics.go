package collect

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/metrics"
)

// Handle answers one HTTP API request (payload format 2.0); see handle. Around it, it
// counts the answer by status class and flushes the request's metrics (the WeChat
// login's latency, throttles the SDK retried, grants harvested, pushes).
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return h.Metrics.HTTP(ctx, h.logger(), req, h.handle)
}

// countHarvested counts the grants the store accepted (statuses[i] == accepted; a
// duplicate or a grant over the user's limit is not harvested), by kind.
func countHarvested[S comparable](ctx context.Context, appID string, grants []minipush.Grant, statuses []S, accepted S) {
	rec := metrics.FromContext(ctx)
	for i, st := range statuses {
		if st == accepted && i < len(grants) {
			rec.Add(metrics.GrantsHarvested, 1,
				metrics.Dim{Name: "Kind", Value: string(grants[i].Kind)}, metrics.Dim{Name: "AppId", Value: appID})
		}
	}
}

// countPush counts one signed push by its event; events minipush does not act on count
// as "other", so a push cannot create dimension values of its choosing.
func countPush(ctx context.Context, appID, event string) {
	typ := "other"
	if event == eventPopup || event == eventChange || event == eventSent {
		typ = event
	}
	metrics.FromContext(ctx).Add(metrics.PushEvents, 1, metrics.Dim{Name: "Type", Value: typ}, metrics.Dim{Name: "AppId", Value: appID})
}
