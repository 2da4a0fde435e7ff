// Package dynamo is minipush's storage on DynamoDB: grants, users, and (in files of their
// own) campaigns, audiences, deliveries and shared state. It maps DynamoDB's conditional
// failures to minipush.ECONFLICT so callers never see SDK error types.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/config"
)

// API is the subset of the DynamoDB client minipush uses; tests may wrap the real client
// to inject a throttle or a timeout that DynamoDB Local cannot produce.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// DB is the storage of one deployment.
type DB struct {
	Client API
	Tables config.Tables
	// Now is the clock; tests move it to expire grants without waiting.
	Now func() time.Time
	// Retention is how long finished runs are kept (RETENTION_DAYS); zero means the
	// default of 30 days.
	Retention time.Duration
}

// retention returns d.Retention or its default.
func (d *DB) retention() time.Duration {
	if d.Retention > 0 {
		return d.Retention
	}
	return 30 * 24 * time.Hour
}

// New returns a DB on the given tables with the wall clock.
func New(client API, tables config.Tables) *DB {
	return &DB{Client: client, Tables: tables, Now: time.Now}
}

// optimisticRetries bounds the read-check-write loops that lose to concurrent writers.
const optimisticRetries = 8

// conflict maps a failed condition to minipush.ECONFLICT and leaves other errors as
// they are.
func conflict(err error, format string, args ...any) error {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		e := minipush.Errorf(minipush.ECONFLICT, format, args...)
		e.Err = err
		return e
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// transactionLost reports whether a transaction was cancelled by a failed condition or a
// concurrent transaction, i.e. whether re-reading and retrying can succeed.
func transactionLost(err error) bool {
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		var tc *types.TransactionConflictException
		return errors.As(err, &tc)
	}
	for _, r := range tce.CancellationReasons {
		if r.Code == nil {
			continue
		}
		switch *r.Code {
		case "ConditionalCheckFailed", "TransactionConflict":
			return true
		}
	}
	return false
}

func epoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromEpoch(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// RetentionExpiry is the TTL value (the expiresAt attribute, epoch seconds) of an item that
// should be kept for retention from now. Every table has the TTL attribute expiresAt, and
// items that must not accumulate set it when written:
//
//   - a delivery record, when it is created: RetentionExpiry(now, cfg.Retention);
//   - a campaign run, when it reaches a final state (done or cancelled):
//     RetentionExpiry(finishedAt, cfg.Retention) — a running run carries none;
//   - audience pages of a finished one-off campaign, likewise from its finish.
//
// cfg.Retention is RETENTION_DAYS (default 30). Reads never trust TTL to have deleted
// anything: DynamoDB deletes expired items up to days late (locally, only the reaper of
// package localstack deletes them).
func RetentionExpiry(now time.Time, retention time.Duration) int64 {
	return now.Add(retention).Unix()
}
