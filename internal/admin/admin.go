// Package admin is the operator API: campaigns, audiences, user attributes, progress.
package admin

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"minipush/internal/httpapi"
)

// FromEnv builds the handler from its environment (stub until its issue lands).
func FromEnv(ctx context.Context, getenv func(string) string) (*Handler, error) {
	return &Handler{}, nil
}

// Handler serves the admin routes.
type Handler struct{}

// Handle answers one HTTP API request (payload format 2.0).
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return httpapi.NotImplemented(req.RouteKey), nil
}
