package localrun

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSHandler is a function behind an SQS event source mapping.
type SQSHandler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)

// SQSClient is what the mapping needs from SQS.
type SQSClient interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// SQSMapping emulates a Lambda SQS event source mapping: MaximumConcurrency pollers,
// each long-polling up to BatchSize messages and invoking the function with them; on
// success it deletes the batch, or with ReportBatchItemFailures every message but the
// listed failures, which reappear after the visibility timeout (and reach the DLQ after
// maxReceiveCount, by the queue's own redrive policy). A function error deletes nothing.
//
// With Duplicate set it also plays SQS's at-least-once delivery: each received message
// is, with that probability, sent to the queue again (same body and attributes) before
// the function sees it, so a second copy is delivered later, possibly while the first
// is still being processed.
type SQSMapping struct {
	Function       string
	QueueURL       string
	QueueARN       string
	BatchSize      int
	MaxConcurrency int
	ReportFailures bool
	Timeout        time.Duration
	Handler        SQSHandler
	Client         SQSClient
	Log            *slog.Logger
	// PollWait is the long-poll wait; short so shutdown is quick.
	PollWait time.Duration
	// Duplicate is the probability (0..1) that a received message is delivered again
	// later; 0, the default, never duplicates.
	Duplicate float64
}

// Run polls until ctx ends.
func (m *SQSMapping) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < max(1, m.MaxConcurrency); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				m.pollOnce(ctx)
			}
		}()
	}
	wg.Wait()
}

func (m *SQSMapping) pollOnce(ctx context.Context) {
	wait := m.PollWait
	if wait <= 0 {
		wait = time.Second
	}
	out, err := m.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(m.QueueURL),
		MaxNumberOfMessages: int32(min(max(m.BatchSize, 1), 10)),
		WaitTimeSeconds:     int32(max(wait/time.Second, 1)),
		// local-aws-sqs returns system attributes (ApproximateReceiveCount, SentTimestamp)
		// only when asked through this older field.
		AttributeNames:        []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		if ctx.Err() == nil {
			m.Log.Warn("sqs receive failed", "target", m.Function, "err", err)
			sleep(ctx, time.Second)
		}
		return
	}
	if len(out.Messages) == 0 {
		return
	}
	if m.Duplicate > 0 {
		m.duplicate(ctx, out.Messages)
	}
	ev := SQSEventOf(out.Messages, m.QueueARN)
	receipts := map[string]string{}
	for _, rec := range ev.Records {
		receipts[rec.MessageId] = rec.ReceiptHandle
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Timeout)
	ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{AwsRequestID: requestID()})
	resp, err := m.Handler(ictx, ev)
	cancel()
	if err != nil {
		m.Log.Error("function failed; batch returns to the queue", "target", m.Function, "messages", len(ev.Records), "err", err)
		return
	}
	failed := map[string]bool{}
	if m.ReportFailures {
		for _, f := range resp.BatchItemFailures {
			if _, ok := receipts[f.ItemIdentifier]; !ok {
				// Lambda treats an unknown or empty identifier as a failure of the whole batch.
				m.Log.Error("invalid batchItemFailures; whole batch returns", "target", m.Function, "id", f.ItemIdentifier)
				return
			}
			failed[f.ItemIdentifier] = true
		}
	}
	var entries []sqstypes.DeleteMessageBatchRequestEntry
	for _, rec := range ev.Records {
		if !failed[rec.MessageId] {
			// Entry ids must be short and alphanumeric; message ids need not be.
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{
				Id: aws.String("e" + strconv.Itoa(len(entries))), ReceiptHandle: aws.String(rec.ReceiptHandle),
			})
		}
	}
	if len(entries) == 0 {
		return
	}
	if _, err := m.Client.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{
		QueueUrl: aws.String(m.QueueURL), Entries: entries,
	}); err != nil {
		m.Log.Warn("sqs delete failed; messages will be redelivered", "target", m.Function, "err", err)
	}
}

// duplicate sends each message again with probability m.Duplicate, delayed 0–2 s so
// the copy arrives while the original is in flight or soon after it finished.
func (m *SQSMapping) duplicate(ctx context.Context, msgs []sqstypes.Message) {
	for _, msg := range msgs {
		if rand.Float64() >= m.Duplicate {
			continue
		}
		if _, err := m.Client.SendMessage(context.WithoutCancel(ctx), &sqs.SendMessageInput{
			QueueUrl: aws.String(m.QueueURL), MessageBody: msg.Body, MessageAttributes: msg.MessageAttributes,
			DelaySeconds: rand.Int32N(3),
		}); err != nil {
			m.Log.Warn("sqs duplicate failed", "target", m.Function, "err", err)
			continue
		}
		m.Log.Info("sqs message duplicated", "target", m.Function, "message_id", aws.ToString(msg.MessageId))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// SQSEventOf is the event Lambda's SQS event source gives a function for messages
// received from the queue with ARN queueARN.
func SQSEventOf(msgs []sqstypes.Message, queueARN string) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(msgs))}
	for _, msg := range msgs {
		rec := events.SQSMessage{
			MessageId:      aws.ToString(msg.MessageId),
			ReceiptHandle:  aws.ToString(msg.ReceiptHandle),
			Body:           aws.ToString(msg.Body),
			Md5OfBody:      aws.ToString(msg.MD5OfBody),
			Attributes:     msg.Attributes,
			EventSource:    "aws:sqs",
			EventSourceARN: queueARN,
			AWSRegion:      "us-east-1",
		}
		if len(msg.MessageAttributes) > 0 {
			rec.MessageAttributes = map[string]events.SQSMessageAttribute{}
			for k, v := range msg.MessageAttributes {
				rec.MessageAttributes[k] = events.SQSMessageAttribute{StringValue: v.StringValue, BinaryValue: v.BinaryValue, DataType: aws.ToString(v.DataType)}
			}
		}
		ev.Records = append(ev.Records, rec)
	}
	return ev
}
