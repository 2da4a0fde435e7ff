package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"minipush"
)

// Receipts (WeChat's subscribe_msg_sent_event) are kept in the deliveries table:
//
//   - on the delivery itself: receipt ("delivered" or "async_failed"), receiptCode,
//     receiptStatus, receiptAt, set once from a sent delivery;
//   - as counters of a campaign's runs, pk "rcpt#<campaign>#<shard>", sk "run#<n>":
//     delivered, asyncFailed (N) and expiresAt, one item per run and shard.
//
// A delivery is found through ByRecipient, a sparse index keyed by rcptUser
// (minipush.ReceiptUser: app, openid, template) and sentAt (the time of WeChat's
// answer), projecting msgId. Only the sent subscribe messages of apps with receipts on
// (minipush.App.Receipts) carry its keys, so the index costs one write per such message
// (the final write that stores the msgid, if any) and nothing for other apps or
// outcomes; the receipt's own update changes no key or projected attribute of it, so
// writes no index. Its entries are about 250 bytes (keys, msgid, 100 bytes of
// overhead), under the 1 KB of one write unit. A partition of it is one user's messages
// of one template, a few a day at most: no hot key, whatever the send rate. Every sent
// delivery keeps its msgid in msgId whatever the app's setting (the operator's listing
// shows it).
//
// A receipt (FromUserName, TemplateId, MsgID, CreateTime) queries that user's and
// template's entries from ReceiptMatchWindow before its CreateTime to ReceiptWindowAfter
// after it (one page: a day of one user's messages of one template) and
//   - records on the entries whose msgId is its MsgID (one, in practice);
//   - else, falls back to the time window: the entries without a msgid (sends whose
//     answer carried none) sent from ReceiptWindowBefore before CreateTime to
//     ReceiptWindowAfter after it. An entry with another msgid is never a candidate: it
//     is provably another message (the app's other senders' receipts arrive at the
//     same push URL). If one of those already got this MsgID's receipt, it is a replay
//     and nothing changes; if exactly one has no receipt yet, it is recorded there,
//     keeping the MsgID as receiptMsgId; several are ReceiptAmbiguous (nothing
//     changes, never the wrong delivery), none ReceiptUnknown.
//
// The counters are not on the run item: receipts arrive one push per message, at the
// send rate, and a run item ADDed 5,000 times a second is a key far over a partition's
// 1,000 WCU/s. They are spread like the deliveries, over minipush.DeliveryShards keys by
// the recipient's shard, and under the campaign rather than the run so that a progress
// read is DeliveryShards Queries whatever the number of runs (ReceiptCounts).
//
// The delivery's update and its counter's ADD are one transaction (4 write units a
// receipt): the delivery's condition (sent, this msgid or none, no receipt yet, not
// expired) makes a replayed receipt change nothing and count nothing, and a crash can
// never leave a receipt recorded but not counted, which a retried push could no longer
// repair.

// DeliveriesByRecipient is the deliveries table's index on rcptUser and sentAt
// (template.yaml).
const DeliveriesByRecipient = "ByRecipient"

// The receipt's windows, around its CreateTime (WeChat's clock) against sentAt (ours,
// when the answer came).
const (
	// ReceiptWindowBefore: WeChat creates the sent event when its asynchronous
	// delivery settles, seconds after the send; 10 minutes covers a backlog at WeChat
	// and clock skew while keeping a user's candidates of one template few (sends of a
	// template to one user need an accept each).
	ReceiptWindowBefore = 10 * time.Minute
	// ReceiptWindowAfter: our answer can come after WeChat created the event (a slow
	// answer, up to the client's timeout) and the clocks may differ by seconds.
	ReceiptWindowAfter = 2 * time.Minute
	// ReceiptMatchWindow is how far back a msgid match is looked for: far beyond any
	// retry chain of a push (its CreateTime stays), at no cost, as the entries of a
	// day of one user's messages of one template fit one read unit.
	ReceiptMatchWindow = 24 * time.Hour
)

func receiptPK(campaignID string, shard int) string {
	return "rcpt#" + campaignID + "#" + strconv.Itoa(shard)
}

// splitRunKey is the campaign id and run number of a run key (minipush.RunKey).
func splitRunKey(runKey string) (string, int, error) {
	i := strings.LastIndexByte(runKey, '#')
	if i <= 0 {
		return "", 0, fmt.Errorf("dynamo: run key %q", runKey)
	}
	n, err := strconv.Atoi(runKey[i+1:])
	if err != nil {
		return "", 0, fmt.Errorf("dynamo: run key %q: %w", runKey, err)
	}
	return runKey[:i], n, nil
}

// receiptEntry is one ByRecipient entry: the delivery's table keys, its send time and
// msgid ("" when WeChat's answer carried none).
type receiptEntry struct {
	PK     string `dynamodbav:"pk"`
	SK     string `dynamodbav:"sk"`
	SentAt int64  `dynamodbav:"sentAt"`
	MsgID  string `dynamodbav:"msgId"`
}

