package dynamo

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
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

// A run of a campaign is one item of the campaigns table, next to the campaign's meta
// item (campaigns.go): pk "c#<id>", sk "run#<n>". The planner creates it and holds it
// while it streams the audience; send adds its counters; whoever finds every planned
// recipient final marks it done:
//
//	status              S, planning, sending or done
//	owner, leaseUntil   S, N: which planner holds the run, until when (epoch ms)
//	cursor              S, JSON PlanCursor: where each audience segment stopped
//	nextSeq             N, the sequence number of the next batch
//	planned             N, recipients queued so far; final once status is sending
//	appId               S
//	occurrence          N, epoch seconds: the due time the run was started for, so a
//	                      resume can tell a run interrupted past its occurrence
//	                      (ResumeCampaign)
//	heldUntil           N, epoch seconds: the end of the quiet hours the planner
//	                      stopped queueing for (absent when not held)
//	sent, noGrant, skipped, unknown, holdout (of skipped), failed_<reason>
//	                    N, flat counters, ADDed once per send invocation
//	progressAt          N, epoch seconds: the last sign of progress (planning
//	                      finished, a counter update); no index key, see WatchShard
//	sendingAt, doneAt   N, epoch seconds
//	expiresAt           N, TTL, set when the run is done (RetentionExpiry)
//
// While it plans run n the campaign is in status planning with runSeq = n and keeps
// dueShard/dueAt, so a planner that stopped (deadline, crash) finds it again on the next
// tick. Finishing a run sets the run to sending and rolls the campaign in one
// transaction, so minipush.Reconcile can never see a finished run of a campaign that is
// still waiting.
//
// While a run is sending, a small watch item next to it (pk "c#<id>", sk "w#<n>":
// dueShard, dueAt and nothing else) waits in the ByDue index; it is written when the run
// starts sending, when a quiet run is recounted or found active, and deleted when the
// run is done.

// WatchShard is the ByDue hash key of a run in status sending: each carries dueAt = the
// epoch second of its last sign of progress (planning finished, a counter update, a
// recount that found it incomplete), so the planner finds the runs that went quiet
// (StalledRuns) and recounts them. A run whose last counter update died with its sender,
// or whose sends all finished before its planner marked it sending, is completed that
// way instead of staying sending forever. Done runs leave the index.
//
// The index keys sit on the run's watch item, not on the run item: the index projects
// ALL, so with the keys on the run item every counter update rewrote its index entry,
// a second write unit per update (issue #12's send budget is 3.0 WRU a message). The
// counters' progressAt is not an index key; StalledRuns reads it for the runs whose
// watch entry went quiet and moves the entry up to it when the run was active after all,
// so the watch is exact with one write per run per quiet period instead of one per
// counter update. The watch entries sit under WatchShards hash keys, picked by campaign
// and run, since under one key the scale bench throttled it with three campaigns, and
// StalledRuns reads them all.
func WatchShard(campaignID string, run int) string {
	h := fnv.New32a()
	h.Write([]byte(campaignID + "#" + strconv.Itoa(run)))
	return watchShardKey(int(h.Sum32() % WatchShards))
}

// WatchShards is how many ByDue hash keys the sending runs are spread over.
const WatchShards = 8

func watchShardKey(n int) string { return "watch#" + strconv.Itoa(n) }

func runSK(run int) string { return "run#" + strconv.Itoa(run) }

// runOfSK is runSK's inverse: the run number of a run item's (or a run's receipt
// counter's) sort key, an error for any other item's.
func runOfSK(sk string) (int, error) { return strconv.Atoi(strings.TrimPrefix(sk, "run#")) }

// watchSK is the sort key of a sending run's watch item.
func watchSK(run int) string { return "w#" + strconv.Itoa(run) }

// watchItem is the watch item of a run starting to send at now.
func watchItem(campaignID string, run int, now time.Time) map[string]types.AttributeValue {
	it := campaignKey(campaignID, watchSK(run))
	it["dueShard"] = strAV(WatchShard(campaignID, run))
	it["dueAt"] = numAV(now.Unix())
	return it
}

// RunItemKey is the key of a run's item in the campaigns table, for a test that reads an
// attribute no method returns (the retention TTL) without retyping the layout.
func RunItemKey(campaignID string, run int) map[string]types.AttributeValue {
	return campaignKey(campaignID, runSK(run))
}

