package send

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// DeadLetterReason is the reason recorded for a recipient whose send message reached
// the dead-letter queue: failed/dead_letter when no sender had claimed it (nothing was
// sent), unknown/dead_letter when a claim shows a call may have happened.
const DeadLetterReason = "dead_letter"

// DeadLetterStore is the storage the dead-letter handler needs (implemented by
// *dynamo.DB), with the same error contract as Store.
type DeadLetterStore interface {
	Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error)
	CreateDelivery(ctx context.Context, d minipush.Delivery) (minipush.Delivery, error)
	FinishDelivery(ctx context.Context, runKey, openID, owner string, leaseUntil time.Time, outcome minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error
	GetGrant(ctx context.Context, appID, openID, grantID string) (minipush.Grant, error)
	SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error) // a claim naming a channel (spendLostClaim)
	SpendGrant(ctx context.Context, g minipush.Grant) error
	runCounters
}

// DeadLetter consumes the send dead-letter queue (DeadLetterFunction). A send message
// lands there after maxReceiveCount failed receives (a store outage, a bug, a body send
// cannot decode), and its recipients would otherwise never reach a final state, nor
// their run done. For every recipient of a dead message that is not final yet it
// records:
//
//   - failed/dead_letter when no delivery item exists: no sender claimed it, so no
//     call was made (written with attribute_not_exists, so a sender that claims it
//     first wins and is looked at below instead);
//   - unknown/dead_letter when a sender's claim has run out: the call may have gone
//     out, so it is never resent, and the claimed grant counts as spent, exactly as
//     send treats a crashed sender's claim;
//   - nothing yet when a claim is live: its sender may be in the middle of the call
//     (a duplicate of the message in flight). The message is reported as a batch item
//     failure and comes back after the dead-letter queue's visibility timeout, by when
//     the claim is final or has run out.
//
// Final recipients are never touched. The newly final ones are added to the run's
// counters and, when that completes the run, Reconcile marks it done, so the operator
// sees them in the run's progress (failed by reason dead_letter, unknown). A message
// whose body cannot be read is left on the queue: its recipients cannot be known, and
// the queue's age alarm tells the operator.
type DeadLetter struct {
	Store     DeadLetterStore
	Now       func() time.Time // must agree with the store's clock (leases compare both)
	Log       *slog.Logger
	Retention time.Duration    // delivery items' TTL; default 30 days
	Metrics   *metrics.Emitter // one EMF flush per invocation; nil emits nothing
	Events    Publisher        // webhook events of the runs it finishes; nil sends none
}

func (d *DeadLetter) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *DeadLetter) log() *slog.Logger { return logs.Or(d.Log) }

// Handle processes one batch of dead messages. It answers batchItemFailures with the
// messages to see again (a live claim, a storage error, an unreadable body) and never
// returns an error.
func (d *DeadLetter) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	reqID := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		reqID = lc.AwsRequestID
	}
	ctx, mrec := d.Metrics.Start(ctx)
	defer flushMetrics(ctx, d.log(), mrec)
	var resp events.SQSEventResponse
	for _, rec := range ev.Records {
		b, err := d.message(ctx, rec, reqID)
		if err == nil {
			continue
		}
		// A live claim is expected to settle by the next look; anything else needs an
		// operator if it persists (the queue's age alarm).
		level := slog.LevelError
		if errors.Is(err, errClaimLive) {
			level = slog.LevelInfo
		}
		d.log().LogAttrs(ctx, level, "deadletter: message kept for another look",
			slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", reqID),
			slog.String("message_id", rec.MessageId), slog.String("batch", b.ID), slog.String("err", err.Error()))
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
	}
	return resp, nil
}

// errClaimLive marks a message that has a recipient under a live claim.
var errClaimLive = errors.New("a recipient is claimed by a live sender")

