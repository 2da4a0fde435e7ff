// Package dynamo is minipush's storage on DynamoDB, a file per aggregate as at the root:
// grants, users, campaigns, runs, deliveries, audience, stats, tokens, rate limits,
// idempotency keys and pushes. It translates between the root's records and their item
// layouts and leaves the deciding to the root and the handlers (when a run is complete
// is minipush.Reconcile's). It maps DynamoDB's conditional failures to
// minipush.ECONFLICT so callers never see SDK error types.
package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
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

// Tables are the DynamoDB table names of one deployment.
type Tables struct {
	Grants, Users, Campaigns, Audience, Deliveries, State string
}

// DB is the storage of one deployment.
type DB struct {
	Client API
	Tables Tables
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
func New(client API, tables Tables) *DB {
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

func clampLimit(n int) int {
	if n <= 0 || n > minipush.MaxListLimit {
		return minipush.MaxListLimit
	}
	return n
}

// encodeCursor turns a LastEvaluatedKey into an opaque page cursor. Keys of our
// tables and indexes are strings and numbers only.
func encodeCursor(key map[string]types.AttributeValue) (string, error) {
	if len(key) == 0 {
		return "", nil
	}
	m := make(map[string]string, len(key))
	for k, v := range key {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			m[k] = "s" + v.Value
		case *types.AttributeValueMemberN:
			m[k] = "n" + v.Value
		default:
			return "", fmt.Errorf("dynamo: cursor attribute %s has type %T", k, v)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("dynamo: encode cursor: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// decodeCursor reverses encodeCursor and checks that the cursor belongs to the listing
// it is used for (attr == want), so a cursor of another listing is a clear EINVALID
// rather than a DynamoDB validation error.
func decodeCursor(cursor, attr, want string) (map[string]types.AttributeValue, error) {
	if cursor == "" {
		return nil, nil
	}
	bad := minipush.Errorf(minipush.EINVALID, "cursor is not one this listing returned")
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, bad
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || len(m) == 0 || len(m) > 4 {
		return nil, bad
	}
	key := make(map[string]types.AttributeValue, len(m))
	for k, v := range m {
		switch {
		case strings.HasPrefix(v, "s"):
			key[k] = strAV(v[1:])
		case strings.HasPrefix(v, "n"):
			if _, err := strconv.ParseFloat(v[1:], 64); err != nil {
				return nil, bad
			}
			key[k] = &types.AttributeValueMemberN{Value: v[1:]}
		default:
			return nil, bad
		}
	}
	if s, ok := key[attr].(*types.AttributeValueMemberS); !ok || s.Value != want {
		return nil, bad
	}
	return key, nil
}

func numAV(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func strAV(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// batchGet reads keys of one table 100 at a time, strongly consistent, retrying
// unprocessed keys with backoff, and calls each with every item found.
func (d *DB) batchGet(ctx context.Context, table, projection string, names map[string]string, keys []map[string]types.AttributeValue, each func(map[string]types.AttributeValue) error) error {
	for start := 0; start < len(keys); start += 100 {
		end := min(start+100, len(keys))
		ka := &types.KeysAndAttributes{Keys: keys[start:end], ConsistentRead: aws.Bool(true)}
		if projection != "" {
			ka.ProjectionExpression = aws.String(projection)
			ka.ExpressionAttributeNames = names
		}
		pending := map[string]types.KeysAndAttributes{table: *ka}
		for attempt := 0; len(pending[table].Keys) > 0; attempt++ {
			out, err := d.Client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
			if err != nil {
				return fmt.Errorf("dynamo: batch get %s: %w", table, err)
			}
			for _, item := range out.Responses[table] {
				if err := each(item); err != nil {
					return err
				}
			}
			pending = out.UnprocessedKeys
			if len(pending[table].Keys) == 0 {
				break
			}
			if attempt >= optimisticRetries {
				return fmt.Errorf("dynamo: batch get %s: %d keys still unprocessed", table, len(pending[table].Keys))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(25<<attempt) * time.Millisecond):
			}
		}
	}
	return nil
}

// batchDelete deletes keys 25 at a time, retrying unprocessed items with backoff.
func (d *DB) batchDelete(ctx context.Context, table string, keys []map[string]types.AttributeValue) error {
	for start := 0; start < len(keys); start += 25 {
		end := min(start+25, len(keys))
		reqs := make([]types.WriteRequest, 0, end-start)
		for _, k := range keys[start:end] {
			reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}})
		}
		if err := d.batchWrite(ctx, table, reqs); err != nil {
			return err
		}
	}
	return nil
}

// batchWriteSize is DynamoDB's BatchWriteItem limit.
const batchWriteSize = 25

// putAll writes items as they are, batchWriteSize per BatchWriteItem, overwriting any
// with the same key: the bulk loads (ImportGrants, ImportUsers). encode gives an item's
// stored form; kind names it in errors.
func putAll[T any](ctx context.Context, d *DB, table, kind string, items []T, encode func(T) any) error {
	for start := 0; start < len(items); start += batchWriteSize {
		reqs := make([]types.WriteRequest, 0, batchWriteSize)
		for _, it := range items[start:min(start+batchWriteSize, len(items))] {
			av, err := attributevalue.MarshalMap(encode(it))
			if err != nil {
				return fmt.Errorf("dynamo: encode %s: %w", kind, err)
			}
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: av}})
		}
		if err := d.batchWrite(ctx, table, reqs); err != nil {
			return err
		}
	}
	return nil
}

// batchWrite runs one BatchWriteItem of at most 25 requests to completion.
func (d *DB) batchWrite(ctx context.Context, table string, reqs []types.WriteRequest) error {
	pending := map[string][]types.WriteRequest{table: reqs}
	for attempt := 0; len(pending[table]) > 0; attempt++ {
		out, err := d.Client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
		if err != nil {
			return fmt.Errorf("dynamo: batch write %s: %w", table, err)
		}
		pending = out.UnprocessedItems
		if len(pending[table]) == 0 {
			return nil
		}
		if attempt >= optimisticRetries {
			return fmt.Errorf("dynamo: batch write %s: %d items still unprocessed", table, len(pending[table]))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(25<<attempt) * time.Millisecond):
		}
	}
	return nil
}

func pkKey(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}}
}

func intAttr(av types.AttributeValue) int {
	if n, ok := av.(*types.AttributeValueMemberN); ok {
		v, _ := strconv.Atoi(n.Value)
		return v
	}
	return 0
}

// ignoreConflict is conflict for writes whose lost condition means "already done by
// someone else": nil then.
func ignoreConflict(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if err = conflict(err, format, args...); minipush.ErrorCode(err) == minipush.ECONFLICT {
		return nil
	}
	return err
}
