package admin

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
)

// Handle answers one HTTP API request (payload format 2.0); see handle. Around it, it
// counts the answer by status class and flushes the request's metrics (throttles the
// SDK retried among them).
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return h.Metrics.HTTP(ctx, h.Log, req, h.handle)
}
