package send_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/send"
)

// grantedUsers creates n users who each hold two subscribe grants of subTpl both in
// storage and at WeChat, so a second message to anyone would be possible (and seen).
func (f *fixture) grantedUsers(t testing.TB, n int) []string {
	t.Helper()
	now := time.Now()
	var ids []string
	var grants []minipush.Grant
	for range n {
		u := f.sb.NewUser(appID)
		ids = append(ids, u)
		for d := 1; d <= 2; d++ {
			grants = append(grants, subGrant(u, subTpl, now.Add(time.Duration(d)*240*time.Hour)))
			f.sb.AddSubscribeGrant(appID, u, subTpl)
		}
	}
	f.putGrants(t, grants)
	return ids
}

// allSent asserts each of ids was sent exactly once and recorded sent.
func (f *fixture) allSent(t *testing.T, campaign string, ids []string) {
	t.Helper()
	got := f.outcomes(t, campaign)
	acc := f.acceptedBy(sandbox.PathSubscribeSend)
	for _, u := range ids {
		if d := got[u]; d.State != minipush.DeliveryFinal || d.Outcome != minipush.OutcomeSent {
			t.Errorf("%s: %s %s, want final sent", u, d.State, d.Outcome)
		}
		if acc[u] != 1 {
			t.Errorf("%s: WeChat accepted %d messages, want 1", u, acc[u])
		}
	}
	prog, err := f.db.RunCounters(t.Context(), campaign, 1)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Status != minipush.RunDone || prog.Counters.Sent != len(ids) || prog.Counters.Final() != len(ids) {
		t.Errorf("run %s %+v, want done with %d sent", prog.Status, prog.Counters, len(ids))
	}
	// A finished run carries its retention TTL.
	item, err := f.db.Client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(f.db.Tables.Campaigns), Key: dynamo.RunItemKey(campaign, 1),
	})
	if err != nil {
		t.Fatal(err)
	}
	var exp int64
	if n, ok := item.Item["expiresAt"].(*ddbtypes.AttributeValueMemberN); ok {
		exp, _ = strconv.ParseInt(n.Value, 10, 64)
	}
	if exp <= f.db.Now().Unix() {
		t.Errorf("finished run expiresAt = %v, want a retention TTL in the future", item.Item["expiresAt"])
	}
}

func TestRedelivery(t *testing.T) {
	t.Parallel()
	t.Run("SameMessageTwice", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 60)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		ev := events10(t, batches("c", ids, 30))[0]
		h := f.handler(8)
		handle(t, h, ev)
		handle(t, h, ev)
		f.allSent(t, "c", ids)
	})
	t.Run("ConcurrentDuplicates", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 60)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		ev := events10(t, batches("c", ids, 30))[0]
		var wg sync.WaitGroup
		for range 3 {
			h := f.handler(8)
			h.Lease = 4 * time.Second
			wg.Go(func() { handle(t, h, ev) })
		}
		wg.Wait()
		f.drain(t, f.handler(8), 60*time.Second, f.runDone(t, "c"))
		f.allSent(t, "c", ids)
	})
	t.Run("OverlappingBatches", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 90)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		a := minipush.Batch{ID: "a", CampaignID: "c", Run: 1, AppID: appID, OpenIDs: ids[:60]}
		b := minipush.Batch{ID: "b", CampaignID: "c", Run: 1, AppID: appID, OpenIDs: ids[30:]}
		var wg sync.WaitGroup
		for _, bt := range []minipush.Batch{a, b} {
			h := f.handler(8)
			h.Lease = 4 * time.Second
			wg.Go(func() { handle(t, h, events10(t, []minipush.Batch{bt})[0]) })
		}
		wg.Wait()
		f.drain(t, f.handler(8), 60*time.Second, f.runDone(t, "c"))
		f.allSent(t, "c", ids)
	})
}