// RecordReceipt moves the sent delivery WeChat's receipt r is for to r's receipt state
// and counts it into its run's receipt counters, in one transaction conditional on the
// delivery being sent, with r's msgid (or none, matched by the window), without a
// receipt, and not past its retention. The delivery is the one with r.MsgID, else the
// one the time window leaves (see above). It reports what it did
// (minipush.ReceiptResult): an unknown msgid, an expired delivery, a receipt already
// recorded (WeChat's retry, a replay) and an ambiguous window change nothing.
func (d *DB) RecordReceipt(ctx context.Context, r minipush.Receipt) (minipush.ReceiptResult, error) {
	entries, err := d.receiptEntries(ctx, r)
	if err != nil {
		return 0, err
	}
	var byID, window []receiptEntry
	from, to := r.At.Add(-ReceiptWindowBefore).Unix(), r.At.Add(ReceiptWindowAfter).Unix()
	for _, e := range entries {
		switch {
		case e.MsgID == r.MsgID:
			byID = append(byID, e)
		case e.MsgID == "" && e.SentAt >= from && e.SentAt <= to:
			window = append(window, e)
		}
	}
	if len(byID) > 0 {
		// A msgid match wins over any candidate of the window, however close in time.
		// One in practice; each is checked by its own condition.
		res := minipush.ReceiptNoChange
		for _, e := range byID {
			ok, err := d.recordReceipt(ctx, e.PK, e.SK, r, false)
			if err != nil {
				return 0, err
			}
			if ok {
				res = minipush.ReceiptRecorded
			}
		}
		return res, nil
	}
	if len(window) == 0 {
		return minipush.ReceiptUnknown, nil
	}
	e, res, err := d.windowCandidate(ctx, r, window)
	if err != nil || res != 0 {
		return res, err
	}
	ok, err := d.recordReceipt(ctx, e.PK, e.SK, r, true)
	if err != nil {
		return 0, err
	}
	if !ok {
		return minipush.ReceiptNoChange, nil
	}
	return minipush.ReceiptRecorded, nil
}

// receiptEntries reads r's user's and template's ByRecipient entries from
// ReceiptMatchWindow before r.At to ReceiptWindowAfter after it.
func (d *DB) receiptEntries(ctx context.Context, r minipush.Receipt) ([]receiptEntry, error) {
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName: aws.String(d.Tables.Deliveries), IndexName: aws.String(DeliveriesByRecipient),
		KeyConditionExpression: aws.String("rcptUser = :u AND sentAt BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":u":    strAV(minipush.ReceiptUser(r.AppID, r.OpenID, r.TemplateID)),
			":from": numAV(r.At.Add(-ReceiptMatchWindow).Unix()), ":to": numAV(r.At.Add(ReceiptWindowAfter).Unix()),
		},
	})
	var out []receiptEntry
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: find deliveries for a receipt: %w", err)
		}
		for _, item := range page.Items {
			var e receiptEntry
			if err := attributevalue.UnmarshalMap(item, &e); err != nil {
				return nil, fmt.Errorf("dynamo: decode receipt index entry: %w", err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// windowCandidate picks the delivery of the window's entries (all without msgid) that r
// is for, reading their receipts (strongly consistent, so a replay right after its
// first recording is seen): res is ReceiptNoChange when one of them already has r's
// receipt or all have one, ReceiptAmbiguous when several have none, 0 with the one
// that has none.
func (d *DB) windowCandidate(ctx context.Context, r minipush.Receipt, window []receiptEntry) (receiptEntry, minipush.ReceiptResult, error) {
	keys := make([]map[string]types.AttributeValue, len(window))
	for i, e := range window {
		keys[i] = map[string]types.AttributeValue{"pk": strAV(e.PK), "sk": strAV(e.SK)}
	}
	now := d.Now().Unix()
	var open []receiptEntry
	replay := false
	err := d.batchGet(ctx, d.Tables.Deliveries, "#pk, #sk, #r, #rm, #exp", map[string]string{
		"#pk": "pk", "#sk": "sk", "#r": "receipt", "#rm": "receiptMsgId", "#exp": "expiresAt",
	}, keys, func(item map[string]types.AttributeValue) error {
		var it deliveryItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return fmt.Errorf("dynamo: decode delivery: %w", err)
		}
		switch {
		case it.ReceiptMsgID == r.MsgID:
			replay = true
		case it.Receipt == "" && it.ExpiresAt > now:
			// Past its retention a delivery is gone, whatever TTL has not deleted yet.
			open = append(open, receiptEntry{PK: it.PK, SK: it.SK})
		}
		return nil
	})
	switch {
	case err != nil:
		return receiptEntry{}, 0, fmt.Errorf("dynamo: read receipt candidates: %w", err)
	case replay || len(open) == 0:
		return receiptEntry{}, minipush.ReceiptNoChange, nil
	case len(open) > 1:
		return receiptEntry{}, minipush.ReceiptAmbiguous, nil
	}
	return open[0], 0, nil
}

// recordReceipt records r on the delivery (pk, openID) and counts it: on the delivery
// with r's msgid, or, byWindow, on one without a msgid, keeping r's as receiptMsgId.
func (d *DB) recordReceipt(ctx context.Context, pk, openID string, r minipush.Receipt, byWindow bool) (bool, error) {
	campaignID, run, err := splitRunKey(runKeyOf(pk))
	if err != nil {
		return false, err
	}
	now := d.Now()
	set := "SET receipt = :r, receiptAt = :at"
	vals := map[string]types.AttributeValue{
		":sent": strAV(string(minipush.OutcomeSent)), ":m": strAV(r.MsgID), ":now": numAV(now.Unix()),
		":r": strAV(string(r.State())), ":at": numAV(r.At.Unix()),
	}
	// Reads never trust TTL: a delivery past its retention is gone, whatever DynamoDB
	// has not deleted yet.
	cond := "outcome = :sent AND msgId = :m AND attribute_not_exists(receipt) AND expiresAt > :now"
	if byWindow {
		cond = "outcome = :sent AND attribute_not_exists(msgId) AND attribute_not_exists(receipt) AND expiresAt > :now"
		set += ", receiptMsgId = :m"
	}
	counter := "delivered"
	if r.State() == minipush.ReceiptAsyncFailed {
		counter = "asyncFailed"
		set += ", receiptCode = :code"
		vals[":code"] = numAV(int64(r.ErrorCode))
		if r.ErrorStatus != "" {
			set += ", receiptStatus = :status"
			vals[":status"] = strAV(r.ErrorStatus)
		}
	}
	_, err = d.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: &types.Update{
			TableName:                 aws.String(d.Tables.Deliveries),
			Key:                       map[string]types.AttributeValue{"pk": strAV(pk), "sk": strAV(openID)},
			ConditionExpression:       aws.String(cond),
			UpdateExpression:          aws.String(set),
			ExpressionAttributeValues: vals,
		}},
		{Update: &types.Update{
			TableName: aws.String(d.Tables.Deliveries),
			Key:       map[string]types.AttributeValue{"pk": strAV(receiptPK(campaignID, minipush.DeliveryShard(openID))), "sk": strAV(runSK(run))},
			// The counters live as long as the deliveries they count.
			UpdateExpression:          aws.String("ADD #c :one SET expiresAt = :exp"),
			ExpressionAttributeNames:  map[string]string{"#c": counter},
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": numAV(1), ":exp": numAV(RetentionExpiry(now, d.retention()))},
		}},
	}})
	if err == nil {
		return true, nil
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) && len(tce.CancellationReasons) > 0 && aws.ToString(tce.CancellationReasons[0].Code) == "ConditionalCheckFailed" {
		return false, nil
	}
	return false, fmt.Errorf("dynamo: record receipt on %s: %w", runKeyOf(pk), err)
}

