package dynamo

import (
	"context"
	"fmt"
	"slices"
	"time"

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

// A user's customer-service window (minipush.CSWindowState) is two attributes of the
// user item, csUntil (epoch seconds) and csLeft: WeChat's pushes open it, send takes
// messages from it. Every write is conditional on csUntil, so a late or replayed push
// never moves a window backwards and a send never takes a message from a window a
// newer push replaced.

// OpenCSWindow stores w as the user's window unless the stored one ends at or after
// w.Until (a newer or the same user message, e.g. a push WeChat retried), and reports
// whether it did. Creates the user item when the user wrote before logging in.
func (d *DB) OpenCSWindow(ctx context.Context, appID, openID string, w minipush.CSWindowState) (bool, error) {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ConditionExpression: aws.String("attribute_not_exists(csUntil) OR csUntil < :until"),
		UpdateExpression:    aws.String("SET csUntil = :until, csLeft = :left, appId = if_not_exists(appId, :app), openId = if_not_exists(openId, :open)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":until": numAV(w.Until.Unix()), ":left": numAV(int64(w.Left)), ":app": strAV(appID), ":open": strAV(openID),
		},
	})
	if err != nil {
		err = conflict(err, "dynamo: open customer-service window of a user of %s", appID)
		if minipush.ErrorCode(err) == minipush.ECONFLICT {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// csAttrs are the window's attributes as stored.
type csAttrs struct {
	Until int64 `dynamodbav:"csUntil"`
	Left  int   `dynamodbav:"csLeft"`
}

func (a csAttrs) state() minipush.CSWindowState {
	return minipush.CSWindowState{Until: fromEpoch(a.Until), Left: a.Left}
}

// CSWindow reads the user's window; a user without one (or unknown) has the zero,
// closed window. The read is eventually consistent (half the cost): TakeCSMessage's
// condition is what decides, this only spares users without a window that write.
func (d *DB) CSWindow(ctx context.Context, appID, openID string) (minipush.CSWindowState, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ProjectionExpression: aws.String("csUntil, csLeft"),
	})
	if err != nil {
		return minipush.CSWindowState{}, fmt.Errorf("dynamo: read customer-service window of a user of %s: %w", appID, err)
	}
	var a csAttrs
	if err := attributevalue.UnmarshalMap(out.Item, &a); err != nil {
		return minipush.CSWindowState{}, fmt.Errorf("dynamo: decode customer-service window: %w", err)
	}
	return a.state(), nil
}

// TakeCSMessage takes one message from the user's window if it is open at now with a
// message left, and returns the window after it; ECONFLICT when it is not. One
// conditional decrement, so concurrent campaigns never take more than the window has.
func (d *DB) TakeCSMessage(ctx context.Context, appID, openID string, now time.Time) (minipush.CSWindowState, error) {
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ConditionExpression: aws.String("csUntil > :now AND csLeft > :zero"),
		UpdateExpression:    aws.String("SET csLeft = csLeft - :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": numAV(now.Unix()), ":zero": numAV(0), ":one": numAV(1),
		},
		// The whole item (a user item is small) for csUntil too: the window's end
		// binds a later give-back or close to this very window.
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		return minipush.CSWindowState{}, conflict(err, "dynamo: take a customer-service message of a user of %s", appID)
	}
	var a csAttrs
	if err := attributevalue.UnmarshalMap(out.Attributes, &a); err != nil {
		return minipush.CSWindowState{}, fmt.Errorf("dynamo: decode customer-service window: %w", err)
	}
	return a.state(), nil
}

// ReturnCSMessage gives back a message TakeCSMessage took from the window ending at
// until, after WeChat proved nothing was sent. A window a newer push replaced is left
// alone (it has its full count). ECONFLICT then.
func (d *DB) ReturnCSMessage(ctx context.Context, appID, openID string, until time.Time) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ConditionExpression: aws.String("csUntil = :until AND csLeft < :max"),
		UpdateExpression:    aws.String("SET csLeft = csLeft + :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":until": numAV(until.Unix()), ":max": numAV(minipush.CSWindowMessages), ":one": numAV(1),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: return a customer-service message of a user of %s", appID)
	}
	return nil
}

// CloseCSWindow empties the window ending at until: WeChat answered that it is closed
// or used up (45015, 45047), so no campaign should try it again. A window a newer push
// opened is left alone. ECONFLICT then.
func (d *DB) CloseCSWindow(ctx context.Context, appID, openID string, until time.Time) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ConditionExpression:       aws.String("csUntil = :until"),
		UpdateExpression:          aws.String("SET csLeft = :zero"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":until": numAV(until.Unix()), ":zero": numAV(0)},
	})
	if err != nil {
		return conflict(err, "dynamo: close customer-service window of a user of %s", appID)
	}
	return nil
}
