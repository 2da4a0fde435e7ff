package send_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/send"
)

// The failure edges of the checks: messages SQS must redeliver, holds, the
// pause on a quota answer, rejected grants, crashes between the call and the record,
// and hang-ups WeChat's answer cannot be told from.

// brokenQueue refuses every re-queue, as a throttled SendMessage would.
type brokenQueue struct{ calls atomic.Int32 }

func (q *brokenQueue) Enqueue(context.Context, minipush.Batch, time.Duration) error {
	q.calls.Add(1)
	return errors.New("sqs: throttled")
}

// storeWithout fails reads of deliveries, as DynamoDB being down would.
type storeWithout struct{ send.Store }

func (storeWithout) Deliveries(context.Context, string, []string) (map[string]minipush.Delivery, error) {
	return nil, errors.New("dynamodb: unavailable")
}

// crashingStore fails every attempt to record a sent message: the invocation dies
// between WeChat's OK and the final write (its own, or its sent log).
type crashingStore struct{ send.Store }

func (s crashingStore) RecordSent(context.Context, string, int, []minipush.SentRecord) error {
	return errors.New("crashed before recording")
}

func (s crashingStore) FinishDelivery(ctx context.Context, runKey, openID, owner string, lease time.Time, o minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error {
	if o == minipush.OutcomeSent {
		return errors.New("crashed before recording")
	}
	return s.Store.FinishDelivery(ctx, runKey, openID, owner, lease, o, reason, errcode, msgID, rcptUser)
}

// failedIDs returns the message ids Handle asked SQS to redeliver.
func failedIDs(t *testing.T, h *send.Handler, ctx context.Context, ev events.SQSEvent) []string {
	t.Helper()
	resp, err := h.Handle(ctx, ev)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	var ids []string
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	slices.Sort(ids)
	return ids
}

// queued receives the send queue's messages until n arrived or the deadline passes.
func (f *fixture) queued(t *testing.T, n int, deadline time.Duration) []minipush.Batch {
	t.Helper()
	var out []minipush.Batch
	end := time.Now().Add(deadline)
	for len(out) < n && time.Now().Before(end) {
		msgs, err := f.env.SQS.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(f.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs.Messages {
			var b minipush.Batch
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// unleased asserts every user still holds want grants (nothing was spent).
func (f *fixture) unleased(t *testing.T, ids []string, want int) {
	t.Helper()
	for _, u := range ids {
		if gs := f.liveGrants(t, u); len(gs) != want {
			t.Errorf("%s holds %d grants, want %d", u, len(gs), want)
		}
	}
}

func TestMessageFailures(t *testing.T) {
	t.Parallel()
	t.Run("UndecodableBodyAlone", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 4)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		ev := events10(t, batches("c", ids, 4))[0]
		ev.Records = append(ev.Records,
			events.SQSMessage{MessageId: "garbage", Body: "{not json"},
			events.SQSMessage{MessageId: "no-run", Body: `{"id":"x","campaignId":"c","openIds":["a"]}`})
		if got := failedIDs(t, f.handler(4), t.Context(), ev); !slices.Equal(got, []string{"garbage", "no-run"}) {
			t.Errorf("batchItemFailures %v, want exactly the two bad messages", got)
		}
		f.allSent(t, "c", ids)
	})
	t.Run("RequeueFails", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 6)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: -1}); err != nil {
			t.Fatal(err)
		}
		h := f.handler(4)
		q := &brokenQueue{}
		h.Queue = q
		ev := events10(t, batches("c", ids, 6))[0]
		if got := failedIDs(t, h, t.Context(), ev); len(got) != 1 || got[0] != ev.Records[0].MessageId {
			t.Errorf("batchItemFailures %v, want the message whose re-queue failed", got)
		}
		if q.calls.Load() != 1 {
			t.Errorf("%d re-queue attempts, want 1", q.calls.Load())
		}
		// Nothing was sent, so nothing may block the redelivery: no claims, no leases.
		if got := f.outcomes(t, "c"); len(got) != 0 {
			t.Errorf("%d delivery items left, want none", len(got))
		}
		f.unleased(t, ids, 2)
	})
	t.Run("StoreDown", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 3)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		h := f.handler(4)
		h.Store = storeWithout{f.db}
		ev := events10(t, batches("c", ids, 3))[0]
		if got := failedIDs(t, h, t.Context(), ev); len(got) != 1 {
			t.Errorf("batchItemFailures %v, want the one message", got)
		}
		if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != 0 {
			t.Errorf("WeChat saw %d sends with storage down", n)
		}
	})
	t.Run("UnknownCampaign", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ev := events10(t, batches("nope", []string{"a", "b"}, 2))[0]
		if got := failedIDs(t, f.handler(2), t.Context(), ev); len(got) != 1 {
			t.Errorf("batchItemFailures %v, want the message (it reaches the DLQ after maxReceiveCount)", got)
		}
	})
}

