package dynamo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// ExpiryIndex is the grants table's local index on (user, channel#expiry#id).
const ExpiryIndex = "ByExpiry"

// grantItem is a grant as stored. Times are epoch seconds; expiresAt is the TTL attribute.
type grantItem struct {
	PK          string `dynamodbav:"pk"`
	SK          string `dynamodbav:"sk"`
	EK          string `dynamodbav:"ek"`
	AppID       string `dynamodbav:"appId"`
	OpenID      string `dynamodbav:"openId"`
	Kind        string `dynamodbav:"kind"`
	ID          string `dynamodbav:"id"`
	Value       string `dynamodbav:"value,omitempty"`
	TemplateID  string `dynamodbav:"tpl,omitempty"`
	Uses        int    `dynamodbav:"uses"`
	CollectedAt int64  `dynamodbav:"collectedAt"`
	ExpiresAt   int64  `dynamodbav:"expiresAt"`
	LeaseUntil  int64  `dynamodbav:"leaseUntil"`
	LeaseOwner  string `dynamodbav:"leaseOwner,omitempty"`
}

func grantSK(id string) string { return "g#" + id }

func toGrantItem(g minipush.Grant) grantItem {
	return grantItem{
		PK: minipush.UserKey(g.AppID, g.OpenID), SK: grantSK(g.ID), EK: g.ExpiryKey(),
		AppID: g.AppID, OpenID: g.OpenID, Kind: string(g.Kind), ID: g.ID, Value: g.Value,
		TemplateID: g.TemplateID, Uses: g.Uses, CollectedAt: epoch(g.CollectedAt),
		ExpiresAt: epoch(g.ExpiresAt), LeaseUntil: epoch(g.LeaseUntil), LeaseOwner: g.LeaseOwner,
	}
}

func (it grantItem) grant() minipush.Grant {
	return minipush.Grant{
		AppID: it.AppID, OpenID: it.OpenID, Kind: minipush.GrantKind(it.Kind), ID: it.ID, Value: it.Value,
		TemplateID: it.TemplateID, Uses: it.Uses, CollectedAt: fromEpoch(it.CollectedAt),
		ExpiresAt: fromEpoch(it.ExpiresAt), LeaseUntil: fromEpoch(it.LeaseUntil), LeaseOwner: it.LeaseOwner,
	}
}

// UnmarshalGrant decodes a stored grant (a stream image, for example).
func UnmarshalGrant(av map[string]types.AttributeValue) (minipush.Grant, error) {
	var it grantItem
	if err := attributevalue.UnmarshalMap(av, &it); err != nil {
		return minipush.Grant{}, fmt.Errorf("dynamo: decode grant: %w", err)
	}
	return it.grant(), nil
}

// GrantFromImage decodes the image of a grants-table item in a stream record, reporting
// false for an item that is not a grant.
func (d *DB) GrantFromImage(image map[string]types.AttributeValue) (minipush.Grant, bool, error) {
	if sk, ok := image["sk"].(*types.AttributeValueMemberS); !ok || !strings.HasPrefix(sk.Value, grantSK("")) {
		return minipush.Grant{}, false, nil
	}
	g, err := UnmarshalGrant(image)
	if err != nil {
		return minipush.Grant{}, false, err
	}
	return g, true, nil
}

// IsGrantsStream reports whether streamARN names a stream of the grants table.
func (d *DB) IsGrantsStream(streamARN string) bool {
	return strings.Contains(streamARN, ":table/"+d.Tables.Grants+"/stream/")
}

