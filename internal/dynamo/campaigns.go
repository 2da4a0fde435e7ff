package dynamo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/schedule"
)

// This file is the operator's side of the campaign item (pk "c#<id>", sk "meta"):
//
//	id, appId, name           S
//	message, audience,        M, marshalled with the domain types' json tags, which is
//	schedule, policy            what SendCampaign decodes
//	status                    S, a minipush.CampaignStatus (ByStatus hash key)
//	createdAt, updatedAt      N, epoch seconds (createdAt is ByStatus's range key)
//	runSeq                    N, runs started so far
//	nextRunAt                 N, epoch seconds, when the next run is due (absent: none)
//	dueShard, dueAt           S, N: present only while the campaign waits for a run, so
//	                            the sparse ByDue index holds exactly the planner's work
//	rev                       N, bumped by every operator write: optimistic edits
//	pausedFrom                S, the status an operator pause interrupted
//	pausedReason              S, why send paused it (PauseCampaign); resume removes it
//	staleThrough              N, runs up to this number are stale: a resume without
//	                            catch-up found them interrupted past their occurrence
//	                            (minipush.Campaign.StaleThrough)
//
// Run items (sk "run#<n>") belong to the planner and send (runs.go); they carry no
// createdAt, so they never enter ByStatus, and listing filters on sk anyway. A sending
// run sits in ByDue under a watch shard (WatchShard), apart from due campaigns.

// Campaign indexes.
const (
	CampaignsByDue    = "ByDue"
	CampaignsByStatus = "ByStatus"
)

// DueShard is the ByDue hash key of every campaign waiting for its next run. A single
// shard keeps "what is due" one Query; the index holds only waiting campaigns, so the
// partition stays small even with many campaigns in the table.
const DueShard = "due"

func marshalJSONTags(v any) (types.AttributeValue, error) {
	return attributevalue.MarshalWithOptions(v, func(o *attributevalue.EncoderOptions) { o.TagKey = "json" })
}

// campaignItem builds a new campaign's meta item.
func campaignItem(c minipush.Campaign) (map[string]types.AttributeValue, error) {
	item := map[string]types.AttributeValue{
		"pk": strAV(campaignPK(c.ID)), "sk": strAV("meta"),
		"id": strAV(c.ID), "appId": strAV(c.AppID), "name": strAV(c.Name),
		"status":    strAV(string(c.Status)),
		"createdAt": numAV(c.CreatedAt.Unix()), "updatedAt": numAV(c.UpdatedAt.Unix()),
		"runSeq": numAV(int64(c.RunSeq)), "rev": numAV(1),
	}
	for name, v := range map[string]any{"message": c.Message, "audience": c.Audience, "schedule": c.Schedule, "policy": c.Policy} {
		av, err := marshalJSONTags(v)
		if err != nil {
			return nil, fmt.Errorf("dynamo: encode campaign %s %s: %w", c.ID, name, err)
		}
		item[name] = av
	}
	return item, nil
}

// storedCampaign is a decoded meta item with the bookkeeping the domain type lacks.
type storedCampaign struct {
	minipush.Campaign
	Rev        int
	PausedFrom minipush.CampaignStatus
	DueAt      time.Time
}

