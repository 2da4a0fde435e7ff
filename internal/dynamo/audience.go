package dynamo

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// The audience table holds a list campaign's explicit recipients: pk = campaign id (bare,
// without the campaigns table's "c#"), sk = openid, nothing else. The key is the whole
// item, so uploading an openid twice (in one page or across pages) stores it once, and
// the planner streams a campaign's audience in openid order with one Query per page.

// AddAudience stores one uploaded page of a campaign's recipients and returns how many
// distinct openids the page held. Duplicates, within the page or with earlier pages,
// collapse onto one item. Writes go 25 per BatchWriteItem, up to 8 calls at once;
// unprocessed items are retried with backoff (batchWrite). On an error
// some of the page may be stored; uploading the page again is safe.
func (d *DB) AddAudience(ctx context.Context, campaignID string, openIDs []string) (int, error) {
	seen := make(map[string]struct{}, len(openIDs))
	reqs := make([]types.WriteRequest, 0, len(openIDs))
	for _, id := range openIDs {
		if _, dup := seen[id]; dup {
			continue // BatchWriteItem refuses two writes of one key in a request
		}
		seen[id] = struct{}{}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
			"pk": strAV(campaignID), "sk": strAV(id),
		}}})
	}
	// A 5,000 page is 200 calls: run them audienceParallelism at a time so one upload
	// stays well inside the HTTP API's 30 s, stopping at the first failure.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, audienceParallelism)
	for start := 0; start < len(reqs) && ctx.Err() == nil; start += batchWriteSize {
		chunk := reqs[start:min(start+batchWriteSize, len(reqs))]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.batchWrite(ctx, d.Tables.Audience, chunk); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, fmt.Errorf("dynamo: add audience of %s: %w", campaignID, err)
	}
	return len(reqs), nil
}

// audienceParallelism bounds the concurrent BatchWriteItems of one audience page.
const audienceParallelism = 8

// AudiencePage returns up to limit openids of a list campaign after startAfter (""
// for the first page), in openid order, and the openid to start the next page after
// ("" when this was the last page). One strongly consistent Query per call.
//
// The page starts with the key condition sk > startAfter rather than an
// ExclusiveStartKey: DynamoDB reads both the same way, but DynamoDB Local walks the
// partition from its start to an ExclusiveStartKey, so with it every page of a 1M
// audience got slower the deeper the cursor (15 ms at 1k, 140 ms at 190k).
func (d *DB) AudiencePage(ctx context.Context, campaignID, startAfter string, limit int) ([]string, string, error) {
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(d.Tables.Audience),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(campaignID)},
		ProjectionExpression:      aws.String("sk"),
		ConsistentRead:            aws.Bool(true),
		Limit:                     aws.Int32(int32(max(limit, 1))),
	}
	if startAfter != "" {
		in.KeyConditionExpression = aws.String("pk = :pk AND sk > :after")
		in.ExpressionAttributeValues[":after"] = strAV(startAfter)
	}
	out, err := d.Client.Query(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("dynamo: audience page of %s: %w", campaignID, err)
	}
	ids := make([]string, 0, len(out.Items))
	for _, item := range out.Items {
		if s, ok := item["sk"].(*types.AttributeValueMemberS); ok {
			ids = append(ids, s.Value)
		}
	}
	next := ""
	if len(out.LastEvaluatedKey) > 0 && len(ids) > 0 {
		next = ids[len(ids)-1]
	}
	return ids, next, nil
}

// A reachable audience is read from the grants table, not the users table: the users
// item's inventory (liveGrants, latestExpiry) counts every channel, so a user holding only
// another template's subscribe grants, or only form grants for a subscribe message, looked
// reachable and ended no_grant. The grants table is keyed pk = appid#openid,
// sk = g#<channel>#<expiry>#<id>, and every grant carries appId, uses and expiresAt, so a
// Scan filtered on those keeps exactly the spendable grants of one
// app's channel. The Scan still reads (and is billed for) every item of the table; what
// the filter saves is the planned recipients that could only end no_grant.
//
// A user holding several matching grants must be planned once. A Scan returns an item
// collection (one pk) contiguously, sorted by sk, and always in one parallel-scan segment,
// so remembering the last user planned is enough to drop repeats, across page boundaries
// too: the cursor carries it. Memory stays at one page whatever the audience's size.

