package send_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/send"
	"minipush/internal/wechat"
)

// logSpy is a store that records, in order, the sent logs written (per openid, once
// RecordSent returned), the sent outcomes written by a recipient's own final write,
// and the grant spends begun; failRecord makes every RecordSent fail, failFinish the
// own sent write of the openids it names (as DynamoDB failing them would).
type logSpy struct {
	send.Store
	failRecord bool
	failFinish map[string]bool
	failFirst  int // RecordSent calls that fail before the rest go through

	mu      sync.Mutex
	events  []spyEvent
	logs    int // sent log writes that succeeded
	records int // RecordSent calls, whatever their result
}

type spyEvent struct{ kind, openID string }

const (
	evLogged = "logged" // named by a sent log that was written
	evOwn    = "own"    // made final sent by its own write
	evSpend  = "spend"
)

func (s *logSpy) add(kind, openID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, spyEvent{kind, openID})
}

func (s *logSpy) RecordSent(ctx context.Context, owner string, seq int, recs []minipush.SentRecord) error {
	s.mu.Lock()
	s.records++
	early := s.records <= s.failFirst
	s.mu.Unlock()
	if s.failRecord || early {
		return errors.New("spy: sent log not written")
	}
	if err := s.Store.RecordSent(ctx, owner, seq, recs); err != nil {
		return err
	}
	for _, r := range recs {
		s.add(evLogged, r.OpenID)
	}
	s.mu.Lock()
	s.logs++
	s.mu.Unlock()
	return nil
}

func (s *logSpy) FinishDelivery(ctx context.Context, runKey, openID, owner string, lease time.Time, o minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error {
	if o == minipush.OutcomeSent && s.failFinish[openID] {
		return errors.New("spy: final write failed")
	}
	err := s.Store.FinishDelivery(ctx, runKey, openID, owner, lease, o, reason, errcode, msgID, rcptUser)
	if err == nil && o == minipush.OutcomeSent {
		s.add(evOwn, openID)
	}
	return err
}

func (s *logSpy) SpendGrant(ctx context.Context, g minipush.Grant) error {
	s.add(evSpend, g.OpenID)
	return s.Store.SpendGrant(ctx, g)
}

// expect fails t for every openid whose records (events, in order) are not want; why
// says what want means.
func (s *logSpy) expect(t *testing.T, ids []string, why string, want ...string) {
	t.Helper()
	for _, u := range ids {
		if got := s.of(u); !slices.Equal(got, want) {
			t.Errorf("%s: records %v, want %v: %s", u, got, want, why)
		}
	}
}

// of returns the kinds of event of openID, in order.
func (s *logSpy) of(openID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if e.openID == openID {
			out = append(out, e.kind)
		}
	}
	return out
}

// TestSentLogRedeliveryAfterLease: an invocation recorded its sent recipients in its
// sent log only (their claims stay sending), then SQS redelivers the same message
// after the claims' leases ended. The redelivery must read them sent — not take them
// over as lost senders' claims (unknown), which would spend the second grant of each
// for a message WeChat received once. Without the fold in dynamo.DB.Deliveries and
// CreateDelivery it records unknown and spends both grants.
func TestSentLogRedeliveryAfterLease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// One clock for the store and both senders: the redelivery comes when the leases
	// are long over, without the test waiting for them.
	clk := &testClock{t: time.Now()}
	f.db.Now = clk.Now
	ids := f.grantedUsers(t, 6) // two grants each
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	ev := events10(t, batches("c", ids, 3))[0]

	spy := &logSpy{Store: f.db}
	first := f.handler(4)
	first.Store = spy
	handle(t, first, ev)
	spy.expect(t, ids, "its sent log written, then its grant spent", evLogged, evSpend)
	f.unleased(t, ids, 1)

	clk.Set(clk.Now().Add(time.Hour)) // far past the first sender's 20 s leases
	second := f.handler(4)
	handle(t, second, ev)

	got := f.outcomes(t, "c")
	acc := f.acceptedBy(sandbox.PathSubscribeSend)
	for _, u := range ids {
		if d := got[u]; d.Outcome != minipush.OutcomeSent || d.MsgID == "" {
			t.Errorf("%s: %s/%s msgid %q after the redelivery, want sent with its msgid", u, d.Outcome, d.Reason, d.MsgID)
		}
		if acc[u] != 1 {
			t.Errorf("%s: WeChat accepted %d messages, want 1", u, acc[u])
		}
	}
	f.unleased(t, ids, 1) // the redelivery spent nothing more
	p, err := f.db.RunCounters(t.Context(), "c", 1)
	if err != nil || p.Counters.Sent != len(ids) || p.Counters.Unknown != 0 {
		t.Errorf("run %+v, %v; want %d sent, no unknown", p.Counters, err, len(ids))
	}
}