func TestHold(t *testing.T) {
	t.Parallel()
	t.Run("PausedCampaign", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 5)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		if _, err := f.db.OperatorPause(t.Context(), "c"); err != nil {
			t.Fatal(err)
		}
		b := batches("c", ids, 5)[0]
		b.Attempt = 2
		handle(t, f.handler(4), events10(t, []minipush.Batch{b})[0])
		got := f.queued(t, 1, 20*time.Second)
		if len(got) != 1 || got[0].ID != b.ID || got[0].Attempt != 2 || !slices.Equal(got[0].OpenIDs, ids) {
			t.Errorf("held %+v, want the batch unchanged (%s, attempt 2, all recipients)", got, b.ID)
		}
		if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != 0 {
			t.Errorf("a paused campaign called WeChat %d times", n)
		}
		if d := f.outcomes(t, "c"); len(d) != 0 {
			t.Errorf("a paused campaign wrote %d delivery items", len(d))
		}
	})
	t.Run("NearDeadline", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 5)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		h := f.handler(4)
		h.DeadlineMargin = time.Hour // every recipient is too close to the deadline
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if got := failedIDs(t, h, ctx, events10(t, batches("c", ids, 5))[0]); len(got) != 0 {
			t.Fatalf("batchItemFailures %v, want none (the recipients are re-queued)", got)
		}
		got := f.queued(t, 1, 20*time.Second)
		if len(got) != 1 || got[0].Attempt != 0 || !slices.Equal(got[0].OpenIDs, ids) {
			t.Errorf("re-queued %+v, want every recipient with attempt 0 (not an attempt)", got)
		}
		if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != 0 {
			t.Errorf("WeChat saw %d sends near the deadline", n)
		}
	})
}

// TestQuotaExceeded: a sender without a quota pacer (Handler.Quota nil), one
// recipient in flight, pauses the campaign at the first 45009 and makes no second call.
// Production's send always has the pacer, and there a subscribe message's 45009 pauses
// the app until the reset, not the campaign (TestQuotaPacing): this subscribe message
// takes a path production never takes. Production takes it for legacy template
// messages, which are never paced; the test keeps the nil-pacer fallback covered.
func TestQuotaExceeded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 12)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: 45009}); err != nil {
		t.Fatal(err)
	}
	handle(t, f.handler(1), events10(t, batches("c", ids, 6))[0])
	st := f.sb.Stats()
	if st.Requests[sandbox.PathSubscribeSend] != 1 || st.Accepted != 0 {
		t.Errorf("WeChat saw %d sends (accepted %d), want exactly the first", st.Requests[sandbox.PathSubscribeSend], st.Accepted)
	}
	c, err := f.db.SendCampaign(t.Context(), "c")
	if err != nil || c.Status != minipush.StatusPaused {
		t.Errorf("campaign %s, %v; want paused", c.Status, err)
	}
	f.unleased(t, ids, 2)
	if got := f.outcomes(t, "c"); len(got) != 0 {
		t.Errorf("%d delivery items after the pause, want none", len(got))
	}
}

// TestRejectedGrants: grants WeChat does not know are dropped one by one, at most 5
// for a recipient, and a valid grant behind them still pays.
func TestRejectedGrants(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	hopeless, lucky := f.sb.NewUser(appID), f.sb.NewUser(appID)
	var gs []minipush.Grant
	for i := range 6 {
		gs = append(gs, formGrant(hopeless, "bogus-"+string(rune('a'+i))+hopeless, minipush.GrantForm, now.Add(-time.Duration(6-i)*time.Hour)))
	}
	valid := formGrant(lucky, f.sb.MintFormID(appID, lucky, sandbox.KindForm), minipush.GrantForm, now.Add(-time.Minute))
	gs = append(gs,
		formGrant(lucky, "bogus-1-"+lucky, minipush.GrantForm, now.Add(-3*time.Hour)),
		formGrant(lucky, "bogus-2-"+lucky, minipush.GrantForm, now.Add(-2*time.Hour)), valid)
	f.putGrants(t, gs)
	f.putCampaign(t, "c", templateMessage(), minipush.Policy{}, 2)
	handle(t, f.handler(2), events10(t, batches("c", []string{hopeless, lucky}, 2))[0])

	got := f.outcomes(t, "c")
	if d := got[hopeless]; d.Outcome != minipush.OutcomeFailed || d.Reason != "grant_invalid" || d.ErrCode != 41028 {
		t.Errorf("after 5 rejected grants: %s/%s %d, want failed/grant_invalid 41028", d.Outcome, d.Reason, d.ErrCode)
	}
	if d := got[lucky]; d.Outcome != minipush.OutcomeSent {
		t.Errorf("valid grant behind 2 rejected ones: %s/%s, want sent", d.Outcome, d.Reason)
	}
	if n := f.sb.Stats().Errcodes[41028]; n != 7 {
		t.Errorf("WeChat answered 41028 %d times, want 5 + 2", n)
	}
	left := f.liveGrants(t, hopeless)
	if len(left) != 1 || left[0].ID != gs[5].ID {
		t.Errorf("hopeless user holds %+v, want only the latest-expiring grant (never tried)", left)
	}
	if acc := f.sb.Accepted(); len(acc) != 1 || acc[0].FormID != valid.Value {
		t.Errorf("accepted %+v, want one message paid with the valid formId", acc)
	}
}