// ClaimRun takes the plan lease of a run until leaseUntil, creating the run item in
// status planning when it does not exist. The lease is granted when the run is
// unclaimed, its lease has run out (the holder crashed or stopped) or owner already
// holds it. The run records occurrence (the due time it is planned for; zero: unknown)
// the first time it is claimed. It returns the run's state; a run that is past planning is returned as
// is, without a lease, so the caller can finish what the crashed planner left (rolling
// the campaign). ECONFLICT when another planner holds a live lease.
func (d *DB) ClaimRun(ctx context.Context, campaignID string, run int, appID, owner string, occurrence, now, leaseUntil time.Time) (minipush.PlanState, error) {
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression: aws.String("attribute_not_exists(pk) OR (#status = :planning AND " +
			"(attribute_not_exists(leaseUntil) OR leaseUntil < :now OR #owner = :owner))"),
		UpdateExpression: aws.String("SET #status = if_not_exists(#status, :planning), #owner = :owner, leaseUntil = :until, " +
			"appId = :app, planned = if_not_exists(planned, :zero), nextSeq = if_not_exists(nextSeq, :zero), " +
			"occurrence = if_not_exists(occurrence, :occ)"),
		ExpressionAttributeNames: map[string]string{"#status": "status", "#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(string(minipush.RunPlanning)), ":now": numAV(now.UnixMilli()), ":until": numAV(leaseUntil.UnixMilli()),
			":owner": strAV(owner), ":app": strAV(appID), ":zero": numAV(0), ":occ": numAV(max(occurrence.Unix(), 0)),
		},
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return planState(out.Attributes)
	}
	err = conflict(err, "dynamo: claim run %s#%d", campaignID, run)
	if minipush.ErrorCode(err) != minipush.ECONFLICT {
		return minipush.PlanState{}, err
	}
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) && ccf.Item != nil {
		if st, derr := planState(ccf.Item); derr == nil && st.Status != minipush.RunPlanning {
			return st, nil
		}
	}
	return minipush.PlanState{}, minipush.Errorf(minipush.ECONFLICT, "run %s#%d is being planned by another planner", campaignID, run)
}

