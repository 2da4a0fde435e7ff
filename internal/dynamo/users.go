package dynamo

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

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

func toUserItem(u minipush.User) userItem {
	return userItem{
		PK: minipush.UserKey(u.AppID, u.OpenID), AppID: u.AppID, OpenID: u.OpenID, UnionID: u.UnionID,
		CreatedAt: epoch(u.CreatedAt), LastLoginAt: epoch(u.LastLoginAt),
		Region: u.Region, Industry: u.Industry, Tags: u.Tags, OptOut: u.OptOut,
		LiveGrants: u.LiveGrants, LatestExpiry: epoch(u.LatestExpiry),
	}
}

// ImportUsers writes users as they are, 25 per BatchWriteItem, replacing any stored item
// of the same user whole (login data and inventory included): a bulk load for tests
// and benchmarks, like ImportGrants, where PutUserAttrs (one UpdateItem per user) would
// take longer than the work measured.
func (d *DB) ImportUsers(ctx context.Context, users []minipush.User) error {
	return putAll(ctx, d, d.Tables.Users, "user", users, func(u minipush.User) any { return toUserItem(u) })
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

// OptedOut returns which of the given users of appID opted out of campaign pushes,
// with one BatchGetItem per 100 users; unknown users have not opted out.
func (d *DB) OptedOut(ctx context.Context, appID string, openIDs []string) (map[string]bool, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(openIDs))
	for _, id := range openIDs {
		keys = append(keys, pkKey(minipush.UserKey(appID, id)))
	}
	out := map[string]bool{}
	err := d.batchGet(ctx, d.Tables.Users, "openId, optOut", nil, keys, func(item map[string]types.AttributeValue) error {
		var it struct {
			OpenID string `dynamodbav:"openId"`
			OptOut bool   `dynamodbav:"optOut"`
		}
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return fmt.Errorf("dynamo: decode user: %w", err)
		}
		if it.OptOut {
			out[it.OpenID] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TakeDailySlot records that runKey pushes to the user on day (a YYYY-MM-DD date), if
// no other run has pushed to them that day: one conditional update of the user item,
// atomic across concurrent campaigns. Taking it again for the same run succeeds, so
// a retried recipient keeps its slot. ECONFLICT when another run has the day.
func (d *DB) TakeDailySlot(ctx context.Context, appID, openID, day, runKey string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ConditionExpression: aws.String("attribute_not_exists(lastPushDay) OR lastPushDay < :day OR lastPushRun = :run"),
		UpdateExpression:    aws.String("SET lastPushDay = :day, lastPushRun = :run, appId = if_not_exists(appId, :app), openId = if_not_exists(openId, :open)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":day": strAV(day), ":run": strAV(runKey), ":app": strAV(appID), ":open": strAV(openID),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: take daily slot of %s", appID)
	}
	return nil
}

// importParallelism bounds concurrent UpdateItems of one import.
const importParallelism = 16

// PutUserAttrs replaces a user's attributes and opt-out, creating the user item when
// the operator knows the user before their first login. Empty region, industry or tags
// remove the attribute (a DynamoDB set cannot be empty). Login data and inventory are
// left alone, which is why this is an UpdateItem and imports cannot use BatchWriteItem.
func (d *DB) PutUserAttrs(ctx context.Context, appID string, a minipush.UserAttrs) error {
	now := d.Now().Unix()
	upd := expression.Set(expression.Name("appId"), expression.Value(appID)).
		Set(expression.Name("openId"), expression.Value(a.OpenID)).
		Set(expression.Name("optOut"), expression.Value(a.OptOut)).
		Set(expression.Name("createdAt"), expression.IfNotExists(expression.Name("createdAt"), expression.Value(now)))
	str := func(name, v string) {
		if v == "" {
			upd = upd.Remove(expression.Name(name))
		} else {
			upd = upd.Set(expression.Name(name), expression.Value(v))
		}
	}
	str("region", a.Region)
	str("industry", a.Industry)
	if tags := slices.Compact(slices.Sorted(slices.Values(a.Tags))); len(tags) > 0 {
		upd = upd.Set(expression.Name("tags"), expression.Value(stringSet(tags)))
	} else {
		upd = upd.Remove(expression.Name("tags"))
	}
	expr, err := expression.NewBuilder().WithUpdate(upd).Build()
	if err != nil {
		return fmt.Errorf("dynamo: user attrs expression: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, a.OpenID)),
		UpdateExpression: expr.Update(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		return fmt.Errorf("dynamo: put attributes of a user of %s: %w", appID, err)
	}
	return nil
}

// ImportUserAttrs is PutUserAttrs for many users, with bounded parallelism. It stops at
// the first error; users written before it stay written (each write is a whole-user
// replacement, so re-running the import is safe).
func (d *DB) ImportUserAttrs(ctx context.Context, appID string, users []minipush.UserAttrs) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(importParallelism)
	for _, u := range users {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return d.PutUserAttrs(gctx, appID, u) })
	}
	return g.Wait()
}

// stringSet marshals as a DynamoDB string set (SS) rather than a list, so the planner's
// segment filter can use contains(tags, :t).
type stringSet []string

// MarshalDynamoDBAttributeValue implements attributevalue.Marshaler.
func (s stringSet) MarshalDynamoDBAttributeValue() (types.AttributeValue, error) {
	return &types.AttributeValueMemberSS{Value: s}, nil
}
