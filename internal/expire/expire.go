// Package expire keeps user inventory and expiry statistics right as grants are removed.
//
// It consumes the grants table's stream, filtered to REMOVE records. A removal is either
// DynamoDB TTL deleting a grant after its expiry (in the cloud; locally the reaper of
// package localstack stands in for it) or a deliberate delete before expiry: a grant
// spent by send, or dropped because the user turned a subscribe template off. Only the
// first kind is an expiry. Every removal, of either kind, leaves the user's inventory to
// be recomputed.
//
// A batch the stream mapping gives up on (after its retries) is recorded by Lambda in the
// on-failure queue as a range of the stream; Replay reads that range back and applies it
// through the same idempotent Handle once the operator has fixed the cause (replay.go).
package expire

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// parallelUsers bounds how many users' removals a batch processes at once: each user is
// a handful of small requests, and 100-record batches of TTL deletions usually touch many
// users.
const parallelUsers = 8

// Store is the storage expire keeps right (implemented by *dynamo.DB).
type Store interface {
	// RecordExpiry counts g as expired unspent, once: false when it was counted
	// already (a replayed record).
	RecordExpiry(ctx context.Context, g minipush.Grant) (bool, error)
	// RecomputeInventory recounts a user's live grants from the grants table onto the
	// user; replaying it changes nothing.
	RecomputeInventory(ctx context.Context, appID, openID string) (minipush.User, error)
	// GrantFromImage decodes a removed item's old image, reporting false for an item
	// that is not a grant.
	GrantFromImage(image map[string]types.AttributeValue) (minipush.Grant, bool, error)
	// IsGrantsStream reports whether a stream ARN is the grants table's.
	IsGrantsStream(streamARN string) bool
}

// Handler consumes the grants table's stream of removals.
//
// Replays change nothing: a user's inventory is recomputed from the grants table
// (Store.RecomputeInventory), and an expiry is counted through Store.RecordExpiry,
// which writes a per-grant marker and the counter in one transaction.
type Handler struct {
	DB  Store
	Log *slog.Logger
	// Now is the handler's clock (nil: the wall clock); tests share the store's.
	Now func() time.Time
	// Streams reads the grants stream back when Replay applies a batch the stream
	// mapping gave up on; Handle does not use it.
	Streams StreamsAPI

	// RecordTimeOnly makes the record's ApproximateCreationDateTime the only witness of
	// when a grant was removed. The production wiring (package lambdaenv) sets it when talking to real DynamoDB, whose
	// stream stamps records with the time of the change. When false (the zero value,
	// and every local stack), a removal also counts as an expiry when the grant's expiry
	// has passed by the handler's clock (Now): DynamoDB Local stamps records with the
	// wall clock while a test drives a clock of its own, so the record time alone would
	// put every reaped grant before its expiry. The price is that a grant spent just
	// before its expiry and processed after it counts as expired, which locally only
	// happens when a test moves the clock between a spend and reading the stream.
	RecordTimeOnly bool
	// Metrics gets one EMF flush per batch; nil emits nothing.
	Metrics *metrics.Emitter
}

// New returns a handler on db that logs to log (discarding when nil).
func New(db Store, log *slog.Logger) *Handler {
	return &Handler{DB: db, Log: logs.Or(log)}
}

// removal is one REMOVE record decoded.
type removal struct {
	seq     string
	grant   minipush.Grant
	expired bool
}

// userRemovals are the removals of one user's grants in a batch, in stream order.
type userRemovals struct {
	appID, openID string
	removals      []removal
}