func planState(item map[string]types.AttributeValue) (minipush.PlanState, error) {
	st := minipush.PlanState{NextSeq: intAttr(item["nextSeq"]), Planned: intAttr(item["planned"])}
	if s, ok := item["status"].(*types.AttributeValueMemberS); ok {
		st.Status = minipush.RunStatus(s.Value)
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
func (d *DB) SavePlanCursor(ctx context.Context, campaignID string, run int, owner string, st minipush.PlanState, leaseUntil time.Time) error {
	cur, err := json.Marshal(st.Cursor)
	if err != nil {
		return fmt.Errorf("dynamo: encode plan cursor: %w", err)
	}
	update := "SET #cursor = :cursor, nextSeq = :seq, planned = :planned, leaseUntil = :until"
	vals := map[string]types.AttributeValue{
		":planning": strAV(string(minipush.RunPlanning)), ":owner": strAV(owner), ":cursor": strAV(string(cur)),
		":seq": numAV(int64(st.NextSeq)), ":planned": numAV(int64(st.Planned)), ":until": numAV(leaseUntil.UnixMilli()),
	}
	if st.HeldUntil.IsZero() {
		update += " REMOVE heldUntil" // queued again (removing an absent attribute costs nothing more)
	} else {
		update += ", heldUntil = :held"
		vals[":held"] = numAV(st.HeldUntil.Unix())
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression:       aws.String("#status = :planning AND #owner = :owner"),
		UpdateExpression:          aws.String(update),
		ExpressionAttributeNames:  map[string]string{"#status": "status", "#owner": "owner", "#cursor": "cursor"},
		ExpressionAttributeValues: vals,
	})
	if err != nil {
		return conflict(err, "dynamo: save plan cursor of %s#%d", campaignID, run)
	}
	return nil
}

// sendingRunUpdate moves a run its planner (owner) holds from planning to sending with
// its planned count (FinishRun, AbortRun); set adds ", name = :value" assignments,
// whose values the caller adds.
func (d *DB) sendingRunUpdate(campaignID string, run int, owner string, planned int, now time.Time, set string) *types.Update {
	return &types.Update{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression: aws.String("#status = :planning AND #owner = :owner"),
		UpdateExpression: aws.String("SET #status = :sending, planned = :planned, sendingAt = :now, " +
			"progressAt = :now" + set + " REMOVE #owner, leaseUntil, #cursor, heldUntil"),
		ExpressionAttributeNames: map[string]string{"#status": "status", "#owner": "owner", "#cursor": "cursor"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":planning": strAV(string(minipush.RunPlanning)), ":owner": strAV(owner), ":sending": strAV(string(minipush.RunSending)),
			":planned": numAV(int64(planned)), ":now": numAV(now.Unix()),
		},
	}
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
	runUpdate := d.sendingRunUpdate(campaignID, run, owner, planned, now, "")
	// The watch item goes in with the status: a sending run without one would never be
	// recounted if its last counter update were lost.
	watch := &types.Put{TableName: aws.String(d.Tables.Campaigns), Item: watchItem(campaignID, run, now)}
	roll := rollUpdate(d.Tables.Campaigns, campaignID, run, next, now)
	if planned == 0 {
		watch = nil
		// Nobody to send to means no send message, so no Reconcile would ever finish the
		// run: it is done now, and a one-off campaign with it.
		runUpdate.UpdateExpression = aws.String("SET #status = :done, planned = :planned, sendingAt = :now, doneAt = :now, " +
			"expiresAt = :exp REMOVE #owner, leaseUntil, #cursor")
		delete(runUpdate.ExpressionAttributeValues, ":sending")
		runUpdate.ExpressionAttributeValues[":done"] = strAV(string(minipush.RunDone))
		runUpdate.ExpressionAttributeValues[":exp"] = numAV(RetentionExpiry(now, d.retention()))
		if next.IsZero() {
			roll.ExpressionAttributeValues[":sending"] = strAV(string(minipush.StatusDone))
		}
	}
	items := []types.TransactWriteItem{{Update: runUpdate}, {Update: roll}}
	if watch != nil {
		items = append(items, types.TransactWriteItem{Put: watch})
	}
	_, err := d.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	if err == nil {
		return nil
	}
	if !transactionLost(err) {
		return fmt.Errorf("dynamo: finish run %s#%d: %w", campaignID, run, err)
	}
	// Find out which condition failed: the run's (lease lost) is a conflict; the
	// campaign's alone means the operator moved it, and the run still finishes, with its
	// watch item.
	if watch != nil {
		_, err = d.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Update: runUpdate}, {Put: watch},
		}})
		if transactionLost(err) {
			err = minipush.Errorf(minipush.ECONFLICT, "run %s#%d: plan lease lost", campaignID, run)
		}
	} else {
		_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: runUpdate.TableName, Key: runUpdate.Key, ConditionExpression: runUpdate.ConditionExpression,
			UpdateExpression: runUpdate.UpdateExpression, ExpressionAttributeNames: runUpdate.ExpressionAttributeNames,
			ExpressionAttributeValues: runUpdate.ExpressionAttributeValues,
		})
	}
	if err != nil {
		return conflict(err, "dynamo: finish run %s#%d", campaignID, run)
	}
	return d.RollCampaign(ctx, campaignID, run, next, now)
}

func failedAttr(reason string) string { return "failed_" + reason }

// attrCount is one counter attribute of a run item and its value.
type attrCount struct {
	attr string
	n    int
}

// counterAttrs lists the run item's counter attributes for c in a stable order, a
// failure reason as failed_<reason>.
func counterAttrs(c minipush.Counters) []attrCount {
	out := []attrCount{{"sent", c.Sent}, {"noGrant", c.NoGrant}, {"skipped", c.Skipped}, {"unknown", c.Unknown}, {"holdout", c.Holdout},
		{"grantsSaved", c.GrantsSaved}, {"csFallbacks", c.CSFallbacks}}
	for _, r := range sortedReasons(c.Failed) {
		out = append(out, attrCount{failedAttr(r), c.Failed[r]})
	}
	return out
}

