package dynamo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
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

// Frequency caps (minipush.Caps). One state-table item per user and ISO week,
// pk "cap#<appid>#<openid>", sk the week ("2026-W49"), holds the week's count (wk),
// the day of the latest message (d) and that day's count (dn), and the run keys that
// hold a slot this week (runs, a string set). The check and the count are one
// conditional UpdateItem, so two campaigns racing for a user's last slot cannot both
// win: the condition reads the counts the other's write left. A day's first message
// resets dn, which needs another expression than a later one's increment, hence two
// shapes of the write, tried in turn as the stored item says.

// capItem is a cap counter item as TakeCapSlot's failed conditions return it.
type capItem struct {
	Day  string   `dynamodbav:"d"`
	DN   int      `dynamodbav:"dn"`
	WK   int      `dynamodbav:"wk"`
	Runs []string `dynamodbav:"runs,stringset"`
}

// CapUse is one user's cap counters in a week: messages that week and on Day.
type CapUse struct {
	Day       string
	DayCount  int
	WeekCount int
}

// Capped reports whether one more message on day would exceed caps.
func (u CapUse) Capped(caps minipush.Caps, day string) bool {
	if caps.PerWeek > 0 && u.WeekCount >= caps.PerWeek {
		return true
	}
	return caps.PerDay > 0 && u.Day == day && u.DayCount >= caps.PerDay
}

func capKey(appID, openID, week string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": strAV("cap#" + appID + "#" + openID), "sk": strAV(week)}
}

// capAttempts bounds TakeCapSlot's writes: a same-day and a new-day shape, and once
// more after a concurrent day's-first write made the new-day shape fail.
const capAttempts = 3

// TakeCapSlot counts one message of runKey to the user on day (in week) against caps,
// if it fits: ECONFLICT when the user has reached a cap. A run that already holds a
// slot this week (a redelivered recipient) is answered nil without counting again.
func (d *DB) TakeCapSlot(ctx context.Context, appID, openID, day, week, runKey string, caps minipush.Caps) error {
	vals := map[string]types.AttributeValue{
		":day": strAV(day), ":one": numAV(1), ":runs": &types.AttributeValueMemberSS{Value: []string{runKey}},
		":run": strAV(runKey), ":exp": numAV(d.Now().Add(9 * 24 * time.Hour).Unix()),
	}
	sameDay, newDay := "d = :day AND NOT contains(runs, :run)", "(attribute_not_exists(d) OR d <> :day) AND NOT contains(runs, :run)"
	if caps.PerDay > 0 {
		vals[":pd"] = numAV(int64(caps.PerDay))
		sameDay += " AND dn < :pd"
	}
	if caps.PerWeek > 0 {
		vals[":pw"] = numAV(int64(caps.PerWeek))
		sameDay += " AND wk < :pw"
		newDay += " AND (attribute_not_exists(wk) OR wk < :pw)"
	}
	// The new-day shape has no day's limit to compare (DynamoDB refuses unused values).
	newVals := maps.Clone(vals)
	delete(newVals, ":pd")
	shapes := [2]struct {
		cond, update string
		vals         map[string]types.AttributeValue
	}{
		{sameDay, "ADD dn :one, wk :one, runs :runs SET expiresAt = :exp", vals},
		{newDay, "SET d = :day, dn = :one, expiresAt = :exp ADD wk :one, runs :runs", newVals},
	}
	shape := 1 // most users get no message on most days: their first of the day is likelier
	for range capAttempts {
		_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.Tables.State), Key: capKey(appID, openID, week),
			ConditionExpression: aws.String(shapes[shape].cond), UpdateExpression: aws.String(shapes[shape].update),
			ExpressionAttributeValues:           shapes[shape].vals,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		if err == nil {
			return nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			return fmt.Errorf("dynamo: take cap slot of %s: %w", appID, err)
		}
		var old capItem
		if err := attributevalue.UnmarshalMap(ccf.Item, &old); err != nil {
			return fmt.Errorf("dynamo: decode cap counter: %w", err)
		}
		switch {
		case slices.Contains(old.Runs, runKey):
			return nil
		case old.Day == day && shape == 1:
			shape = 0 // another message counted today first: the same-day shape decides
		case old.Day != day && shape == 0 && len(ccf.Item) > 0:
			shape = 1 // a new day (or the item was removed meanwhile)
		case len(ccf.Item) == 0:
			shape = 1
		default:
			return minipush.Errorf(minipush.ECONFLICT, "frequency cap reached")
		}
	}
	return minipush.Errorf(minipush.ECONFLICT, "frequency cap: no decision after %d writes", capAttempts)
}

// ReturnCapSlot gives back runKey's slot of day (in week), taken by TakeCapSlot, after
// a send that WeChat proved delivered nothing. A slot not held is nothing to return.
func (d *DB) ReturnCapSlot(ctx context.Context, appID, openID, day, week, runKey string) error {
	vals := map[string]types.AttributeValue{
		":day": strAV(day), ":m": numAV(-1), ":runs": &types.AttributeValueMemberSS{Value: []string{runKey}}, ":run": strAV(runKey),
	}
	// The day's count only if the day is still the one the slot was taken on.
	dayless := maps.Clone(vals)
	delete(dayless, ":day")
	for i, shape := range [2]struct{ cond, update string }{
		{"contains(runs, :run) AND d = :day", "ADD dn :m, wk :m DELETE runs :runs"},
		{"contains(runs, :run)", "ADD wk :m DELETE runs :runs"},
	} {
		_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.Tables.State), Key: capKey(appID, openID, week),
			ConditionExpression: aws.String(shape.cond), UpdateExpression: aws.String(shape.update),
			ExpressionAttributeValues: [2]map[string]types.AttributeValue{vals, dayless}[i],
		})
		if err == nil {
			return nil
		}
		if err = conflict(err, "dynamo: return cap slot of %s", appID); minipush.ErrorCode(err) != minipush.ECONFLICT {
			return err
		}
	}
	return nil
}

// CapUses reads the cap counters of the given users of appID in week, one
// BatchGetItem per 100 users; a user without an item has used nothing.
func (d *DB) CapUses(ctx context.Context, appID string, openIDs []string, week string) (map[string]CapUse, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(openIDs))
	for _, id := range openIDs {
		keys = append(keys, capKey(appID, id, week))
	}
	out := map[string]CapUse{}
	prefix := "cap#" + appID + "#"
	err := d.batchGet(ctx, d.Tables.State, "pk, d, dn, wk", nil, keys, func(item map[string]types.AttributeValue) error {
		var it struct {
			PK string `dynamodbav:"pk"`
			capItem
		}
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return fmt.Errorf("dynamo: decode cap counter: %w", err)
		}
		out[strings.TrimPrefix(it.PK, prefix)] = CapUse{Day: it.Day, DayCount: it.DN, WeekCount: it.WK}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
