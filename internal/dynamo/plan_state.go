package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// This file is the planner's side of the campaign and run items (layouts in
// campaigns.go and send_state.go). While it plans run n the campaign is in status
// planning with runSeq = n and keeps dueShard/dueAt, so a planner that stopped (deadline,
// crash) finds it again on the next tick. The run item carries the plan's lease and
// cursor next to send's counters:
//
//	owner, leaseUntil   S, N: which planner holds the run, until when (epoch ms)
//	cursor              S, JSON PlanCursor: where each audience segment stopped
//	nextSeq             N, the sequence number of the next batch
//	planned             N, recipients queued so far; final once status is sending
//	appId               S
//	dueShard, dueAt     S, N: while sending, the run waits in ByDue's watch shard
//	                      (WatchShard in send_state.go)
//
// Finishing a run sets the run to sending and rolls the campaign in one transaction, so
// send's Reconcile can never see a finished run of a campaign that is still waiting.

// DueCampaign is a campaign the ByDue index says is due.
type DueCampaign struct {
	minipush.Campaign
	DueAt time.Time
}

// DueCampaigns returns up to limit campaigns whose dueAt is at or before now, earliest
// first: one Query of the sparse ByDue index (paged only when limit needs it).
func (d *DB) DueCampaigns(ctx context.Context, now time.Time, limit int) ([]DueCampaign, error) {
	var out []DueCampaign
	var start map[string]types.AttributeValue
	for {
		page, err := d.Client.Query(ctx, &dynamodb.QueryInput{
			TableName: aws.String(d.Tables.Campaigns), IndexName: aws.String(CampaignsByDue),
			KeyConditionExpression: aws.String("dueShard = :due AND dueAt <= :now"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":due": strAV(DueShard), ":now": numAV(now.Unix()),
			},
			Limit:             aws.Int32(int32(max(limit-len(out), 1))),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, fmt.Errorf("dynamo: due campaigns: %w", err)
		}
		for _, item := range page.Items {
			c, err := decodeCampaign(item)
			if err != nil {
				return nil, err
			}
			out = append(out, DueCampaign{Campaign: c.Campaign, DueAt: c.DueAt})
		}
		start = page.LastEvaluatedKey
		if len(start) == 0 || len(out) >= limit {
			return out, nil
		}
	}
}

// BeginRun starts the next run of a due, scheduled campaign: status planning and
// runSeq + 1, which is the new run's number. ECONFLICT when the campaign is no longer
// scheduled and due (another planner began it, an operator paused or cancelled it).
func (d *DB) BeginRun(ctx context.Context, id string, now time.Time) (int, error) {
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("#status = :scheduled AND dueShard = :due AND dueAt <= :now"),
		UpdateExpression:         aws.String("SET #status = :planning, runSeq = if_not_exists(runSeq, :zero) + :one, updatedAt = :now"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":scheduled": strAV(string(minipush.StatusScheduled)), ":planning": strAV(string(minipush.StatusPlanning)),
			":due": strAV(DueShard), ":now": numAV(now.Unix()), ":zero": numAV(0), ":one": numAV(1),
		},
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	if err != nil {
		return 0, conflict(err, "dynamo: begin run of campaign %s", id)
	}
	return intAttr(out.Attributes["runSeq"]), nil
}

// PlanCursor is where the planner stopped in each audience segment.
type PlanCursor struct {
	Segments []SegmentCursor `json:"segments"`
}

// SegmentCursor is one segment's position: the key to continue after, or Done.
type SegmentCursor struct {
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// PlanState is a run as the planner sees it.
type PlanState struct {
	Status  string // RunPlanning, RunSending or RunDone
	Cursor  PlanCursor
	NextSeq int
	Planned int
}

// ClaimRun takes the plan lease of a run until leaseUntil, creating the run item in
// status planning when it does not exist. The lease is granted when the run is
// unclaimed, its lease has run out (the holder crashed or stopped) or owner already
// holds it. It returns the run's state; a run that is past planning is returned as is,
// without a lease, so the caller can finish what the crashed planner left (rolling the
// campaign). ECONFLICT when another planner holds a live lease.
func (d *DB) ClaimRun(ctx context.Context, campaignID string, run int, appID, owner string, now, leaseUntil time.Time) (PlanState, error) {
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression: aws.String("attribute_not_exists(pk) OR (#status = :planning AND " +
			"(attribute_not_exists(leaseUntil) OR leaseUntil < :now OR #owner = :owner))"),
		UpdateExpression: aws.String("SET #status = if_not_exists(#status, :planning), #owner = :owner, leaseUntil = :until, " +
			"appId = :app, planned = if_not_exists(planned, :zero), nextSeq = if_not_exists(nextSeq, :zero)"),
		ExpressionAttributeNames: map[string]string{"#status": "status", "#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(RunPlanning), ":now": numAV(now.UnixMilli()), ":until": numAV(leaseUntil.UnixMilli()),
			":owner": strAV(owner), ":app": strAV(appID), ":zero": numAV(0),
		},
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return planState(out.Attributes)
	}
	err = conflict(err, "dynamo: claim run %s#%d", campaignID, run)
	if minipush.ErrorCode(err) != minipush.ECONFLICT {
		return PlanState{}, err
	}
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) && ccf.Item != nil {
		if st, derr := planState(ccf.Item); derr == nil && st.Status != RunPlanning {
			return st, nil
		}
	}
	return PlanState{}, minipush.Errorf(minipush.ECONFLICT, "run %s#%d is being planned by another planner", campaignID, run)
}

