package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// This file is the send path's writes: deliveries (one item per recipient and run),
// grant leases and spends, and the per-user daily slot. Every write that decides who
// may talk to WeChat about a recipient is conditional, so at-least-once SQS delivery,
// concurrent senders and crashed senders never produce a second message.

// Delivery states. A delivery is claimed (sending) just before the WeChat call and
// becomes final exactly once; a final item never changes again.
const (
	DeliverySending = "sending"
	DeliveryFinal   = "final"
)

// Delivery is one recipient of one run as stored: pk = minipush.RunKey, sk = openid.
// Outcome is set only on final items, so the ByOutcome index holds only those.
type Delivery struct {
	RunKey     string
	OpenID     string
	State      string
	Owner      string    // the sender invocation that holds the claim
	LeaseUntil time.Time // a claim older than this belongs to a crashed sender
	GrantID    string    // the grant the claim is spending
	Outcome    minipush.Outcome
	Reason     string
	ErrCode    int
	UpdatedAt  time.Time
	ExpiresAt  time.Time // TTL: now + retention
}

// Final reports whether the delivery reached its final state.
func (d Delivery) Final() bool { return d.State == DeliveryFinal }

type deliveryItem struct {
	PK         string `dynamodbav:"pk"`
	SK         string `dynamodbav:"sk"`
	State      string `dynamodbav:"state"`
	Owner      string `dynamodbav:"owner,omitempty"`
	LeaseUntil int64  `dynamodbav:"leaseUntil,omitempty"`
	GrantID    string `dynamodbav:"grantId,omitempty"`
	Outcome    string `dynamodbav:"outcome,omitempty"` // sparse: final items only (ByOutcome index)
	Reason     string `dynamodbav:"reason,omitempty"`
	ErrCode    int    `dynamodbav:"errcode,omitempty"`
	UpdatedAt  int64  `dynamodbav:"updatedAt"`
	ExpiresAt  int64  `dynamodbav:"expiresAt"`
}

func (it deliveryItem) delivery() Delivery {
	return Delivery{
		RunKey: it.PK, OpenID: it.SK, State: it.State, Owner: it.Owner, LeaseUntil: fromEpoch(it.LeaseUntil),
		GrantID: it.GrantID, Outcome: minipush.Outcome(it.Outcome), Reason: it.Reason, ErrCode: it.ErrCode,
		UpdatedAt: fromEpoch(it.UpdatedAt), ExpiresAt: fromEpoch(it.ExpiresAt),
	}
}

func deliveryKey(runKey, openID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: runKey},
		"sk": &types.AttributeValueMemberS{Value: openID},
	}
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

// Deliveries returns the stored deliveries (final or sending) of the given recipients
// of one run, by openid; recipients without an item are absent. It is one
// BatchGetItem per 100 recipients, so a redelivered SQS message finds its finished
// recipients without writing anything.
func (d *DB) Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]Delivery, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(openIDs))
	for _, id := range openIDs {
		keys = append(keys, deliveryKey(runKey, id))
	}
	out := make(map[string]Delivery, len(openIDs))
	err := d.batchGet(ctx, d.Tables.Deliveries, "", nil, keys, func(item map[string]types.AttributeValue) error {
		var it deliveryItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return fmt.Errorf("dynamo: decode delivery: %w", err)
		}
		out[it.SK] = it.delivery()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateDelivery writes a new delivery item if the recipient has none yet: a claim
// (State sending, with Owner, LeaseUntil and GrantID) or a final outcome reached
// without a claim (no grant, skipped). When an item already exists it returns an
// ECONFLICT error and the existing delivery, which the caller must respect.
func (d *DB) CreateDelivery(ctx context.Context, dl Delivery) (Delivery, error) {
	it := deliveryItem{
		PK: dl.RunKey, SK: dl.OpenID, State: dl.State, Owner: dl.Owner, LeaseUntil: epoch(dl.LeaseUntil),
		GrantID: dl.GrantID, Reason: dl.Reason, ErrCode: dl.ErrCode,
		UpdatedAt: epoch(d.Now()), ExpiresAt: epoch(dl.ExpiresAt),
	}
	if dl.State == DeliveryFinal {
		it.Outcome = string(dl.Outcome)
	}
	av, err := attributevalue.MarshalMap(it)
	if err != nil {
		return Delivery{}, fmt.Errorf("dynamo: encode delivery: %w", err)
	}
	_, err = d.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.Tables.Deliveries), Item: av,
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return Delivery{}, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return Delivery{}, fmt.Errorf("dynamo: create delivery of %s: %w", dl.RunKey, err)
	}
	existing := ccf.Item
	if existing == nil {
		// Not every DynamoDB (Local) returns the old item; read it.
		out, gerr := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(d.Tables.Deliveries), Key: deliveryKey(dl.RunKey, dl.OpenID), ConsistentRead: aws.Bool(true),
		})
		if gerr != nil {
			return Delivery{}, fmt.Errorf("dynamo: read existing delivery of %s: %w", dl.RunKey, gerr)
		}
		existing = out.Item
	}
	var old deliveryItem
	if err := attributevalue.UnmarshalMap(existing, &old); err != nil {
		return Delivery{}, fmt.Errorf("dynamo: decode delivery: %w", err)
	}
	return old.delivery(), conflict(err, "dynamo: delivery of %s exists", dl.RunKey)
}

