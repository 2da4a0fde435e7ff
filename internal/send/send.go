// Package send delivers planned recipients to WeChat, spending one grant each, with
// at most one message per recipient per campaign run however SQS duplicates, retries
// or loses work (DESIGN.md, send flow and Exactly-once effect).
//
// Per SQS message (one minipush.Batch of one run):
//
//  0. Load the campaign (once per invocation). Cancelled: every pending recipient ends
//     skipped/"cancelled". Paused: the batch is re-queued unchanged with HoldDelay (a
//     hold, not an attempt). A stale run (minipush.Campaign.RunStale: the operator
//     resumed a recurring campaign past this run's occurrence without catch-up): every
//     pending recipient ends skipped/"missed_occurrence", grants untouched.
//  1. Read the delivery items of all recipients with BatchGetItem (once the previous
//     message of the invocation has all its recipients in the pool: pace.go) and drop the final
//     ones, so a redelivered message does no work twice and wastes no writes; the
//     opt-outs (one BatchGetItem of the users) are read at the same time.
//  2. Per remaining recipient, with bounded parallelism (a recipient whose claim another
//     live sender holds is set aside without a write, see 6): opt-out, the earliest
//     spendable grant of the message's channel (one Query of the grants table, whose
//     sort key orders a user's grants by channel and expiry),
//     and the app's frequency-cap slot (one conditional update of the user's counter
//     of the week; the day and week are the recipient's, in the app's zone). Held-out
//     recipients end skipped/holdout, and inside quiet hours recipients are deferred
//     to the window's end (caps.go).
//  3. Claim the delivery just before the call (PutItem attribute_not_exists), naming the
//     grant it pays with. A subscribe message without frequency caps claims while its
//     grant lookup of 2 is in flight, one round trip less per recipient, and its claim
//     names the grant channel instead (recipient.claimAndLook): its grants are
//     interchangeable counts at WeChat. The call waits for both; a failed claim drops
//     the lookup's answer, a lookup finding nothing ends the recipient no_grant with
//     the final write it gets anyway. An existing final item wins; a live claim of another sender
//     keeps the recipient pending; an expired claim is a crashed sender whose message
//     may have gone out, so it becomes unknown (its grant spent) and is never resent.
//  4. Call WeChat with the shared token (token.Cache); a stale token is invalidated
//     once and the call retried once.
//  5. Act on the classified answer (wechat.Classify): record sent (in the invocation's
//     sent log, sentlog.go, unless the app has receipts on), then spend the grant in
//     the background once that record is written, while the recipient's slot goes to
//     the next one (see below);
//     drop a rejected grant and try the next; fail the recipient; pause the campaign
//     and hold the rest; delete the claim and retry later; or record unknown and spend
//     the grant (likewise).
//  6. Re-queue only still-pending recipients as a new message: transient failures with
//     Attempt+1 and capped exponential DelaySeconds (beyond the policy's retry budget
//     they end failed/"retries_exhausted"); recipients another live sender held (busy)
//     after a short delay growing from 2 s toward the claim's lease, jittered, since
//     that sender is most often a duplicate of the same message done in a moment.
//  7. Every second while the invocation runs (pace.go) and once every message of it is
//     done, write the sent log (one item per delivery shard with sent recipients), then
//     add their finalized recipients to each run's counters in one UpdateItem per
//     run; when the run looks complete,
//     minipush.Reconcile recounts it from the delivery items and marks it done.
//
// # Exactly once, without a grant lease
//
// At most one message per recipient per run: the claim is one conditional write on
// one item (the recipient's delivery, in its run's shard), made before the call and
// removed only when WeChat proved nothing was sent; whoever loses it never calls.
//
// No grant spent twice: the grant is not reserved before the call; it is spent after
// the call with a write conditional on its still having a use (dynamo.DB.SpendGrant).
// Two runs (two campaigns) may pick the same grant of one user at the same moment and
// both call WeChat with it. For a template message the grant is a formId or prepay id,
// one value at WeChat: a formId used twice is answered 41029 (NextGrant), so the
// second call sends nothing, drops the grant and tries the user's next one; a prepay
// id allows three uses, each decrement conditional. For a subscribe message WeChat
// keeps a count of accepts per user and template and names no grant: if both calls
// succeed, WeChat consumed two accepts, and the run whose spend finds the grant gone
// spends the user's next grant of the template instead (recipient.spend), so our
// inventory keeps matching WeChat's count; if the user had only one accept, the second
// call is answered 43101 and that run drops the user's accepts from before its call.
// What the lease bought (no second call with a grant in flight) is thus already
// enforced by WeChat, and its two writes per message (lease, and the spend clearing it)
// plus its failure modes (a crashed sender's grant blocked for the lease, recipients
// waiting out a duplicate's lease) are gone.
//
// The spend follows a final write of ours, off the recipient's critical path
// (recipient.spendAndFinish: the invocation waits for it, the pool does not). The order
// matters for a claim naming only the channel: a taker-over spends any one grant of
// it, one too many had our spend landed without our final write. If the sender dies
// after the final write and before the spend, the grant keeps a use we no longer have,
// exactly as when the spend fails: WeChat answers its next use 41029 (formId, prepay
// id) or 43101 (no accept left), and it is dropped then, never a second message to
// this recipient in this run (the final item stands). If it dies before the final
// write, nothing was spent: the claim expires and is taken over as unknown, spending
// the grant it names or one of its channel.
//
// Writes per sent message: claim the delivery, spend the grant, and a share of a sent
// log item (one per delivery shard and flush: at a few hundred messages a second per
// instance, about a fifth of a write each; at one message a flush, a whole one), plus one counter
// update per run per invocation and per second it runs (about 0.001 per recipient at
// 10 messages of 100, a few times that with a slow WeChat; the
// run item carries no index key, so it is one write unit) and the run's completion
// (the run marked done, its watch item deleted, a one-off campaign marked done). The
// claim makes a second message impossible and must precede the call; the spend
// retires the consumed grant; the record of the outcome tells redeliveries, the
// operator's listing and the recount what happened. Claim and spend cannot share a
// write: two items in two tables, and a transaction bills every item double; the
// record can be shared, as the claims it completes are the sender's own. It was a final
// update of each claim (3 writes a message, still the case for an app with receipts
// on, whose ByRecipient index entry is written with it). Recipients that end without
// a call, or in any outcome but sent, cost one write (the final item); a recipient
// whose claim another sender holds costs none.
package send

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/metrics"
	"minipush/internal/queue"
	"minipush/internal/wechat"
)