// TestTransientFaults sends with WeChat failing 20% of sends with -1 and every token
// invalidated mid-run: everyone ends sent exactly once, with one refresh.
func TestTransientFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 200)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{RetryBudget: 30}, len(ids))
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: -1, Rate: 0.2}); err != nil {
		t.Fatal(err)
	}
	invalidated := make(chan struct{})
	go func() {
		defer close(invalidated)
		deadline := time.Now().Add(60 * time.Second)
		for f.sb.Stats().Accepted < 60 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling the sandbox, not synchronising
		}
		f.sb.InvalidateTokens(appID)
	}()
	h := f.handler(16)
	for _, ev := range events10(t, batches("c", ids, 100)) {
		handle(t, h, ev)
	}
	<-invalidated
	f.drain(t, h, 60*time.Second, f.runDone(t, "c"))
	f.allSent(t, "c", ids)
	st := f.sb.Stats()
	if st.Errcodes[-1] == 0 || st.Errcodes[40001] == 0 {
		t.Fatalf("faults did not fire (errcodes %v): the test proves nothing", st.Errcodes)
	}
	if n := st.TokensIssued[appID]; n != 2 {
		t.Errorf("sandbox issued %d tokens for one invalidation, want 2 (first + one refresh)", n)
	}
}

// TestAbortPausesCampaign: a template WeChat does not know (40037) pauses the campaign
// at the first answer instead of burning the audience's grants.
func TestAbortPausesCampaign(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const parallelism = 4
	var ids []string
	for range 60 {
		u := f.sb.NewUser(appID)
		ids = append(ids, u)
		g := subGrant(u, "TPL-GONE", time.Now().Add(240*time.Hour))
		// Through AddGrants, the collector's path, so the send path is pinned to the
		// grants layout the rest of the system writes.
		st, err := f.db.AddGrants(t.Context(), appID, u, []minipush.Grant{g}, 10)
		if err != nil || st[0] != minipush.AddAccepted {
			t.Fatalf("AddGrants = %v, %v", st, err)
		}
	}
	msg := subscribeMessage()
	msg.TemplateID = "TPL-GONE"
	f.putCampaign(t, "c", msg, minipush.Policy{}, len(ids))
	h := f.handler(parallelism)
	handle(t, h, events10(t, batches("c", ids, 30))[0])

	c, err := f.db.SendCampaign(t.Context(), "c")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != minipush.StatusPaused {
		t.Errorf("campaign %s, want paused", c.Status)
	}
	st := f.sb.Stats()
	if st.Accepted != 0 || st.Errcodes[40037] < 1 || st.Errcodes[40037] > parallelism {
		t.Errorf("accepted %d, 40037 answered %d times; want 0 and 1..%d", st.Accepted, st.Errcodes[40037], parallelism)
	}
	for _, u := range ids {
		gs := f.liveGrants(t, u)
		if len(gs) != 1 {
			t.Errorf("%s grants after abort: %+v, want one", u, gs)
		}
	}
	if got := f.outcomes(t, "c"); len(got) != 0 {
		t.Errorf("%d delivery items after abort, want none", len(got))
	}
	// Every recipient is back in the queue; while paused they are only held.
	requests := st.Requests[sandbox.PathSubscribeSend]
	held := map[string]bool{}
	ctx := t.Context()
	deadline := time.Now().Add(30 * time.Second)
	for len(held) < len(ids) && time.Now().Before(deadline) {
		out, err := f.env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		var ev events.SQSEvent
		for _, m := range out.Messages {
			var b minipush.Batch
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &b); err != nil {
				t.Fatal(err)
			}
			for _, u := range b.OpenIDs {
				held[u] = true
			}
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)})
		}
		if len(ev.Records) > 0 {
			handle(t, h, ev)
		}
	}
	if len(held) != len(ids) {
		t.Errorf("%d of %d recipients re-queued", len(held), len(ids))
	}
	if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != requests {
		t.Errorf("held batches called WeChat %d more times", n-requests)
	}
}

// TestLostAnswers: answers lost after WeChat accepted the message are recorded as
// unknown and never resent.
func TestLostAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// The timeout must be far above an answer's time on a loaded 2-core machine: an
	// answer that was sent but came late would end unknown and look like a lost one.
	f.wc.Timeout = time.Second
	ids := f.grantedUsers(t, 150)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLostAnswer, Rate: 0.3, Stall: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	h := f.handler(16)
	for _, ev := range events10(t, batches("c", ids, 50)) {
		handle(t, h, ev)
	}
	f.drain(t, h, 60*time.Second, f.runDone(t, "c"))
	got := f.outcomes(t, "c")
	lost := map[string]bool{}
	acc := map[string]int{}
	for _, m := range f.sb.Accepted() {
		acc[m.ToUser]++
		lost[m.ToUser] = m.AnswerLost
	}
	unknown := 0
	for _, u := range ids {
		d := got[u]
		switch {
		case acc[u] != 1:
			t.Errorf("%s: accepted %d times, want 1", u, acc[u])
		case d.Outcome == minipush.OutcomeUnknown && lost[u]:
			unknown++
		case d.Outcome == minipush.OutcomeSent && !lost[u]:
		default:
			t.Errorf("%s: outcome %s with answer lost = %v", u, d.Outcome, lost[u])
		}
	}
	if unknown == 0 {
		t.Fatal("no answer was lost: the test proves nothing")
	}
}

