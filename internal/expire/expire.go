// Package expire keeps user inventory and expiry statistics right as grants are removed.
package expire

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
)

// Handler consumes the grants table's stream of removals.
type Handler struct{}

// Handle processes one stream batch.
func (h *Handler) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	return events.DynamoDBEventResponse{}, nil
}
