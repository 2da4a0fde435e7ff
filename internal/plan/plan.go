// Package plan turns due campaigns into SQS send batches.
package plan

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
)

// FromEnv builds the handler from its environment (stub until its issue lands).
func FromEnv(ctx context.Context, getenv func(string) string) (*Handler, error) {
	return &Handler{}, nil
}

// Handler plans due campaigns on each schedule tick.
type Handler struct{}

// Handle runs one tick.
func (h *Handler) Handle(ctx context.Context, ev events.EventBridgeEvent) error {
	return nil
}
