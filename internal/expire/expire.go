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
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"minipush"
	"minipush/internal/awsenv"
	"minipush/internal/config"
	"minipush/internal/dynamo"
)

// parallelUsers bounds how many users' removals a batch processes at once: each user is
// a handful of small requests, and 100-record batches of TTL deletions usually touch many
// users.
const parallelUsers = 8

// Handler consumes the grants table's stream of removals.
//
// Replays change nothing: a user's inventory is recomputed from the grants table
// (dynamo.DB.RecomputeInventory), and an expiry is counted through dynamo.DB.RecordExpiry,
// which writes a per-grant marker and the counter in one transaction.
type Handler struct {
	DB  *dynamo.DB
	Log *slog.Logger
	// Streams reads the grants stream back when Replay applies a batch the stream
	// mapping gave up on; Handle does not use it.
	Streams StreamsAPI

	// RecordTimeOnly makes the record's ApproximateCreationDateTime the only witness of
	// when a grant was removed. FromEnv sets it when talking to real DynamoDB, whose
	// stream stamps records with the time of the change. When false (the zero value,
	// and every local stack), a removal also counts as an expiry when the grant's expiry
	// has passed by the handler's clock (DB.Now): DynamoDB Local stamps records with the
	// wall clock while a test drives a clock of its own, so the record time alone would
	// put every reaped grant before its expiry. The price is that a grant spent just
	// before its expiry and processed after it counts as expired, which locally only
	// happens when a test moves the clock between a spend and reading the stream.
	RecordTimeOnly bool
}

// New returns a handler on db that logs to log (discarding when nil).
func New(db *dynamo.DB, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{DB: db, Log: log}
}

// FromEnv builds the production handler from a function's environment (os.Getenv in
// Lambda): configuration, AWS clients and storage.
func FromEnv(ctx context.Context, getenv func(string) string) (*Handler, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("expire: %w", err)
	}
	if err := cfg.Require("GRANTS_TABLE", "USERS_TABLE", "STATE_TABLE"); err != nil {
		return nil, fmt.Errorf("expire: %w", err)
	}
	clients, err := awsenv.Load(ctx, getenv)
	if err != nil {
		return nil, fmt.Errorf("expire: %w", err)
	}
	h := New(dynamo.New(clients.DynamoDB, cfg.Tables), slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	h.RecordTimeOnly = getenv("AWS_ENDPOINT_URL_DYNAMODB") == ""
	// awsenv reads endpoints through getenv, which the SDK's own loader does not; the
	// local stack serves the streams API on its DynamoDB endpoint and says so here.
	h.Streams = dynamodbstreams.NewFromConfig(clients.Config, func(o *dynamodbstreams.Options) {
		if u := getenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS"); u != "" {
			o.BaseEndpoint = aws.String(u)
		}
	})
	return h, nil
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
	now := h.DB.Now()
	var users []*userRemovals
	byUser := map[string]*userRemovals{}
	for _, rec := range ev.Records {
		if rec.EventName != string(events.DynamoDBOperationTypeRemove) {
			continue // the mapping filters to REMOVE; anything else is none of our business
		}
		g, ok, err := grantOf(rec)
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
func grantOf(rec events.DynamoDBEventRecord) (minipush.Grant, bool, error) {
	old := rec.Change.OldImage
	if len(old) == 0 {
		return minipush.Grant{}, false, fmt.Errorf("REMOVE record without an old image (stream view %q)", rec.Change.StreamViewType)
	}
	if sk, ok := old["sk"]; !ok || sk.DataType() != events.DataTypeString || !strings.HasPrefix(sk.String(), "g#") {
		return minipush.Grant{}, false, nil
	}
	av, err := sdkAttributes(old)
	if err != nil {
		return minipush.Grant{}, false, err
	}
	g, err := dynamo.UnmarshalGrant(av)
	if err != nil {
		return minipush.Grant{}, false, err
	}
	if g.AppID == "" || g.OpenID == "" || g.ID == "" {
		return minipush.Grant{}, false, fmt.Errorf("grant image lacks appId, openId or id")
	}
	return g, true, nil
}

func (h *Handler) logger(ctx context.Context) *slog.Logger {
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	return log
}