// Store is the storage send needs (implemented by *dynamo.DB). Methods return
// ECONFLICT when a conditional write lost and ENOTFOUND for a missing item, as
// documented on dynamo.DB.
type Store interface {
	SendCampaign(ctx context.Context, id string) (minipush.Campaign, error)
	PauseCampaign(ctx context.Context, id, reason string) error
	runCounters
	csStore

	Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error)
	CreateDelivery(ctx context.Context, d minipush.Delivery) (minipush.Delivery, error)
	FinishDelivery(ctx context.Context, runKey, openID, owner string, leaseUntil time.Time, outcome minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error
	// RecordSent writes the invocation's sent log number seq (sentlog.go).
	RecordSent(ctx context.Context, owner string, seq int, recs []minipush.SentRecord) error
	SetDeliveryGrant(ctx context.Context, runKey, openID, owner, grantID string) error
	DeleteClaim(ctx context.Context, runKey, openID, owner string) error

	OptedOut(ctx context.Context, appID string, openIDs []string) (map[string]bool, error)
	// TakeCapSlot returns ECONFLICT when the user reached a cap (dynamo/ratelimits.go).
	TakeCapSlot(ctx context.Context, appID, openID, day, week, runKey string, caps minipush.Caps) error
	ReturnCapSlot(ctx context.Context, appID, openID, day, week, runKey string) error

	SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error)
	SpendGrant(ctx context.Context, g minipush.Grant) error
	DiscardGrant(ctx context.Context, g minipush.Grant) error
	GetGrant(ctx context.Context, appID, openID, grantID string) (minipush.Grant, error)
	// DeleteGrantsAcceptedBefore drops the user's grants of a template collected before
	// a time (WeChat answered 43101 to a call started then).
	DeleteGrantsAcceptedBefore(ctx context.Context, appID, openID, templateID string, before time.Time) (int, error)
}

