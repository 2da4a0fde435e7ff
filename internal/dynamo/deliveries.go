package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"minipush"
)

// A delivery is one recipient of one run, in the deliveries table:
// pk = minipush.DeliveryPartition(run key, minipush.DeliveryShard(openid)), sk = openid.
// A run's deliveries are spread over minipush.DeliveryShards partition keys so that one
// campaign's senders never write one hot key, and the table has no index: an LSI would
// pin each run's item collection to one partition (never split, 10 GB at most), and an
// index entry would cost a write with every outcome. Listings and recounts query the
// shards one by one instead (they are rare: an operator's page, a run's completion).
// Every write that decides who may talk to WeChat about a recipient is conditional, so
// at-least-once SQS delivery, concurrent senders and crashed senders never produce a
// second message.

type deliveryItem struct {
	PK         string `dynamodbav:"pk"`
	SK         string `dynamodbav:"sk"`
	State      string `dynamodbav:"state"`
	Owner      string `dynamodbav:"owner,omitempty"`
	LeaseUntil int64  `dynamodbav:"leaseUntil,omitempty"`
	GrantID    string `dynamodbav:"grantId,omitempty"`
	Outcome    string `dynamodbav:"outcome,omitempty"` // final items only
	Reason     string `dynamodbav:"reason,omitempty"`
	ErrCode    int    `dynamodbav:"errcode,omitempty"`
	MsgID      string `dynamodbav:"msgId,omitempty"` // decimal, as WeChat's int64 exceeds 2^53
	// RcptUser (minipush.ReceiptUser) and SentAt, the time of WeChat's answer, are the
	// keys of the ByRecipient index (receipts.go), only on the sent subscribe messages
	// of apps with receipts on (minipush.App.Receipts): the index is sparse, so other
	// apps' sends and other outcomes write no index entry.
	RcptUser   string `dynamodbav:"rcptUser,omitempty"`
	SentAt     int64  `dynamodbav:"sentAt,omitempty"`
	Channel    string `dynamodbav:"channel,omitempty"`
	CSFallback string `dynamodbav:"csFallback,omitempty"`
	UpdatedAt  int64  `dynamodbav:"updatedAt"`
	ExpiresAt  int64  `dynamodbav:"expiresAt"`
	// Receipt fields (receipts.go): set once, by the sent event of a sent delivery.
	Receipt       string `dynamodbav:"receipt,omitempty"`
	ReceiptCode   int    `dynamodbav:"receiptCode,omitempty"`
	ReceiptStatus string `dynamodbav:"receiptStatus,omitempty"`
	// ReceiptMsgID is the MsgID of the receipt a delivery without msgId was matched to
	// by the time window, so that a replay of that receipt is known.
	ReceiptMsgID string `dynamodbav:"receiptMsgId,omitempty"`
}

func (it deliveryItem) delivery() minipush.Delivery {
	return minipush.Delivery{
		RunKey: runKeyOf(it.PK), OpenID: it.SK, State: minipush.DeliveryState(it.State), Owner: it.Owner, LeaseUntil: fromEpoch(it.LeaseUntil),
		GrantID: it.GrantID, Outcome: minipush.Outcome(it.Outcome), Reason: it.Reason, ErrCode: it.ErrCode,
		MsgID: it.MsgID, UpdatedAt: fromEpoch(it.UpdatedAt), ExpiresAt: fromEpoch(it.ExpiresAt),
		Channel: it.Channel, CSFallback: it.CSFallback,
		Receipt: minipush.ReceiptState(it.Receipt), ReceiptCode: it.ReceiptCode, ReceiptStatus: it.ReceiptStatus,
	}
}

// runKeyOf is the run key of a deliveries partition key (its shard cut off).
func runKeyOf(pk string) string {
	if i := strings.LastIndexByte(pk, '#'); i > 0 {
		return pk[:i]
	}
	return pk
}

func deliveryPK(runKey, openID string) string {
	return minipush.DeliveryPartition(runKey, minipush.DeliveryShard(openID))
}

func deliveryKey(runKey, openID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: deliveryPK(runKey, openID)},
		"sk": &types.AttributeValueMemberS{Value: openID},
	}
}

