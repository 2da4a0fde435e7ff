package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
)

// userItem is a user as stored in the users table.
type userItem struct {
	PK           string   `dynamodbav:"pk"`
	AppID        string   `dynamodbav:"appId"`
	OpenID       string   `dynamodbav:"openId"`
	UnionID      string   `dynamodbav:"unionId,omitempty"`
	CreatedAt    int64    `dynamodbav:"createdAt"`
	LastLoginAt  int64    `dynamodbav:"lastLoginAt"`
	Region       string   `dynamodbav:"region,omitempty"`
	Industry     string   `dynamodbav:"industry,omitempty"`
	Tags         []string `dynamodbav:"tags,omitempty,stringset"`
	OptOut       bool     `dynamodbav:"optOut"`
	LiveGrants   int      `dynamodbav:"liveGrants"`
	LatestExpiry int64    `dynamodbav:"latestExpiry"`
}

func (it userItem) user() minipush.User {
	return minipush.User{
		AppID: it.AppID, OpenID: it.OpenID, UnionID: it.UnionID,
		CreatedAt: fromEpoch(it.CreatedAt), LastLoginAt: fromEpoch(it.LastLoginAt),
		Region: it.Region, Industry: it.Industry, Tags: it.Tags, OptOut: it.OptOut,
		LiveGrants: it.LiveGrants, LatestExpiry: fromEpoch(it.LatestExpiry),
	}
}

// UpsertUser records a login: it creates the user on first sight and refreshes
// lastLoginAt (and unionId when WeChat gave one) afterwards, leaving attributes and
// inventory alone.
func (d *DB) UpsertUser(ctx context.Context, appID, openID, unionID string) error {
	now := d.Now().Unix()
	upd := expression.Set(expression.Name("appId"), expression.Value(appID)).
		Set(expression.Name("openId"), expression.Value(openID)).
		Set(expression.Name("lastLoginAt"), expression.Value(now)).
		Set(expression.Name("createdAt"), expression.IfNotExists(expression.Name("createdAt"), expression.Value(now)))
	if unionID != "" {
		upd = upd.Set(expression.Name("unionId"), expression.Value(unionID))
	}
	expr, err := expression.NewBuilder().WithUpdate(upd).Build()
	if err != nil {
		return fmt.Errorf("dynamo: upsert user expression: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		UpdateExpression: expr.Update(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		return fmt.Errorf("dynamo: upsert user of %s: %w", appID, err)
	}
	return nil
}

// GetUser returns a user, or an ENOTFOUND error.
func (d *DB) GetUser(ctx context.Context, appID, openID string) (minipush.User, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return minipush.User{}, fmt.Errorf("dynamo: get user of %s: %w", appID, err)
	}
	if out.Item == nil {
		return minipush.User{}, minipush.Errorf(minipush.ENOTFOUND, "no such user")
	}
	var it userItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return minipush.User{}, fmt.Errorf("dynamo: decode user: %w", err)
	}
	return it.user(), nil
}
