package dynamo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// Expiry statistics live in the state table as two kinds of item:
//
//	counter  pk = "expstats#<appId>#<shard>"         sk = "<YYYY-MM-DD>#<kind>"
//	         expired (N, ADDed), appId, day, kind, expiresAt = day + StatsRetention
//	marker   pk = "expired#<appId>#<openId>"         sk = "g#<grantId>#<grant expiresAt>"
//	         day, kind, expiresAt = now + expiryMarkerRetention
//
// RecordExpiry writes a marker (condition: it does not exist yet) and increments one
// counter in a single transaction, so a grant is counted exactly once however often its
// stream record is replayed, and a crash can never leave a marker without its count (or
// the reverse). Each record costs two small writes, billed double in a transaction.
// Counters are spread over expiryStatShards partition keys per app (summed on read), so
// a day's grants expiring at once do not make every transaction write one key: at 3,000
// expiries/s a counter takes 6,000 WCU/s, about 190 WCU/s on each of 32 keys, under a
// fifth of a partition's 1,000 (a shard in the sort key would not help: AWS limits each
// partition key). Both are UpdateItem actions, which is all the ExpireFunction's policy
// allows on the state table.
const (
	// StatsRetention is how long a daily expiry counter is kept after its day.
	StatsRetention = 400 * 24 * time.Hour
	// expiryMarkerRetention is how long a dedupe marker is kept. A stream keeps records
	// 24 hours, so no replay can arrive after a week.
	expiryMarkerRetention = 7 * 24 * time.Hour
	expiryStatShards      = 32
	// grantScanSegments is the parallelism of GrantInventory's scan of the grants table.
	grantScanSegments = 4
)

func expiryStatsPK(appID string, shard uint32) string {
	return "expstats#" + appID + "#" + strconv.FormatUint(uint64(shard), 10)
}

// RecordExpiry counts g as expired unspent on the UTC day of its expiry, once. It reports
// false (and no error) when g was already counted: a replayed stream record.
func (d *DB) RecordExpiry(ctx context.Context, g minipush.Grant) (bool, error) {
	day := minipush.ExpiryDayOf(g.ExpiresAt)
	h := fnv.New32a()
	h.Write([]byte(g.OpenID + "#" + g.ID))
	shard := h.Sum32() % expiryStatShards
	dayStart, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return false, fmt.Errorf("dynamo: record expiry: day %q: %w", day, err)
	}
	num := func(n int64) types.AttributeValue {
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
	}
	str := func(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
	marker := &types.Update{
		TableName: aws.String(d.Tables.State),
		Key: map[string]types.AttributeValue{
			"pk": str("expired#" + minipush.UserKey(g.AppID, g.OpenID)),
			"sk": str(fmt.Sprintf("%s%s#%d", grantSKPrefix, g.ID, epoch(g.ExpiresAt))),
		},
		ConditionExpression:       aws.String("attribute_not_exists(pk)"),
		UpdateExpression:          aws.String("SET #day = :day, #kind = :kind, #ttl = :ttl"),
		ExpressionAttributeNames:  map[string]string{"#day": "day", "#kind": "kind", "#ttl": "expiresAt"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":day": str(day), ":kind": str(string(g.Kind)), ":ttl": num(RetentionExpiry(d.Now(), expiryMarkerRetention))},
	}
	counter := &types.Update{
		TableName: aws.String(d.Tables.State),
		Key: map[string]types.AttributeValue{
			"pk": str(expiryStatsPK(g.AppID, shard)),
			"sk": str(day + "#" + string(g.Kind)),
		},
		UpdateExpression: aws.String("ADD #n :one SET #app = :app, #day = :day, #kind = :kind, #ttl = :ttl"),
		ExpressionAttributeNames: map[string]string{
			"#n": "expired", "#app": "appId", "#day": "day", "#kind": "kind", "#ttl": "expiresAt",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":one": num(1), ":app": str(g.AppID), ":day": str(day), ":kind": str(string(g.Kind)),
			":ttl": num(RetentionExpiry(dayStart, StatsRetention)),
		},
	}
	in := &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{{Update: marker}, {Update: counter}}}
	for attempt := 0; ; attempt++ {
		_, err := d.Client.TransactWriteItems(ctx, in)
		if err == nil {
			return true, nil
		}
		if markerExists(err) {
			return false, nil
		}
		if !transactionLost(err) || attempt >= optimisticRetries {
			return false, fmt.Errorf("dynamo: record expiry of %s: %w", g.AppID, err)
		}
		// Another transaction holds the counter: back off briefly and try again.
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Duration(10<<attempt) * time.Millisecond):
		}
	}
}

