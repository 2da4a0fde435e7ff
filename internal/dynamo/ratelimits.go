package dynamo

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// Allow counts one event against key's fixed window and reports whether it fits within
// limit events per window. It is one conditional UpdateItem on a state-table item keyed
// by the window's start, so concurrent callers across instances share the count exactly;
// the item's TTL removes it after the window. Keys are opaque (e.g. "collect#<appid>#<openid>").
func (d *DB) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	if limit <= 0 {
		return false, nil
	}
	now := d.Now()
	start := now.Truncate(window)
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(d.Tables.State),
		Key:                 rateKey(key, start),
		ConditionExpression: aws.String("attribute_not_exists(n) OR n < :limit"),
		UpdateExpression:    aws.String("ADD n :one SET expiresAt = :exp"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":limit": numAV(int64(limit)),
			":one":   numAV(1),
			":exp":   numAV(start.Add(2 * window).Unix()),
		},
	})
	if err == nil {
		return true, nil
	}
	if err = conflict(err, "dynamo: rate limit"); minipush.ErrorCode(err) == minipush.ECONFLICT {
		return false, nil
	}
	return false, err
}

// Spent reports whether key's current window has already counted limit events, without
// counting one: callers that count only some outcomes (collect counts refused login
// codes) check first and call Allow after. It is one eventually consistent GetItem
// (half a read unit), so a write in the last second may not be seen yet: concurrent
// callers can overshoot the limit by what they have in flight, which is the price of
// not writing on every check.
func (d *DB) Spent(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	if limit <= 0 {
		return true, nil
	}
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:            aws.String(d.Tables.State),
		Key:                  rateKey(key, d.Now().Truncate(window)),
		ProjectionExpression: aws.String("n"),
	})
	if err != nil {
		return false, fmt.Errorf("dynamo: rate limit read: %w", err)
	}
	return intAttr(out.Item["n"]) >= limit, nil
}

// rateKey is the state-table key of key's window that starts at start.
func rateKey(key string, start time.Time) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": strAV("rate#" + key),
		"sk": strAV(strconv.FormatInt(start.Unix(), 10)),
	}
}