// ReceiptCounts returns the receipt counters of a campaign's runs, by run number: one
// Query of each receipt shard (a few at a time), whatever the number of runs.
func (d *DB) ReceiptCounts(ctx context.Context, campaignID string) (map[int]minipush.Counters, error) {
	shards := make([]map[int]minipush.Counters, minipush.DeliveryShards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(countParallelism)
	for shard := range minipush.DeliveryShards {
		g.Go(func() error {
			m := map[int]minipush.Counters{}
			p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
				TableName:                 aws.String(d.Tables.Deliveries),
				KeyConditionExpression:    aws.String("pk = :pk"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(receiptPK(campaignID, shard))},
			})
			for p.HasMorePages() {
				page, err := p.NextPage(gctx)
				if err != nil {
					return err
				}
				for _, item := range page.Items {
					var it struct {
						SK          string `dynamodbav:"sk"`
						Delivered   int    `dynamodbav:"delivered"`
						AsyncFailed int    `dynamodbav:"asyncFailed"`
						ExpiresAt   int64  `dynamodbav:"expiresAt"`
					}
					if err := attributevalue.UnmarshalMap(item, &it); err != nil {
						return fmt.Errorf("decode receipt counters: %w", err)
					}
					n, err := runOfSK(it.SK)
					if err != nil {
						continue
					}
					c := m[n]
					c.Delivered += it.Delivered
					c.AsyncFailed += it.AsyncFailed
					m[n] = c
				}
			}
			shards[shard] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("dynamo: receipt counts of %s: %w", campaignID, err)
	}
	out := map[int]minipush.Counters{}
	for _, m := range shards {
		for n, c := range m {
			t := out[n]
			t.Delivered += c.Delivered
			t.AsyncFailed += c.AsyncFailed
			out[n] = t
		}
	}
	return out, nil
}

// withReceipts adds each run's receipt counters to runs (CampaignRuns).
func (d *DB) withReceipts(ctx context.Context, campaignID string, runs []minipush.Run) ([]minipush.Run, error) {
	if len(runs) == 0 {
		return runs, nil
	}
	rc, err := d.ReceiptCounts(ctx, campaignID)
	if err != nil {
		return nil, err
	}
	for i := range runs {
		c := rc[runs[i].N]
		runs[i].Counters.Delivered, runs[i].Counters.AsyncFailed = c.Delivered, c.AsyncFailed
	}
	return runs, nil
}