// AddRunCounters adds finalized recipients (one send invocation's of the run, or one
// dead-lettered message's) to the run item's counters, one UpdateItem and not one per
// recipient, and returns the run's progress after it. It also sets progressAt, which is
// no index key: the update is one write unit (see WatchShard). ENOTFOUND when the run
// item does not exist.
func (d *DB) AddRunCounters(ctx context.Context, campaignID string, run int, c minipush.Counters) (minipush.RunProgress, error) {
	names := map[string]string{}
	vals := map[string]types.AttributeValue{}
	var adds []string
	for _, a := range counterAttrs(c) {
		if a.n == 0 {
			continue
		}
		i := strconv.Itoa(len(adds))
		names["#a"+i] = a.attr
		vals[":v"+i] = numAV(int64(a.n))
		adds = append(adds, "#a"+i+" :v"+i)
	}
	// A done run holds its exact recount: a count arriving after it (a sender's flush
	// racing the recount that found its recipients final) would count them twice.
	in := &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression:                 aws.String("attribute_exists(pk) AND #status <> :done"),
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if len(adds) == 0 {
		// Nothing to add: read the progress instead of writing.
		return d.RunCounters(ctx, campaignID, run)
	}
	names["#status"] = "status"
	vals[":done"] = strAV(string(minipush.RunDone))
	vals[":now"] = numAV(d.Now().Unix())
	in.UpdateExpression = aws.String("ADD " + strings.Join(adds, ", ") + " SET progressAt = :now")
	in.ExpressionAttributeNames = names
	in.ExpressionAttributeValues = vals
	out, err := d.Client.UpdateItem(ctx, in)
	if err != nil {
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			if ccf.Item == nil {
				// Not every DynamoDB (Local) returns the old item; read it.
				return d.RunCounters(ctx, campaignID, run)
			}
			return runProgress(ccf.Item), nil // done: nothing added
		}
		return minipush.RunProgress{}, fmt.Errorf("dynamo: add counters of run %s#%d: %w", campaignID, run, err)
	}
	return runProgress(out.Attributes), nil
}

func sortedReasons(m map[string]int) []string {
	// Deterministic expressions make requests easy to compare in logs.
	return slices.Sorted(maps.Keys(m))
}

// runProgress decodes the run item's status, planned count and counters.
func runProgress(item map[string]types.AttributeValue) minipush.RunProgress {
	p := minipush.RunProgress{Planned: intAttr(item["planned"])}
	p.Occurrence = fromEpoch(int64(intAttr(item["occurrence"])))
	if s, ok := item["status"].(*types.AttributeValueMemberS); ok {
		p.Status = minipush.RunStatus(s.Value)
	}
	p.Counters = minipush.Counters{
		Planned: p.Planned, Sent: intAttr(item["sent"]), NoGrant: intAttr(item["noGrant"]),
		Skipped: intAttr(item["skipped"]), Unknown: intAttr(item["unknown"]), Holdout: intAttr(item["holdout"]),
		GrantsSaved: intAttr(item["grantsSaved"]), CSFallbacks: intAttr(item["csFallbacks"]),
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
func (d *DB) RunCounters(ctx context.Context, campaignID string, run int) (minipush.RunProgress, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return minipush.RunProgress{}, fmt.Errorf("dynamo: get run %s#%d: %w", campaignID, run, err)
	}
	if out.Item == nil {
		return minipush.RunProgress{}, minipush.Errorf(minipush.ENOTFOUND, "no run %s#%d", campaignID, run)
	}
	return runProgress(out.Item), nil
}

// MarkRunDone sets the run's status to done and its counters to the recount c, once:
// a concurrent reconcile that got there first is not an error. counted is what the
// run's counters said before the recount.
func (d *DB) MarkRunDone(ctx context.Context, campaignID string, run int, counted, c minipush.Counters) error {
	names := map[string]string{"#status": "status"}
	vals := map[string]types.AttributeValue{
		":done": strAV(string(minipush.RunDone)), ":now": numAV(d.Now().Unix()),
		":exp": numAV(RetentionExpiry(d.Now(), d.retention())),
	}
	// A finished run is kept for the retention period, then TTL deletes it.
	sets := []string{"#status = :done", "doneAt = :now", "expiresAt = :exp"}
	failed := maps.Clone(c.Failed)
	if failed == nil {
		failed = map[string]int{}
	}
	// A counter of a reason the recount no longer finds goes to zero rather than
	// staying wrong.
	for r := range counted.Failed {
		if _, ok := failed[r]; !ok {
			failed[r] = 0
		}
	}
	c.Failed = failed
	for _, a := range counterAttrs(c) {
		i := strconv.Itoa(len(names))
		names["#s"+i] = a.attr
		vals[":s"+i] = numAV(int64(a.n))
		sets = append(sets, "#s"+i+" = :s"+i)
	}
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, runSK(run)),
		ConditionExpression:       aws.String("attribute_exists(pk) AND #status <> :done"),
		UpdateExpression:          aws.String("SET " + strings.Join(sets, ", ")),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	})
	if err = ignoreConflict(err, "dynamo: mark run %s#%d done", campaignID, run); err != nil {
		return err
	}
	// A done run leaves the watch. Should this delete be lost, StalledRuns finds the run
	// done and deletes the watch item then.
	return d.unwatch(ctx, campaignID, run)
}

