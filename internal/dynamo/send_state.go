package dynamo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// This file holds the campaign and run state the sender reads and updates: the
// campaign item (pk "c#<id>", sk "meta") and the run item (sk "run#<n>") with its
// status, planned count and flat counters (sent, noGrant, skipped, unknown,
// failed_<reason>). The campaign storage as a whole belongs to campaigns.go; these are
// the few reads and conditional updates send needs.

// Run statuses on the run item. The planner writes planning while it streams the
// audience and sending once every batch is queued, so "planned" is final then.
const (
	RunPlanning = "planning"
	RunSending  = "sending"
	RunDone     = "done"
)

// WatchShard is the ByDue hash key of runs in status sending: each carries dueAt = the
// epoch second of its last sign of progress (planning finished, a counter update, a
// recount that found it incomplete), so the planner finds the runs that went quiet
// (StalledRuns) with one Query and recounts them. A run whose last counter update died
// with its sender, or whose sends all finished before its planner marked it sending,
// is completed that way instead of staying sending forever. Done runs leave the index.
const WatchShard = "watch"

// DeliveriesByOutcome is the deliveries table's sparse index on outcome.
const DeliveriesByOutcome = "ByOutcome"

func campaignPK(id string) string { return "c#" + id }
func runSK(run int) string        { return "run#" + strconv.Itoa(run) }

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

// RunProgress is what a counter update reports back about a run.
type RunProgress struct {
	Status   string
	Planned  int
	Counters minipush.Counters
}

// PlanningDone reports whether the planner queued every batch of the run.
func (p RunProgress) PlanningDone() bool { return p.Status == RunSending || p.Status == RunDone }

// Complete reports whether every planned recipient reached a final state.
func (p RunProgress) Complete() bool {
	return p.PlanningDone() && p.Counters.Final() >= p.Planned
}

func failedAttr(reason string) string { return "failed_" + reason }

// AddRunCounters adds one SQS message's finalized recipients to the run item's
// counters (one UpdateItem per message, not per recipient) and returns the run's
// progress after it. ENOTFOUND when the run item does not exist.
func (d *DB) AddRunCounters(ctx context.Context, campaignID string, run int, c minipush.Counters) (RunProgress, error) {
	names := map[string]string{}
	vals := map[string]types.AttributeValue{}
	var adds []string
	add := func(attr string, n int) {
		if n == 0 {
			return
		}
		i := strconv.Itoa(len(adds))
		names["#a"+i] = attr
		vals[":v"+i] = numAV(int64(n))
		adds = append(adds, "#a"+i+" :v"+i)
	}
	add("sent", c.Sent)
	add("noGrant", c.NoGrant)
	add("skipped", c.Skipped)
	add("unknown", c.Unknown)
	for _, r := range sortedReasons(c.Failed) {
		add(failedAttr(r), c.Failed[r])
	}
	in := &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression: aws.String("attribute_exists(pk)"),
		ReturnValues:        types.ReturnValueAllNew,
	}
	if len(adds) == 0 {
		// Nothing to add: read the progress instead of writing.
		out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: in.TableName, Key: in.Key, ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return RunProgress{}, fmt.Errorf("dynamo: get run %s#%d: %w", campaignID, run, err)
		}
		if out.Item == nil {
			return RunProgress{}, minipush.Errorf(minipush.ENOTFOUND, "no run %s#%d", campaignID, run)
		}
		return runProgress(out.Item), nil
	}
	// dueAt alone (without dueShard) keeps a done run out of the watch.
	vals[":now"] = numAV(d.Now().Unix())
	in.UpdateExpression = aws.String("ADD " + strings.Join(adds, ", ") + " SET dueAt = :now")
	in.ExpressionAttributeNames = names
	in.ExpressionAttributeValues = vals
	out, err := d.Client.UpdateItem(ctx, in)
	if err != nil {
		err = conflict(err, "dynamo: add counters of run %s#%d", campaignID, run)
		if minipush.ErrorCode(err) == minipush.ECONFLICT {
			return RunProgress{}, minipush.Errorf(minipush.ENOTFOUND, "no run %s#%d", campaignID, run)
		}
		return RunProgress{}, err
	}
	return runProgress(out.Attributes), nil
}

func sortedReasons(m map[string]int) []string {
	// Deterministic expressions make requests easy to compare in logs.
	return slices.Sorted(maps.Keys(m))
}