// reachableCursor is where a reachable scan segment stopped.
type reachableCursor struct {
	PK string `json:"pk"` // the grants table key to continue after
	SK string `json:"sk"`
	// Last is the user key (grants pk) last planned: the next page may begin with the
	// rest of that user's grants, which must not plan them again.
	Last string `json:"last,omitempty"`
}

// scanReachable is ScanAudience for a reachable audience: one page of one parallel-scan
// segment of the grants table (limit grants evaluated), the openids of users of q.AppID
// holding a grant of q.Channel that is unexpired at q.Now with uses left (a leased grant
// counts: another run may be spending it, but may also find it gone), each user once, and the cursor to
// continue after ("" when the segment is done). With q.SkipOptedOut the page's users are
// read back (one BatchGetItem per 100) and those who opted out are dropped.
func (d *DB) scanReachable(ctx context.Context, q minipush.AudienceScan, segment, segments int, after string, limit int) ([]string, string, error) {
	if q.AppID == "" || q.Channel == "" {
		return nil, "", fmt.Errorf("dynamo: reachable audience needs an app and a channel")
	}
	var cur reachableCursor
	if after != "" {
		if err := json.Unmarshal([]byte(after), &cur); err != nil || cur.PK == "" || cur.SK == "" {
			return nil, "", fmt.Errorf("dynamo: reachable audience cursor of %s does not parse", q.AppID)
		}
	}
	in := &dynamodb.ScanInput{
		TableName: aws.String(d.Tables.Grants), Segment: aws.Int32(int32(segment)), TotalSegments: aws.Int32(int32(segments)),
		FilterExpression: aws.String("appId = :app AND begins_with(sk, :channel) AND expiresAt > :now AND uses > :zero"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			// The "#" closes the channel: template "T1" must not match "T10".
			":app": strAV(q.AppID), ":channel": strAV(grantSKPrefix + q.Channel + "#"), ":now": numAV(q.Now.Unix()), ":zero": numAV(0),
		},
		ProjectionExpression: aws.String("pk, openId"),
		Limit:                aws.Int32(int32(max(limit, 1))),
	}
	if after != "" {
		in.ExclusiveStartKey = map[string]types.AttributeValue{"pk": strAV(cur.PK), "sk": strAV(cur.SK)}
	}
	out, err := d.Client.Scan(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("dynamo: scan reachable audience of %s segment %d: %w", q.AppID, segment, err)
	}
	var ids, keys []string
	for _, item := range out.Items {
		pk, _ := item["pk"].(*types.AttributeValueMemberS)
		openID, _ := item["openId"].(*types.AttributeValueMemberS)
		if pk == nil || openID == nil || openID.Value == "" || pk.Value == cur.Last {
			continue
		}
		cur.Last = pk.Value
		ids = append(ids, openID.Value)
		keys = append(keys, pk.Value)
	}
	if q.SkipOptedOut && len(ids) > 0 {
		if ids, err = d.dropOptedOut(ctx, ids, keys); err != nil {
			return nil, "", err
		}
	}
	next := ""
	pk, _ := out.LastEvaluatedKey["pk"].(*types.AttributeValueMemberS)
	sk, _ := out.LastEvaluatedKey["sk"].(*types.AttributeValueMemberS)
	if pk != nil && sk != nil {
		cur.PK, cur.SK = pk.Value, sk.Value
		b, err := json.Marshal(cur)
		if err != nil {
			return nil, "", fmt.Errorf("dynamo: encode reachable audience cursor: %w", err)
		}
		next = string(b)
	}
	return ids, next, nil
}

