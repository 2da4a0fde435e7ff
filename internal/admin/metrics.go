package admin

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"minipush/internal/metrics"
)

// Handle answers one HTTP API request (payload format 2.0); see handle. Around it, it
// counts the answer by status class and flushes the request's metrics (throttles the
// SDK retried among them).
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	ctx, rec := h.Metrics.Start(ctx)
	resp, err := h.handle(ctx, req)
	rec.Add(metrics.Requests, 1, metrics.Dim{Name: "Status", Value: metrics.StatusClass(resp.StatusCode)})
	if ferr := rec.Flush(); ferr != nil && h.Log != nil {
		h.Log.WarnContext(ctx, "metrics lost", "err", ferr.Error())
	}
	return resp, err
}