// Deliveries returns the stored deliveries (final or sending) of the given recipients
// of one run, by openid; recipients without an item are absent. It is one
// BatchGetItem per 100 recipients, so a redelivered SQS message finds its finished
// recipients without writing anything.
func (d *DB) Deliveries(ctx context.Context, runKey string, openIDs []string) (map[string]minipush.Delivery, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(openIDs))
	for _, id := range openIDs {
		keys = append(keys, deliveryKey(runKey, id))
	}
	var found []*minipush.Delivery
	err := d.batchGet(ctx, d.Tables.Deliveries, "", nil, keys, func(item map[string]types.AttributeValue) error {
		var it deliveryItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return fmt.Errorf("dynamo: decode delivery: %w", err)
		}
		dl := it.delivery()
		found = append(found, &dl)
		return nil
	})
	if err == nil {
		err = d.foldSent(ctx, found) // only claims cost a read: a first delivery has none
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]minipush.Delivery, len(found))
	for _, dl := range found {
		out[dl.OpenID] = *dl
	}
	return out, nil
}

// CreateDelivery writes a new delivery item if the recipient has none yet: a claim
// (State sending, with Owner, LeaseUntil and GrantID) or a final outcome reached
// without a claim (no grant, skipped). When an item already exists it returns an
// ECONFLICT error and the existing delivery, which the caller must respect.
func (d *DB) CreateDelivery(ctx context.Context, dl minipush.Delivery) (minipush.Delivery, error) {
	it := deliveryItem{
		PK: deliveryPK(dl.RunKey, dl.OpenID), SK: dl.OpenID, State: string(dl.State), Owner: dl.Owner, LeaseUntil: epoch(dl.LeaseUntil),
		GrantID: dl.GrantID, Reason: dl.Reason, ErrCode: dl.ErrCode, Channel: dl.Channel,
		UpdatedAt: epoch(d.Now()), ExpiresAt: epoch(dl.ExpiresAt),
	}
	if dl.State == minipush.DeliveryFinal {
		it.Outcome = string(dl.Outcome)
	}
	av, err := attributevalue.MarshalMap(it)
	if err != nil {
		return minipush.Delivery{}, fmt.Errorf("dynamo: encode delivery: %w", err)
	}
	_, err = d.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.Tables.Deliveries), Item: av,
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return minipush.Delivery{}, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return minipush.Delivery{}, fmt.Errorf("dynamo: create delivery of %s: %w", dl.RunKey, err)
	}
	existing := ccf.Item
	if existing == nil {
		// Not every DynamoDB (Local) returns the old item; read it.
		out, gerr := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(d.Tables.Deliveries), Key: deliveryKey(dl.RunKey, dl.OpenID), ConsistentRead: aws.Bool(true),
		})
		if gerr != nil {
			return minipush.Delivery{}, fmt.Errorf("dynamo: read existing delivery of %s: %w", dl.RunKey, gerr)
		}
		existing = out.Item
	}
	var old deliveryItem
	if err := attributevalue.UnmarshalMap(existing, &old); err != nil {
		return minipush.Delivery{}, fmt.Errorf("dynamo: decode delivery: %w", err)
	}
	was := old.delivery()
	if ferr := d.foldSent(ctx, []*minipush.Delivery{&was}); ferr != nil {
		return minipush.Delivery{}, ferr
	}
	return was, conflict(err, "dynamo: delivery of %s exists", dl.RunKey)
}

// FinishDelivery makes a claimed delivery final, only if it is still claimed by owner
// (and, when leaseUntil is not zero, with exactly that lease: taking over a crashed
// sender's claim). msgID ("" for none) is WeChat's id of a sent message, kept in the
// same write. rcptUser ("" for none: the app has receipts off, or the message is not a
// subscribe message) is minipush.ReceiptUser of a sent message: written with the time
// as the ByRecipient index keys so a receipt can find the delivery, with or without a
// msgid, which costs the index entry's write unit. It returns ECONFLICT when the claim
// is no longer owner's.
func (d *DB) FinishDelivery(ctx context.Context, runKey, openID, owner string, leaseUntil time.Time, outcome minipush.Outcome, reason string, errcode int, msgID, rcptUser string) error {
	cond := "#state = :sending AND #owner = :owner"
	vals := map[string]types.AttributeValue{
		":sending": strAV(string(minipush.DeliverySending)), ":owner": strAV(owner), ":final": strAV(string(minipush.DeliveryFinal)),
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
	if msgID != "" {
		set += ", msgId = :msgid"
		vals[":msgid"] = strAV(msgID)
	}
	if rcptUser != "" && outcome == minipush.OutcomeSent {
		// sentAt is :now, the answer's time, which the receipt's window is around.
		set += ", rcptUser = :ru, sentAt = :now"
		vals[":ru"] = strAV(rcptUser)
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
			":sending": strAV(string(minipush.DeliverySending)), ":owner": strAV(owner), ":g": strAV(grantID), ":now": numAV(d.Now().Unix()),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: set delivery grant of %s", runKey)
	}
	return nil
}

// FallBackDelivery records on owner's claim that the customer-service channel was
// refused (reason) and the recipient goes on to channel, the grant message's. ECONFLICT
// when the claim is not owner's any more.
func (d *DB) FallBackDelivery(ctx context.Context, runKey, openID, owner, channel, reason string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Deliveries), Key: deliveryKey(runKey, openID),
		ConditionExpression:      aws.String("#state = :sending AND #owner = :owner"),
		UpdateExpression:         aws.String("SET channel = :ch, csFallback = :why, updatedAt = :now"),
		ExpressionAttributeNames: map[string]string{"#state": "state", "#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":sending": strAV(string(minipush.DeliverySending)), ":owner": strAV(owner),
			":ch": strAV(channel), ":why": strAV(reason), ":now": numAV(d.Now().Unix()),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: fall back delivery of %s", runKey)
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
			":sending": strAV(string(minipush.DeliverySending)), ":owner": strAV(owner),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: delete claim of %s", runKey)
	}
	return nil
}

