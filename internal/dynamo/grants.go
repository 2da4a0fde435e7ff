package dynamo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"minipush"
)

// A grant is stored under pk = minipush.UserKey, sk = "g#" + Grant.ExpiryKey()
// (channel#expiry#id): the sort key itself orders a user's grants of one channel
// earliest-expiring first, so the sender's lookup is one Query of the table and no
// index is written with every grant (an LSI projecting the item doubled the cost of
// each grant write and pinned the user's items to one partition).
const grantSKPrefix = "g#"

// grantItem is a grant as stored. Times are epoch seconds; expiresAt is the TTL attribute.
type grantItem struct {
	PK          string `dynamodbav:"pk"`
	SK          string `dynamodbav:"sk"`
	AppID       string `dynamodbav:"appId"`
	OpenID      string `dynamodbav:"openId"`
	Kind        string `dynamodbav:"kind"`
	ID          string `dynamodbav:"id"`
	Value       string `dynamodbav:"value,omitempty"`
	TemplateID  string `dynamodbav:"tpl,omitempty"`
	Uses        int    `dynamodbav:"uses"`
	CollectedAt int64  `dynamodbav:"collectedAt"`
	ExpiresAt   int64  `dynamodbav:"expiresAt"`
}

func grantSK(g minipush.Grant) string { return grantSKPrefix + g.ExpiryKey() }

func toGrantItem(g minipush.Grant) grantItem {
	return grantItem{
		PK: minipush.UserKey(g.AppID, g.OpenID), SK: grantSK(g),
		AppID: g.AppID, OpenID: g.OpenID, Kind: string(g.Kind), ID: g.ID, Value: g.Value,
		TemplateID: g.TemplateID, Uses: g.Uses, CollectedAt: epoch(g.CollectedAt),
		ExpiresAt: epoch(g.ExpiresAt),
	}
}

