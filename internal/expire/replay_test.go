package expire_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/localrun"
	"minipush/internal/dynamo"
	"minipush/internal/expire"
)

// TestFailedBatchReplay (issue 13, item 3): a removal expire keeps failing on is not
// dropped once the stream mapping's retries run out. The template's on-failure
// destination receives Lambda's failure record (shard and sequence numbers), and after
// the cause is fixed the Replay event source applies the named records from the stream,
// once however often it is replayed. The mapping is the local runner's, built from the
// template, on DynamoDB Local's stream and the local SQS server.
func TestFailedBatchReplay(t *testing.T) {
	t.Parallel()
	var fail *failingAPI
	w := mustWorld(t, func(api dynamo.API) dynamo.API { fail = &failingAPI{API: api}; return fail })
	w.h.Streams = w.env.Streams
	ctx := t.Context()
	exp := w.clk.Now().Add(minipush.FormGrantValidity)
	w.mustAdd(t, "gina", grant("gina", minipush.GrantForm, "g1", exp))
	w.clk.Add(minipush.FormGrantValidity)

	fn := w.env.Template.Functions["ExpireFunction"]
	ev := fn.Events["Removals"].DynamoDB
	var invokes atomic.Int32
	handle := func(ctx context.Context, e events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		invokes.Add(1)
		return w.h.Handle(ctx, e)
	}
	opts, on, err := localrun.TemplateStreamMapping(w.env.Resources, w.env.Clients, "ExpireFunction", ev, handle, time.Minute, nil)
	if err != nil || !on {
		t.Fatalf("stream mapping from the template: on %v, %v", on, err)
	}
	opts.RetryDelay = time.Millisecond // ten retries in milliseconds; the count is the template's
	m, err := localrun.NewStreamMapping(opts)
	if err != nil {
		t.Fatal(err)
	}

	// Every inventory recompute fails, so the removal fails on every attempt.
	fail.failUpdatesOf = w.env.Table("UsersTable")
	if n := w.mustReap(t); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	removal := w.mustRecords(t)
	if len(removal) != 1 {
		t.Fatalf("REMOVE records = %d, want 1", len(removal))
	}
	if err := m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	retries, _ := strconv.Atoi(ev.MaximumRetryAttempts.Literal)
	if got := int(invokes.Load()); got != retries+1 {
		t.Errorf("invocations = %d, want 1 + MaximumRetryAttempts %d", got, retries)
	}

	q := w.env.Queue("ExpireFailureQueue")
	out, err := w.env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		// The record was sent before Drain returned; a short wait is enough, and a long one
		// only makes the local server hold the poll open to fill the ten.
		QueueUrl: aws.String(q.URL), WaitTimeSeconds: 1, MaxNumberOfMessages: 10,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		for _, m := range out.Messages {
			t.Log(aws.ToString(m.Body))
		}
		t.Fatalf("failure queue holds %d messages, want the one failure record (the batch was dropped silently); invokes %d", len(out.Messages), invokes.Load())
	}
	var fr expire.FailureRecord
	if err := json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &fr); err != nil {
		t.Fatal(err)
	}
	seq := removal[0].Change.SequenceNumber
	if b := fr.Batch; b == nil || b.StartSequenceNumber != seq || b.EndSequenceNumber != seq || b.BatchSize != 1 ||
		b.ShardID == "" || b.StreamARN != w.env.StreamARNs["GrantsTable"] ||
		fr.RequestContext.Condition != "RetryAttemptsExhausted" || fr.RequestContext.ApproximateInvokeCount != retries+1 {
		t.Fatalf("failure record = %s, want the removal's range %s on the grants stream after %d invocations", aws.ToString(out.Messages[0].Body), seq, retries+1)
	}
	checkUser(t, w.mustUser(t, "gina"), 1, exp) // the inventory still counts the expired grant
	failed := localrun.SQSEventOf(out.Messages, q.ARN)
	replay := func(t *testing.T) events.SQSEventResponse {
		t.Helper()
		raw, err := json.Marshal(failed)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := w.h.Invoke(ctx, raw) // the function's entry point routes SQS events to Replay
		if err != nil {
			t.Fatal(err)
		}
		return resp.(events.SQSEventResponse)
	}

	t.Run("StillFailingStaysQueued", func(t *testing.T) {
		if resp := replay(t); len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != failed.Records[0].MessageId {
			t.Fatalf("replay while the cause persists: %+v, want the message reported failed", resp)
		}
	})
	t.Run("AppliedAfterTheFix", func(t *testing.T) {
		fail.failUpdatesOf = ""
		for range 2 { // a second replay (a redelivered message) changes nothing
			if resp := replay(t); len(resp.BatchItemFailures) != 0 {
				t.Fatalf("replay after the fix: %+v", resp)
			}
			checkUser(t, w.mustUser(t, "gina"), 0, time.Time{})
			if n := totalExpired(w.mustInventory(t)); n != 1 {
				t.Fatalf("expired = %d, want 1", n)
			}
		}
	})
	t.Run("ErrUnreplayable", func(t *testing.T) {
		body := aws.ToString(out.Messages[0].Body)
		for name, b := range map[string]string{
			"NotJSON":        "not json",
			"NoBatch":        `{"version":"1.0"}`,
			"OtherStream":    strings.ReplaceAll(body, w.env.Table("GrantsTable"), w.env.Table("UsersTable")),
			"BackwardsRange": strings.Replace(body, `"startSequenceNumber":"`+seq, `"startSequenceNumber":"9`+seq, 1),
		} {
			resp, err := w.h.Replay(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: name, Body: b}}})
			if err != nil || len(resp.BatchItemFailures) != 1 {
				t.Errorf("%s: %+v %v, want the message reported failed", name, resp, err)
			}
		}
		if n := totalExpired(w.mustInventory(t)); n != 1 {
			t.Fatalf("expired = %d after bad replays, want 1", n)
		}
	})
}