func planState(item map[string]types.AttributeValue) (PlanState, error) {
	st := PlanState{NextSeq: intAttr(item["nextSeq"]), Planned: intAttr(item["planned"])}
	if s, ok := item["status"].(*types.AttributeValueMemberS); ok {
		st.Status = s.Value
	}
	if s, ok := item["cursor"].(*types.AttributeValueMemberS); ok && s.Value != "" {
		if err := json.Unmarshal([]byte(s.Value), &st.Cursor); err != nil {
			return st, fmt.Errorf("dynamo: decode plan cursor: %w", err)
		}
	}
	return st, nil
}

// SavePlanCursor records progress after a page's batches are queued and renews (or,
// with a zero leaseUntil, releases) owner's lease. ECONFLICT when owner no longer holds
// the run: its lease ran out and another planner took over, so owner must stop.
func (d *DB) SavePlanCursor(ctx context.Context, campaignID string, run int, owner string, st PlanState, leaseUntil time.Time) error {
	cur, err := json.Marshal(st.Cursor)
	if err != nil {
		return fmt.Errorf("dynamo: encode plan cursor: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression:      aws.String("#status = :planning AND #owner = :owner"),
		UpdateExpression:         aws.String("SET #cursor = :cursor, nextSeq = :seq, planned = :planned, leaseUntil = :until"),
		ExpressionAttributeNames: map[string]string{"#status": "status", "#owner": "owner", "#cursor": "cursor"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(RunPlanning), ":owner": strAV(owner), ":cursor": strAV(string(cur)),
			":seq": numAV(int64(st.NextSeq)), ":planned": numAV(int64(st.Planned)), ":until": numAV(leaseUntil.UnixMilli()),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: save plan cursor of %s#%d", campaignID, run)
	}
	return nil
}

// FinishRun records that every batch of the run is queued (status sending, planned
// final) and rolls the campaign in one transaction: to next (status scheduled, still in
// the due index) when it recurs, or out of the due index (status sending) when next is
// zero. A run of nobody is done at once (the campaign too, for a one-off): no send
// message will ever reconcile it. ECONFLICT when owner lost the lease; when only the campaign moved (an operator
// paused or cancelled it while planning) the run is finished alone and the campaign left
// to the operator: a resumed campaign comes back through the due index and is rolled
// then (RollCampaign).
func (d *DB) FinishRun(ctx context.Context, campaignID string, run int, owner string, planned int, next time.Time, now time.Time) error {
	runUpdate := &types.Update{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression: aws.String("#status = :planning AND #owner = :owner"),
		UpdateExpression: aws.String("SET #status = :sending, planned = :planned, sendingAt = :now, " +
			"dueShard = :watch, dueAt = :now REMOVE #owner, leaseUntil, #cursor"),
		ExpressionAttributeNames: map[string]string{"#status": "status", "#owner": "owner", "#cursor": "cursor"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(RunPlanning), ":owner": strAV(owner), ":sending": strAV(RunSending),
			":planned": numAV(int64(planned)), ":now": numAV(now.Unix()),
			":watch": strAV(WatchShard),
		},
	}
	roll := rollUpdate(d.Tables.Campaigns, campaignID, run, next, now)
	if planned == 0 {
		// Nobody to send to means no send message, so no Reconcile would ever finish the
		// run: it is done now, and a one-off campaign with it.
		runUpdate.UpdateExpression = aws.String("SET #status = :done, planned = :planned, sendingAt = :now, doneAt = :now, " +
			"expiresAt = :exp REMOVE #owner, leaseUntil, #cursor")
		delete(runUpdate.ExpressionAttributeValues, ":sending")
		delete(runUpdate.ExpressionAttributeValues, ":watch")
		runUpdate.ExpressionAttributeValues[":done"] = strAV(RunDone)
		runUpdate.ExpressionAttributeValues[":exp"] = numAV(RetentionExpiry(now, d.retention()))
		if next.IsZero() {
			roll.ExpressionAttributeValues[":sending"] = strAV(string(minipush.StatusDone))
		}
	}
	_, err := d.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: runUpdate}, {Update: roll},
	}})
	if err == nil {
		return nil
	}
	if !transactionLost(err) {
		return fmt.Errorf("dynamo: finish run %s#%d: %w", campaignID, run, err)
	}
	// Find out which condition failed: the run's (lease lost) is a conflict; the
	// campaign's alone means the operator moved it, and the run still finishes.
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: runUpdate.TableName, Key: runUpdate.Key, ConditionExpression: runUpdate.ConditionExpression,
		UpdateExpression: runUpdate.UpdateExpression, ExpressionAttributeNames: runUpdate.ExpressionAttributeNames,
		ExpressionAttributeValues: runUpdate.ExpressionAttributeValues,
	})
	if err != nil {
		return conflict(err, "dynamo: finish run %s#%d", campaignID, run)
	}
	return d.RollCampaign(ctx, campaignID, run, next, now)
}