func (it grantItem) grant() minipush.Grant {
	return minipush.Grant{
		AppID: it.AppID, OpenID: it.OpenID, Kind: minipush.GrantKind(it.Kind), ID: it.ID, Value: it.Value,
		TemplateID: it.TemplateID, Uses: it.Uses, CollectedAt: fromEpoch(it.CollectedAt),
		ExpiresAt: fromEpoch(it.ExpiresAt),
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
	if sk, ok := image["sk"].(*types.AttributeValueMemberS); !ok || !strings.HasPrefix(sk.Value, grantSKPrefix) {
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

// AddGrants stores a user's new grants and updates the user's inventory. A grant whose
// ID is already stored is a duplicate. When the user would hold more than limit live
// grants, the grants beyond it are refused (AddOverLimit) rather than evicting stored
// ones: the stored ones expire first and are the ones most worth spending. Results are
// in the order of grants. All grants must belong to one user.
//
// It is not a transaction (a transaction bills every item twice): first one UpdateItem
// of the user's inventory conditioned on the version read, which serializes concurrent
// uploads of one user, then one conditional PutItem per new grant. An upload that lost
// the version race re-reads; since the winner's grants may still be landing, it counts
// the live grants as the larger of what it reads and the inventory the winner wrote
// (for inventoryPending after it was written), so concurrent uploads cannot together
// pass the limit. A crash between the two steps leaves the inventory counting grants
// that were never stored: it only refuses uploads early, for inventoryPending, and the
// next recount (expire's, or the next upload's) corrects it; the client's retry stores
// the grants. A retried grant is caught by the IDs read (or, with the same expiry, by
// the put's condition); only two copies of one upload racing within milliseconds and
// computing different expiries (collectedAt left to the server's clock) can store a
// grant twice, and spending the copy is answered 41029 (formId) or 43101 (subscribe),
// after which send drops it.
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
		if inv.storedLive > live && now.Sub(inv.storedAt) < inventoryPending {
			live = inv.storedLive // a concurrent upload's grants are still landing
		}
		latest := inv.latest
		seen := make(map[string]bool, len(grants))
		var accepted []int
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
			accepted = append(accepted, i)
			live++
			if g.ExpiresAt.After(latest) {
				latest = g.ExpiresAt
			}
		}
		if len(accepted) == 0 {
			return out, nil
		}
		upd, err := d.inventoryUpdate(appID, openID, inv.version, live, latest, now)
		if err != nil {
			return nil, err
		}
		_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: upd.TableName, Key: upd.Key, ConditionExpression: upd.ConditionExpression,
			UpdateExpression: upd.UpdateExpression, ExpressionAttributeNames: upd.ExpressionAttributeNames,
			ExpressionAttributeValues: upd.ExpressionAttributeValues,
		})
		if err != nil {
			if err = conflict(err, "dynamo: add grants for %s", appID); minipush.ErrorCode(err) != minipush.ECONFLICT || attempt >= optimisticRetries {
				return nil, err
			}
			continue
		}
		// The puts are independent (one item each), so an upload waits for a few round
		// trips, not one per grant.
		var raced atomic.Bool
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(grantPutParallelism)
		for _, i := range accepted {
			g.Go(func() error {
				av, err := attributevalue.MarshalMap(toGrantItem(grants[i]))
				if err != nil {
					return fmt.Errorf("dynamo: encode grant: %w", err)
				}
				_, err = d.Client.PutItem(gctx, &dynamodb.PutItemInput{
					TableName: aws.String(d.Tables.Grants), Item: av,
					ConditionExpression: aws.String("attribute_not_exists(pk)"),
				})
				if err != nil {
					if err = conflict(err, "dynamo: store grant of %s", appID); minipush.ErrorCode(err) != minipush.ECONFLICT {
						return err
					}
					out[i] = minipush.AddDuplicate
					raced.Store(true)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		if raced.Load() {
			// A concurrent copy of this upload stored the grant first, after the
			// inventory above counted it: recount, so the live count is exact.
			if _, err := d.RecomputeInventory(ctx, appID, openID); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// grantPutParallelism bounds the grant puts one upload makes at once.
const grantPutParallelism = 8

// inventoryPending is how long the live count an upload wrote on the user is trusted
// over a recount of the grants table: longer than an upload takes to store its grants.
const inventoryPending = 30 * time.Second

// ImportGrants writes grants as they are, 25 per BatchWriteItem, overwriting any with the
// same key: a bulk load for benchmarks and load tests, where AddGrants (an inventory read,
// an inventory update and a conditional put per grant) would take longer than the work measured. It checks no
// per-user limit and leaves the users' inventories alone (RecomputeInventory rebuilds one).
func (d *DB) ImportGrants(ctx context.Context, grants []minipush.Grant) error {
	return putAll(ctx, d, d.Tables.Grants, "grant", grants, func(g minipush.Grant) any { return toGrantItem(g) })
}

// inventory is a consistent read of a user's grants at one instant.
type inventory struct {
	version int64
	// storedLive and storedAt are the live count last written on the user, and when.
	storedLive int
	storedAt   time.Time
	live       int
	latest     time.Time
	ids        map[string]bool // every stored grant, live or not yet deleted by TTL
	grants     []minipush.Grant
}

// readInventory reads the user's inventory version and all their grants. Expired grants
// that TTL has not deleted yet are stored but not live: reads never trust TTL.
func (d *DB) readInventory(ctx context.Context, appID, openID string, now time.Time) (inventory, error) {
	key := minipush.UserKey(appID, openID)
	inv := inventory{ids: map[string]bool{}}
	u, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(key), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("grantsVersion, liveGrants, inventoryAt"),
	})
	if err != nil {
		return inv, fmt.Errorf("dynamo: read user %s: %w", appID, err)
	}
	if v, ok := u.Item["grantsVersion"].(*types.AttributeValueMemberN); ok {
		inv.version, _ = strconv.ParseInt(v.Value, 10, 64)
	}
	inv.storedLive = intAttr(u.Item["liveGrants"])
	if v, ok := u.Item["inventoryAt"].(*types.AttributeValueMemberN); ok {
		at, _ := strconv.ParseInt(v.Value, 10, 64)
		inv.storedAt = time.Unix(at, 0)
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
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :ch)"),
		// tpl too: a template id holding "#" (stored before collect refused them) would
		// otherwise fall into this template's begins_with range.
		FilterExpression: aws.String("collectedAt < :before AND tpl = :tpl"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk":     &types.AttributeValueMemberS{Value: minipush.UserKey(appID, openID)},
			":ch":     &types.AttributeValueMemberS{Value: grantSKPrefix + channel + "#"},
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

func grantKey(g minipush.Grant) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": strAV(minipush.UserKey(g.AppID, g.OpenID)),
		"sk": strAV(grantSK(g)),
	}
}

// SpendGrant consumes one use of g after WeChat accepted (or may have accepted) a
// message paid with it: a grant with one use left is deleted, a prepay grant with more
// has its uses decremented (and is deleted when that was its last). There is no lease:
// the spend is conditional on the grant still having a use, and ECONFLICT says another
// sender (another run) spent it first; see package send for why that is safe.
func (d *DB) SpendGrant(ctx context.Context, g minipush.Grant) error {
	if g.Uses <= 1 {
		_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: aws.String(d.Tables.Grants), Key: grantKey(g),
			ConditionExpression:       aws.String("uses > :zero"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":zero": numAV(0)},
		})
		if err != nil {
			return conflict(err, "dynamo: spend grant of %s", g.AppID)
		}
		return nil
	}
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(g),
		ConditionExpression:       aws.String("uses > :zero"),
		UpdateExpression:          aws.String("SET uses = uses - :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":zero": numAV(0), ":one": numAV(1)},
		ReturnValues:              types.ReturnValueUpdatedNew,
	})
	if err != nil {
		return conflict(err, "dynamo: spend grant of %s", g.AppID)
	}
	if intAttr(out.Attributes["uses"]) > 0 {
		return nil
	}
	// Another run took the uses in between: the last one out deletes it.
	_, err = d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(g),
		ConditionExpression:       aws.String("uses <= :zero"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":zero": numAV(0)},
	})
	return ignoreConflict(err, "dynamo: delete used-up grant of %s", g.AppID)
}

