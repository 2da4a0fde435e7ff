package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// An app's daily quota budget (minipush quota.go) in the state table:
//
//   - one counter per shard, pk "quota#<appId>#<day>#<shard>", sk "q": n tokens taken
//     in all, t and m of them by transactional and marketing campaigns. The shard is in
//     the partition key, so the counters of one app and day sit on different
//     partitions and no one of them is a hot key;
//   - one status item, pk "quota#<appId>#<day>", sk "status": WeChat's quota as a
//     sender last read it and the pauses (until the day's reset).
//
// Every item expires (TTL) two days after its day, so nothing needs cleaning up.

const quotaKeep = 72 * time.Hour // the day itself and two more for the operator's look back

func quotaShardKey(appID, day string, shard int) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": strAV("quota#" + appID + "#" + day + "#" + strconv.Itoa(shard)),
		"sk": strAV("q"),
	}
}

func quotaStatusKey(appID, day string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": strAV("quota#" + appID + "#" + day), "sk": strAV("status")}
}

// quotaExpiry is the TTL of day's items.
func quotaExpiry(day string) int64 {
	t, err := time.ParseInLocation(time.DateOnly, day, minipush.QuotaZone)
	if err != nil {
		return 0
	}
	return t.Add(quotaKeep).Unix()
}

// classAttr is the class's own count on a shard counter.
func classAttr(class string) string {
	if class == minipush.QuotaTransactional {
		return "t"
	}
	return "m"
}

// TakeQuota takes up to want tokens for class from shard of the app's budget of day,
// whose counter may reach capacity (the class's part of the limit on this shard): one
// conditional UpdateItem, and when the shard has less than want left, one more taking
// what is left (the failed condition returns the counter, so no read is needed). It
// returns how many it took: 0 when the shard has nothing left for class.
func (d *DB) TakeQuota(ctx context.Context, appID, day string, shard, want, capacity int, class string) (int, error) {
	if want <= 0 {
		return 0, fmt.Errorf("dynamo: take quota of %s: want %d tokens", appID, want)
	}
	// Never more than the shard holds: a counter not yet written passes the condition
	// whatever the amount.
	want = min(want, capacity)
	for range 3 {
		if want <= 0 {
			return 0, nil
		}
		_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                aws.String(d.Tables.State),
			Key:                      quotaShardKey(appID, day, shard),
			ConditionExpression:      aws.String("attribute_not_exists(n) OR n <= :room"),
			UpdateExpression:         aws.String("ADD n :k, #c :k SET expiresAt = :exp"),
			ExpressionAttributeNames: map[string]string{"#c": classAttr(class)},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":room": numAV(int64(capacity - want)),
				":k":    numAV(int64(want)),
				":exp":  numAV(quotaExpiry(day)),
			},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		if err == nil {
			return want, nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			return 0, fmt.Errorf("dynamo: take quota of %s: %w", appID, err)
		}
		want = capacity - intAttr(ccf.Item["n"])
	}
	return 0, nil // the shard kept filling under us: take from another
}

// ReturnQuota gives back n tokens of class that TakeQuota took from shard and no send
// used (a sender's chunk left at the end of its invocation, or a send WeChat refused).
func (d *DB) ReturnQuota(ctx context.Context, appID, day string, shard, n int, class string) error {
	if n <= 0 {
		return nil
	}
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State),
		Key:       quotaShardKey(appID, day, shard),
		// Only onto a counter that holds them: never a negative count on a counter the
		// TTL removed meanwhile.
		ConditionExpression:      aws.String("n >= :k"),
		UpdateExpression:         aws.String("ADD n :neg, #c :neg"),
		ExpressionAttributeNames: map[string]string{"#c": classAttr(class)},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":k": numAV(int64(n)), ":neg": numAV(int64(-n)),
		},
	})
	return ignoreConflict(err, "dynamo: return quota of %s", appID)
}

// RecordQuotaRead keeps WeChat's quota as a sender read it on the app's status item of
// day, for the operator (one write per sender per read, a few minutes apart).
func (d *DB) RecordQuotaRead(ctx context.Context, appID, day string, r minipush.QuotaRead) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State),
		Key:       quotaStatusKey(appID, day),
		UpdateExpression: aws.String("SET dailyLimit = :l, wxUsed = :u, wxRemain = :r, rateCount = :rc, rateSecond = :rs, " +
			"readAt = :at, expiresAt = :exp"),
		// An older read arriving late does not replace a newer one.
		ConditionExpression: aws.String("attribute_not_exists(readAt) OR readAt <= :at"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":l": numAV(int64(r.DailyLimit)), ":u": numAV(int64(r.Used)), ":r": numAV(int64(r.Remain)),
			":rc": numAV(int64(r.RateCount)), ":rs": numAV(int64(r.RateSecond)),
			":at": numAV(r.ReadAt.UnixMilli()), ":exp": numAV(quotaExpiry(day)),
		},
	})
	return ignoreConflict(err, "dynamo: record quota read of %s", appID)
}

