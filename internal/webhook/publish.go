package webhook

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// SenderAPI is the SQS call a Publisher makes (sqs:SendMessage).
type SenderAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Publisher puts events on the webhook queue. A nil *Publisher publishes nothing, so a
// producer built without the queue (a test, a deployment before the queue existed)
// works unchanged.
type Publisher struct {
	Client SenderAPI
	URL    string
	Log    *slog.Logger
	// Timeout bounds one enqueue (default 3 s), so a slow queue delays its producer by
	// at most that.
	Timeout time.Duration
}

// Publish enqueues ev. It returns nothing: a webhook must never block or fail a send,
// a plan or an operator request, so a failure is logged (without the body) and counted
// in metrics.WebhookEnqueueFailures, and the caller goes on.
func (p *Publisher) Publish(ctx context.Context, ev minipush.WebhookEvent) {
	if p == nil || p.Client == nil || p.URL == "" {
		return
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := json.Marshal(ev)
	if err == nil {
		_, err = p.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(p.URL), MessageBody: aws.String(string(body))})
	}
	if err != nil {
		metrics.FromContext(ctx).Add(metrics.WebhookEnqueueFailures, 1)
		logs.Or(p.Log).WarnContext(ctx, "webhook: event not enqueued", "event", ev.Type, "event_id", ev.ID,
			"campaign", ev.CampaignID, logs.KeyErr, err)
	}
}
