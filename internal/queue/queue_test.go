package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/queue"
)

// fakeSQS records calls and fails the entries fail chooses. It stands in for SQS only to
// inject partial failures, which the local server never produces.
type fakeSQS struct {
	mu    sync.Mutex
	calls [][]types.SendMessageBatchRequestEntry
	sent  []minipush.Batch
	fail  func(call int, body string) (code string, senderFault bool, ok bool)
}

func (f *fakeSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := len(f.calls)
	f.calls = append(f.calls, in.Entries)
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if f.fail != nil {
			if code, sender, fail := f.fail(call, aws.ToString(e.MessageBody)); fail {
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String(code), SenderFault: sender})
				continue
			}
		}
		var b minipush.Batch
		if err := json.Unmarshal([]byte(aws.ToString(e.MessageBody)), &b); err != nil {
			return nil, err
		}
		f.sent = append(f.sent, b)
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func batches(n, recipients int, idLen int) []minipush.Batch {
	out := make([]minipush.Batch, n)
	for i := range out {
		ids := make([]string, recipients)
		for j := range ids {
			ids[j] = strings.Repeat("x", idLen-6) + strconv.Itoa(100000+j)
		}
		out[i] = minipush.Batch{ID: "c#1-b" + strconv.Itoa(i), CampaignID: "c", Run: 1, AppID: "wx", OpenIDs: ids}
	}
	return out
}

func noSleep(context.Context, time.Duration) error { return nil }