// Handle processes one stream batch. It counts each expired-unspent grant once and
// recomputes the inventory of every user who lost a grant (once per user per batch). A
// record whose writes failed is returned in BatchItemFailures (by sequence number) so
// Lambda retries from it; a record that cannot be decoded is logged and skipped, since
// retrying cannot make it decodable and would only hold up the shard.
func (h *Handler) Handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	log := h.logger(ctx)
	ctx, mrec := h.Metrics.Start(ctx)
	defer func() {
		if err := mrec.Flush(); err != nil {
			log.Warn("metrics lost", "err", err)
		}
	}()
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	var users []*userRemovals
	byUser := map[string]*userRemovals{}
	for _, rec := range ev.Records {
		if rec.EventName != string(events.DynamoDBOperationTypeRemove) {
			continue // the mapping filters to REMOVE; anything else is none of our business
		}
		g, ok, err := h.grantOf(rec)
		if err != nil {
			log.Error("undecodable grant removal skipped", "seq", rec.Change.SequenceNumber, "err", err)
			continue
		}
		if !ok {
			continue
		}
		key := minipush.UserKey(g.AppID, g.OpenID)
		u := byUser[key]
		if u == nil {
			u = &userRemovals{appID: g.AppID, openID: g.OpenID}
			byUser[key] = u
			users = append(users, u)
		}
		u.removals = append(u.removals, removal{seq: rec.Change.SequenceNumber, grant: g, expired: h.isExpiry(rec, g, now)})
	}

	var (
		mu                      sync.Mutex
		failed                  = map[string]bool{}
		expired, counted, fails int
		wg                      sync.WaitGroup
		sem                     = make(chan struct{}, parallelUsers)
	)
	for _, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			bad, n, c := h.processUser(ctx, log, u)
			mu.Lock()
			defer mu.Unlock()
			for _, seq := range bad {
				failed[seq] = true
			}
			expired += n
			counted += c
		})
	}
	wg.Wait()

	var resp events.DynamoDBEventResponse
	for _, rec := range ev.Records { // in stream order, as Lambda reads them
		if failed[rec.Change.SequenceNumber] {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: rec.Change.SequenceNumber})
			fails++
		}
	}
	log.Info("grant removals processed", "records", len(ev.Records), "users", len(users),
		"expired", expired, "newly_counted", counted, "failed", fails)
	return resp, nil
}

// processUser counts the user's expiries and recomputes their inventory. It returns the
// sequence numbers that must be retried, how many removals were expiries and how many
// of those were counted for the first time.
func (h *Handler) processUser(ctx context.Context, log *slog.Logger, u *userRemovals) (failed []string, expired, counted int) {
	for _, r := range u.removals {
		if !r.expired {
			continue
		}
		expired++
		first, err := h.DB.RecordExpiry(ctx, r.grant)
		if err != nil {
			log.Error("count expiry failed", "app", u.appID, "seq", r.seq, "err", err)
			failed = append(failed, r.seq)
			continue
		}
		if first {
			counted++
			// Counted where the daily statistics count it, so a replay adds nothing.
			metrics.FromContext(ctx).Add(metrics.GrantsExpired, 1,
				metrics.Dim{Name: "Kind", Value: string(r.grant.Kind)}, metrics.Dim{Name: "AppId", Value: u.appID})
		}
	}
	if _, err := h.DB.RecomputeInventory(ctx, u.appID, u.openID); err != nil {
		log.Error("recompute inventory failed", "app", u.appID, "records", len(u.removals), "err", err)
		failed = failed[:0]
		for _, r := range u.removals {
			failed = append(failed, r.seq)
		}
	}
	return failed, expired, counted
}

// isExpiry reports whether the removal of g was its expiry: TTL deleted it, or it was
// removed at or after its expiry time. A spent grant is removed before its expiry (send
// only spends valid grants), so it never qualifies; neither does a grant with no uses
// left, which was spent, not left to expire.
func (h *Handler) isExpiry(rec events.DynamoDBEventRecord, g minipush.Grant, now time.Time) bool {
	if g.Uses <= 0 || g.ExpiresAt.IsZero() {
		return false
	}
	if id := rec.UserIdentity; id != nil && id.Type == "Service" && id.PrincipalID == "dynamodb.amazonaws.com" {
		// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-streams.html
		return true
	}
	if at := rec.Change.ApproximateCreationDateTime.Time; !at.IsZero() && !g.ExpiresAt.After(at) {
		return true
	}
	return !h.RecordTimeOnly && !g.ExpiresAt.After(now)
}

// grantOf decodes the grant a REMOVE record removed. It reports false for items of the
// grants table that are not grants and for records without an old image.
func (h *Handler) grantOf(rec events.DynamoDBEventRecord) (minipush.Grant, bool, error) {
	old := rec.Change.OldImage
	if len(old) == 0 {
		return minipush.Grant{}, false, fmt.Errorf("REMOVE record without an old image (stream view %q)", rec.Change.StreamViewType)
	}
	av, err := sdkAttributes(old)
	if err != nil {
		return minipush.Grant{}, false, err
	}
	g, ok, err := h.DB.GrantFromImage(av)
	if err != nil || !ok {
		return minipush.Grant{}, false, err
	}
	if g.AppID == "" || g.OpenID == "" || g.ID == "" {
		return minipush.Grant{}, false, fmt.Errorf("grant image lacks appId, openId or id")
	}
	return g, true, nil
}

func (h *Handler) logger(ctx context.Context) *slog.Logger {
	log := logs.Or(h.Log)
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	return log
}