// TestClaims covers the claims other senders left behind.
func TestClaims(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		lease     time.Duration
		wantFinal bool
	}{
		{"CrashedSender", -time.Minute, true}, // expired claim: may have sent, so unknown
		{"LiveSender", time.Minute, false},    // live claim: theirs to finish; look again later
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ids := f.grantedUsers(t, 3)
			f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
			if _, err := f.db.CreateDelivery(t.Context(), minipush.Delivery{
				RunKey: minipush.RunKey("c", 1), OpenID: ids[0], State: minipush.DeliverySending, Owner: "other",
				LeaseUntil: time.Now().Add(tc.lease), ExpiresAt: time.Now().Add(time.Hour),
			}); err != nil {
				t.Fatal(err)
			}
			handle(t, f.handler(4), events10(t, batches("c", ids, 10))[0])
			got := f.outcomes(t, "c")[ids[0]]
			if acc := f.acceptedBy(sandbox.PathSubscribeSend); acc[ids[0]] != 0 || acc[ids[1]] != 1 {
				t.Errorf("accepted %v: want nothing for the claimed recipient, the others sent", acc)
			}
			if tc.wantFinal && (got.Outcome != minipush.OutcomeUnknown || got.Reason != "sender_lost") {
				t.Errorf("crashed claim became %s/%s, want unknown/sender_lost", got.Outcome, got.Reason)
			}
			if !tc.wantFinal {
				if got.State != minipush.DeliverySending || got.Owner != "other" {
					t.Errorf("live claim became %+v, want untouched", got)
				}
				out, err := f.env.SQS.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.queueURL), WaitTimeSeconds: 1})
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Messages) != 0 {
					t.Errorf("re-queued message visible at once, want it delayed past the lease")
				}
			}
		})
	}
}

// TestParallelismBound: WeChat never sees more sends in flight than configured.
func TestParallelismBound(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const parallelism = 4
	ids := f.grantedUsers(t, 80)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Latency: 30 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	bs := batches("c", ids, 20)
	var wg sync.WaitGroup
	for i := range 2 {
		h := f.handler(parallelism)
		wg.Go(func() { handle(t, h, events10(t, bs[2*i:2*i+2])[0]) })
	}
	wg.Wait()
	if p := f.sb.Stats().PeakInFlight; p > 2*parallelism || p < 2 {
		t.Errorf("peak in flight %d with 2 handlers of parallelism %d, want 2..%d", p, parallelism, 2*parallelism)
	}
	f.allSent(t, "c", ids)
}

// lossyStore loses every counter update, as a throttled UpdateItem would.
type lossyStore struct{ send.Store }