// message finalizes one dead message's recipients and counts them.
func (d *DeadLetter) message(ctx context.Context, rec events.SQSMessage, reqID string) (minipush.Batch, error) {
	var b minipush.Batch
	if err := json.Unmarshal([]byte(rec.Body), &b); err != nil {
		return b, fmt.Errorf("deadletter: decode message: %w", err)
	}
	if b.CampaignID == "" || b.Run <= 0 {
		return b, fmt.Errorf("deadletter: batch %q lacks campaign or run", b.ID)
	}
	runKey := minipush.RunKey(b.CampaignID, b.Run)
	openIDs := dedupe(b.OpenIDs)
	stored, err := d.Store.Deliveries(ctx, runKey, openIDs)
	if err != nil {
		return b, fmt.Errorf("deadletter: batch %s: %w", b.ID, err)
	}
	var counted minipush.Counters
	alreadyFinal, live := 0, 0
	var errs []error
	for _, id := range openIDs {
		dl, ok := stored[id]
		if ok && dl.Final() {
			alreadyFinal++
			continue
		}
		o, err := d.finalize(ctx, b, runKey, id, dl, ok)
		switch {
		case errors.Is(err, errClaimLive):
			live++
		case err != nil:
			errs = append(errs, err)
		case o != "":
			counted.Count(o, DeadLetterReason)
			metrics.FromContext(ctx).Add(metrics.DeadLettered, 1,
				metrics.Dim{Name: "AppId", Value: b.AppID}, metrics.Dim{Name: "Outcome", Value: string(o)})
		default:
			alreadyFinal++ // finalized meanwhile by a sender
		}
	}
	log := d.log().With(slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", reqID), slog.String("batch", b.ID))
	// Counted before returning any error: a redelivery skips what is final now.
	accountRun(ctx, d.Store, d.Events, log, b, counted, alreadyFinal)
	log.LogAttrs(ctx, slog.LevelWarn, "deadletter: recipients of a dead send message ended",
		slog.Int("recipients", len(openIDs)), slog.Int("unknown", counted.Unknown),
		slog.Int("failed", counted.Failed[DeadLetterReason]), slog.Int("already_final", alreadyFinal),
		slog.Int("claimed_live", live), slog.Int("attempt", b.Attempt))
	if len(errs) > 0 {
		return b, fmt.Errorf("deadletter: batch %s: %w", b.ID, errors.Join(errs...))
	}
	if live > 0 {
		return b, fmt.Errorf("deadletter: batch %s: %d recipients: %w", b.ID, live, errClaimLive)
	}
	return b, nil
}

// finalize ends one recipient that was not final when read (dl, when exists) and
// returns the outcome it recorded, or "" when someone else made it final first. It
// looks at most twice: a sender may claim the recipient between the read and the
// write.
func (d *DeadLetter) finalize(ctx context.Context, b minipush.Batch, runKey, openID string, dl minipush.Delivery, exists bool) (minipush.Outcome, error) {
	for range 2 {
		if !exists {
			existing, err := d.Store.CreateDelivery(ctx, minipush.Delivery{
				RunKey: runKey, OpenID: openID, State: minipush.DeliveryFinal,
				Outcome: minipush.OutcomeFailed, Reason: DeadLetterReason,
				ExpiresAt: d.now().Add(orDur(d.Retention, 30*24*time.Hour)),
			})
			switch {
			case err == nil:
				return minipush.OutcomeFailed, nil
			case minipush.ErrorCode(err) != minipush.ECONFLICT:
				return "", fmt.Errorf("deadletter: record failed: %w", err)
			}
			dl, exists = existing, true
		}
		switch {
		case dl.Final():
			return "", nil
		case d.now().Before(dl.LeaseUntil):
			return "", errClaimLive
		}
		if done, err := finalNow(ctx, d.Store, runKey, openID); err != nil || done {
			return "", err
		}
		err := d.Store.FinishDelivery(ctx, runKey, openID, dl.Owner, dl.LeaseUntil, minipush.OutcomeUnknown, DeadLetterReason, 0, "", "")
		switch {
		case err == nil:
			d.spendClaimed(ctx, b, openID, dl)
			return minipush.OutcomeUnknown, nil
		case minipush.ErrorCode(err) != minipush.ECONFLICT:
			return "", fmt.Errorf("deadletter: record unknown: %w", err)
		}
		// The claim changed under us (finished, or deleted after a retryable answer):
		// read it again.
		got, err := d.Store.Deliveries(ctx, runKey, []string{openID})
		if err != nil {
			return "", fmt.Errorf("deadletter: re-read delivery: %w", err)
		}
		dl, exists = got[openID]
	}
	return "", fmt.Errorf("deadletter: delivery kept changing: %w", errClaimLive)
}

// spendClaimed retires the grant a lost claim was paying with: its message may have gone out,
// so the grant counts as used (as send's resolve does). A failure only leaves the
// grant to be answered 41028/41029 next time, so it is logged.
func (d *DeadLetter) spendClaimed(ctx context.Context, b minipush.Batch, openID string, dl minipush.Delivery) {
	if dl.GrantID == "" || b.AppID == "" {
		return
	}
	if err := spendLostClaim(ctx, d.Store, b.AppID, openID, dl.GrantID); err != nil {
		d.log().LogAttrs(ctx, slog.LevelWarn, "deadletter: spend grant of a lost claim failed",
			slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("err", err.Error()))
	}
}