func (d *DB) unwatch(ctx context.Context, campaignID string, run int) error {
	_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, watchSK(run)),
	})
	if err != nil {
		return fmt.Errorf("dynamo: unwatch run %s#%d: %w", campaignID, run, err)
	}
	return nil
}

// TouchRun records activity on a sending run (see WatchShard) on its watch item; a run
// that is not watched (not sending) is left alone.
func (d *DB) TouchRun(ctx context.Context, campaignID string, run int) error {
	return d.rewatch(ctx, campaignID, run, d.Now().Unix())
}

// rewatch moves a run's watch entry to dueAt, if the run still has one.
func (d *DB) rewatch(ctx context.Context, campaignID string, run int, dueAt int64) error {
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, watchSK(run)),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		UpdateExpression:          aws.String("SET dueAt = :at"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":at": numAV(dueAt)},
	})
	return ignoreConflict(err, "dynamo: touch run %s#%d", campaignID, run)
}

// StalledRuns returns up to limit runs in status sending with no sign of progress since
// quietSince, quietest first. It queries each of the ByDue index's watch shards for
// watch entries quiet since then and reads those runs' items (BatchGetItem): a run that
// made progress meanwhile (a counter update sets progressAt, not the entry) has its
// entry moved up to that progress and is not returned; a run found done, or gone, has
// its leftover watch item deleted.
func (d *DB) StalledRuns(ctx context.Context, quietSince time.Time, limit int) ([]minipush.RunRef, error) {
	type stalled struct {
		ref   minipush.RunRef
		dueAt int64
	}
	var all []stalled
	for shard := range WatchShards {
		p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
			TableName: aws.String(d.Tables.Campaigns), IndexName: aws.String(CampaignsByDue),
			KeyConditionExpression: aws.String("dueShard = :watch AND dueAt <= :since"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":watch": strAV(watchShardKey(shard)), ":since": numAV(quietSince.Unix()),
			},
			ProjectionExpression: aws.String("pk, sk, dueAt"),
			Limit:                aws.Int32(int32(min(max(limit, 1), 100))),
		})
		// Each shard is read in dueAt order, so its first limit quiet runs are all it can
		// add; entries of active runs are moved out of the way as they are met.
		for n := 0; p.HasMorePages() && n < limit; {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("dynamo: stalled runs: %w", err)
			}
			var cands []stalled
			for _, item := range page.Items {
				var k struct {
					PK    string `dynamodbav:"pk"`
					SK    string `dynamodbav:"sk"`
					DueAt int64  `dynamodbav:"dueAt"`
				}
				if err := attributevalue.UnmarshalMap(item, &k); err != nil {
					return nil, fmt.Errorf("dynamo: decode stalled run key: %w", err)
				}
				id, ok1 := strings.CutPrefix(k.PK, "c#")
				num, ok2 := strings.CutPrefix(k.SK, "w#")
				run, err := strconv.Atoi(num)
				if !ok1 || !ok2 || err != nil {
					return nil, fmt.Errorf("dynamo: stalled run with key %q/%q", k.PK, k.SK)
				}
				cands = append(cands, stalled{minipush.RunRef{CampaignID: id, Run: run}, k.DueAt})
			}
			refs := make([]minipush.RunRef, 0, len(cands))
			for _, c := range cands {
				refs = append(refs, c.ref)
			}
			runs, err := d.runStates(ctx, refs)
			if err != nil {
				return nil, err
			}
			for _, c := range cands {
				st, ok := runs[c.ref]
				switch {
				case !ok || st.status != minipush.RunSending:
					if err := d.unwatch(ctx, c.ref.CampaignID, c.ref.Run); err != nil {
						return nil, err
					}
				case st.progressAt > quietSince.Unix():
					if err := d.rewatch(ctx, c.ref.CampaignID, c.ref.Run, st.progressAt); err != nil {
						return nil, err
					}
				case n < limit:
					all = append(all, stalled{c.ref, max(c.dueAt, st.progressAt)})
					n++
				}
			}
		}
	}
	slices.SortStableFunc(all, func(a, b stalled) int { return cmp.Compare(a.dueAt, b.dueAt) })
	out := make([]minipush.RunRef, 0, min(len(all), limit))
	for _, s := range all[:min(len(all), limit)] {
		out = append(out, s.ref)
	}
	return out, nil
}