// Queue sends a batch back to the send queue after delay (at most 15 minutes).
type Queue interface {
	Enqueue(ctx context.Context, b minipush.Batch, delay time.Duration) error
}

// Sender is the WeChat API (implemented by *wechat.Client).
type Sender interface {
	SendSubscribe(ctx context.Context, token string, m wechat.SubscribeMessage) (msgID string, err error)
	SendTemplate(ctx context.Context, token string, m wechat.TemplateMessage) error
	customSender
}

// Tokens hands out access tokens (implemented by *token.Cache): Invalidate reports a
// token WeChat rejected as stale and returns its replacement, single-flight.
type Tokens interface {
	Get(ctx context.Context, appID string) (string, error)
	Invalidate(ctx context.Context, appID, stale string) (string, error)
}

// Defaults.
const (
	DefaultParallelism = 16
	DefaultLease       = 2 * time.Minute // longer than a Lambda invocation (60 s) can send
	DefaultRetryBase   = 5 * time.Second
	DefaultHoldDelay   = 5 * time.Minute
	// MaxDelay is the longest re-queue delay: SQS's DelaySeconds limit.
	MaxDelay = queue.MaxDelay
	// grantLookups bounds the grant search of one recipient: lost lease races plus
	// grants WeChat rejected.
	grantLookups = 5
)

// Handler consumes send batches. Set the dependencies; the rest have defaults.
type Handler struct {
	Store   Store
	Queue   Queue
	WeChat  Sender
	Tokens  Tokens
	Limiter *RateLimiter // nil: no per-instance rate limit
	// Quota paces subscribe sends to each app's daily quota, shared by every instance
	// (quota.go); nil paces nothing.
	Quota *Pacer
	// Apps are the served apps by appId (the WeChat secret): their zone, frequency caps
	// and quiet hours (caps.go). An app missing here has neither caps nor quiet hours.
	Apps map[string]minipush.App

	Now func() time.Time // must agree with the store's clock (leases compare both)
	// Jitter returns the factor in [0.5, 1] applied to a busy recipient's delay;
	// default uniformly random.
	Jitter   func() float64
	NewOwner func() string // a unique id per invocation; claims and leases carry it
	Log      *slog.Logger
	Metrics  *metrics.Emitter // one EMF flush per invocation; nil emits nothing
	// Events enqueues the app's webhook events (a run paused or done); nil sends none.
	// It never fails or blocks a send (webhook.Publisher.Publish).
	Events Publisher

	Parallelism int           // recipients in flight per invocation; default DefaultParallelism
	Retention   time.Duration // delivery items' TTL; default 30 days
	Lease       time.Duration // a claim's lease; default DefaultLease
	RetryBase   time.Duration // first re-queue delay, doubled per attempt; 0 uses the default, <0 none
	HoldDelay   time.Duration // re-queue delay while the campaign is paused; default DefaultHoldDelay
	// DeadlineMargin: recipients are not started once the invocation has less than this
	// left; they are re-queued unchanged. Default 10 s.
	DeadlineMargin time.Duration
	// CounterFlush is how often a running invocation adds its finalized recipients to
	// the runs' counters (pace.go); default DefaultCounterFlush, <0 only at its end.
	CounterFlush time.Duration
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger { return logs.Or(h.Log) }

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func (h *Handler) lease() time.Duration { return orDur(h.Lease, DefaultLease) }

var ownerSeq atomic.Uint64

func (h *Handler) newOwner() string {
	if h.NewOwner != nil {
		return h.NewOwner()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b) + "-" + strconv.FormatUint(ownerSeq.Add(1), 10)
}

// Handle processes one SQS batch. Every message is processed concurrently, all sharing
// one pool of Parallelism recipients in flight. It answers batchItemFailures with
// exactly the messages SQS must redeliver (their processing failed, or re-queueing
// their pending recipients failed); after maxReceiveCount they reach the DLQ. It never
// returns an error: a failure concerns single messages, not the batch.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	reqID := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		reqID = lc.AwsRequestID
	}
	ctx, rec := h.Metrics.Start(ctx)
	defer flushMetrics(ctx, h.log(), rec)
	inv := &invocation{
		h: h, owner: h.newOwner(), reqID: reqID,
		sem:       make(chan struct{}, h.parallelism()),
		campaigns: map[string]*campaignState{},
		turns:     newTurns(len(ev.Records)),
		sentLog:   &sentLog{},
	}
	errs := make([]error, len(ev.Records))
	batches := make([]minipush.Batch, len(ev.Records))
	stopFlush := inv.flushEvery(ctx)
	var wg sync.WaitGroup
	for i, rec := range ev.Records {
		wg.Go(func() {
			defer inv.turns.pass(i)
			batches[i], errs[i] = inv.message(ctx, rec, i)
		})
	}
	wg.Wait()
	stopFlush()
	inv.flushCounters(ctx, true)
	inv.spends.Wait()           // nothing of the invocation runs on once Lambda may freeze it
	h.Quota.Flush(ctx, h.log()) // the tokens not used go back for the other senders
	for i, err := range inv.sentLog.failures() {
		errs[i] = errors.Join(errs[i], err) // sent, but recorded nowhere: SQS redelivers
	}
	var resp events.SQSEventResponse
	for i, err := range errs {
		if err == nil {
			continue
		}
		b := batches[i]
		h.log().LogAttrs(ctx, slog.LevelError, "send: message failed; SQS will redeliver it",
			slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", reqID),
			slog.String("message_id", ev.Records[i].MessageId), slog.String("batch", b.ID),
			slog.String("err", err.Error()))
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: ev.Records[i].MessageId})
	}
	return resp, nil
}

