package dynamo

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

type tokenItem struct {
	PK             string `dynamodbav:"pk"`
	SK             string `dynamodbav:"sk"`
	AccessToken    string `dynamodbav:"accessToken,omitempty"`
	TokenExpiresAt int64  `dynamodbav:"tokenExpiresAt"`
	LockOwner      string `dynamodbav:"lockOwner,omitempty"`
	LockUntil      int64  `dynamodbav:"lockUntil"`
	// ExpiresAt is the table's TTL: a token item outlives its token by a day so a long
	// idle app simply starts over.
	ExpiresAt int64 `dynamodbav:"expiresAt"`
}

func tokenKey(appID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "token#" + appID},
		"sk": &types.AttributeValueMemberS{Value: "token"},
	}
}

// GetToken reads an app's shared token (strongly consistent, so a token another instance
// just stored is seen). A missing item is a zero SharedToken, not an error: "no token
// yet" is the normal first state.
func (d *DB) GetToken(ctx context.Context, appID string) (minipush.SharedToken, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.State), Key: tokenKey(appID), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return minipush.SharedToken{}, fmt.Errorf("dynamo: get token of %s: %w", appID, err)
	}
	var it tokenItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return minipush.SharedToken{}, fmt.Errorf("dynamo: decode token: %w", err)
	}
	return minipush.SharedToken{
		AccessToken: it.AccessToken, ExpiresAt: fromEpoch(it.TokenExpiresAt),
		LockOwner: it.LockOwner, LockUntil: fromEpoch(it.LockUntil),
	}, nil
}

// LockTokenRefresh takes the app's refresh lock for ttl if nobody holds it. It returns
// an ECONFLICT error when another instance holds a live lock.
func (d *DB) LockTokenRefresh(ctx context.Context, appID, owner string, ttl time.Duration) error {
	now := d.Now()
	cond := expression.Or(
		expression.AttributeNotExists(expression.Name("lockUntil")),
		expression.Name("lockUntil").LessThanEqual(expression.Value(now.Unix())),
		expression.Name("lockOwner").Equal(expression.Value(owner)),
	)
	upd := expression.Set(expression.Name("lockOwner"), expression.Value(owner)).
		Set(expression.Name("lockUntil"), expression.Value(now.Add(ttl).Unix())).
		Set(expression.Name("expiresAt"), expression.Value(now.Add(24*time.Hour).Unix()))
	expr, err := expression.NewBuilder().WithCondition(cond).WithUpdate(upd).Build()
	if err != nil {
		return fmt.Errorf("dynamo: token lock expression: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State), Key: tokenKey(appID),
		ConditionExpression: expr.Condition(), UpdateExpression: expr.Update(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		return conflict(err, "dynamo: lock token refresh of %s", appID)
	}
	return nil
}

// PutToken stores a freshly fetched token and releases owner's refresh lock.
func (d *DB) PutToken(ctx context.Context, appID, owner, accessToken string, expiresAt time.Time) error {
	upd := expression.Set(expression.Name("accessToken"), expression.Value(accessToken)).
		Set(expression.Name("tokenExpiresAt"), expression.Value(expiresAt.Unix())).
		Set(expression.Name("lockUntil"), expression.Value(0)).
		Set(expression.Name("expiresAt"), expression.Value(expiresAt.Add(24*time.Hour).Unix())).
		Remove(expression.Name("lockOwner"))
	expr, err := expression.NewBuilder().WithUpdate(upd).Build()
	if err != nil {
		return fmt.Errorf("dynamo: token expression: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State), Key: tokenKey(appID),
		UpdateExpression: expr.Update(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		return fmt.Errorf("dynamo: put token of %s: %w", appID, err)
	}
	return nil
}