// AddGrants stores a user's new grants and updates the user's inventory, in one
// transaction per attempt. A grant whose ID is already stored is a duplicate. When the
// user would hold more than limit live grants, the grants beyond it are refused
// (AddOverLimit) rather than evicting stored ones: the stored ones expire first and are
// the ones most worth spending. The transaction is conditioned on the user's inventory
// version, so concurrent uploads cannot together pass the limit; a lost race re-reads.
// Results are in the order of grants. All grants must belong to one user.
func (d *DB) AddGrants(ctx context.Context, appID, openID string, grants []minipush.Grant, limit int) ([]minipush.AddStatus, error) {
	if len(grants) > minipush.MaxGrantsPerWrite {
		return nil, minipush.Errorf(minipush.ETOOLARGE, "at most %d grants per write", minipush.MaxGrantsPerWrite)
	}
	for _, g := range grants {
		if g.AppID != appID || g.OpenID != openID {
			return nil, fmt.Errorf("dynamo: add grants: grant of another user")
		}
	}
	for attempt := 0; ; attempt++ {
		now := d.Now()
		inv, err := d.readInventory(ctx, appID, openID, now)
		if err != nil {
			return nil, err
		}
		out := make([]minipush.AddStatus, len(grants))
		live := inv.live
		latest := inv.latest
		seen := make(map[string]bool, len(grants))
		var actions []types.TransactWriteItem
		for i, g := range grants {
			switch {
			case inv.ids[g.ID] || seen[g.ID]:
				out[i] = minipush.AddDuplicate
				continue
			case live >= limit:
				out[i] = minipush.AddOverLimit
				continue
			}
			seen[g.ID] = true
			out[i] = minipush.AddAccepted
			live++
			if g.ExpiresAt.After(latest) {
				latest = g.ExpiresAt
			}
			av, err := attributevalue.MarshalMap(toGrantItem(g))
			if err != nil {
				return nil, fmt.Errorf("dynamo: encode grant: %w", err)
			}
			actions = append(actions, types.TransactWriteItem{Put: &types.Put{
				TableName: aws.String(d.Tables.Grants), Item: av,
				ConditionExpression: aws.String("attribute_not_exists(pk)"),
			}})
		}
		if len(actions) == 0 {
			return out, nil
		}
		upd, err := d.inventoryUpdate(appID, openID, inv.version, live, latest, now)
		if err != nil {
			return nil, err
		}
		actions = append(actions, types.TransactWriteItem{Update: upd})
		_, err = d.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: actions})
		if err == nil {
			return out, nil
		}
		if !transactionLost(err) || attempt >= optimisticRetries {
			return nil, fmt.Errorf("dynamo: add grants for %s: %w", appID, err)
		}
	}
}

// ImportGrants writes grants as they are, 25 per BatchWriteItem, overwriting any with the
// same key: a bulk load for benchmarks and load tests, where AddGrants (an inventory read
// and a transaction per user) would take longer than the work measured. It checks no
// per-user limit and leaves the users' inventories alone (RecomputeInventory rebuilds one).
func (d *DB) ImportGrants(ctx context.Context, grants []minipush.Grant) error {
	return putAll(ctx, d, d.Tables.Grants, "grant", grants, func(g minipush.Grant) any { return toGrantItem(g) })
}

// inventory is a consistent read of a user's grants at one instant.
type inventory struct {
	version int64
	live    int
	latest  time.Time
	ids     map[string]bool // every stored grant, live or not yet deleted by TTL
	grants  []minipush.Grant
}

// readInventory reads the user's inventory version and all their grants. Expired grants
// that TTL has not deleted yet are stored but not live: reads never trust TTL.
func (d *DB) readInventory(ctx context.Context, appID, openID string, now time.Time) (inventory, error) {
	key := minipush.UserKey(appID, openID)
	inv := inventory{ids: map[string]bool{}}
	u, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(key), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("grantsVersion"),
	})
	if err != nil {
		return inv, fmt.Errorf("dynamo: read user %s: %w", appID, err)
	}
	if v, ok := u.Item["grantsVersion"].(*types.AttributeValueMemberN); ok {
		inv.version, _ = strconv.ParseInt(v.Value, 10, 64)
	}
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:                 aws.String(d.Tables.Grants),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: key}},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return inv, fmt.Errorf("dynamo: read grants of %s: %w", appID, err)
		}
		var items []grantItem
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return inv, fmt.Errorf("dynamo: decode grants: %w", err)
		}
		for _, it := range items {
			g := it.grant()
			inv.ids[g.ID] = true
			if now.Before(g.ExpiresAt) && g.Uses > 0 {
				inv.live++
				inv.grants = append(inv.grants, g)
				if g.ExpiresAt.After(inv.latest) {
					inv.latest = g.ExpiresAt
				}
			}
		}
	}
	return inv, nil
}