// FinishDelivery makes a claimed delivery final, only if it is still claimed by owner
// (and, when leaseUntil is not zero, with exactly that lease: taking over a crashed
// sender's claim). It returns ECONFLICT when the claim is no longer owner's.
func (d *DB) FinishDelivery(ctx context.Context, runKey, openID, owner string, leaseUntil time.Time, outcome minipush.Outcome, reason string, errcode int) error {
	cond := "#state = :sending AND #owner = :owner"
	vals := map[string]types.AttributeValue{
		":sending": strAV(DeliverySending), ":owner": strAV(owner), ":final": strAV(DeliveryFinal),
		":outcome": strAV(string(outcome)), ":now": numAV(d.Now().Unix()),
	}
	if !leaseUntil.IsZero() {
		cond += " AND leaseUntil = :lease"
		vals[":lease"] = numAV(leaseUntil.Unix())
	}
	set := "SET #state = :final, outcome = :outcome, updatedAt = :now"
	if reason != "" {
		set += ", reason = :reason"
		vals[":reason"] = strAV(reason)
	}
	if errcode != 0 {
		set += ", errcode = :errcode"
		vals[":errcode"] = numAV(int64(errcode))
	}
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Deliveries), Key: deliveryKey(runKey, openID),
		ConditionExpression: aws.String(cond), UpdateExpression: aws.String(set + " REMOVE leaseUntil"),
		ExpressionAttributeNames:  map[string]string{"#state": "state", "#owner": "owner"},
		ExpressionAttributeValues: vals,
	})
	if err != nil {
		return conflict(err, "dynamo: finish delivery of %s", runKey)
	}
	return nil
}

// SetDeliveryGrant records that owner's claim now spends grantID (after WeChat
// rejected the previous grant), so a crash recovery drops the right one.
func (d *DB) SetDeliveryGrant(ctx context.Context, runKey, openID, owner, grantID string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Deliveries), Key: deliveryKey(runKey, openID),
		ConditionExpression:      aws.String("#state = :sending AND #owner = :owner"),
		UpdateExpression:         aws.String("SET grantId = :g, updatedAt = :now"),
		ExpressionAttributeNames: map[string]string{"#state": "state", "#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":sending": strAV(DeliverySending), ":owner": strAV(owner), ":g": strAV(grantID), ":now": numAV(d.Now().Unix()),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: set delivery grant of %s", runKey)
	}
	return nil
}

// DeleteClaim removes owner's claim when WeChat proved nothing was sent (a retryable
// answer, or an abort), so a later attempt can claim again. ECONFLICT when the claim is
// not owner's any more.
func (d *DB) DeleteClaim(ctx context.Context, runKey, openID, owner string) error {
	_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.Tables.Deliveries), Key: deliveryKey(runKey, openID),
		ConditionExpression:      aws.String("#state = :sending AND #owner = :owner"),
		ExpressionAttributeNames: map[string]string{"#state": "state", "#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":sending": strAV(DeliverySending), ":owner": strAV(owner),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: delete claim of %s", runKey)
	}
	return nil
}

