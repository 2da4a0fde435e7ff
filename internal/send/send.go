// Package send delivers planned recipients to WeChat, spending one grant each.
package send

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
)

// Handler consumes send batches.
type Handler struct{}

// Handle processes one SQS batch. Until delivery lands it reports every message as
// failed so nothing is lost: the messages return to the queue.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	for _, m := range ev.Records {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
	}
	return resp, nil
}
