package send

import (
	"context"
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
//     read the logs and found none. A recipient too close to its lease, or whose log
//     write failed, gets its own final write (conditional on the claim, as ever); if
//     that fails too its message fails and SQS redelivers it, and the claim ends
//     unknown once its lease is over.

// sentLogMargin is how much of a claim's lease must be left to record its recipient
// in a log: a quarter (30 s of the default 2 minutes), where the invocation flushes
// every second.
func (h *Handler) sentLogMargin() time.Duration { return h.lease() / 4 }

// sentLog is an invocation's sent messages not yet written, and the messages whose
// recipients could be recorded nowhere.
type sentLog struct {
	mu      sync.Mutex
	pending []sentPending
	seq     int
	failed  map[int]error // message turn -> why
}

type sentPending struct {
	rec    minipush.SentRecord
	r      recipient
	g      minipush.Grant
	before time.Time // the log must be written before this (the lease less the margin)
}

// logSent adds a sent recipient to the invocation's log and reports true, or false
// when it needs its own final write: an invocation without a log, a recipient of unknown
// start.
func (inv *invocation) logSent(r recipient, g minipush.Grant, msgID string) bool {
	l := inv.sentLog
	if l == nil || r.start.IsZero() {
		return false
	}
	h := inv.h
	now := h.now()
	p := sentPending{
		rec: minipush.SentRecord{RunKey: r.runKey, OpenID: r.openID, MsgID: msgID, At: now, ExpiresAt: now.Add(r.retention())},
		r:   r, g: g, before: r.start.Add(h.lease() - h.sentLogMargin()),
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p)
	return true
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

// flushSent writes the log's pending recipients, then spends their grants in the
// background (inv.spends); those it cannot log get their own final write.
func (inv *invocation) flushSent(ctx context.Context) {
	l := inv.sentLog
	if l == nil {
		return
	}
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	seq := l.seq
	l.seq++
	l.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	h := inv.h
	now := h.now()
	var logged, own []sentPending
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
		lctx, cancel := context.WithDeadline(ctx, giveUp)
		err := h.Store.RecordSent(lctx, inv.owner, seq, recs)
		cancel()
		if err != nil {
			h.log().LogAttrs(ctx, slog.LevelWarn, "send: sent log not written; each recipient gets its own final write",
				slog.String("request_id", inv.reqID), slog.Int("recipients", len(recs)), slog.String("err", err.Error()))
			own = append(own, logged...)
			logged = nil
		}
	}
	for _, p := range logged {
		inv.spends.Go(func() { p.r.spend(ctx, p.g) })
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
				inv.spends.Go(func() { p.r.spend(ctx, p.g) })
			case minipush.ErrorCode(err) == minipush.ECONFLICT:
				// Taken over as lost (unknown, a grant spent for it): that record stands.
			default:
				l.fail(p.r.turn, err)
			}
			return nil
		})
	}
	_ = g.Wait()
}
