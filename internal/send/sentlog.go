package send

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"minipush"
)

// A sent message's outcome goes into its invocation's sent log instead of a final
// write of its own (dynamo/sentlog.go): the log is written with the counters, once a
// second and at the invocation's end, one item per delivery shard, so a sent message
// costs the claim, the grant's spend and a share of a log item rather than three
// writes. Only sent messages of the grant channel without receipts go there (an
// indexed receipt key needs the delivery's own write); every other outcome is final
// on its item as before.
//
// Two orders keep the guarantees:
//
//   - The grant is spent after the log that records its message is written, as after a
//     final write (spendAndFinish): a sender lost before its log spent nothing, and its
//     claims are taken over as unknown, each spending one grant.
//   - A log is written only while its claims' leases have at least a quarter to
//     run (each lease runs from after the recipient's start), and its writes are given
//     up half that margin before the lease ends: a log never lands after a taker-over
//     read the logs and found none (and a taker-over reads them again just before it
//     takes over: finalNow). A log that fails is tried again by the next flush. A
//     recipient too close to its lease, or whose log failed at the invocation's end,
//     gets its own final write (conditional on the claim, as ever); if that fails too
//     its message fails and SQS redelivers it, and the claim ends unknown once its
//     lease is over.

// sentLogMargin is how much of a claim's lease must be left to record its recipient
// in a log: a quarter (30 s of the default 2 minutes), where the invocation flushes
// every second. Under minSentLogMargin (a lease under 8 s, only in tests) nothing is
// logged: clock skew between instances and a write in flight past its deadline must
// fit in it.
func (h *Handler) sentLogMargin() time.Duration { return h.lease() / 4 }

const (
	minSentLogMargin = 2 * time.Second
	// sentLogTimeout bounds one log write: a throttled log must not hold back the
	// counters and the recipients behind it, which then get their own final writes.
	sentLogTimeout = 5 * time.Second
)

// sentLog is an invocation's sent messages not yet written, and the messages whose
// recipients could be recorded nowhere.
type sentLog struct {
	mu      sync.Mutex
	pending []*sentPending
	seq     int
	failed  map[int]error // message turn -> why
}

// sentPending is one sent recipient waiting for its record. It is counted in its run's
// counters once the record is written, not when the recipient ends: a recipient whose
// record fails and whose claim is taken over is counted unknown by the taker only.
type sentPending struct {
	rec    minipush.SentRecord
	r      recipient
	g      minipush.Grant
	before time.Time // the log must be written before this (the lease less the margin)
	// ready: the recipient's message handed over its counters (message, after deliver
	// returned: the customer-service step adds why it fell back).
	ready    bool
	counters minipush.Counters
}

// logSent adds a sent recipient to the invocation's log, or returns nil when it needs
// its own final write: an invocation without a log (a test send), a recipient of
// unknown start, a lease too short to leave the margin.
func (inv *invocation) logSent(r recipient, g minipush.Grant, msgID string) *sentPending {
	h := inv.h
	l := inv.sentLog
	if l == nil || r.start.IsZero() || h.sentLogMargin() < minSentLogMargin {
		return nil
	}
	now := h.now()
	// The claim's lease is stored in whole seconds (rounded down) and began after start.
	leaseEnd := r.start.Add(h.lease()).Truncate(time.Second)
	p := &sentPending{
		// A day past the claim's own expiry: TTL deletes in no set order, and a log gone
		// before its claims would show them sending again.
		rec: minipush.SentRecord{RunKey: r.runKey, OpenID: r.openID, MsgID: msgID, At: now, ExpiresAt: now.Add(r.retention() + 24*time.Hour)},
		r:   r, g: g, before: leaseEnd.Add(-h.sentLogMargin()),
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p)
	return p
}

// ready hands over a logged recipient's counters: from the next flush on it is written
// and then counted.
func (l *sentLog) ready(p *sentPending, c minipush.Counters) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p.ready, p.counters = true, c
}

// failures returns the messages whose sent recipients were recorded nowhere.
func (l *sentLog) failures() map[int]error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

func (l *sentLog) fail(turn int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = map[int]error{}
	}
	if l.failed[turn] == nil {
		l.failed[turn] = err
	}
}

// putBack returns recipients whose log was not written, for the next flush.
func (l *sentLog) putBack(ps []*sentPending) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, ps...)
}