func decodeCampaign(item map[string]types.AttributeValue) (storedCampaign, error) {
	var c storedCampaign
	var it struct {
		ID         string `dynamodbav:"id"`
		AppID      string `dynamodbav:"appId"`
		Name       string `dynamodbav:"name"`
		Status     string `dynamodbav:"status"`
		CreatedAt  int64  `dynamodbav:"createdAt"`
		UpdatedAt  int64  `dynamodbav:"updatedAt"`
		NextRunAt  int64  `dynamodbav:"nextRunAt"`
		DueAt      int64  `dynamodbav:"dueAt"`
		RunSeq     int    `dynamodbav:"runSeq"`
		Rev        int    `dynamodbav:"rev"`
		PausedFrom string `dynamodbav:"pausedFrom"`
		Stale      int    `dynamodbav:"staleThrough"`
		Aborted    string `dynamodbav:"abortedReason"` // canary.go AbortRun
		Paused     string `dynamodbav:"pausedReason"`  // PauseCampaign (send)
	}
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return c, fmt.Errorf("dynamo: decode campaign: %w", err)
	}
	c.Campaign = minipush.Campaign{
		ID: it.ID, AppID: it.AppID, Name: it.Name, Status: minipush.CampaignStatus(it.Status),
		CreatedAt: fromEpoch(it.CreatedAt), UpdatedAt: fromEpoch(it.UpdatedAt), NextRunAt: fromEpoch(it.NextRunAt),
		RunSeq: it.RunSeq, StaleThrough: it.Stale, AbortedReason: it.Aborted,
	}
	if c.Status == minipush.StatusPaused {
		// Resume removes it; a paused campaign cancelled or whose run finished keeps the
		// attribute, but it no longer says why the campaign stands still.
		c.PausedReason = it.Paused
	}
	c.Rev, c.PausedFrom, c.DueAt = it.Rev, minipush.CampaignStatus(it.PausedFrom), fromEpoch(it.DueAt)
	dec := func(o *attributevalue.DecoderOptions) { o.TagKey = "json" }
	if c.ID == "" { // items written before the id attribute existed: the key names it
		if pk, ok := item["pk"].(*types.AttributeValueMemberS); ok {
			c.ID = strings.TrimPrefix(pk.Value, "c#")
		}
	}
	for name, dst := range map[string]any{"message": &c.Message, "audience": &c.Audience, "schedule": &c.Schedule, "policy": &c.Policy} {
		if av, ok := item[name]; ok {
			if err := attributevalue.UnmarshalWithOptions(av, dst, dec); err != nil {
				return c, fmt.Errorf("dynamo: decode campaign %s %s: %w", it.ID, name, err)
			}
		}
	}
	return c, nil
}

// CreateCampaign stores a new campaign as given (the caller sets its ID, status draft
// and timestamps). ECONFLICT when a campaign with that ID exists.
func (d *DB) CreateCampaign(ctx context.Context, c minipush.Campaign) error {
	item, err := campaignItem(c)
	if err != nil {
		return err
	}
	_, err = d.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.Tables.Campaigns), Item: item,
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	if err != nil {
		return conflict(err, "campaign %s exists", c.ID)
	}
	return nil
}

// GetCampaign reads a whole campaign. ENOTFOUND when there is none.
func (d *DB) GetCampaign(ctx context.Context, id string) (minipush.Campaign, error) {
	c, err := d.getCampaign(ctx, id)
	return c.Campaign, err
}

func (d *DB) getCampaign(ctx context.Context, id string) (storedCampaign, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return storedCampaign{}, fmt.Errorf("dynamo: get campaign %s: %w", id, err)
	}
	if out.Item == nil {
		return storedCampaign{}, minipush.Errorf(minipush.ENOTFOUND, "no campaign %s", id)
	}
	return decodeCampaign(out.Item)
}