// CountOutcomes recounts a run's final deliveries, shard by shard (a few at a time):
// the exact summary, whatever counter update was lost. It reads the whole run once, its
// deliveries and sent logs, at its completion (about 1 RRU per 4 KB, strongly
// consistent).
func (d *DB) CountOutcomes(ctx context.Context, campaignID string, run int) (minipush.Counters, error) {
	runKey := minipush.RunKey(campaignID, run)
	counts := make([]minipush.Counters, minipush.DeliveryShards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(countParallelism)
	for shard := range minipush.DeliveryShards {
		g.Go(func() (err error) {
			counts[shard], err = d.countShard(gctx, minipush.DeliveryPartition(runKey, shard))
			return err
		})
	}
	var c minipush.Counters
	if err := g.Wait(); err != nil {
		return c, fmt.Errorf("dynamo: count outcomes of %s#%d: %w", campaignID, run, err)
	}
	for _, sc := range counts {
		c.Add(sc)
	}
	return c, nil
}

// countParallelism bounds the shards one recount reads at once.
const countParallelism = 8

func (d *DB) countShard(ctx context.Context, pk string) (minipush.Counters, error) {
	var c minipush.Counters
	type claim struct{ owner, channel, csFallback string }
	claims := map[string]claim{}           // openid -> a claim not final on its item
	logged := map[string]map[string]bool{} // owner -> openids its sent logs name
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:                 aws.String(d.Tables.Deliveries),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(pk)},
		ProjectionExpression:      aws.String("sk, #state, #owner, outcome, reason, channel, csFallback, sent"),
		ExpressionAttributeNames:  map[string]string{"#state": "state", "#owner": "owner"},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return c, err
		}
		for _, item := range page.Items {
			var it struct {
				SK         string               `dynamodbav:"sk"`
				State      string               `dynamodbav:"state"`
				Owner      string               `dynamodbav:"owner"`
				Outcome    string               `dynamodbav:"outcome"`
				Reason     string               `dynamodbav:"reason"`
				Channel    string               `dynamodbav:"channel"`
				CSFallback string               `dynamodbav:"csFallback"`
				Sent       map[string]sentEntry `dynamodbav:"sent"`
			}
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return c, fmt.Errorf("decode outcome: %w", err)
			}
			switch {
			case strings.HasPrefix(it.SK, sentLogPrefix):
				owner := sentLogOwner(it.SK)
				if logged[owner] == nil {
					logged[owner] = map[string]bool{}
				}
				for id := range it.Sent {
					logged[owner][id] = true
				}
			case it.Outcome != "":
				c.Count(minipush.Outcome(it.Outcome), it.Reason)
				c.CountChannel(minipush.Outcome(it.Outcome), it.Channel, it.CSFallback)
			case it.State == string(minipush.DeliverySending):
				claims[it.SK] = claim{it.Owner, it.Channel, it.CSFallback}
			}
		}
	}
	for id, cl := range claims {
		if logged[cl.owner][id] {
			c.Count(minipush.OutcomeSent, "")
			c.CountChannel(minipush.OutcomeSent, cl.channel, cl.csFallback)
		}
	}
	return c, nil
}

// deliveryCursor is where a listing of a run's deliveries stopped: the shard, and the
// openid to continue after in it ("" from its start). Run and outcome bind it to its
// listing.
type deliveryCursor struct {
	Run     string `json:"r"`
	Outcome string `json:"o,omitempty"`
	Shard   int    `json:"s"`
	After   string `json:"a,omitempty"`
}