func grantKey(appID, openID, grantID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": strAV(minipush.UserKey(appID, openID)),
		"sk": strAV(grantSK(grantID)),
	}
}

// LeaseGrant reserves g for owner until until, if it is still spendable at the DB's
// now: uses left, unexpired, and not leased (or its lease ran out after a crash). It
// returns the grant as leased (with its current uses), or ECONFLICT when another
// sender got it first or it was spent or expired meanwhile.
func (d *DB) LeaseGrant(ctx context.Context, g minipush.Grant, owner string, until time.Time) (minipush.Grant, error) {
	now := d.Now().Unix()
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(g.AppID, g.OpenID, g.ID),
		ConditionExpression: aws.String("attribute_exists(pk) AND uses > :zero AND expiresAt > :now AND leaseUntil <= :now"),
		UpdateExpression:    aws.String("SET leaseUntil = :until, leaseOwner = :owner"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":zero": numAV(0), ":now": numAV(now), ":until": numAV(until.Unix()), ":owner": strAV(owner),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		return minipush.Grant{}, conflict(err, "dynamo: lease grant of %s", g.AppID)
	}
	var it grantItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &it); err != nil {
		return minipush.Grant{}, fmt.Errorf("dynamo: decode grant: %w", err)
	}
	return it.grant(), nil
}

// ReleaseGrant ends owner's lease on g without spending it (WeChat did not consume
// it). A lease that is no longer owner's is left alone and is not an error.
func (d *DB) ReleaseGrant(ctx context.Context, g minipush.Grant, owner string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(g.AppID, g.OpenID, g.ID),
		ConditionExpression: aws.String("leaseOwner = :owner"),
		UpdateExpression:    aws.String("SET leaseUntil = :zero REMOVE leaseOwner"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":owner": strAV(owner), ":zero": numAV(0),
		},
	})
	return ignoreConflict(err, "dynamo: release grant of %s", g.AppID)
}

// SpendGrant consumes one use of g, which owner leased: a grant with one use left is
// deleted, a prepay grant with more has its uses decremented and its lease cleared.
// g.Uses must be the count LeaseGrant returned. ECONFLICT when the lease is not
// owner's any more (nothing is changed then).
func (d *DB) SpendGrant(ctx context.Context, g minipush.Grant, owner string) error {
	var err error
	if g.Uses > 1 {
		_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.Tables.Grants), Key: grantKey(g.AppID, g.OpenID, g.ID),
			ConditionExpression: aws.String("leaseOwner = :owner AND uses > :one"),
			UpdateExpression:    aws.String("SET uses = uses - :one, leaseUntil = :zero REMOVE leaseOwner"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":owner": strAV(owner), ":one": numAV(1), ":zero": numAV(0),
			},
		})
	} else {
		_, err = d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: aws.String(d.Tables.Grants), Key: grantKey(g.AppID, g.OpenID, g.ID),
			ConditionExpression:       aws.String("leaseOwner = :owner"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":owner": strAV(owner)},
		})
	}
	if err != nil {
		return conflict(err, "dynamo: spend grant of %s", g.AppID)
	}
	return nil
}

// DropGrant deletes a grant WeChat rejected as invalid or used (41028/41029), whoever
// holds it: it can never pay for a message.
func (d *DB) DropGrant(ctx context.Context, appID, openID, grantID string) error {
	_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(appID, openID, grantID),
	})
	if err != nil {
		return fmt.Errorf("dynamo: drop grant of %s: %w", appID, err)
	}
	return nil
}

// GetGrant reads one grant, or returns ENOTFOUND.
func (d *DB) GetGrant(ctx context.Context, appID, openID, grantID string) (minipush.Grant, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(appID, openID, grantID), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return minipush.Grant{}, fmt.Errorf("dynamo: get grant of %s: %w", appID, err)
	}
	if out.Item == nil {
		return minipush.Grant{}, minipush.Errorf(minipush.ENOTFOUND, "no such grant")
	}
	var it grantItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return minipush.Grant{}, fmt.Errorf("dynamo: decode grant: %w", err)
	}
	return it.grant(), nil
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