// DiscardGrant deletes g whoever else may be spending it: WeChat rejected it as invalid
// or used (41028/41029), so it can never pay for a message.
func (d *DB) DiscardGrant(ctx context.Context, g minipush.Grant) error {
	_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.Tables.Grants), Key: grantKey(g),
	})
	if err != nil {
		return fmt.Errorf("dynamo: discard grant of %s: %w", g.AppID, err)
	}
	return nil
}

// DropGrant deletes a user's grant by ID (DiscardGrant when the grant is at hand). It
// is a no-op when the grant is gone.
func (d *DB) DropGrant(ctx context.Context, appID, openID, grantID string) error {
	g, err := d.GetGrant(ctx, appID, openID, grantID)
	switch {
	case minipush.ErrorCode(err) == minipush.ENOTFOUND:
		return nil
	case err != nil:
		return err
	}
	return d.DiscardGrant(ctx, g)
}

// GetGrant reads one grant by ID, or returns ENOTFOUND. The ID is not the whole key
// (the expiry is in it too), so it is a Query of the user's grants: for the rare paths
// (a lost claim's grant, tests), never the send path.
func (d *DB) GetGrant(ctx context.Context, appID, openID, grantID string) (minipush.Grant, error) {
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:              aws.String(d.Tables.Grants),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :g)"),
		FilterExpression:       aws.String("id = :id"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": strAV(minipush.UserKey(appID, openID)), ":g": strAV(grantSKPrefix), ":id": strAV(grantID),
		},
		ConsistentRead: aws.Bool(true),
	})
	return firstGrant(ctx, p, "get grant of "+appID, "no such grant")
}

// firstGrant returns the first grant a Query's pages hold (a filtered page may hold
// none), or ENOTFOUND saying notFound; what names the read in an error.
func firstGrant(ctx context.Context, p *dynamodb.QueryPaginator, what, notFound string) (minipush.Grant, error) {
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return minipush.Grant{}, fmt.Errorf("dynamo: %s: %w", what, err)
		}
		for _, item := range page.Items {
			var it grantItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return minipush.Grant{}, fmt.Errorf("dynamo: decode grant: %w", err)
			}
			return it.grant(), nil
		}
	}
	return minipush.Grant{}, minipush.Errorf(minipush.ENOTFOUND, "%s", notFound)
}

// SpendableGrant is the sender's grant lookup: the user's earliest-expiring grant of
// channel that can pay for a message now (unexpired, uses left), in one Query of the
// table in the common case (expired grants sort before the key condition's lower bound,
// so they are never read), or ENOTFOUND: the recipient's outcome is no_grant. Another
// run may be spending the same grant at this moment; the spend after the call settles
// it (SpendGrant).
func (d *DB) SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error) {
	q := spendableQuery(d.Tables.Grants, appID, openID, channel, d.Now())
	q.ConsistentRead = aws.Bool(true)
	p := dynamodb.NewQueryPaginator(d.Client, q)
	return firstGrant(ctx, p, "spendable grant of "+appID, "no spendable grant")
}

// spendableQuery is the Query of a user's grants of channel that are still spendable
// after t (SpendableGrant, SpendableAt): expiring at or before t is expired, so the key
// condition starts just past it; a grant with no use left is filtered out. At most 4
// items a page: the first match decides.
func spendableQuery(table, appID, openID, channel string, t time.Time) *dynamodb.QueryInput {
	return &dynamodb.QueryInput{
		TableName:              aws.String(table),
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk":   &types.AttributeValueMemberS{Value: minipush.UserKey(appID, openID)},
			":from": &types.AttributeValueMemberS{Value: grantSKPrefix + minipush.ExpiryKeyAt(channel, t.Add(time.Second))},
			":to":   &types.AttributeValueMemberS{Value: grantSKPrefix + channel + "#~"},
			":zero": &types.AttributeValueMemberN{Value: "0"},
		},
		FilterExpression: aws.String("uses > :zero"),
		Limit:            aws.Int32(4),
	}
}

// SpendableAt reports whether the user holds a grant of channel with a use left that
// is still spendable at each of the given times (the forecast asks for now and the
// scheduled time): one Query, eventually consistent, reading the user's grants of the
// channel that outlive the earliest time, latest-expiring first.
func (d *DB) SpendableAt(ctx context.Context, appID, openID, channel string, at ...time.Time) ([]bool, error) {
	out := make([]bool, len(at))
	if len(at) == 0 {
		return out, nil
	}
	q := spendableQuery(d.Tables.Grants, appID, openID, channel, slices.MinFunc(at, time.Time.Compare))
	q.ProjectionExpression = aws.String("expiresAt")
	q.ScanIndexForward = aws.Bool(false)
	p := dynamodb.NewQueryPaginator(d.Client, q)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: spendable grants of %s: %w", appID, err)
		}
		for _, item := range page.Items {
			exp := fromEpoch(int64(intAttr(item["expiresAt"])))
			for i, t := range at {
				out[i] = exp.After(t)
			}
			return out, nil // the latest-expiring one decides
		}
	}
	return out, nil
}
