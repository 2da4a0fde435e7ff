// Package plan turns due campaigns into SQS send batches.
package plan

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
)

// Handler plans due campaigns on each schedule tick.
type Handler struct{}

// Handle runs one tick.
func (h *Handler) Handle(ctx context.Context, ev events.EventBridgeEvent) error {
	return nil
}