func (lossyStore) AddRunCounters(context.Context, string, int, minipush.Counters) (minipush.RunProgress, error) {
	return minipush.RunProgress{}, errors.New("throttled")
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	t.Run("LostCountersReconciled", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 20)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		h := f.handler(4)
		h.Store = lossyStore{f.db}
		handle(t, h, events10(t, batches("c", ids, 10))[0])
		if f.runDone(t, "c")() {
			t.Fatal("run done although every counter update was lost")
		}
		sum, done, err := minipush.Reconcile(t.Context(), f.db, "c", 1)
		if err != nil || !done || sum.Sent != len(ids) {
			t.Fatalf("Reconcile = %+v, %v, %v; want done with %d sent", sum, done, err, len(ids))
		}
		f.allSent(t, "c", ids)
	})
	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 10)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		if _, err := f.db.CancelCampaign(t.Context(), "c"); err != nil {
			t.Fatal(err)
		}
		handle(t, f.handler(4), events10(t, batches("c", ids, 10))[0])
		for u, d := range f.outcomes(t, "c") {
			if d.Outcome != minipush.OutcomeSkipped || d.Reason != "cancelled" {
				t.Errorf("%s: %s/%s, want skipped/cancelled", u, d.Outcome, d.Reason)
			}
		}
		if n := f.sb.Stats().Accepted; n != 0 {
			t.Errorf("cancelled campaign sent %d messages", n)
		}
	})
	t.Run("RetriesExhausted", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 10)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{RetryBudget: 2}, len(ids))
		if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: -1}); err != nil {
			t.Fatal(err)
		}
		h := f.handler(4)
		handle(t, h, events10(t, batches("c", ids, 10))[0])
		f.drain(t, h, 30*time.Second, f.runDone(t, "c"))
		for _, u := range ids {
			d := f.outcomes(t, "c")[u]
			if d.Outcome != minipush.OutcomeFailed || d.Reason != "retries_exhausted" {
				t.Errorf("%s: %s/%s, want failed/retries_exhausted", u, d.Outcome, d.Reason)
			}
			if gs := f.liveGrants(t, u); len(gs) != 2 {
				t.Errorf("%s holds %d grants after failed retries, want both back", u, len(gs))
			}
		}
		if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != 3*len(ids) {
			t.Errorf("WeChat saw %d sends, want %d (3 attempts each)", n, 3*len(ids))
		}
	})
	t.Run("PerDayCap", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 10)
		for _, c := range []string{"first", "second"} {
			f.putCampaign(t, c, subscribeMessage(), minipush.Policy{}, len(ids))
			h := f.handler(4)
			h.Apps = cappedApp(minipush.Caps{PerDay: 1})
			handle(t, h, events10(t, batches(c, ids, 10))[0])
		}
		first, second := f.outcomes(t, "first"), f.outcomes(t, "second")
		for _, u := range ids {
			if first[u].Outcome != minipush.OutcomeSent || second[u].Outcome != minipush.OutcomeSkipped || second[u].Reason != minipush.ReasonFrequencyCap {
				t.Errorf("%s: first %s, second %s/%s; want sent, skipped/frequency_cap", u, first[u].Outcome, second[u].Outcome, second[u].Reason)
			}
		}
	})
	t.Run("TemplateMessage", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		u := f.sb.NewUser(appID)
		v := f.sb.MintFormID(appID, u, sandbox.KindForm)
		f.putGrants(t, []minipush.Grant{formGrant(u, v, minipush.GrantForm, time.Now().Add(-time.Minute))})
		f.putCampaign(t, "c", templateMessage(), minipush.Policy{}, 1)
		handle(t, f.handler(1), events10(t, batches("c", []string{u}, 1))[0])
		acc := f.sb.Accepted()
		if len(acc) != 1 || acc[0].FormID != v || acc[0].Data["keyword1"] != "order" {
			t.Errorf("accepted %+v, want one template message paid with %s", acc, v)
		}
	})
}

// TestFromEnv builds the handler exactly as the Lambda function does, from the
// template's resolved environment, and sends through it.
func TestFromEnv(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	env := f.env.MustFunctionEnv(t, "SendFunction")
	for _, kv := range f.env.Endpoints.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	env["WECHAT_BASE_URL"] = f.wc.BaseURL.String()
	secret, _ := json.Marshal(minipush.Apps{Apps: []minipush.App{{AppID: appID, AppSecret: secret}}})
	local, _ := json.Marshal(map[string]string{"WeChatSecret": string(secret)})
	env[lambdaenv.LocalSecretsEnv] = string(local)
	if env["WECHAT_SECRET_ARN"] != localstack.LocalSecretArn {
		t.Fatalf("WECHAT_SECRET_ARN = %q, want the local secret", env["WECHAT_SECRET_ARN"])
	}

	t.Run("MissingEnv", func(t *testing.T) {
		if _, err := lambdaenv.Send(t.Context(), lambdaenv.Env{Getenv: func(k string) string {
			if k == "SEND_QUEUE_URL" {
				return ""
			}
			return env[k]
		}}); err == nil {
			t.Error("lambdaenv.Send without SEND_QUEUE_URL succeeded")
		}
	})
	t.Run("Sends", func(t *testing.T) {
		h, err := lambdaenv.Send(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		h.Log = quiet
		ids := f.grantedUsers(t, 5)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		handle(t, h, events10(t, batches("c", ids, 5))[0])
		f.allSent(t, "c", ids)
	})
}