func (h *Handler) parallelism() int {
	if h.Parallelism <= 0 {
		return DefaultParallelism
	}
	return h.Parallelism
}

// invocation is the state of one Handle call.
type invocation struct {
	h     *Handler
	owner string
	reqID string
	sem   chan struct{}

	mu        sync.Mutex
	campaigns map[string]*campaignState
	tallies   map[minipush.RunRef]*tally // guarded by mu
	turns     *turns                     // when each message reads its recipients (pace.go)
	spends    sync.WaitGroup             // grant spends after final writes (spendAndFinish)
	// sentLog is the invocation's sent log (sentlog.go): nil when built elsewhere (a
	// test send), whose recipients each get their own final write.
	sentLog *sentLog
}

// tally is what an invocation's messages of one run finalized, added to the run's
// counters once when they are all done (flushCounters).
type tally struct {
	first        minipush.Batch // for the log
	counted      minipush.Counters
	alreadyFinal int
}

// campaignState is a campaign as loaded once per invocation, and whether this
// invocation paused it.
type campaignState struct {
	once   sync.Once
	c      minipush.Campaign
	lim    limits // the app's caps, quiet hours and zone for this campaign
	err    error
	paused atomic.Bool
}

func (inv *invocation) campaign(ctx context.Context, id string) (*campaignState, error) {
	inv.mu.Lock()
	st, ok := inv.campaigns[id]
	if !ok {
		st = &campaignState{}
		inv.campaigns[id] = st
	}
	inv.mu.Unlock()
	st.once.Do(func() {
		st.c, st.err = inv.h.Store.SendCampaign(ctx, id)
		st.lim = inv.h.limits(st.c)
		if st.c.Status == minipush.StatusPaused {
			st.paused.Store(true)
		}
	})
	return st, st.err
}

// fate is what became of one recipient in this invocation.
type fate int

const (
	fateFinal fate = iota // this invocation wrote its final outcome (counted here)
	fateDone              // already final, or finalized by another sender (not counted here)
	fateRetry             // transient failure, nothing sent: re-queue as a new attempt
	fateBusy              // another live sender holds the claim: look again after its lease
	fateHold              // not attempted (campaign paused, deadline near): re-queue unchanged
	fateDefer             // not attempted inside quiet hours: re-queue unchanged to the window's end
	fateQuota             // not attempted or refused (45009): the app's quota is used up until its reset
)

type result struct {
	openID  string
	fate    fate
	outcome minipush.Outcome
	reason  string
	// channel is ChannelCustomerService for a recipient finalized on that channel
	// (cs.go); csFallback the reason WeChat refused it before the grant path ran.
	channel, csFallback string
	// counted: the recipient's outcome is already in the invocation's tally (it was
	// added as the recipient ended, so progress moves while a long message runs), or
	// will be once its sent log is written (logged).
	counted bool
	logged  *sentPending // the recipient's entry in the invocation's sent log, or nil
}

