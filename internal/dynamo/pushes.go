package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// pushKey is the state-table key of one signed push URL. The timestamp and nonce are
// hashed: they are WeChat's strings, and hashing keeps them out of key space whatever
// they hold. One partition per URL, so pushes spread over partitions.
func pushKey(appID, timestamp, nonce string) map[string]types.AttributeValue {
	h := sha256.Sum256([]byte(timestamp + "\n" + nonce))
	return map[string]types.AttributeValue{
		"pk": strAV("push#" + appID + "#" + hex.EncodeToString(h[:16])),
		"sk": strAV("push"),
	}
}

// ClaimPush binds the signed push URL (appID, timestamp, nonce) to a body, identified
// by digest, until the URL's signature goes stale (until: the item's TTL). It is one
// conditional PutItem: it succeeds when the URL is new or holds the same digest not yet
// applied, and otherwise reads the stored item in the same call to tell PushApplied
// from PushOtherBody.
func (d *DB) ClaimPush(ctx context.Context, appID, timestamp, nonce, digest string, until time.Time) (minipush.PushClaim, error) {
	item := pushKey(appID, timestamp, nonce)
	item["digest"] = strAV(digest)
	item["applied"] = &types.AttributeValueMemberBOOL{Value: false}
	item["expiresAt"] = numAV(until.Unix())
	_, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           aws.String(d.Tables.State),
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(pk) OR (digest = :d AND applied = :no)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d": strAV(digest), ":no": &types.AttributeValueMemberBOOL{Value: false},
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return minipush.PushNew, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return 0, fmt.Errorf("dynamo: claim push of %s: %w", appID, err)
	}
	if old, ok := ccf.Item["digest"].(*types.AttributeValueMemberS); ok && old.Value == digest {
		return minipush.PushApplied, nil
	}
	return minipush.PushOtherBody, nil
}

// MarkPushApplied records that the push claimed with digest was applied, so later
// deliveries of the URL change nothing. A crash before it leaves the claim open to the
// same body, which WeChat's retry then applies (every push effect is idempotent).
func (d *DB) MarkPushApplied(ctx context.Context, appID, timestamp, nonce, digest string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(d.Tables.State),
		Key:                 pushKey(appID, timestamp, nonce),
		ConditionExpression: aws.String("digest = :d"),
		UpdateExpression:    aws.String("SET applied = :yes"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d": strAV(digest), ":yes": &types.AttributeValueMemberBOOL{Value: true},
		},
	})
	if err != nil {
		return conflict(err, "dynamo: mark push of %s applied", appID)
	}
	return nil
}