// ListCampaigns returns up to limit campaigns in status, newest first, and a cursor for
// the next page ("" on the last). The cursor is opaque to callers; a cursor that does
// not belong to this listing is EINVALID. One Query of the ByStatus index per page.
func (d *DB) ListCampaigns(ctx context.Context, status minipush.CampaignStatus, limit int, cursor string) ([]minipush.Campaign, string, error) {
	limit = clampLimit(limit)
	start, err := decodeCursor(cursor, "status", string(status))
	if err != nil {
		return nil, "", err
	}
	var out []minipush.Campaign
	for {
		page, err := d.Client.Query(ctx, &dynamodb.QueryInput{
			TableName: aws.String(d.Tables.Campaigns), IndexName: aws.String(CampaignsByStatus),
			KeyConditionExpression:    aws.String("#status = :status"),
			FilterExpression:          aws.String("sk = :meta"),
			ExpressionAttributeNames:  map[string]string{"#status": "status"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":status": strAV(string(status)), ":meta": strAV("meta")},
			ScanIndexForward:          aws.Bool(false),
			Limit:                     aws.Int32(int32(limit - len(out))),
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return nil, "", fmt.Errorf("dynamo: list %s campaigns: %w", status, err)
		}
		for _, item := range page.Items {
			c, err := decodeCampaign(item)
			if err != nil {
				return nil, "", err
			}
			out = append(out, c.Campaign)
		}
		start = page.LastEvaluatedKey
		// The filter can thin a page; keep reading until it is full or the index ends.
		if len(start) == 0 || len(out) >= limit {
			break
		}
	}
	next, err := encodeCursor(start)
	return out, next, err
}

// UpdateDraft applies edit to a draft campaign and stores the result, retrying when
// another edit got in between. The edit sees the stored campaign and may change its
// name, message, audience, schedule and policy; identity, status and counters are kept.
// It returns the stored campaign, ECONFLICT when the campaign is not a draft (nothing is
// changed), ENOTFOUND when there is none, or the edit's own error.
func (d *DB) UpdateDraft(ctx context.Context, id string, edit func(*minipush.Campaign) error) (minipush.Campaign, error) {
	for range optimisticRetries {
		cur, err := d.getCampaign(ctx, id)
		if err != nil {
			return minipush.Campaign{}, err
		}
		// An aborted campaign (its canary failed) is edited like a draft, then scheduled again.
		if cur.Status != minipush.StatusDraft && cur.Status != minipush.StatusAborted {
			return minipush.Campaign{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s is %s; only drafts and aborted campaigns can be edited", id, cur.Status)
		}
		c := cur.Campaign
		if err := edit(&c); err != nil {
			return minipush.Campaign{}, err
		}
		c.UpdatedAt = d.Now().UTC().Truncate(time.Second)
		vals := map[string]types.AttributeValue{
			":draft": strAV(string(cur.Status)), ":rev": numAV(int64(cur.Rev)), ":one": numAV(1), ":zero": numAV(0),
			":name": strAV(c.Name), ":now": numAV(c.UpdatedAt.Unix()),
		}
		for name, v := range map[string]any{":message": c.Message, ":audience": c.Audience, ":schedule": c.Schedule, ":policy": c.Policy} {
			av, err := marshalJSONTags(v)
			if err != nil {
				return minipush.Campaign{}, fmt.Errorf("dynamo: encode campaign %s %s: %w", id, name, err)
			}
			vals[name] = av
		}
		_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
			ConditionExpression: aws.String("#status = :draft AND (rev = :rev OR attribute_not_exists(rev))"),
			UpdateExpression: aws.String("SET #name = :name, message = :message, audience = :audience, schedule = :schedule, " +
				"policy = :policy, updatedAt = :now, rev = if_not_exists(rev, :zero) + :one"),
			ExpressionAttributeNames:  map[string]string{"#status": "status", "#name": "name"},
			ExpressionAttributeValues: vals,
		})
		if err == nil {
			return c, nil
		}
		if err = conflict(err, "dynamo: update campaign %s", id); minipush.ErrorCode(err) != minipush.ECONFLICT {
			return minipush.Campaign{}, err
		}
	}
	return minipush.Campaign{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s is being edited concurrently; retry", id)
}

// ScheduleCampaign sets a draft's (or a still-waiting campaign's) schedule and puts it in
// the due index at next, its first run. The caller validates s and computes next.
// ECONFLICT when the campaign is past waiting (planning, sending, paused, done,
// cancelled), ENOTFOUND when there is none.
func (d *DB) ScheduleCampaign(ctx context.Context, id string, s minipush.Schedule, next time.Time) (minipush.Campaign, error) {
	sav, err := marshalJSONTags(s)
	if err != nil {
		return minipush.Campaign{}, fmt.Errorf("dynamo: encode schedule of %s: %w", id, err)
	}
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression: aws.String("attribute_exists(pk) AND #status IN (:draft, :scheduled, :aborted)"),
		UpdateExpression: aws.String("SET schedule = :schedule, #status = :scheduled, nextRunAt = :next, " +
			"dueShard = :shard, dueAt = :next, updatedAt = :now, rev = if_not_exists(rev, :zero) + :one REMOVE abortedReason"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":draft": strAV(string(minipush.StatusDraft)), ":scheduled": strAV(string(minipush.StatusScheduled)),
			":aborted":  strAV(string(minipush.StatusAborted)),
			":schedule": sav, ":next": numAV(next.Unix()), ":shard": strAV(DueShard),
			":now": numAV(d.Now().Unix()), ":one": numAV(1), ":zero": numAV(0),
		},
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err != nil {
		return minipush.Campaign{}, d.transitionError(ctx, err, id, "scheduled")
	}
	c, err := decodeCampaign(out.Attributes)
	return c.Campaign, err
}

// transitionError turns a lost status condition into ENOTFOUND or an ECONFLICT naming
// the status the campaign is in.
func (d *DB) transitionError(ctx context.Context, err error, id, verb string) error {
	err = conflict(err, "dynamo: campaign %s", id)
	if minipush.ErrorCode(err) != minipush.ECONFLICT {
		return err
	}
	cur, gerr := d.getCampaign(ctx, id)
	if gerr != nil {
		return gerr
	}
	return minipush.Errorf(minipush.ECONFLICT, "campaign %s is %s and cannot be %s", id, cur.Status, verb)
}

// CancelCampaign stops a campaign for good: it leaves the due index, and send skips the
// recipients of a cancelled campaign it has not yet sent to. ECONFLICT when it is done
// or already cancelled, ENOTFOUND when there is none.
func (d *DB) CancelCampaign(ctx context.Context, id string) (minipush.Campaign, error) {
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("attribute_exists(pk) AND NOT #status IN (:done, :cancelled)"),
		UpdateExpression:         aws.String("SET #status = :cancelled, updatedAt = :now, rev = if_not_exists(rev, :zero) + :one REMOVE dueShard, dueAt, nextRunAt"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":done": strAV(string(minipush.StatusDone)), ":cancelled": strAV(string(minipush.StatusCancelled)),
			":now": numAV(d.Now().Unix()), ":one": numAV(1), ":zero": numAV(0),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		return minipush.Campaign{}, d.transitionError(ctx, err, id, "cancelled")
	}
	c, err := decodeCampaign(out.Attributes)
	return c.Campaign, err
}

// pausable are the statuses an operator may pause.
var pausable = []minipush.CampaignStatus{minipush.StatusScheduled, minipush.StatusPlanning, minipush.StatusSending}

// OperatorPause pauses a scheduled, planning or sending campaign: it leaves the due
// index (dueAt is kept for resume) and remembers the status it interrupted. Send stops
// at its next batch. ECONFLICT in any other status, ENOTFOUND when there is none.
func (d *DB) OperatorPause(ctx context.Context, id string) (minipush.Campaign, error) {
	for range optimisticRetries {
		cur, err := d.getCampaign(ctx, id)
		if err != nil {
			return minipush.Campaign{}, err
		}
		if !slices.Contains(pausable, cur.Status) {
			return minipush.Campaign{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s is %s and cannot be paused", id, cur.Status)
		}
		out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
			ConditionExpression:      aws.String("#status = :from"),
			UpdateExpression:         aws.String("SET #status = :paused, pausedFrom = :from, updatedAt = :now, rev = if_not_exists(rev, :zero) + :one REMOVE dueShard"),
			ExpressionAttributeNames: map[string]string{"#status": "status"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":from": strAV(string(cur.Status)), ":paused": strAV(string(minipush.StatusPaused)),
				":now": numAV(d.Now().Unix()), ":one": numAV(1), ":zero": numAV(0),
			},
			ReturnValues: types.ReturnValueAllNew,
		})
		if err == nil {
			c, err := decodeCampaign(out.Attributes)
			return c.Campaign, err
		}
		if err = conflict(err, "dynamo: pause campaign %s", id); minipush.ErrorCode(err) != minipush.ECONFLICT {
			return minipush.Campaign{}, err
		}
	}
	return minipush.Campaign{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s changed concurrently; retry", id)
}

// ResumeCampaign returns a paused campaign to the status its pause interrupted and, when
// it resumes to scheduled or planning with a dueAt, to the due index. A campaign paused
// without a pausedFrom (by send before it recorded one) resumes to its current run's
// status (planning or sending) or, with no unfinished run, to scheduled.
//
// A recurring campaign never resumes to sending: between runs it waits scheduled for
// its next occurrence, and a run still sending goes on by itself (send only holds the
// batches of a paused campaign). When its due occurrence was missed by more than
// schedule.LateTolerance it moves to the next occurrence after now, unless catchUp
// asks to run once now (one run, however many occurrences were missed). Likewise a
// current run that is not done and whose occurrence was missed (send held its batches,
// or the pause stopped its planning) is marked stale in the same write, unless catchUp:
// send then skips its pending recipients and the planner closes it with what it had
// queued, so yesterday's 10:00 reminder does not go out at 03:00 nor take the day's
// one-per-day slot from today's. A one-off campaign's only occurrence is never skipped.
// ECONFLICT when it is not paused, ENOTFOUND when there is none.
func (d *DB) ResumeCampaign(ctx context.Context, id string, catchUp bool) (minipush.Campaign, error) {
	for range optimisticRetries {
		cur, err := d.getCampaign(ctx, id)
		if err != nil {
			return minipush.Campaign{}, err
		}
		if cur.Status != minipush.StatusPaused {
			return minipush.Campaign{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s is %s, not paused", id, cur.Status)
		}
		recurring := cur.Schedule.Cron != ""
		// The current run, read when the pause recorded no status to return to or when
		// a recurring run may have to be marked stale.
		var prog minipush.RunProgress
		if cur.RunSeq > 0 && (cur.PausedFrom == "" || (recurring && !catchUp)) {
			prog, err = d.RunCounters(ctx, id, cur.RunSeq)
			if err != nil && minipush.ErrorCode(err) != minipush.ENOTFOUND {
				return minipush.Campaign{}, err
			}
		}
		to := cur.PausedFrom
		if to == "" {
			to = minipush.StatusScheduled
			switch prog.Status {
			case minipush.RunPlanning:
				to = minipush.StatusPlanning
			case minipush.RunSending:
				to = minipush.StatusSending
			}
		}
		now := d.Now()
		if recurring && to == minipush.StatusSending {
			to = minipush.StatusScheduled
		}
		set := "SET #status = :to, updatedAt = :now, rev = if_not_exists(rev, :zero) + :one"
		vals := map[string]types.AttributeValue{
			":paused": strAV(string(minipush.StatusPaused)), ":rev": numAV(int64(cur.Rev)), ":to": strAV(string(to)),
			":now": numAV(now.Unix()), ":one": numAV(1), ":zero": numAV(0),
		}
		if recurring && !catchUp && cur.RunSeq > cur.StaleThrough && prog.Status != "" && prog.Status != minipush.RunDone &&
			!prog.Occurrence.IsZero() && schedule.Missed(prog.Occurrence, now) {
			set += ", staleThrough = :stale"
			vals[":stale"] = numAV(int64(cur.RunSeq))
		}
		if recurring && to == minipush.StatusScheduled && (cur.DueAt.IsZero() || schedule.Missed(cur.DueAt, now)) {
			due := now
			if !catchUp {
				next, ok, err := schedule.Next(minipush.Schedule{Cron: cur.Schedule.Cron, TimeZone: cur.Schedule.TimeZone}, now)
				if err != nil || !ok {
					return minipush.Campaign{}, fmt.Errorf("dynamo: resume campaign %s: next occurrence: %w", id, err)
				}
				due = next
			}
			cur.DueAt = due
			set += ", dueAt = :due, nextRunAt = :due"
			vals[":due"] = numAV(due.Unix())
		}
		// Only a campaign waiting for a run or still planning one is the planner's work;
		// a sending run's batches are all queued already.
		if !cur.DueAt.IsZero() && (to == minipush.StatusScheduled || to == minipush.StatusPlanning) {
			set += ", dueShard = :shard"
			vals[":shard"] = strAV(DueShard)
		}
		out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
			ConditionExpression:       aws.String("#status = :paused AND (rev = :rev OR attribute_not_exists(rev))"),
			UpdateExpression:          aws.String(set + " REMOVE pausedFrom, pausedReason"),
			ExpressionAttributeNames:  map[string]string{"#status": "status"},
			ExpressionAttributeValues: vals,
			ReturnValues:              types.ReturnValueAllNew,
		})
		if err == nil {
			c, err := decodeCampaign(out.Attributes)
			return c.Campaign, err
		}
		if err = conflict(err, "dynamo: resume campaign %s", id); minipush.ErrorCode(err) != minipush.ECONFLICT {
			return minipush.Campaign{}, err
		}
	}
	return minipush.Campaign{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s changed concurrently; retry", id)
}

// DueCampaigns returns up to limit campaigns whose dueAt is at or before now, earliest
// first: one Query of the sparse ByDue index (paged only when limit needs it).
func (d *DB) DueCampaigns(ctx context.Context, now time.Time, limit int) ([]minipush.DueCampaign, error) {
	var out []minipush.DueCampaign
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
			out = append(out, minipush.DueCampaign{Campaign: c.Campaign, DueAt: c.DueAt})
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

func campaignPK(id string) string { return "c#" + id }

func campaignKey(id, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": strAV(campaignPK(id)), "sk": strAV(sk)}
}

// SendCampaign reads what send needs of a campaign: app, message, schedule, policy
// and status. ENOTFOUND when there is no such campaign. It is GetCampaign under the
// name send's Store interface asks for: one decoder for the campaign item.
func (d *DB) SendCampaign(ctx context.Context, id string) (minipush.Campaign, error) {
	return d.GetCampaign(ctx, id)
}

// PauseCampaign pauses a campaign that is planning or sending (or, for a recurring
// campaign whose run is still sending, scheduled), because WeChat answered in a way
// that fails every recipient (bad template, quota, unauthorised). Like an operator's
// pause it records the status it interrupted in pausedFrom, so resume returns a
// recurring campaign to its schedule rather than to a status the planner ignores, and
// it leaves the due index, so a paused campaign takes no place in the planner's Query.
// ECONFLICT when the campaign is in another status (already paused, cancelled, done).
func (d *DB) PauseCampaign(ctx context.Context, id, reason string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("#status IN (:planning, :sending, :scheduled)"),
		UpdateExpression:         aws.String("SET pausedFrom = #status, #status = :paused, pausedReason = :reason, updatedAt = :now REMOVE dueShard"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(string(minipush.StatusPlanning)), ":sending": strAV(string(minipush.StatusSending)),
			":scheduled": strAV(string(minipush.StatusScheduled)), ":paused": strAV(string(minipush.StatusPaused)),
			":reason": strAV(reason), ":now": numAV(d.Now().Unix()),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: pause campaign %s", id)
	}
	return nil
}

// MarkCampaignDone finishes a one-off campaign whose run is done, unless an operator
// cancelled it meanwhile.
func (d *DB) MarkCampaignDone(ctx context.Context, id string) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(id, "meta"),
		ConditionExpression:      aws.String("#status IN (:planning, :sending, :paused)"),
		UpdateExpression:         aws.String("SET #status = :done, updatedAt = :now"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(string(minipush.StatusPlanning)), ":sending": strAV(string(minipush.StatusSending)),
			":paused": strAV(string(minipush.StatusPaused)), ":done": strAV(string(minipush.StatusDone)),
			":now": numAV(d.Now().Unix()),
		},
	})
	return ignoreConflict(err, "dynamo: mark campaign %s done", id)
}