// TestSentLogNotWritten: when the sent log cannot be written, each of its recipients
// gets its own final write, and its grant is spent once, after it; no message fails.
// When that final write fails too, the recipient is recorded nowhere: its message,
// and only its message, goes back to SQS (batchItemFailures), and its grant is not
// spent (whoever resolves the claim spends one).
func TestSentLogNotWritten(t *testing.T) {
	t.Parallel()
	t.Run("OwnFinalWrites", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 8)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		spy := &logSpy{Store: f.db, failRecord: true}
		h := f.handler(4)
		h.Store = spy
		handle(t, h, events10(t, batches("c", ids, 4))[0])
		f.allSent(t, "c", ids)
		spy.expect(t, ids, "its own final write, then its grant spent", evOwn, evSpend)
		f.unleased(t, ids, 1)
	})
	t.Run("RecordedNowhere", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		ids := f.grantedUsers(t, 8)
		f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
		ev := events10(t, batches("c", ids, 4))[0] // two messages of four
		ok, lost := ids[:4], ids[4:]
		spy := &logSpy{Store: f.db, failRecord: true, failFinish: map[string]bool{}}
		for _, u := range lost {
			spy.failFinish[u] = true
		}
		h := f.handler(4)
		h.Store = spy
		if got := failedIDs(t, h, t.Context(), ev); !slices.Equal(got, []string{ev.Records[1].MessageId}) {
			t.Fatalf("batchItemFailures %v, want only the second message's %s", got, ev.Records[1].MessageId)
		}
		got := f.outcomes(t, "c")
		for _, u := range ok {
			if d := got[u]; d.Outcome != minipush.OutcomeSent {
				t.Errorf("%s: %s %s, want sent by its own write", u, d.State, d.Outcome)
			}
		}
		for _, u := range lost {
			if d := got[u]; d.State != minipush.DeliverySending {
				t.Errorf("%s: %s %s, want its claim left for the redelivery to resolve", u, d.State, d.Outcome)
			}
			if evs := spy.of(u); len(evs) != 0 {
				t.Errorf("%s: %v, want nothing recorded and no spend", u, evs)
			}
		}
		f.unleased(t, ok, 1)
		f.unleased(t, lost, 2)
	})
}

// TestSentLogNearLease: a recipient whose claim has less than a quarter of its lease
// left when the invocation flushes its sent log gets its own final write instead (a
// log could otherwise land after a redelivery took the claim over). WeChat's answer to
// the first recipient "takes" 16 s of the 20 s lease on the clock the store and the
// sender share; the recipients after it started later and are logged.
func TestSentLogNearLease(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := &testClock{t: time.Now()}
	f.db.Now = clk.Now
	ids := f.grantedUsers(t, 4)
	slow := ids[0]
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	// The clock moves while the slow recipient's call is in flight, before WeChat
	// answers it, so no flush can come between the answer and the jump.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req struct {
			ToUser string `json:"touser"`
		}
		if r.URL.Path == sandbox.PathSubscribeSend && json.Unmarshal(body, &req) == nil && req.ToUser == slow {
			clk.Set(clk.Now().Add(16 * time.Second))
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.sb.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	spy := &logSpy{Store: f.db}
	// Parallelism 1: the recipients go one after another, in batch order, so the others
	// start after the jump.
	h := f.handler(1)
	h.Store = spy
	h.WeChat = wechat.New(wechat.Options{BaseURL: srv.URL, Logger: quiet, Timeout: 30 * time.Second})
	handle(t, h, events10(t, batches("c", ids, len(ids)))[0])
	f.allSent(t, "c", ids)
	if got := spy.of(slow); !slices.Equal(got, []string{evOwn, evSpend}) {
		t.Errorf("slow recipient: %v, want its own final write (its lease too near), then its spend", got)
	}
	spy.expect(t, ids[1:], "its sent log, then its spend", evLogged, evSpend)
	f.unleased(t, ids, 1)
}