func intAttr(av types.AttributeValue) int {
	if n, ok := av.(*types.AttributeValueMemberN); ok {
		v, _ := strconv.Atoi(n.Value)
		return v
	}
	return 0
}

// runProgress decodes the run item's status, planned count and counters.
func runProgress(item map[string]types.AttributeValue) RunProgress {
	p := RunProgress{Planned: intAttr(item["planned"])}
	if s, ok := item["status"].(*types.AttributeValueMemberS); ok {
		p.Status = s.Value
	}
	p.Counters = minipush.Counters{
		Planned: p.Planned, Sent: intAttr(item["sent"]), NoGrant: intAttr(item["noGrant"]),
		Skipped: intAttr(item["skipped"]), Unknown: intAttr(item["unknown"]),
	}
	for k, v := range item {
		if r, ok := strings.CutPrefix(k, "failed_"); ok {
			if p.Counters.Failed == nil {
				p.Counters.Failed = map[string]int{}
			}
			p.Counters.Failed[r] = intAttr(v)
		}
	}
	return p
}

// RunCounters reads a run's progress (status, planned, counters).
func (d *DB) RunCounters(ctx context.Context, campaignID string, run int) (RunProgress, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return RunProgress{}, fmt.Errorf("dynamo: get run %s#%d: %w", campaignID, run, err)
	}
	if out.Item == nil {
		return RunProgress{}, minipush.Errorf(minipush.ENOTFOUND, "no run %s#%d", campaignID, run)
	}
	return runProgress(out.Item), nil
}

// CountOutcomes recounts a run's final deliveries from the sparse ByOutcome index,
// which holds final items only: the exact summary, whatever counter update was lost.
func (d *DB) CountOutcomes(ctx context.Context, campaignID string, run int) (minipush.Counters, error) {
	var c minipush.Counters
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName: aws.String(d.Tables.Deliveries), IndexName: aws.String(DeliveriesByOutcome),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(minipush.RunKey(campaignID, run))},
		ProjectionExpression:      aws.String("outcome, reason"),
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return c, fmt.Errorf("dynamo: count outcomes of %s#%d: %w", campaignID, run, err)
		}
		for _, item := range page.Items {
			var it struct {
				Outcome string `dynamodbav:"outcome"`
				Reason  string `dynamodbav:"reason"`
			}
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return c, fmt.Errorf("dynamo: decode outcome: %w", err)
			}
			c.Count(minipush.Outcome(it.Outcome), it.Reason)
		}
	}
	return c, nil
}

// Reconcile recounts a run from its delivery items and, when planning has finished
// and every planned recipient is final, marks the run done with that exact summary
// and a one-off campaign done. It is idempotent and safe to call concurrently (the
// sender calls it when its counters say the run is complete; the planner may call it
// for runs that look idle, e.g. after a lost counter update). It returns the recount
// and whether the run is done.
func (d *DB) Reconcile(ctx context.Context, campaignID string, run int) (minipush.Counters, bool, error) {
	prog, err := d.RunCounters(ctx, campaignID, run)
	if err != nil {
		return minipush.Counters{}, false, err
	}
	// Decide what can be decided without the recount (a Query over the whole run): a
	// done run holds its recount already, and a run still being planned cannot finish.
	if prog.Status == RunDone {
		return prog.Counters, true, nil
	}
	if !prog.PlanningDone() {
		return prog.Counters, false, nil
	}
	c, err := d.CountOutcomes(ctx, campaignID, run)
	if err != nil {
		return minipush.Counters{}, false, err
	}
	c.Planned = prog.Planned
	if c.Final() < prog.Planned {
		// Still short (pending recipients wait for a retry, a campaign is paused): the
		// recount counts as activity, so a quiet run is recounted once per idle period,
		// not on every planner tick.
		return c, false, d.touchRun(ctx, campaignID, run)
	}
	if err := d.markRunDone(ctx, campaignID, run, prog, c); err != nil {
		return c, false, err
	}
	camp, err := d.SendCampaign(ctx, campaignID)
	if err != nil {
		return c, true, err
	}
	if camp.Schedule.Cron == "" {
		if err := d.markCampaignDone(ctx, campaignID); err != nil {
			return c, true, err
		}
	}
	return c, true, nil
}

