package dynamo

import (
	"context"
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
		TableName: aws.String(d.Tables.State),
		Key: map[string]types.AttributeValue{
			"pk": strAV("rate#" + key),
			"sk": strAV(strconv.FormatInt(start.Unix(), 10)),
		},
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