// TestCrashAfterSend: the invocation dies after WeChat accepted but before the
// outcome was recorded. SQS redelivers; the claim outlives the crash, so the
// redelivery waits for its lease and records unknown, never a second message.
func TestCrashAfterSend(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 8)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	ev := events10(t, batches("c", ids, 8))[0]
	crashing := f.handler(4)
	crashing.Store = crashingStore{f.db}
	crashing.Lease = 2 * time.Second
	if got := failedIDs(t, crashing, t.Context(), ev); len(got) != 1 {
		t.Fatalf("batchItemFailures %v, want the message (its outcomes were not recorded)", got)
	}
	if n := f.sb.Stats().Accepted; n != len(ids) {
		t.Fatalf("accepted %d before the crash, want %d", n, len(ids))
	}
	h := f.handler(4)
	handle(t, h, ev) // the redelivery
	f.drain(t, h, 60*time.Second, f.runDone(t, "c"))

	got := f.outcomes(t, "c")
	acc := f.acceptedBy(sandbox.PathSubscribeSend)
	for _, u := range ids {
		if d := got[u]; d.Outcome != minipush.OutcomeUnknown || d.Reason != "sender_lost" {
			t.Errorf("%s: %s/%s, want unknown/sender_lost", u, d.Outcome, d.Reason)
		}
		if acc[u] != 1 {
			t.Errorf("%s: WeChat accepted %d messages, want 1", u, acc[u])
		}
	}
	// The grant paid for the message before the crash: one of the two is left.
	f.unleased(t, ids, 1)
	p, err := f.db.RunCounters(t.Context(), "c", 1)
	if err != nil || p.Counters.Unknown != len(ids) || p.Counters.Final() != len(ids) {
		t.Errorf("run %+v, %v; want %d unknown", p, err, len(ids))
	}
}

// TestHangUps: WeChat closes the connection after reading the request, or a gateway
// in front of it answers 502/504 with no errcode, having processed it or not. The
// sender cannot tell the two apart, so all are unknown and none is ever sent again
// (a gateway 5xx once meant retry, and the gateway_after case sent a second message).
func TestHangUps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind     sandbox.FaultKind
		accepted int
	}{
		{sandbox.FaultHangUpAfter, 1},
		{sandbox.FaultHangUpBefore, 0},
		{sandbox.FaultGatewayAfter, 1},
		{sandbox.FaultGatewayBefore, 0},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ids := f.grantedUsers(t, 4)
			f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
			if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: tc.kind}); err != nil {
				t.Fatal(err)
			}
			h := f.handler(4)
			handle(t, h, events10(t, batches("c", ids, 4))[0])
			f.drain(t, h, 30*time.Second, f.runDone(t, "c"))
			got := f.outcomes(t, "c")
			acc := f.acceptedBy(sandbox.PathSubscribeSend)
			for _, u := range ids {
				if d := got[u]; d.Outcome != minipush.OutcomeUnknown {
					t.Errorf("%s: %s/%s, want unknown", u, d.Outcome, d.Reason)
				}
				if acc[u] != tc.accepted {
					t.Errorf("%s: accepted %d, want %d", u, acc[u], tc.accepted)
				}
			}
			if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != len(ids) {
				t.Errorf("WeChat saw %d sends for %d recipients: an unknown was resent", n, len(ids))
			}
		})
	}
}

// TestParallelismOneHandler: one invocation of several messages shares one pool.
func TestParallelismOneHandler(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const parallelism = 3
	ids := f.grantedUsers(t, 30)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Latency: 40 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	handle(t, f.handler(parallelism), events10(t, batches("c", ids, 10))[0])
	if p := f.sb.Stats().PeakInFlight; p > parallelism || p < 2 {
		t.Errorf("peak in flight %d with parallelism %d over 3 messages, want 2..%d", p, parallelism, parallelism)
	}
	f.allSent(t, "c", ids)
}

// TestTokenGateway5xx: a gateway 5xx on the token endpoint sends no message, so unlike
// one on the send endpoint it is retried: every recipient is sent, once.
func TestTokenGateway5xx(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 4)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathStableToken, Kind: sandbox.FaultGatewayAfter, Times: 1}); err != nil {
		t.Fatal(err)
	}
	h := f.handler(4)
	handle(t, h, events10(t, batches("c", ids, 4))[0])
	f.drain(t, h, 30*time.Second, f.runDone(t, "c"))
	f.allSent(t, "c", ids)
	if st := f.sb.Stats(); st.Faults != 1 || st.Requests[sandbox.PathStableToken] < 2 {
		t.Errorf("token requests %d, faults %d: the 5xx did not fire or was not retried", st.Requests[sandbox.PathStableToken], st.Faults)
	}
}