// rollUpdate moves a planning campaign past run: to next, or out of the due index.
func rollUpdate(table, id string, run int, next, now time.Time) *types.Update {
	u := &types.Update{
		TableName: aws.String(table), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("#status = :planning AND runSeq = :run"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(string(minipush.StatusPlanning)), ":run": numAV(int64(run)), ":now": numAV(now.Unix()),
		},
	}
	if next.IsZero() {
		u.UpdateExpression = aws.String("SET #status = :sending, updatedAt = :now REMOVE dueShard, dueAt, nextRunAt")
		u.ExpressionAttributeValues[":sending"] = strAV(string(minipush.StatusSending))
	} else {
		u.UpdateExpression = aws.String("SET #status = :scheduled, dueAt = :next, nextRunAt = :next, updatedAt = :now")
		u.ExpressionAttributeValues[":scheduled"] = strAV(string(minipush.StatusScheduled))
		u.ExpressionAttributeValues[":next"] = numAV(next.Unix())
	}
	return u
}

// RollCampaign is FinishRun's campaign half on its own, for a campaign whose run n is
// already past planning (its planner crashed between the two, or the operator resumed
// it). A campaign no longer planning run n is left alone, except that a one-off that
// send already marked done leaves the due index.
func (d *DB) RollCampaign(ctx context.Context, id string, run int, next, now time.Time) error {
	u := rollUpdate(d.Tables.Campaigns, id, run, next, now)
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: u.TableName, Key: u.Key, ConditionExpression: u.ConditionExpression,
		UpdateExpression: u.UpdateExpression, ExpressionAttributeNames: u.ExpressionAttributeNames,
		ExpressionAttributeValues: u.ExpressionAttributeValues,
	})
	if err == nil {
		return nil
	}
	if err = conflict(err, "dynamo: roll campaign %s", id); minipush.ErrorCode(err) != minipush.ECONFLICT || !next.IsZero() {
		if minipush.ErrorCode(err) == minipush.ECONFLICT {
			return nil // no longer planning run n: someone else rolled it, or an operator moved it
		}
		return err
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("#status = :done AND runSeq = :run AND attribute_exists(dueShard)"),
		UpdateExpression:         aws.String("REMOVE dueShard, dueAt, nextRunAt"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":done": strAV(string(minipush.StatusDone)), ":run": numAV(int64(run)),
		},
	})
	return ignoreConflict(err, "dynamo: take done campaign %s out of the due index", id)
}

// SkipOccurrence moves a scheduled campaign still due at dueAt to its next occurrence
// without starting a run: the planner skips an occurrence that is too late to send
// (schedule.LateTolerance). ECONFLICT when the campaign is no longer scheduled and due
// at dueAt (another planner began or skipped it, an operator moved it).
func (d *DB) SkipOccurrence(ctx context.Context, id string, dueAt, next, now time.Time) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("#status = :scheduled AND dueShard = :due AND dueAt = :at"),
		UpdateExpression:         aws.String("SET dueAt = :next, nextRunAt = :next, updatedAt = :now"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":scheduled": strAV(string(minipush.StatusScheduled)), ":due": strAV(DueShard),
			":at": numAV(dueAt.Unix()), ":next": numAV(next.Unix()), ":now": numAV(now.Unix()),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: skip occurrence of campaign %s", id)
	}
	return nil
}

// AudienceScan selects users of an app for a segment or reachable audience.
type AudienceScan struct {
	AppID string
	// Segment filters on region, industry and tags; nil matches every user of the app.
	Segment *minipush.Segment
	// Reachable selects, instead of Segment, the users holding a grant of Channel that is
	// spendable at Now, read from the grants table (scanReachable in audience.go).
	Reachable bool
	// Channel is the grant channel of the campaign's message (minipush.Message.Channel).
	Channel string
	Now     time.Time
	// SkipOptedOut drops users who opted out (send re-checks; this saves the message).
	SkipOptedOut bool
}

// ScanAudience reads one page of one parallel-scan segment of the users table (Limit
// users evaluated, before the filter) after the user key after ("" to start), and
// returns the openids that match and the key to continue after ("" when the segment is
// exhausted). A page may match nobody and still not be the last. A reachable audience
// scans the grants table instead, with a cursor of its own (scanReachable).
func (d *DB) ScanAudience(ctx context.Context, q AudienceScan, segment, segments int, after string, limit int) ([]string, string, error) {
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