// listQueries bounds the Queries of one listing page, and listScan the items one
// filtered Query reads, so a page over a large run whose outcome is rare stays within
// the operator API's time: such a page may hold fewer than limit deliveries (even none)
// with a cursor to go on.
const (
	listQueries = 48
	listScan    = 1000
)

// ListDeliveries returns up to limit deliveries of one run and a cursor for the next
// page ("" on the last), shard by shard and in openid order within a shard. With an
// outcome only final deliveries of that outcome (a Query of each shard filtered on it:
// the filtered-out items are read and billed, which an index would avoid at the price
// of a write with every outcome); without, every delivery, including claims still
// sending. A page may hold fewer than limit deliveries when a rare outcome is searched
// in a large run; only an empty cursor ends the listing. A cursor of another run or
// listing is EINVALID.
func (d *DB) ListDeliveries(ctx context.Context, campaignID string, run int, outcome minipush.Outcome, limit int, cursor string) ([]minipush.Delivery, string, error) {
	runKey := minipush.RunKey(campaignID, run)
	cur := deliveryCursor{Run: runKey, Outcome: string(outcome)}
	if cursor != "" {
		bad := minipush.Errorf(minipush.EINVALID, "cursor is not one this listing returned")
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return nil, "", bad
		}
		var got deliveryCursor
		if err := json.Unmarshal(b, &got); err != nil || got.Run != runKey || got.Outcome != string(outcome) ||
			got.Shard < 0 || got.Shard >= minipush.DeliveryShards {
			return nil, "", bad
		}
		cur = got
	}
	limit = clampLimit(limit)
	dls := make([]minipush.Delivery, 0, limit)
	for queries := 0; len(dls) < limit && queries < listQueries; queries++ {
		pk := minipush.DeliveryPartition(runKey, cur.Shard)
		in := &dynamodb.QueryInput{
			TableName:                 aws.String(d.Tables.Deliveries),
			KeyConditionExpression:    aws.String("pk = :pk AND sk < :end"), // not the sent logs
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(pk), ":end": strAV(deliveriesEnd)},
			Limit:                     aws.Int32(int32(limit - len(dls))),
		}
		switch outcome {
		case "":
		case minipush.OutcomeSent:
			// A sent delivery may be a claim its sender's log makes final (sentlog.go).
			in.FilterExpression = aws.String("outcome = :outcome OR #state = :sending")
			in.ExpressionAttributeNames = map[string]string{"#state": "state"}
			in.ExpressionAttributeValues[":sending"] = strAV(string(minipush.DeliverySending))
		default:
			in.FilterExpression = aws.String("outcome = :outcome")
		}
		if outcome != "" {
			in.ExpressionAttributeValues[":outcome"] = strAV(string(outcome))
			in.Limit = aws.Int32(listScan) // evaluated items; more matches than needed are cut below
		}
		if cur.After != "" {
			in.ExclusiveStartKey = map[string]types.AttributeValue{"pk": strAV(pk), "sk": strAV(cur.After)}
		}
		out, err := d.Client.Query(ctx, in)
		if err != nil {
			return nil, "", fmt.Errorf("dynamo: list deliveries of %s: %w", runKey, err)
		}
		found := make([]*minipush.Delivery, 0, len(out.Items))
		for _, item := range out.Items {
			var it deliveryItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return nil, "", fmt.Errorf("dynamo: decode delivery: %w", err)
			}
			dl := it.delivery()
			found = append(found, &dl)
		}
		if err := d.foldSent(ctx, found); err != nil {
			return nil, "", fmt.Errorf("dynamo: list deliveries of %s: %w", runKey, err)
		}
		cut := false
		for _, dl := range found {
			if len(dls) == limit {
				cut = true
				break
			}
			if outcome == "" || dl.Outcome == outcome {
				dls = append(dls, *dl)
			}
			cur.After = dl.OpenID
		}
		switch {
		case cut:
			// Continue after the last one taken, in this shard.
		case len(out.LastEvaluatedKey) > 0:
			if sk, ok := out.LastEvaluatedKey["sk"].(*types.AttributeValueMemberS); ok {
				cur.After = sk.Value
			}
		case cur.Shard+1 < minipush.DeliveryShards:
			cur.Shard, cur.After = cur.Shard+1, ""
		default:
			return dls, "", nil
		}
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return nil, "", fmt.Errorf("dynamo: encode cursor: %w", err)
	}
	return dls, base64.RawURLEncoding.EncodeToString(b), nil
}