// markerExists reports whether a RecordExpiry transaction failed because its marker (the
// first action) already exists.
func markerExists(err error) bool {
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) || len(tce.CancellationReasons) == 0 {
		return false
	}
	return aws.ToString(tce.CancellationReasons[0].Code) == "ConditionalCheckFailed"
}

// InventoryScanLimit is how many grant items GrantInventory reads at most. With small
// items and grantScanSegments segments this is a few seconds of scanning, well inside the
// AdminFunction's 29 s; beyond it the live counts are partial and flagged Truncated.
const InventoryScanLimit = 2_000_000

// inventoryDeadlineMargin is how long before its context's deadline GrantInventory stops
// scanning, so the operator gets partial counts rather than a timeout.
const inventoryDeadlineMargin = 3 * time.Second

// GrantInventory returns an app's grant stock at the DB's now: live grants by kind, how
// many of them expire within 24 hours and 7 days, and how many grants expired unspent on
// each of the last minipush.ExpiryStatsDays UTC days.
//
// The expiry history is one Query of the app's counters. The live part scans the grants
// table (grantScanSegments parallel segments, paginated, projecting two attributes and
// filtering to the app): grants are partitioned by user, so no key or index holds "all
// grants of an app". This is accepted because the operator asks occasionally, and it is
// bounded: the scan stops after InventoryScanLimit items or shortly before ctx's deadline
// and marks the result Truncated. A per-app aggregate would avoid the scan but needs the
// grants stream's INSERT and MODIFY records too (the expire mapping filters to REMOVE).
// The AdminFunction needs dynamodb:Scan on the grants table.
func (d *DB) GrantInventory(ctx context.Context, appID string) (minipush.GrantInventory, error) {
	return d.GrantInventoryBounded(ctx, appID, InventoryScanLimit)
}

// GrantInventoryBounded is GrantInventory reading at most maxScanned grant items.
func (d *DB) GrantInventoryBounded(ctx context.Context, appID string, maxScanned int64) (minipush.GrantInventory, error) {
	now := d.Now().UTC()
	inv := minipush.GrantInventory{AppID: appID, At: now, LiveByKind: map[minipush.GrantKind]int{}}
	if err := d.liveStock(ctx, appID, now, maxScanned, &inv); err != nil {
		return minipush.GrantInventory{}, err
	}
	days, err := d.expiredPerDay(ctx, appID, now)
	if err != nil {
		return minipush.GrantInventory{}, err
	}
	inv.ExpiredPerDay = days
	return inv, nil
}