// inventoryUpdate sets a user's inventory if its version is still the one read.
func (d *DB) inventoryUpdate(appID, openID string, version int64, live int, latest, now time.Time) (*types.Update, error) {
	cond := expression.AttributeNotExists(expression.Name("grantsVersion"))
	if version > 0 {
		cond = expression.Name("grantsVersion").Equal(expression.Value(version))
	}
	upd := expression.Set(expression.Name("grantsVersion"), expression.Value(version+1)).
		Set(expression.Name("liveGrants"), expression.Value(live)).
		Set(expression.Name("latestExpiry"), expression.Value(epoch(latest))).
		Set(expression.Name("inventoryAt"), expression.Value(now.Unix())).
		Set(expression.Name("appId"), expression.Value(appID)).
		Set(expression.Name("openId"), expression.Value(openID))
	expr, err := expression.NewBuilder().WithCondition(cond).WithUpdate(upd).Build()
	if err != nil {
		return nil, fmt.Errorf("dynamo: inventory expression: %w", err)
	}
	return &types.Update{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, openID)),
		ConditionExpression: expr.Condition(), UpdateExpression: expr.Update(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	}, nil
}

// RecomputeInventory recounts a user's live grants and latest expiry from the grants
// table and stores them on the user. It is idempotent: replaying it changes nothing.
func (d *DB) RecomputeInventory(ctx context.Context, appID, openID string) (minipush.User, error) {
	for attempt := 0; ; attempt++ {
		now := d.Now()
		inv, err := d.readInventory(ctx, appID, openID, now)
		if err != nil {
			return minipush.User{}, err
		}
		upd, err := d.inventoryUpdate(appID, openID, inv.version, inv.live, inv.latest, now)
		if err != nil {
			return minipush.User{}, err
		}
		_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: upd.TableName, Key: upd.Key, ConditionExpression: upd.ConditionExpression,
			UpdateExpression: upd.UpdateExpression, ExpressionAttributeNames: upd.ExpressionAttributeNames,
			ExpressionAttributeValues: upd.ExpressionAttributeValues,
		})
		if err == nil {
			return minipush.User{AppID: appID, OpenID: openID, LiveGrants: inv.live, LatestExpiry: inv.latest}, nil
		}
		if err = conflict(err, "dynamo: recompute inventory of %s", appID); minipush.ErrorCode(err) != minipush.ECONFLICT || attempt >= optimisticRetries {
			return minipush.User{}, err
		}
	}
}

// LiveGrants returns a user's grants that are spendable at the DB's now (unexpired, with
// uses left), leased or not, in no particular order.
func (d *DB) LiveGrants(ctx context.Context, appID, openID string) ([]minipush.Grant, error) {
	inv, err := d.readInventory(ctx, appID, openID, d.Now())
	return inv.grants, err
}

// DeleteGrantsAcceptedBefore removes a user's subscribe grants of one template that
// were accepted (collected) before the given time: a subscribe_msg_change_event reject
// applies to the accepts that preceded it, so a late or retried old reject cannot wipe a
// newer accept. Each delete is conditioned on collectedAt, and a grant that is gone or
// changed meanwhile is skipped. The deletes are REMOVEs before the grants' expiry, which
// the expire stream counts as spends, not expiries. It returns how many it removed.
func (d *DB) DeleteGrantsAcceptedBefore(ctx context.Context, appID, openID, templateID string, before time.Time) (int, error) {
	channel := minipush.GrantChannel(minipush.GrantSubscribe, templateID)
	cut := &types.AttributeValueMemberN{Value: strconv.FormatInt(before.Unix(), 10)}
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:              aws.String(d.Tables.Grants),
		IndexName:              aws.String(ExpiryIndex),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(ek, :ch)"),
		// tpl too: a template id holding "#" (stored before collect refused them) would
		// otherwise fall into this template's begins_with range.
		FilterExpression: aws.String("collectedAt < :before AND tpl = :tpl"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk":     &types.AttributeValueMemberS{Value: minipush.UserKey(appID, openID)},
			":ch":     &types.AttributeValueMemberS{Value: channel + "#"},
			":before": cut,
			":tpl":    &types.AttributeValueMemberS{Value: templateID},
		},
		ProjectionExpression: aws.String("pk, sk"),
	})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("dynamo: grants of template %s: %w", templateID, err)
		}
		for _, key := range page.Items {
			_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
				TableName: aws.String(d.Tables.Grants), Key: key,
				ConditionExpression:       aws.String("collectedAt < :before"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":before": cut},
			})
			if err == nil {
				n++
				continue
			}
			if err = conflict(err, "dynamo: delete grant of template %s", templateID); minipush.ErrorCode(err) != minipush.ECONFLICT {
				return n, err
			}
		}
	}
	return n, nil
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