// counters is what one final recipient adds to its run's counters.
func (r result) counters() minipush.Counters {
	var c minipush.Counters
	c.Count(r.outcome, r.reason)
	c.CountChannel(r.outcome, r.channel, r.csFallback)
	return c
}

func final(openID string, o minipush.Outcome, reason string) result {
	return result{openID: openID, fate: fateFinal, outcome: o, reason: reason}
}

// message processes one SQS message, the turn-th of the invocation, and returns its
// batch (for logs) and an error when SQS must redeliver it.
func (inv *invocation) message(ctx context.Context, rec events.SQSMessage, turn int) (minipush.Batch, error) {
	h := inv.h
	var b minipush.Batch
	if err := json.Unmarshal([]byte(rec.Body), &b); err != nil {
		return b, fmt.Errorf("send: decode message: %w", err)
	}
	if b.CampaignID == "" || b.Run <= 0 {
		return b, fmt.Errorf("send: batch %q lacks campaign or run", b.ID)
	}
	st, err := inv.campaign(ctx, b.CampaignID)
	if err != nil {
		return b, fmt.Errorf("send: batch %s: %w", b.ID, err)
	}
	c := st.c
	if st.paused.Load() {
		if err := h.Queue.Enqueue(ctx, b, orDur(h.HoldDelay, DefaultHoldDelay)); err != nil {
			return b, fmt.Errorf("send: hold batch %s of paused campaign: %w", b.ID, err)
		}
		h.log().LogAttrs(ctx, slog.LevelInfo, "send: campaign paused; batch held",
			slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", inv.reqID),
			slog.String("batch", b.ID))
		return b, nil
	}
	if held, err := inv.holdForQuota(ctx, b, st); held || err != nil {
		return b, err // quota.go: the app's quota is used up; the batch waits for the reset
	}

	runKey := minipush.RunKey(b.CampaignID, b.Run)
	openIDs := dedupe(b.OpenIDs)
	stale := c.RunStale(b.Run)
	// Read when the previous message's recipients are all in the pool (pace.go), not
	// all messages at the invocation's start.
	inv.turns.wait(ctx, turn)
	// The opt-outs are read next to the delivery items, not after them: two reads of
	// two tables that need nothing from each other, so the batch waits for one round
	// trip. On a redelivery this reads users already final too; reads are cheap.
	var optedOut map[string]bool
	var optErr error
	var reads sync.WaitGroup
	if c.Policy.SkipOptedOut && c.Status != minipush.StatusCancelled && !stale {
		reads.Go(func() { optedOut, optErr = h.Store.OptedOut(ctx, c.AppID, openIDs) })
	}
	stored, err := h.Store.Deliveries(ctx, runKey, openIDs)
	reads.Wait()
	if err = cmp.Or(err, optErr); err != nil {
		return b, fmt.Errorf("send: batch %s: %w", b.ID, err)
	}
	var pending, claimedElsewhere []string
	now := h.now()
	for _, id := range openIDs {
		d, ok := stored[id]
		switch {
		case ok && d.Final():
		case ok && d.Owner != inv.owner && now.Before(d.LeaseUntil):
			// Another live sender (a duplicate of this message) holds the claim: look
			// again soon, without a write that would only fail its condition.
			claimedElsewhere = append(claimedElsewhere, id)
		default:
			pending = append(pending, id)
		}
	}
	alreadyFinal := len(openIDs) - len(pending) - len(claimedElsewhere)
	if len(pending) == 0 && len(claimedElsewhere) == 0 {
		inv.account(ctx, b, minipush.Counters{}, alreadyFinal)
		return b, nil
	}

	_, quiet := st.quietUntil(now)
	results := make([]result, len(pending), len(pending)+len(claimedElsewhere))
	errs := make([]error, len(pending))
	var wg sync.WaitGroup
	for i, openID := range pending {
		if !inv.acquire(ctx) {
			results[i] = result{openID: openID, fate: fateHold}
			continue
		}
		wg.Go(func() {
			defer func() { <-inv.sem }()
			r := recipient{inv: inv, st: st, b: b, runKey: runKey, openID: openID, cap: &capSlot{}, turn: turn, start: h.now()}
			switch {
			case c.Status == minipush.StatusCancelled:
				results[i], errs[i] = r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, "cancelled", 0)
			case stale:
				// Resumed past its occurrence: yesterday's reminder must not arrive in the
				// night nor take today's one-per-day slot, so nothing is sent or spent.
				results[i], errs[i] = r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, minipush.ReasonMissedOccurrence, 0)
			case st.paused.Load() || inv.nearDeadline(ctx):
				results[i] = result{openID: openID, fate: fateHold}
			case minipush.HeldOut(c.ID, openID, c.Policy.HoldoutPercent):
				results[i], errs[i] = r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, minipush.ReasonHoldout, 0)
			case optedOut[openID]:
				results[i], errs[i] = r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, "opted_out", 0)
			case quiet:
				results[i] = result{openID: openID, fate: fateDefer}
			case inv.quotaHeld(st):
				results[i] = result{openID: openID, fate: fateQuota}
			default:
				results[i], errs[i] = r.deliver(ctx)
			}
			// Counted as it ends, not when its message does: the ten messages of an
			// invocation end together, and the run's progress would stand still till then.
			if errs[i] == nil && results[i].fate == fateFinal {
				if p := results[i].logged; p != nil {
					inv.sentLog.ready(p, results[i].counters()) // counted once its log is written
				} else {
					inv.account(ctx, b, results[i].counters(), 0)
				}
				results[i].counted = true
			}
		})
	}
	inv.turns.pass(turn) // every recipient is in the pool: the next message may read
	wg.Wait()
	for _, id := range claimedElsewhere {
		results = append(results, result{openID: id, fate: fateBusy})
	}
	return b, inv.settle(ctx, b, st, results, alreadyFinal, errors.Join(errs...))
}

