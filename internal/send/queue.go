package send

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
)

// SQSAPI is the one SQS call send makes.
type SQSAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// SQSQueue is the send queue: re-queued and held batches go back to it.
type SQSQueue struct {
	Client SQSAPI
	URL    string
}

// Enqueue sends b with delay (rounded up to whole seconds, at most MaxDelay).
func (q SQSQueue) Enqueue(ctx context.Context, b minipush.Batch, delay time.Duration) error {
	body, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("queue: encode batch %s: %w", b.ID, err)
	}
	secs := int32((min(delay, MaxDelay) + time.Second - 1) / time.Second)
	_, err = q.Client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(q.URL), MessageBody: aws.String(string(body)), DelaySeconds: max(secs, 0),
	})
	if err != nil {
		return fmt.Errorf("queue: send batch %s: %w", b.ID, err)
	}
	return nil
}