// dropOptedOut returns ids without the users whose users item says optOut; keys[i] is
// ids[i]'s user key. A user without an item (never logged in, never given attributes) has
// not opted out.
func (d *DB) dropOptedOut(ctx context.Context, ids, keys []string) ([]string, error) {
	reqs := make([]map[string]types.AttributeValue, len(keys))
	for i, k := range keys {
		reqs[i] = pkKey(k)
	}
	out := map[string]bool{}
	err := d.batchGet(ctx, d.Tables.Users, "pk, optOut", nil, reqs, func(item map[string]types.AttributeValue) error {
		pk, _ := item["pk"].(*types.AttributeValueMemberS)
		if b, ok := item["optOut"].(*types.AttributeValueMemberBOOL); ok && b.Value && pk != nil {
			out[pk.Value] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kept := ids[:0]
	for i, id := range ids {
		if !out[keys[i]] {
			kept = append(kept, id)
		}
	}
	return kept, nil
}

// ScanAudience reads one page of one parallel-scan segment of the users table (Limit
// users evaluated, before the filter) after the user key after ("" to start), and
// returns the openids that match and the key to continue after ("" when the segment is
// exhausted). A page may match nobody and still not be the last. A reachable audience
// scans the grants table instead, with a cursor of its own (scanReachable).
func (d *DB) ScanAudience(ctx context.Context, q minipush.AudienceScan, segment, segments int, after string, limit int) ([]string, string, error) {
	if q.Reachable {
		return d.scanReachable(ctx, q, segment, segments, after, limit)
	}
	filter := []string{"appId = :app"}
	names := map[string]string{}
	vals := map[string]types.AttributeValue{":app": strAV(q.AppID)}
	in := func(attr string, values []string) {
		if len(values) == 0 {
			return
		}
		names["#"+attr] = attr
		ph := make([]string, len(values))
		for i, v := range values {
			ph[i] = ":" + attr + strconv.Itoa(i)
			vals[ph[i]] = strAV(v)
		}
		filter = append(filter, "#"+attr+" IN ("+strings.Join(ph, ", ")+")")
	}
	if s := q.Segment; s != nil {
		in("region", s.Regions)
		in("industry", s.Industries)
		for i, t := range s.Tags {
			ph := ":tag" + strconv.Itoa(i)
			vals[ph] = strAV(t)
			filter = append(filter, "contains(tags, "+ph+")")
		}
	}
	if q.SkipOptedOut {
		vals[":true"] = &types.AttributeValueMemberBOOL{Value: true}
		filter = append(filter, "(attribute_not_exists(optOut) OR optOut <> :true)")
	}
	input := &dynamodb.ScanInput{
		TableName: aws.String(d.Tables.Users), Segment: aws.Int32(int32(segment)), TotalSegments: aws.Int32(int32(segments)),
		FilterExpression: aws.String(strings.Join(filter, " AND ")), ExpressionAttributeValues: vals,
		ProjectionExpression: aws.String("pk, openId"), Limit: aws.Int32(int32(max(limit, 1))),
	}
	if len(names) > 0 {
		input.ExpressionAttributeNames = names
	}
	if after != "" {
		input.ExclusiveStartKey = pkKey(after)
	}
	out, err := d.Client.Scan(ctx, input)
	if err != nil {
		return nil, "", fmt.Errorf("dynamo: scan audience of %s segment %d: %w", q.AppID, segment, err)
	}
	ids := make([]string, 0, len(out.Items))
	for _, item := range out.Items {
		if s, ok := item["openId"].(*types.AttributeValueMemberS); ok && s.Value != "" {
			ids = append(ids, s.Value)
		}
	}
	next := ""
	if s, ok := out.LastEvaluatedKey["pk"].(*types.AttributeValueMemberS); ok {
		next = s.Value
	}
	return ids, next, nil
}