// liveStock fills the live counts of inv from a parallel scan of the grants table.
func (d *DB) liveStock(ctx context.Context, appID string, now time.Time, maxScanned int64, inv *minipush.GrantInventory) error {
	type stock struct {
		byKind      map[minipush.GrantKind]int
		in24h, in7d int
		perDay      map[string]map[minipush.GrantKind]int // expiry day -> kind -> count
		truncated   bool
	}
	results := make([]stock, grantScanSegments)
	errs := make([]error, grantScanSegments)
	var scanned atomic.Int64
	stopAt, hasDeadline := ctx.Deadline()
	stopAt = stopAt.Add(-inventoryDeadlineMargin)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for seg := range grantScanSegments {
		wg.Go(func() {
			s := stock{byKind: map[minipush.GrantKind]int{}, perDay: map[string]map[minipush.GrantKind]int{}}
			defer func() { results[seg] = s }()
			in := &dynamodb.ScanInput{
				TableName:            aws.String(d.Tables.Grants),
				Segment:              aws.Int32(int32(seg)),
				TotalSegments:        aws.Int32(grantScanSegments),
				ProjectionExpression: aws.String("#kind, #exp"),
				FilterExpression:     aws.String("#app = :app AND #exp > :now AND #uses > :zero AND begins_with(sk, :g)"),
				ExpressionAttributeNames: map[string]string{
					"#kind": "kind", "#exp": "expiresAt", "#app": "appId", "#uses": "uses",
				},
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":app":  &types.AttributeValueMemberS{Value: appID},
					":now":  &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
					":zero": &types.AttributeValueMemberN{Value: "0"},
					":g":    &types.AttributeValueMemberS{Value: grantSKPrefix},
				},
			}
			if maxScanned < 1000 {
				// Pages are 1 MB otherwise; small pages keep a small bound meaningful.
				in.Limit = aws.Int32(int32(max(maxScanned, 1)))
			}
			p := dynamodb.NewScanPaginator(d.Client, in)
			day, week := now.Add(24*time.Hour).Unix(), now.Add(7*24*time.Hour).Unix()
			// The per-day breakdown covers whole UTC days: today through ExpiringDays-1 after.
			today := now.UTC().Truncate(24 * time.Hour)
			horizon := today.AddDate(0, 0, minipush.ExpiringDays).Unix()
			for p.HasMorePages() {
				if scanned.Load() >= maxScanned || (hasDeadline && time.Now().After(stopAt)) {
					s.truncated = true
					return
				}
				page, err := p.NextPage(ctx)
				if err != nil {
					errs[seg] = fmt.Errorf("dynamo: scan grants of %s (segment %d): %w", appID, seg, err)
					cancel()
					return
				}
				scanned.Add(int64(page.ScannedCount))
				var items []struct {
					Kind      string `dynamodbav:"kind"`
					ExpiresAt int64  `dynamodbav:"expiresAt"`
				}
				if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
					errs[seg] = fmt.Errorf("dynamo: decode grants: %w", err)
					cancel()
					return
				}
				for _, it := range items {
					s.byKind[minipush.GrantKind(it.Kind)]++
					if it.ExpiresAt <= day {
						s.in24h++
					}
					if it.ExpiresAt <= week {
						s.in7d++
					}
					if it.ExpiresAt < horizon {
						day := minipush.ExpiryDayOf(time.Unix(it.ExpiresAt, 0))
						if s.perDay[day] == nil {
							s.perDay[day] = map[minipush.GrantKind]int{}
						}
						s.perDay[day][minipush.GrantKind(it.Kind)]++
					}
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	inv.ExpiringPerDay = make([]minipush.ExpiryDay, minipush.ExpiringDays)
	for i := range inv.ExpiringPerDay {
		inv.ExpiringPerDay[i] = minipush.ExpiryDay{Day: minipush.ExpiryDayOf(now.AddDate(0, 0, i)), ByKind: map[minipush.GrantKind]int{}}
	}
	for _, s := range results {
		for i := range inv.ExpiringPerDay {
			for k, n := range s.perDay[inv.ExpiringPerDay[i].Day] {
				inv.ExpiringPerDay[i].ByKind[k] += n
				inv.ExpiringPerDay[i].Total += n
			}
		}
		for k, n := range s.byKind {
			inv.LiveByKind[k] += n
			inv.Live += n
		}
		inv.Expiring24h += s.in24h
		inv.Expiring7d += s.in7d
		inv.Truncated = inv.Truncated || s.truncated
	}
	return nil
}

// expiredPerDay sums an app's expiry counters of the last ExpiryStatsDays days.
func (d *DB) expiredPerDay(ctx context.Context, appID string, now time.Time) ([]minipush.ExpiryDay, error) {
	days := make([]minipush.ExpiryDay, minipush.ExpiryStatsDays)
	index := make(map[string]int, len(days))
	for i := range days {
		day := minipush.ExpiryDayOf(now.AddDate(0, 0, i-(minipush.ExpiryStatsDays-1)))
		days[i] = minipush.ExpiryDay{Day: day, ByKind: map[minipush.GrantKind]int{}}
		index[day] = i
	}
	for shard := range uint32(expiryStatShards) {
		if err := d.expiredInShard(ctx, appID, shard, days, index); err != nil {
			return nil, err
		}
	}
	return days, nil
}

// expiredInShard adds one shard's counters of the days to days.
func (d *DB) expiredInShard(ctx context.Context, appID string, shard uint32, days []minipush.ExpiryDay, index map[string]int) error {
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:              aws.String(d.Tables.State),
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk":   &types.AttributeValueMemberS{Value: expiryStatsPK(appID, shard)},
			":from": &types.AttributeValueMemberS{Value: days[0].Day + "#"},
			":to":   &types.AttributeValueMemberS{Value: days[len(days)-1].Day + "#~"},
		},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("dynamo: expiry stats of %s: %w", appID, err)
		}
		var items []struct {
			Day     string `dynamodbav:"day"`
			Kind    string `dynamodbav:"kind"`
			Expired int    `dynamodbav:"expired"`
		}
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return fmt.Errorf("dynamo: decode expiry stats: %w", err)
		}
		for _, it := range items {
			i, ok := index[it.Day]
			if !ok {
				continue
			}
			days[i].ByKind[minipush.GrantKind(it.Kind)] += it.Expired
			days[i].Total += it.Expired
		}
	}
	return nil
}