// markRunDone sets the run's status to done and its counters to the recount, once:
// a concurrent reconcile that got there first is not an error.
func (d *DB) markRunDone(ctx context.Context, campaignID string, run int, prog RunProgress, c minipush.Counters) error {
	names := map[string]string{"#status": "status"}
	vals := map[string]types.AttributeValue{
		":done": strAV(RunDone), ":now": numAV(d.Now().Unix()),
		":exp": numAV(RetentionExpiry(d.Now(), d.retention())),
	}
	// A finished run is kept for the retention period, then TTL deletes it.
	sets := []string{"#status = :done", "doneAt = :now", "expiresAt = :exp"}
	const leaveWatch = " REMOVE dueShard, dueAt"
	set := func(attr string, n int) {
		i := strconv.Itoa(len(names))
		names["#s"+i] = attr
		vals[":s"+i] = numAV(int64(n))
		sets = append(sets, "#s"+i+" = :s"+i)
	}
	set("sent", c.Sent)
	set("noGrant", c.NoGrant)
	set("skipped", c.Skipped)
	set("unknown", c.Unknown)
	failed := maps.Clone(c.Failed)
	if failed == nil {
		failed = map[string]int{}
	}
	// A counter of a reason the recount no longer finds goes to zero rather than
	// staying wrong.
	for r := range prog.Counters.Failed {
		if _, ok := failed[r]; !ok {
			failed[r] = 0
		}
	}
	for _, r := range sortedReasons(failed) {
		set(failedAttr(r), failed[r])
	}
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression:       aws.String("attribute_exists(pk) AND #status <> :done"),
		UpdateExpression:          aws.String("SET " + strings.Join(sets, ", ") + leaveWatch),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	})
	return ignoreConflict(err, "dynamo: mark run %s#%d done", campaignID, run)
}

// touchRun records activity on a sending run (see WatchShard).
func (d *DB) touchRun(ctx context.Context, campaignID string, run int) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression:      aws.String("#status = :sending"),
		UpdateExpression:         aws.String("SET dueAt = :now"),
		ExpressionAttributeNames: map[string]string{"#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":sending": strAV(RunSending), ":now": numAV(d.Now().Unix()),
		},
	})
	return ignoreConflict(err, "dynamo: touch run %s#%d", campaignID, run)
}

// RunRef names one run of a campaign.
type RunRef struct {
	CampaignID string
	Run        int
}

// StalledRuns returns up to limit runs in status sending with no sign of progress since
// quietSince, quietest first: one Query of the ByDue index's watch shard.
func (d *DB) StalledRuns(ctx context.Context, quietSince time.Time, limit int) ([]RunRef, error) {
	var out []RunRef
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName: aws.String(d.Tables.Campaigns), IndexName: aws.String(CampaignsByDue),
		KeyConditionExpression: aws.String("dueShard = :watch AND dueAt <= :since"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":watch": strAV(WatchShard), ":since": numAV(quietSince.Unix()),
		},
		Limit: aws.Int32(int32(max(limit, 1))),
	})
	for p.HasMorePages() && len(out) < limit {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: stalled runs: %w", err)
		}
		for _, item := range page.Items {
			var k struct {
				PK string `dynamodbav:"pk"`
				SK string `dynamodbav:"sk"`
			}
			if err := attributevalue.UnmarshalMap(item, &k); err != nil {
				return nil, fmt.Errorf("dynamo: decode stalled run key: %w", err)
			}
			id, ok1 := strings.CutPrefix(k.PK, "c#")
			n, ok2 := strings.CutPrefix(k.SK, "run#")
			run, err := strconv.Atoi(n)
			if !ok1 || !ok2 || err != nil {
				return nil, fmt.Errorf("dynamo: stalled run with key %q/%q", k.PK, k.SK)
			}
			out = append(out, RunRef{CampaignID: id, Run: run})
		}
	}
	return out[:min(len(out), limit)], nil
}

// markCampaignDone finishes a one-off campaign whose run is done, unless an operator
// cancelled it meanwhile.
func (d *DB) markCampaignDone(ctx context.Context, id string) error {
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

// ignoreConflict is conflict for writes whose lost condition means "already done by
// someone else": nil then.
func ignoreConflict(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if err = conflict(err, format, args...); minipush.ErrorCode(err) == minipush.ECONFLICT {
		return nil
	}
	return err
}
