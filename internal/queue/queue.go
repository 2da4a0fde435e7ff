// Package queue is the send queue on SQS, the one adapter of it: the planner hands it
// send batches and it puts them on the queue ten per SendMessageBatch call; the sender
// puts back the batches it re-queues or holds, each with a delay. Entries SQS refused
// are retried.
package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
)

// Limits of one SendMessageBatch call, see
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
const (
	// MaxEntries is the most messages one SendMessageBatch call takes.
	MaxEntries = 10
	// MaxBytes bounds one message body and the sum of the bodies of one call. SQS now
	// accepts 1 MiB, but 256 KiB is the limit every queue and the local stand-in honour.
	MaxBytes = 256 * 1024
	// MaxDelay is the longest DelaySeconds SQS accepts.
	MaxDelay = 15 * time.Minute
)

// API is the SQS call the queue makes (SendMessageBatch needs the sqs:SendMessage
// permission).
type API interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Queue is the send queue.
type Queue struct {
	Client API
	URL    string
	// Attempts bounds the calls made for one entry SQS keeps refusing (default 6).
	Attempts int
	// Backoff is the wait before the first retry, doubled after each (default 100ms).
	Backoff time.Duration
	// Sleep waits d or until ctx ends; tests replace it to run without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
}

// New returns the queue at url with default retries.
func New(client API, url string) *Queue { return &Queue{Client: client, URL: url} }

// SendBatches puts every batch on the queue as one JSON message each, grouped into
// SendMessageBatch calls of at most MaxEntries messages and MaxBytes. Entries SQS refuses
// (throttled, internal errors) are retried with exponential backoff; a sender-side
// failure (a malformed entry) or running out of attempts is an error naming the batch.
// A batch whose body is over MaxBytes is ETOOLARGE. Sending the same batch twice puts two
// messages on the queue: send dedupes recipients by their delivery claim.
func (q *Queue) SendBatches(ctx context.Context, batches []minipush.Batch) error {
	var (
		group []types.SendMessageBatchRequestEntry
		ids   []string
		size  int
	)
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		err := q.send(ctx, group, ids)
		group, ids, size = group[:0], ids[:0], 0
		return err
	}
	for _, b := range batches {
		body, err := encode(b)
		if err != nil {
			return err
		}
		if len(group) == MaxEntries || size+len(body) > MaxBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		// Entry ids are only unique within a call and allow no "#": use the position.
		group = append(group, types.SendMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(len(group))), MessageBody: aws.String(string(body)),
		})
		ids = append(ids, b.ID)
		size += len(body)
	}
	return flush()
}

// Enqueue puts one batch on the queue, visible after delay (rounded up to whole
// seconds; beyond MaxDelay it is MaxDelay). A batch over MaxBytes is ETOOLARGE.
func (q *Queue) Enqueue(ctx context.Context, b minipush.Batch, delay time.Duration) error {
	body, err := encode(b)
	if err != nil {
		return err
	}
	secs := int32((min(max(delay, 0), MaxDelay) + time.Second - 1) / time.Second)
	entry := types.SendMessageBatchRequestEntry{Id: aws.String("0"), MessageBody: aws.String(string(body)), DelaySeconds: secs}
	return q.send(ctx, []types.SendMessageBatchRequestEntry{entry}, []string{b.ID})
}

// encode is a batch's message body.
func encode(b minipush.Batch) ([]byte, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("queue: encode batch %s: %w", b.ID, err)
	}
	if len(body) > MaxBytes {
		return nil, minipush.Errorf(minipush.ETOOLARGE, "batch %s is %d bytes, over %d", b.ID, len(body), MaxBytes)
	}
	return body, nil
}

// send makes one call for entries and retries what SQS refused.
func (q *Queue) send(ctx context.Context, entries []types.SendMessageBatchRequestEntry, batchIDs []string) error {
	attempts := q.Attempts
	if attempts <= 0 {
		attempts = 6
	}
	backoff := q.Backoff
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	sleep := q.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	name := func(entryID string) string {
		i, err := strconv.Atoi(entryID)
		if err != nil || i < 0 || i >= len(batchIDs) {
			return entryID
		}
		return batchIDs[i]
	}
	pending := entries
	var lastErr error
	for attempt := range attempts {
		if attempt > 0 {
			if err := sleep(ctx, backoff<<(attempt-1)); err != nil {
				return fmt.Errorf("queue: send batches: %w (last failure: %v)", err, lastErr)
			}
		}
		out, err := q.Client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL), Entries: pending})
		if err != nil {
			// The whole call failed (network, throttled): the SDK already retried it.
			lastErr = err
			if ctx.Err() != nil {
				return fmt.Errorf("queue: send batches: %w", err)
			}
			continue
		}
		if len(out.Failed) == 0 {
			return nil
		}
		failed := make(map[string]types.BatchResultErrorEntry, len(out.Failed))
		var fatal []string
		for _, f := range out.Failed {
			id := aws.ToString(f.Id)
			failed[id] = f
			if f.SenderFault {
				fatal = append(fatal, fmt.Sprintf("%s: %s %s", name(id), aws.ToString(f.Code), aws.ToString(f.Message)))
			}
		}
		if len(fatal) > 0 {
			return fmt.Errorf("queue: send batches refused: %s", strings.Join(fatal, "; "))
		}
		retry := pending[:0:0]
		for _, e := range pending {
			if _, ok := failed[aws.ToString(e.Id)]; ok {
				retry = append(retry, e)
			}
		}
		pending = retry
		f := out.Failed[0]
		lastErr = fmt.Errorf("%d entries failed, first %s: %s %s", len(out.Failed), name(aws.ToString(f.Id)), aws.ToString(f.Code), aws.ToString(f.Message))
	}
	return fmt.Errorf("queue: send batches after %d attempts: %w", attempts, lastErr)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
