package dynamo

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// SpendableGrant is the sender's grant lookup: it returns the user's earliest-expiring
// grant of channel that can pay for a message now (unexpired, uses left, not leased),
// in one Query on the expiry index in the common case (expired grants sort before the
// key condition's lower bound, so they are never read). It tells the two kinds of
// "none" apart:
//
//   - ENOTFOUND: the user holds no unexpired grant of the channel with uses left;
//     the recipient's outcome is no_grant.
//   - ECONFLICT: they do, but every one is leased by a live sender. That is not
//     no_grant: the other sender may yet release the grant (WeChat answered retry),
//     and when it is a duplicate of the same batch in flight, recording no_grant
//     here would decide the recipient's outcome before that sender's claim and
//     leave them unsent. The caller looks again after the lease.
//
// The leaseUntil test moves from the filter to the client so leased grants are
// seen; they are read (and billed) by the Query either way.
func (d *DB) SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error) {
	now := d.Now()
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:              aws.String(d.Tables.Grants),
		IndexName:              aws.String(ExpiryIndex),
		KeyConditionExpression: aws.String("pk = :pk AND ek BETWEEN :from AND :to"),
		// Expiring at or before now is expired: start just past now.
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk":   &types.AttributeValueMemberS{Value: minipush.UserKey(appID, openID)},
			":from": &types.AttributeValueMemberS{Value: minipush.ExpiryKeyAt(channel, now.Add(time.Second))},
			":to":   &types.AttributeValueMemberS{Value: channel + "#~"},
			":zero": &types.AttributeValueMemberN{Value: "0"},
		},
		FilterExpression: aws.String("uses > :zero"),
		ConsistentRead:   aws.Bool(true),
		Limit:            aws.Int32(8),
	})
	leased := false
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return minipush.Grant{}, fmt.Errorf("dynamo: spendable grant of %s: %w", appID, err)
		}
		for _, item := range page.Items {
			var it grantItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return minipush.Grant{}, fmt.Errorf("dynamo: decode grant: %w", err)
			}
			if it.LeaseUntil <= now.Unix() {
				return it.grant(), nil
			}
			leased = true
		}
	}
	if leased {
		return minipush.Grant{}, minipush.Errorf(minipush.ECONFLICT, "every spendable grant of %s is leased", channel)
	}
	return minipush.Grant{}, minipush.Errorf(minipush.ENOTFOUND, "no spendable grant")
}