func TestSendBatches(t *testing.T) {
	t.Parallel()

	t.Run("TenPerCall", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{}
		q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
		if err := q.SendBatches(t.Context(), batches(25, 100, 28)); err != nil {
			t.Fatal(err)
		}
		if got := []int{len(f.calls[0]), len(f.calls[1]), len(f.calls[2])}; len(f.calls) != 3 || got[0] != 10 || got[2] != 5 {
			t.Fatalf("calls %d with sizes %v, want 10, 10, 5", len(f.calls), got)
		}
		if len(f.sent) != 25 || f.sent[24].ID != "c#1-b24" || len(f.sent[0].OpenIDs) != 100 {
			t.Fatalf("sent %d batches", len(f.sent))
		}
	})

	t.Run("BytesPerCall", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{}
		q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
		// 100 recipients of 1000 bytes: ~100 KB per message, two per call.
		if err := q.SendBatches(t.Context(), batches(5, 100, 1000)); err != nil {
			t.Fatal(err)
		}
		for i, c := range f.calls {
			size := 0
			for _, e := range c {
				size += len(aws.ToString(e.MessageBody))
			}
			if size > queue.MaxBytes {
				t.Errorf("call %d carries %d bytes", i, size)
			}
		}
		if len(f.calls) != 3 || len(f.sent) != 5 {
			t.Fatalf("%d calls, %d sent; want 3, 5", len(f.calls), len(f.sent))
		}
	})

	t.Run("RetriesFailedEntries", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{fail: func(call int, body string) (string, bool, bool) {
			// The first two calls refuse the even batches.
			return "ServiceUnavailable", false, call < 2 && strings.Contains(body, `-b`) && evenBatch(body)
		}}
		var waits []time.Duration
		q := &queue.Queue{Client: f, URL: "u", Backoff: time.Millisecond, Sleep: func(_ context.Context, d time.Duration) error {
			waits = append(waits, d)
			return nil
		}}
		if err := q.SendBatches(t.Context(), batches(10, 3, 28)); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 3 || len(f.calls[1]) != 5 || len(f.calls[2]) != 5 {
			t.Fatalf("calls %d, want the 5 refused entries retried twice", len(f.calls))
		}
		if len(f.sent) != 10 {
			t.Fatalf("sent %d, want 10", len(f.sent))
		}
		if len(waits) != 2 || waits[1] != 2*waits[0] {
			t.Fatalf("backoff waits %v, want doubling", waits)
		}
	})

	t.Run("ErrGivesUp", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{fail: func(int, string) (string, bool, bool) { return "ServiceUnavailable", false, true }}
		q := &queue.Queue{Client: f, URL: "u", Attempts: 3, Sleep: noSleep}
		err := q.SendBatches(t.Context(), batches(2, 1, 28))
		if err == nil || !strings.Contains(err.Error(), "c#1-b0") || len(f.calls) != 3 {
			t.Fatalf("err %v after %d calls, want a failure naming the batch after 3", err, len(f.calls))
		}
	})

	t.Run("ErrSenderFault", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{fail: func(int, string) (string, bool, bool) { return "InvalidMessageContents", true, true }}
		q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
		err := q.SendBatches(t.Context(), batches(1, 1, 28))
		if err == nil || !strings.Contains(err.Error(), "InvalidMessageContents") || len(f.calls) != 1 {
			t.Fatalf("err %v after %d calls, want no retry of a sender fault", err, len(f.calls))
		}
	})

	t.Run("ErrTooLarge", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{}
		q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
		err := q.SendBatches(t.Context(), batches(1, 300, 1000))
		if minipush.ErrorCode(err) != minipush.ETOOLARGE || len(f.calls) != 0 {
			t.Fatalf("err %v, calls %d; want ETOOLARGE before any call", err, len(f.calls))
		}
	})

	t.Run("ErrCancelled", func(t *testing.T) {
		t.Parallel()
		f := &fakeSQS{fail: func(int, string) (string, bool, bool) { return "ServiceUnavailable", false, true }}
		ctx, cancel := context.WithCancel(t.Context())
		q := &queue.Queue{Client: f, URL: "u", Sleep: func(ctx context.Context, _ time.Duration) error {
			cancel()
			return ctx.Err()
		}}
		if err := q.SendBatches(ctx, batches(1, 1, 28)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
}

func evenBatch(body string) bool {
	var b minipush.Batch
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		return false
	}
	n, _ := strconv.Atoi(b.ID[strings.LastIndex(b.ID, "b")+1:])
	return n%2 == 0
}

// TestEnqueue: the sender's re-queue goes through the same adapter as the planner's
// batches, with its delay rounded up to whole seconds and capped at SQS's 15 minutes,
// and an entry SQS refuses is retried rather than lost.
func TestEnqueue(t *testing.T) {
	t.Parallel()
	b := batches(1, 3, 28)[0]
	for _, tc := range []struct {
		name  string
		delay time.Duration
		want  int32
	}{
		{"Now", 0, 0},
		{"RoundsUp", 1500 * time.Millisecond, 2},
		{"Capped", time.Hour, 900},
		{"NegativeIsNow", -time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSQS{}
			q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
			if err := q.Enqueue(t.Context(), b, tc.delay); err != nil {
				t.Fatal(err)
			}
			if len(f.calls) != 1 || len(f.calls[0]) != 1 || f.calls[0][0].DelaySeconds != tc.want {
				t.Fatalf("calls %+v, want one entry delayed %ds", f.calls, tc.want)
			}
			if len(f.sent) != 1 || f.sent[0].ID != b.ID || len(f.sent[0].OpenIDs) != 3 {
				t.Fatalf("sent %+v, want the batch", f.sent)
			}
		})
	}
	t.Run("RetriesRefused", func(t *testing.T) {
		f := &fakeSQS{fail: func(call int, _ string) (string, bool, bool) { return "InternalError", false, call == 0 }}
		q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
		if err := q.Enqueue(t.Context(), b, time.Second); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 2 || len(f.sent) != 1 || f.calls[1][0].DelaySeconds != 1 {
			t.Fatalf("%d calls, %d sent; want the refused entry retried once with its delay", len(f.calls), len(f.sent))
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		f := &fakeSQS{}
		q := &queue.Queue{Client: f, URL: "u", Sleep: noSleep}
		big := batches(1, queue.MaxBytes/20, 28)[0]
		if err := q.Enqueue(t.Context(), big, 0); minipush.ErrorCode(err) != minipush.ETOOLARGE || len(f.calls) != 0 {
			t.Fatalf("err %v after %d calls, want ETOOLARGE before any call", err, len(f.calls))
		}
	})
}
