package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
// A delivery is found by its msgid through ByMsgID, a sparse KEYS_ONLY index on
// rcptMsgId: only the sent subscribe messages of apps with receipts on
// (minipush.App.Receipts) carry it, so the index costs one write per such message (the
// final write that stores the msgid) and nothing for other apps or outcomes; the
// receipt's own update changes no key or projected attribute of it, so writes no index.
// Every sent delivery keeps its msgid in msgId whatever the app's setting (the operator's
// listing shows it).
//
// The counters are not on the run item: receipts arrive one push per message, at the
// send rate, and a run item ADDed 5,000 times a second is a key far over a partition's
// 1,000 WCU/s. They are spread like the deliveries, over minipush.DeliveryShards keys by
// the recipient's shard, and under the campaign rather than the run so that a progress
// read is DeliveryShards Queries whatever the number of runs (ReceiptCounts).
//
// The delivery's update and its counter's ADD are one transaction (4 write units a
// receipt): the delivery's condition (sent, this msgid, no receipt yet, not expired)
// makes a replayed receipt change nothing and count nothing, and a crash can never leave
// a receipt recorded but not counted, which a retried push could no longer repair.

// DeliveriesByMsgID is the deliveries table's index on rcptMsgId (template.yaml).
const DeliveriesByMsgID = "ByMsgID"

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

// RecordReceipt moves the sent delivery WeChat answered with r.MsgID to r's receipt
// state and counts it into its run's receipt counters, in one transaction conditional
// on the delivery being sent, with that msgid, without a receipt, and not past its
// retention. It reports what it did (minipush.ReceiptResult): an unknown msgid, an
// expired delivery and a receipt already recorded (WeChat's retry, a replay) change
// nothing.
func (d *DB) RecordReceipt(ctx context.Context, r minipush.Receipt) (minipush.ReceiptResult, error) {
	// KEYS_ONLY: the table's keys of the deliveries with this msgid. One in practice;
	// a few at most if two apps' ids ever met, and each is checked by its own condition.
	out, err := d.Client.Query(ctx, &dynamodb.QueryInput{
		TableName: aws.String(d.Tables.Deliveries), IndexName: aws.String(DeliveriesByMsgID),
		KeyConditionExpression:    aws.String("rcptMsgId = :m"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":m": strAV(r.MsgID)},
		Limit:                     aws.Int32(10),
	})
	if err != nil {
		return 0, fmt.Errorf("dynamo: find delivery by msgid: %w", err)
	}
	if len(out.Items) == 0 {
		return minipush.ReceiptUnknown, nil
	}
	res := minipush.ReceiptNoChange
	for _, item := range out.Items {
		var k struct {
			PK string `dynamodbav:"pk"`
			SK string `dynamodbav:"sk"`
		}
		if err := attributevalue.UnmarshalMap(item, &k); err != nil {
			return 0, fmt.Errorf("dynamo: decode delivery key: %w", err)
		}
		ok, err := d.recordReceipt(ctx, k.PK, k.SK, r)
		if err != nil {
			return 0, err
		}
		if ok {
			res = minipush.ReceiptRecorded
		}
	}
	return res, nil
}

func (d *DB) recordReceipt(ctx context.Context, pk, openID string, r minipush.Receipt) (bool, error) {
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
			TableName: aws.String(d.Tables.Deliveries),
			Key:       map[string]types.AttributeValue{"pk": strAV(pk), "sk": strAV(openID)},
			// Reads never trust TTL: a delivery past its retention is gone, whatever
			// DynamoDB has not deleted yet.
			ConditionExpression:       aws.String("outcome = :sent AND msgId = :m AND attribute_not_exists(receipt) AND expiresAt > :now"),
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
					n, err := strconv.Atoi(strings.TrimPrefix(it.SK, "run#"))
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