// take removes the recipients ready to be written (all of them when last: the
// messages are done) and numbers the log.
func (l *sentLog) take(last bool) ([]*sentPending, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out, keep []*sentPending
	for _, p := range l.pending {
		switch {
		case p.ready:
			out = append(out, p)
		case last:
			// Never handed over (no message waits for it): counted as a plain send.
			p.counters = final(p.r.openID, minipush.OutcomeSent, "").counters()
			out = append(out, p)
		default:
			keep = append(keep, p)
		}
	}
	l.pending = keep
	seq := l.seq
	if len(out) > 0 {
		l.seq++
	}
	return out, seq
}

// flushSent writes the log's ready recipients, counts them into the invocation's
// tallies and spends their grants in the background (inv.spends); those it cannot log
// get their own final write. last: the invocation's messages are all done.
func (inv *invocation) flushSent(ctx context.Context, last bool) {
	l := inv.sentLog
	if l == nil {
		return
	}
	pending, seq := l.take(last)
	if len(pending) == 0 {
		return
	}
	h := inv.h
	now := h.now()
	var logged, own []*sentPending
	var recs []minipush.SentRecord
	var giveUp time.Time
	for _, p := range pending {
		if !now.Before(p.before) {
			own = append(own, p)
			continue
		}
		logged = append(logged, p)
		recs = append(recs, p.rec)
		if end := p.before.Add(h.sentLogMargin() / 2); giveUp.IsZero() || end.Before(giveUp) {
			giveUp = end
		}
	}
	if len(logged) > 0 {
		lctx, cancel := context.WithTimeout(ctx, min(giveUp.Sub(now), sentLogTimeout))
		err := h.Store.RecordSent(lctx, inv.owner, seq, recs)
		cancel()
		switch {
		case err == nil:
		case !last:
			// Throttled, most likely: a write per recipient would hit the same shards
			// harder. The next flush tries again in another log; each recipient's own
			// write waits until its lease runs short, or the invocation ends.
			h.log().LogAttrs(ctx, slog.LevelWarn, "send: sent log not written; the next flush tries again",
				slog.String("request_id", inv.reqID), slog.Int("recipients", len(recs)), slog.String("err", err.Error()))
			l.putBack(logged)
			logged = nil
		default:
			h.log().LogAttrs(ctx, slog.LevelWarn, "send: sent log not written; each recipient gets its own final write",
				slog.String("request_id", inv.reqID), slog.Int("recipients", len(recs)), slog.String("err", err.Error()))
			own = append(own, logged...)
			logged = nil
		}
	}
	for _, p := range logged {
		inv.recorded(ctx, p)
	}
	if len(own) == 0 {
		return
	}
	g := new(errgroup.Group)
	g.SetLimit(inv.h.parallelism())
	for _, p := range own {
		g.Go(func() error {
			err := h.Store.FinishDelivery(ctx, p.rec.RunKey, p.rec.OpenID, inv.owner, time.Time{}, minipush.OutcomeSent, "", 0, p.rec.MsgID, "")
			switch {
			case err == nil:
				inv.recorded(ctx, p)
			case minipush.ErrorCode(err) == minipush.ECONFLICT:
				// Taken over as lost (unknown, a grant spent for it, counted by the taker):
				// that record stands.
			default:
				l.fail(p.r.turn, err)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// recorded counts a recipient whose record was written and spends its grant.
func (inv *invocation) recorded(ctx context.Context, p *sentPending) {
	inv.account(ctx, p.r.b, p.counters, 0)
	inv.spends.Go(func() { p.r.spend(ctx, p.g) })
}

// deliveryReader is the part of the stores finalNow needs.
type deliveryReader interface {
	Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error)
}

// finalNow re-reads a claim found past its lease just before it is taken over as lost:
// its owner's sent log, written at the latest a margin before the lease ended, may be
// newer than the read that found the claim open (a read made before the lease ended,
// or a batch's read a hundred recipients ago).
func finalNow(ctx context.Context, s deliveryReader, runKey, openID string) (bool, error) {
	got, err := s.Deliveries(ctx, runKey, []string{openID})
	if err != nil {
		return false, fmt.Errorf("send: re-read a lost claim: %w", err)
	}
	return got[openID].Final(), nil
}