// PauseQuota records that class (QuotaMarketing, or "" for every send of the app) may
// not send until until, the day's reset, with the reason. It reports whether this call
// set the pause (false: another sender had already), so that one sender alone tells.
func (d *DB) PauseQuota(ctx context.Context, appID, day, class string, until time.Time, reason string) (bool, error) {
	attr := "pausedUntil"
	if class == minipush.QuotaMarketing {
		attr = "mktPausedUntil"
	}
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(d.Tables.State),
		Key:                      quotaStatusKey(appID, day),
		ConditionExpression:      aws.String("attribute_not_exists(#p) OR #p < :until"),
		UpdateExpression:         aws.String("SET #p = :until, reason = :why, expiresAt = :exp"),
		ExpressionAttributeNames: map[string]string{"#p": attr},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":until": numAV(until.UnixMilli()), ":why": strAV(reason), ":exp": numAV(quotaExpiry(day)),
		},
	})
	if err == nil {
		return true, nil
	}
	if err = conflict(err, "dynamo: pause quota of %s", appID); minipush.ErrorCode(err) == minipush.ECONFLICT {
		return false, nil
	}
	return false, err
}

// QuotaStatus reads the app's status item of day (WeChat's last read and the pauses),
// eventually consistent: half a read unit, and a pause set a moment ago may be missed
// once (that sender then finds the budget empty, or WeChat answers 45009, and pauses
// too). The Used counts are left zero; QuotaUse adds them.
func (d *DB) QuotaStatus(ctx context.Context, appID, day string) (minipush.QuotaUse, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.State), Key: quotaStatusKey(appID, day),
	})
	if err != nil {
		return minipush.QuotaUse{}, fmt.Errorf("dynamo: quota status of %s: %w", appID, err)
	}
	return decodeQuotaStatus(appID, day, out.Item), nil
}

func decodeQuotaStatus(appID, day string, item map[string]types.AttributeValue) minipush.QuotaUse {
	u := minipush.QuotaUse{AppID: appID, Day: day}
	if item == nil {
		return u
	}
	milli := func(name string) time.Time {
		if v := intAttr(item[name]); v > 0 {
			return time.UnixMilli(int64(v)).UTC()
		}
		return time.Time{}
	}
	u.Read = minipush.QuotaRead{
		DailyLimit: intAttr(item["dailyLimit"]), Used: intAttr(item["wxUsed"]), Remain: intAttr(item["wxRemain"]),
		RateCount: intAttr(item["rateCount"]), RateSecond: intAttr(item["rateSecond"]), ReadAt: milli("readAt"),
	}
	u.PausedUntil, u.MarketingPausedUntil = milli("pausedUntil"), milli("mktPausedUntil")
	if s, ok := item["reason"].(*types.AttributeValueMemberS); ok {
		u.PauseReason = s.Value
	}
	return u
}

// QuotaUse reads the app's budget of day for the operator: the status item and the
// shards counters' sums, in one BatchGetItem (strongly consistent).
func (d *DB) QuotaUse(ctx context.Context, appID, day string, shards int) (minipush.QuotaUse, error) {
	keys := []map[string]types.AttributeValue{quotaStatusKey(appID, day)}
	for k := range shards {
		keys = append(keys, quotaShardKey(appID, day, k))
	}
	u := minipush.QuotaUse{AppID: appID, Day: day}
	err := d.batchGet(ctx, d.Tables.State, "", nil, keys, func(item map[string]types.AttributeValue) error {
		if s, ok := item["sk"].(*types.AttributeValueMemberS); ok && s.Value == "status" {
			st := decodeQuotaStatus(appID, day, item)
			st.Used, st.UsedTransactional, st.UsedMarketing = u.Used, u.UsedTransactional, u.UsedMarketing
			u = st
			return nil
		}
		u.Used += intAttr(item["n"])
		u.UsedTransactional += intAttr(item["t"])
		u.UsedMarketing += intAttr(item["m"])
		return nil
	})
	if err != nil {
		return minipush.QuotaUse{}, fmt.Errorf("dynamo: quota use of %s: %w", appID, err)
	}
	return u, nil
}