// runState is what StalledRuns needs of a run item.
type runState struct {
	status     minipush.RunStatus
	progressAt int64
}

// runStates reads the status and progressAt of runs (strongly consistent BatchGetItem);
// a run without an item is absent from the map.
func (d *DB) runStates(ctx context.Context, refs []minipush.RunRef) (map[minipush.RunRef]runState, error) {
	keys := make([]map[string]types.AttributeValue, 0, len(refs))
	for _, r := range refs {
		keys = append(keys, campaignKey(r.CampaignID, runSK(r.Run)))
	}
	out := make(map[minipush.RunRef]runState, len(refs))
	err := d.batchGet(ctx, d.Tables.Campaigns, "pk, sk, #status, progressAt", map[string]string{"#status": "status"}, keys,
		func(item map[string]types.AttributeValue) error {
			var it struct {
				PK         string `dynamodbav:"pk"`
				SK         string `dynamodbav:"sk"`
				Status     string `dynamodbav:"status"`
				ProgressAt int64  `dynamodbav:"progressAt"`
			}
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return fmt.Errorf("dynamo: decode run state: %w", err)
			}
			run, err := runOfSK(it.SK)
			if err != nil {
				return fmt.Errorf("dynamo: run item with sort key %q", it.SK)
			}
			ref := minipush.RunRef{CampaignID: strings.TrimPrefix(it.PK, "c#"), Run: run}
			out[ref] = runState{status: minipush.RunStatus(it.Status), progressAt: it.ProgressAt}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("dynamo: stalled runs: %w", err)
	}
	return out, nil
}

// CampaignRuns returns a campaign's runs, oldest first: one Query of its partition.
func (d *DB) CampaignRuns(ctx context.Context, id string) ([]minipush.Run, error) {
	var runs []minipush.Run
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:              aws.String(d.Tables.Campaigns),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :run)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": strAV(campaignPK(id)), ":run": strAV("run#"),
		},
		ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: runs of %s: %w", id, err)
		}
		for _, item := range page.Items {
			sk, _ := item["sk"].(*types.AttributeValueMemberS)
			if sk == nil {
				continue
			}
			n, err := runOfSK(sk.Value)
			if err != nil {
				continue // not a run item
			}
			prog := runProgress(item)
			r := minipush.Run{N: n, Status: prog.Status, Counters: prog.Counters, Occurrence: prog.Occurrence}
			if a, ok := item["aborted"].(*types.AttributeValueMemberS); ok {
				r.Aborted = a.Value // canary.go
			}
			if held := int64(intAttr(item["heldUntil"])); held > 0 {
				r.HeldUntil = time.Unix(held, 0).UTC() // the planner's quiet-hours hold
			}
			runs = append(runs, r)
		}
	}
	slices.SortFunc(runs, func(a, b minipush.Run) int { return a.N - b.N })
	return d.withReceipts(ctx, id, runs) // receipts.go: counted apart from the run item
}

// DB is the store that minipush.Reconcile finishes runs through.
var _ minipush.RunStore = (*DB)(nil)