// TestSentLogBeforeSpend: a grant is spent only once the sent log naming its message
// is written, as after a final write: a sender lost before its log spent nothing, and
// the redelivery that takes its claims over as unknown spends one grant each — never
// two. Many recipients over several messages and flushes.
func TestSentLogBeforeSpend(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 40)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	// A slow WeChat and frequent flushes spread the recipients over many sent logs.
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Latency: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	spy := &logSpy{Store: f.db}
	h := f.handler(4)
	h.Store = spy
	h.CounterFlush = 30 * time.Millisecond
	handle(t, h, events10(t, batches("c", ids, 10))[0])
	f.allSent(t, "c", ids)
	spy.expect(t, ids, "its sent log written, then its grant spent", evLogged, evSpend)
	f.unleased(t, ids, 1)
	if spy.logs < 2 {
		t.Errorf("%d sent logs, want several (timed flushes, not only the last)", spy.logs)
	}
}

// TestSentLogClockBehindWall: the sender's clock (Handler.Now, shared with the store)
// decides when a log is too late, so a clock an hour behind the wall's must still log
// its recipients. flushSent gives its RecordSent a context deadline computed on that
// clock (context.WithDeadline(ctx, giveUp)), which the context compares with the wall
// clock: the deadline has passed before the write starts, and every recipient falls
// back to its own final write. Outcomes stay right; the log path is silently skipped
// under every test clock set in the past (caps, daycap, quota tests).
func TestSentLogClockBehindWall(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := &testClock{t: time.Now().Add(-time.Hour)}
	f.db.Now = clk.Now
	ids := f.grantedUsers(t, 3)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	spy := &logSpy{Store: f.db}
	h := f.handler(2)
	h.Store = spy
	handle(t, h, events10(t, batches("c", ids, len(ids)))[0])
	f.allSent(t, "c", ids)
	spy.expect(t, ids, "its sent log written (the lease has 20 s left on the sender's clock), then its spend", evLogged, evSpend)
}

// TestSentLogRetriedNextFlush: a sent log that fails during the invocation (throttled,
// most likely) is tried again by the next flush, in another log, rather than turned at
// once into a final write per recipient on the same shards; each recipient is then
// logged once and spent after it. Before, the first failure gave every recipient in it
// its own final write.
func TestSentLogRetriedNextFlush(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 6)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	// One recipient at a time, each call 40 ms, flushes every 20 ms: the invocation
	// spans several flushes, the first of which fails.
	if err := f.sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLatency, Latency: 40 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	spy := &logSpy{Store: f.db, failFirst: 1}
	h := f.handler(1)
	h.Store = spy
	h.CounterFlush = 20 * time.Millisecond
	handle(t, h, events10(t, batches("c", ids, len(ids)))[0])
	f.allSent(t, "c", ids)
	spy.mu.Lock()
	records, logs := spy.records, spy.logs
	spy.mu.Unlock()
	if records < 2 || logs < 1 {
		t.Fatalf("%d RecordSent calls, %d written; want the failed one and at least one more", records, logs)
	}
	spy.expect(t, ids, "a failed log is retried by the next flush", evLogged, evSpend)
}