// acquire takes a slot of the invocation's pool, or reports false when ctx ended.
func (inv *invocation) acquire(ctx context.Context) bool {
	select {
	case inv.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (inv *invocation) nearDeadline(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < orDur(inv.h.DeadlineMargin, 10*time.Second)
}

// settle turns one message's results into counters and a re-queue. Counters go first:
// if the re-queue then fails, SQS redelivers the message and step 1 skips the
// recipients already counted, so nothing is counted twice.
func (inv *invocation) settle(ctx context.Context, b minipush.Batch, st *campaignState, results []result, alreadyFinal int, procErr error) error {
	h := inv.h
	// counted is the message's final recipients (for its log line); late those not yet
	// in the invocation's tally (the ones settle itself finalized).
	var counted, late minipush.Counters
	var retry, busy, hold []string
	deferred, quotaHeld := 0, 0
	for _, r := range results {
		switch r.fate {
		case fateRetry:
			retry = append(retry, r.openID)
		case fateBusy:
			busy = append(busy, r.openID)
		case fateHold:
			hold = append(hold, r.openID)
		case fateDefer:
			hold = append(hold, r.openID)
			deferred++
		case fateQuota:
			hold = append(hold, r.openID)
			quotaHeld++
		}
	}
	attempt, looks := b.Attempt, b.Busy
	switch {
	case len(retry) > 0:
		attempt++
	case len(busy) > 0:
		looks++ // only busy: a look again, not an attempt
	}
	budget := cmp.Or(st.c.Policy.RetryBudget, minipush.DefaultRetryBudget)
	if len(retry) > 0 && attempt > budget {
		// Out of retries: these end failed. A recipient whose claim someone else holds
		// meanwhile stays theirs (finalizeUnclaimed resolves it).
		var still []string
		for _, id := range retry {
			r := recipient{inv: inv, st: st, b: b, runKey: minipush.RunKey(b.CampaignID, b.Run), openID: id}
			res, err := r.finalizeUnclaimed(ctx, minipush.OutcomeFailed, "retries_exhausted", 0)
			if err != nil {
				procErr = errors.Join(procErr, err)
				continue
			}
			results = append(results, res)
			if res.fate == fateBusy {
				still = append(still, id)
			}
		}
		retry = nil
		busy = append(busy, still...)
	}
	for _, r := range results {
		if r.fate != fateFinal {
			continue
		}
		c := r.counters()
		counted.Add(c)
		if !r.counted {
			late.Add(c)
		}
		countOutcome(ctx, st.c.AppID, r.outcome, r.reason)
	}
	log := h.log().With(slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", inv.reqID), slog.String("batch", b.ID))
	inv.account(ctx, b, late, alreadyFinal)
	if procErr != nil {
		// Leave the message to SQS: finished recipients are skipped on redelivery, the
		// rest are redone there rather than re-queued here.
		return fmt.Errorf("send: batch %s: %w", b.ID, procErr)
	}
	pending := slices.Concat(retry, busy, hold)
	if len(pending) > 0 {
		var delay time.Duration
		if len(retry) > 0 {
			delay = backoff(h.RetryBase, attempt)
		}
		if len(busy) > 0 {
			delay = max(delay, busyDelay(h.lease(), looks, h.jitter()), h.busyFloor())
		}
		if st.paused.Load() {
			delay = max(delay, orDur(h.HoldDelay, DefaultHoldDelay))
		}
		if deferred > 0 {
			delay = max(delay, st.deferDelay(h.now()))
		}
		if quotaHeld > 0 {
			delay = max(delay, inv.quotaDelay(st))
		}
		next := minipush.Batch{
			ID: requeueID(b.ID, attempt), CampaignID: b.CampaignID, Run: b.Run, AppID: b.AppID,
			OpenIDs: pending, Attempt: attempt, Busy: looks,
		}
		if err := h.Queue.Enqueue(ctx, next, min(delay, MaxDelay)); err != nil {
			return fmt.Errorf("send: re-queue %d recipients of batch %s: %w", len(pending), b.ID, err)
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, "send: batch processed",
		slog.Int("recipients", len(results)), slog.Int("sent", counted.Sent), slog.Int("no_grant", counted.NoGrant),
		slog.Int("skipped", counted.Skipped), slog.Int("unknown", counted.Unknown), slog.Any("failed", counted.Failed),
		slog.Int("retry", len(retry)), slog.Int("busy", len(busy)), slog.Int("held", len(hold)), slog.Int("deferred", deferred), slog.Int("attempt", b.Attempt))
	return nil
}

// account records one message's newly final recipients (and those it found final
// already) for the invocation's counter update of the run (flushCounters).
func (inv *invocation) account(_ context.Context, b minipush.Batch, counted minipush.Counters, alreadyFinal int) {
	ref := minipush.RunRef{CampaignID: b.CampaignID, Run: b.Run}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.tallies == nil {
		inv.tallies = map[minipush.RunRef]*tally{}
	}
	t, ok := inv.tallies[ref]
	if !ok {
		t = &tally{first: b}
		inv.tallies[ref] = t
	}
	t.counted.Add(counted)
	t.alreadyFinal += alreadyFinal
}

// flushCounters adds each run's tally to its counters, one UpdateItem per run per
// invocation rather than per SQS message: the counter update is send's only write that
// no recipient needs, so it is the one to share (10 messages of 100 recipients: 0.001
// writes a recipient instead of 0.01). It is made after every message finished, so the
// re-queues went first; that changes nothing for the count: a message SQS redelivers
// finds these recipients final and does not count them again, and a lost update (the
// invocation died first) is what the recount below and the planner's watch are for.
// Each run is finished when its counters say it is complete. A message that found
// recipients already final is a redelivery or a duplicate: the invocation that
// finalized them may have died before its counter update, and then no counter would
// ever reach the planned count. So the run is read (a zero update is a GetItem) and
// reconciled when those recipients alone can explain the gap to the planned count;
// far from the end of a run nothing is recounted. Errors are logged: the recipients
// are final either way, and Reconcile recounts exactly from the delivery items.
func (inv *invocation) flushCounters(ctx context.Context, last bool) {
	// The sent log goes first: its recipients are counted once written (sentlog.go).
	inv.flushSent(ctx, last)
	inv.mu.Lock()
	tallies := inv.tallies
	inv.tallies = nil
	inv.mu.Unlock()
	var wg sync.WaitGroup
	for _, t := range tallies {
		wg.Go(func() {
			b := t.first
			log := inv.h.log().With(slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", inv.reqID), slog.String("batch", b.ID))
			accountRun(ctx, inv.h.Store, inv.h.Events, log, b, t.counted, t.alreadyFinal)
		})
	}
	wg.Wait()
}

// runCounters is the part of the store that counts a run and finishes it
// (minipush.Reconcile).
// Publisher enqueues a webhook event without failing (*webhook.Publisher).
type Publisher interface {
	Publish(ctx context.Context, ev minipush.WebhookEvent)
}

type runCounters interface {
	AddRunCounters(ctx context.Context, campaignID string, run int, c minipush.Counters) (minipush.RunProgress, error)
	minipush.RunStore
}

// accountRun is account for any handler that finalizes recipients of a batch (send,
// and the dead-letter handler).
func accountRun(ctx context.Context, store runCounters, events Publisher, log *slog.Logger, b minipush.Batch, counted minipush.Counters, alreadyFinal int) {
	if counted.Final() == 0 && alreadyFinal == 0 {
		return
	}
	prog, err := store.AddRunCounters(ctx, b.CampaignID, b.Run, counted)
	switch {
	case err != nil:
		log.LogAttrs(ctx, slog.LevelWarn, "send: counter update lost; reconcile will recount", slog.String("err", err.Error()))
		return
	case prog.Status == minipush.RunDone:
		return
	case prog.Complete():
	case alreadyFinal > 0 && prog.PlanningDone() && prog.Counters.Final()+alreadyFinal >= prog.Planned:
	default:
		return
	}
	sum, done, err := minipush.Reconcile(ctx, store, b.CampaignID, b.Run)
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "send: reconcile failed; the planner retries it", slog.String("err", err.Error()))
	} else if done {
		log.LogAttrs(ctx, slog.LevelInfo, "send: run done", slog.Int("planned", sum.Planned), slog.Int("sent", sum.Sent),
			slog.Int("no_grant", sum.NoGrant), slog.Int("skipped", sum.Skipped), slog.Int("unknown", sum.Unknown),
			slog.Any("failed", sum.Failed))
		if events != nil {
			ev := minipush.RunEvent(minipush.EventRunDone, minipush.Campaign{ID: b.CampaignID, AppID: b.AppID}, b.Run, time.Now())
			ev.Counters = &sum
			events.Publish(ctx, ev)
		}
	}
}

// backoff is the capped exponential re-queue delay of attempt (1, 2, ...).
func backoff(base time.Duration, attempt int) time.Duration {
	base = orDur(base, DefaultRetryBase)
	if base < 0 || attempt <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempt && d < MaxDelay; i++ {
		d *= 2
	}
	return min(d, MaxDelay)
}

// busyBase is the first delay before a recipient whose claim another live sender held
// is looked at again: such a sender is usually a duplicate of the same SQS message that
// finishes (or lets go) within a second or two.
const busyBase = 2 * time.Second

// busyFloor is the shortest delay before a busy recipient is looked at again: two
// counter flushes, so that the other sender's sent log (written with its counters,
// sentlog.go) records whatever it had finished by our look, and the recipient is not
// found busy a second time, to wait twice as long.
func (h *Handler) busyFloor() time.Duration {
	if h.CounterFlush < 0 {
		return 0
	}
	return 2 * orDur(h.CounterFlush, DefaultCounterFlush)
}

// busyDelay is the delay of the looks-th look at a busy recipient: growing from busyBase
// toward the lease (after which a claim left by a crashed sender is taken over), times
// a jitter factor in [0.5, 1] so the copies of one batch drift apart instead of meeting
// again.
func busyDelay(lease time.Duration, looks int, jitter float64) time.Duration {
	ceiling := busyBase
	for i := 1; i < looks && ceiling < lease; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, lease+time.Second)
	return time.Duration(float64(ceiling) * min(max(jitter, 0.5), 1))
}

func (h *Handler) jitter() float64 {
	if h.Jitter != nil {
		return h.Jitter()
	}
	return 0.5 + mrand.Float64()/2
}

// requeueID derives the re-queued batch's id from its root batch: "<id>-r<attempt>".
func requeueID(id string, attempt int) string {
	if i := strings.LastIndex(id, "-r"); i > 0 {
		if _, err := strconv.Atoi(id[i+2:]); err == nil {
			id = id[:i]
		}
	}
	return id + "-r" + strconv.Itoa(attempt)
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
