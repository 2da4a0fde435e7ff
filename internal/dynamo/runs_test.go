package dynamo_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
)

// mustDue creates a campaign scheduled (due) at now.
func mustDue(t *testing.T, db *dynamo.DB, id string, sched minipush.Schedule, now time.Time) {
	t.Helper()
	c := draft(id, now)
	if err := db.CreateCampaign(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ScheduleCampaign(t.Context(), id, sched, now); err != nil {
		t.Fatal(err)
	}
}

func dueIDs(t *testing.T, db *dynamo.DB, now time.Time) []string {
	t.Helper()
	due, err := db.DueCampaigns(t.Context(), now, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range due {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestPlanState(t *testing.T) {
	t.Parallel()

	t.Run("DueIsOneQueryOfDueCampaigns", func(t *testing.T) {
		t.Parallel()
		db, api, clk := MustDB(t)
		now := clk.Now()
		mustDue(t, db, "early", minipush.Schedule{At: now}, now.Add(-time.Minute))
		mustDue(t, db, "late", minipush.Schedule{At: now.Add(time.Hour)}, now.Add(time.Hour))
		if err := db.CreateCampaign(t.Context(), draft("drafted", now)); err != nil {
			t.Fatal(err)
		}
		before := api.queries.Load()
		if got := dueIDs(t, db, now); len(got) != 1 || got[0] != "early" {
			t.Fatalf("due %v, want [early]", got)
		}
		if q := api.queries.Load() - before; q != 1 {
			t.Fatalf("%d queries, want 1", q)
		}
	})

	t.Run("BeginRunOnce", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
		run, err := db.BeginRun(t.Context(), "c1", now)
		if err != nil || run != 1 {
			t.Fatalf("begin: run %d, %v; want 1", run, err)
		}
		if _, err := db.BeginRun(t.Context(), "c1", now); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("second begin: %v, want ECONFLICT", err)
		}
		if c, _ := db.GetCampaign(t.Context(), "c1"); c.Status != minipush.StatusPlanning || c.RunSeq != 1 {
			t.Fatalf("campaign %s runSeq %d, want planning 1", c.Status, c.RunSeq)
		}
		// Still due while planning, so a stopped planner is continued.
		if got := dueIDs(t, db, now); len(got) != 1 {
			t.Fatalf("due while planning: %v", got)
		}
	})

	t.Run("ErrBeginNotDue", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now.Add(time.Hour)}, now.Add(time.Hour))
		if _, err := db.BeginRun(t.Context(), "c1", now); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("begin before due: %v, want ECONFLICT", err)
		}
	})

	t.Run("LeaseAndCursor", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		ctx := t.Context()
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
		if _, err := db.BeginRun(ctx, "c1", now); err != nil {
			t.Fatal(err)
		}
		st, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now, now.Add(time.Minute))
		if err != nil || st.Status != minipush.RunPlanning || st.Planned != 0 {
			t.Fatalf("claim: %+v, %v", st, err)
		}
		if _, err := db.ClaimRun(ctx, "c1", 1, "wx1", "b", now, now, now.Add(time.Minute)); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("claim under a live lease: %v, want ECONFLICT", err)
		}
		st.Cursor = minipush.PlanCursor{Segments: []minipush.SegmentCursor{{After: "o5"}, {Done: true}}}
		st.NextSeq, st.Planned = 3, 250
		if err := db.SavePlanCursor(ctx, "c1", 1, "a", st, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		// After the lease runs out, b takes over from a's cursor and a must stop.
		later := now.Add(2 * time.Minute)
		got, err := db.ClaimRun(ctx, "c1", 1, "wx1", "b", now, later, later.Add(time.Minute))
		if err != nil || got.NextSeq != 3 || got.Planned != 250 || len(got.Cursor.Segments) != 2 ||
			got.Cursor.Segments[0].After != "o5" || !got.Cursor.Segments[1].Done {
			t.Fatalf("takeover: %+v, %v", got, err)
		}
		if err := db.SavePlanCursor(ctx, "c1", 1, "a", st, later.Add(time.Minute)); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("save by the old owner: %v, want ECONFLICT", err)
		}
		if err := db.FinishRun(ctx, "c1", 1, "a", 250, time.Time{}, later); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("finish by the old owner: %v, want ECONFLICT", err)
		}
		if err := db.FinishRun(ctx, "c1", 1, "b", 260, time.Time{}, later); err != nil {
			t.Fatal(err)
		}
		p, err := db.RunCounters(ctx, "c1", 1)
		if err != nil || p.Status != minipush.RunSending || p.Planned != 260 {
			t.Fatalf("run after finish: %+v, %v", p, err)
		}
		if c, _ := db.GetCampaign(ctx, "c1"); c.Status != minipush.StatusSending {
			t.Fatalf("campaign %s, want sending", c.Status)
		}
		if got := dueIDs(t, db, later.Add(time.Hour)); len(got) != 0 {
			t.Fatalf("finished one-off still due: %v", got)
		}
		// A finished run is returned as is, without a lease.
		if st, err := db.ClaimRun(ctx, "c1", 1, "wx1", "c", now, later, later.Add(time.Minute)); err != nil || st.Status != minipush.RunSending {
			t.Fatalf("claim of a finished run: %+v, %v", st, err)
		}
	})

	t.Run("FinishWhilePausedFinishesRunOnly", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		ctx := t.Context()
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{At: now}, now)
		if _, err := db.BeginRun(ctx, "c1", now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.OperatorPause(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishRun(ctx, "c1", 1, "a", 7, time.Time{}, now); err != nil {
			t.Fatal(err)
		}
		if p, _ := db.RunCounters(ctx, "c1", 1); p.Status != minipush.RunSending || p.Planned != 7 {
			t.Fatalf("run %+v, want sending 7", p)
		}
		// Resume brings it back planning and due; rolling then takes it out.
		c, err := db.ResumeCampaign(ctx, "c1", false)
		if err != nil || c.Status != minipush.StatusPlanning {
			t.Fatalf("resume: %s, %v", c.Status, err)
		}
		if err := db.RollCampaign(ctx, "c1", 1, time.Time{}, now); err != nil {
			t.Fatal(err)
		}
		if got := dueIDs(t, db, now.Add(time.Hour)); len(got) != 0 {
			t.Fatalf("rolled one-off still due: %v", got)
		}
	})

	t.Run("RollRecurring", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		ctx := t.Context()
		now := clk.Now()
		mustDue(t, db, "c1", minipush.Schedule{Cron: "0 10 * * *"}, now)
		if _, err := db.BeginRun(ctx, "c1", now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimRun(ctx, "c1", 1, "wx1", "a", now, now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		next := now.Add(24 * time.Hour)
		if err := db.FinishRun(ctx, "c1", 1, "a", 1, next, now); err != nil {
			t.Fatal(err)
		}
		c, _ := db.GetCampaign(ctx, "c1")
		if c.Status != minipush.StatusScheduled || !c.NextRunAt.Equal(next) || c.RunSeq != 1 {
			t.Fatalf("campaign %s next %v runSeq %d", c.Status, c.NextRunAt, c.RunSeq)
		}
		if got := dueIDs(t, db, next); len(got) != 1 {
			t.Fatalf("not due at its next run: %v", got)
		}
		if run, err := db.BeginRun(ctx, "c1", next); err != nil || run != 2 {
			t.Fatalf("next run: %d, %v", run, err)
		}
	})
}

// putRun stores a campaign and one run as the planner leaves them.
func putRun(t *testing.T, db *dynamo.DB, id, status string, runStatus minipush.RunStatus, planned int, cron string) {
	t.Helper()
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	meta := map[string]types.AttributeValue{"pk": s("c#" + id), "sk": s("meta"), "id": s(id), "appId": s("wxrun"), "status": s(status)}
	if cron != "" {
		meta["schedule"] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"cron": s(cron), "timeZone": s("UTC")}}
	}
	run := map[string]types.AttributeValue{"pk": s("c#" + id), "sk": s("run#1"), "status": s(string(runStatus)),
		"planned": &types.AttributeValueMemberN{Value: strconv.Itoa(planned)}}
	for _, it := range []map[string]types.AttributeValue{meta, run} {
		if _, err := db.Client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(db.Tables.Campaigns), Item: it}); err != nil {
			t.Fatal(err)
		}
	}
}

func finalDelivery(t *testing.T, db *dynamo.DB, id, openID string, o minipush.Outcome, reason string) {
	t.Helper()
	if _, err := db.CreateDelivery(t.Context(), minipush.Delivery{RunKey: minipush.RunKey(id, 1), OpenID: openID,
		State: minipush.DeliveryFinal, Outcome: o, Reason: reason, ExpiresAt: db.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func TestRunCompletion(t *testing.T) {
	t.Parallel()
	t.Run("DoneWithTheRecount", func(t *testing.T) {
		t.Parallel()
		db, _, _ := MustDB(t)
		ctx := t.Context()
		putRun(t, db, "c", "sending", minipush.RunSending, 4, "")
		finalDelivery(t, db, "c", "u1", minipush.OutcomeSent, "")
		finalDelivery(t, db, "c", "u2", minipush.OutcomeNoGrant, "")
		finalDelivery(t, db, "c", "u3", minipush.OutcomeFailed, "user_refused")
		// A counter update that ran twice (or a wrong one) is corrected by the recount.
		if _, err := db.AddRunCounters(ctx, "c", 1, minipush.Counters{Sent: 2, NoGrant: 1, Failed: map[string]int{"stale": 1}}); err != nil {
			t.Fatal(err)
		}
		if _, done, err := minipush.Reconcile(ctx, db, "c", 1); err != nil || done {
			t.Fatalf("Reconcile with 3 of 4 final = done %v, %v; want not done", done, err)
		}
		finalDelivery(t, db, "c", "u4", minipush.OutcomeUnknown, "timeout")
		sum, done, err := minipush.Reconcile(ctx, db, "c", 1)
		if err != nil || !done {
			t.Fatalf("Reconcile = %v, %v; want done", done, err)
		}
		p, err := db.RunCounters(ctx, "c", 1)
		if err != nil {
			t.Fatal(err)
		}
		want := minipush.Counters{Planned: 4, Sent: 1, NoGrant: 1, Unknown: 1, Failed: map[string]int{"user_refused": 1, "stale": 0}}
		if p.Status != minipush.RunDone || p.Counters.Sent != 1 || p.Counters.NoGrant != 1 || p.Counters.Unknown != 1 ||
			p.Counters.Failed["user_refused"] != 1 || p.Counters.Failed["stale"] != 0 || p.Counters.Final() != 4 || sum.Final() != want.Final() {
			t.Errorf("run %s %+v (recount %+v), want done %+v", p.Status, p.Counters, sum, want)
		}
		c, err := db.SendCampaign(ctx, "c")
		if err != nil || c.Status != minipush.StatusDone {
			t.Errorf("one-off campaign %s, %v; want done", c.Status, err)
		}
		// Idempotent: again changes nothing and still reports done.
		if _, done, err := minipush.Reconcile(ctx, db, "c", 1); err != nil || !done {
			t.Errorf("second Reconcile = %v, %v", done, err)
		}
		// A sender's counter update that lost the race with the recount (its recipients
		// were final, so the recount has them) adds nothing to the done run.
		late, err := db.AddRunCounters(ctx, "c", 1, minipush.Counters{Sent: 1})
		if err != nil || late.Status != minipush.RunDone || late.Counters.Sent != 1 {
			t.Errorf("counter update after done = %+v, %v; want the done run unchanged (sent 1)", late, err)
		}
		if p, err := db.RunCounters(ctx, "c", 1); err != nil || p.Counters.Sent != 1 || p.Counters.Final() != 4 {
			t.Errorf("done run after a late counter update: %+v, %v; want sent 1 of 4 final", p.Counters, err)
		}
	})
	t.Run("NotBeforePlanningEnds", func(t *testing.T) {
		t.Parallel()
		db, _, _ := MustDB(t)
		putRun(t, db, "c", "planning", minipush.RunPlanning, 1, "")
		finalDelivery(t, db, "c", "u1", minipush.OutcomeSent, "")
		if _, done, err := minipush.Reconcile(t.Context(), db, "c", 1); err != nil || done {
			t.Errorf("Reconcile while planning = %v, %v; want not done", done, err)
		}
	})
	t.Run("RecurringCampaignStays", func(t *testing.T) {
		t.Parallel()
		db, _, _ := MustDB(t)
		putRun(t, db, "c", "sending", minipush.RunSending, 1, "0 10 * * *")
		finalDelivery(t, db, "c", "u1", minipush.OutcomeSent, "")
		if _, done, err := minipush.Reconcile(t.Context(), db, "c", 1); err != nil || !done {
			t.Fatalf("Reconcile = %v, %v", done, err)
		}
		if c, err := db.SendCampaign(t.Context(), "c"); err != nil || c.Status != "sending" {
			t.Errorf("recurring campaign %s, %v after a run; want it left to the planner", c.Status, err)
		}
	})
}

// TestStalledRunsAcrossWatchShards: sending runs are spread over the ByDue index's watch
// shards (one hash key took every sending run's counter updates), and StalledRuns still
// finds every quiet one, quietest first, and only up to its limit.
func TestStalledRunsAcrossWatchShards(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	start := clk.Now()
	const n = 12
	shards := map[string]bool{}
	var want []string
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		at := start.Add(time.Duration(i) * time.Second)
		mustDue(t, db, id, minipush.Schedule{At: at}, at)
		if _, err := db.BeginRun(ctx, id, at); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimRun(ctx, id, 1, "wx1", "p", at, at, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		// Finished (marked sending) in reverse order, so the quietest is the last one.
		if err := db.FinishRun(ctx, id, 1, "p", 5, time.Time{}, start.Add(time.Duration(n-i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		shards[dynamo.WatchShard(id, 1)] = true
		want = append([]string{id}, want...)
	}
	if len(shards) < 2 {
		t.Fatalf("%d runs on %d watch shard(s), want them spread", n, len(shards))
	}
	got, err := db.StalledRuns(ctx, start.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.CampaignID)
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("stalled runs %v, want every run quietest first %v", ids, want)
	}
	if got, err := db.StalledRuns(ctx, start.Add(time.Hour), 3); err != nil || len(got) != 3 || got[0].CampaignID != want[0] || got[2].CampaignID != want[2] {
		t.Fatalf("limit 3: %v %v, want %v", got, err, want[:3])
	}
	if got, err := db.StalledRuns(ctx, start.Add(3*time.Second), 100); err != nil || len(got) != 3 {
		t.Fatalf("quiet since +3s: %v %v, want the 3 runs last touched by then", got, err)
	}
}

// TestRunWatchItem: a sending run's ByDue entry is a watch item of its own, so the
// counter updates, which change the run item once per send invocation, write no index
// entry (issue #12: one write unit each, not two). The watch stays exact: a counter
// update keeps an active run out of StalledRuns (its entry is moved up when met), the
// run done leaves the index, and a watch item whose delete was lost is cleaned up.
func TestRunWatchItem(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	start := clk.Now()
	mustDue(t, db, "cw", minipush.Schedule{At: start}, start)
	if _, err := db.BeginRun(ctx, "cw", start); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimRun(ctx, "cw", 1, "wx1", "p", start, start, start.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRun(ctx, "cw", 1, "p", 2, time.Time{}, start); err != nil {
		t.Fatal(err)
	}
	get := func(sk string) map[string]types.AttributeValue {
		t.Helper()
		out, err := db.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(db.Tables.Campaigns), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "c#cw"}, "sk": &types.AttributeValueMemberS{Value: sk}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	if run := get("run#1"); run["dueShard"] != nil || run["dueAt"] != nil {
		t.Fatalf("run item carries the ByDue keys: %v", run)
	}
	if w := get("w#1"); w["dueShard"] == nil || w["dueAt"] == nil {
		t.Fatalf("sending run without a watch item: %v", w)
	}

	// The counter update writes the run item alone: one unit, no index entry.
	out, err := db.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(db.Tables.Campaigns), Key: dynamo.RunItemKey("cw", 1),
		UpdateExpression:          aws.String("ADD sent :one SET progressAt = :now"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}, ":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(start.Unix(), 10)}},
		ReturnConsumedCapacity:    types.ReturnConsumedCapacityIndexes,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cc := out.ConsumedCapacity; cc == nil || aws.ToFloat64(cc.CapacityUnits) != 1 || len(cc.GlobalSecondaryIndexes) != 0 {
		t.Fatalf("a counter update consumed %+v, want 1 unit and no index", cc)
	}

	// Active: a counter update just before the quiet period ends keeps it out.
	clk.Add(10 * time.Minute)
	if _, err := db.AddRunCounters(ctx, "cw", 1, minipush.Counters{Sent: 1}); err != nil {
		t.Fatal(err)
	}
	quietSince := func() time.Time { return clk.Now().Add(-3 * time.Minute) }
	if got, err := db.StalledRuns(ctx, quietSince(), 10); err != nil || len(got) != 0 {
		t.Fatalf("active run stalled: %v %v", got, err)
	}
	// Its watch entry was moved up to the counter update, not left to be read again.
	if w := get("w#1"); w["dueAt"].(*types.AttributeValueMemberN).Value != strconv.FormatInt(clk.Now().Unix(), 10) {
		t.Fatalf("watch entry dueAt %v, want the counter update's %d", w["dueAt"], clk.Now().Unix())
	}
	// Quiet for the period: stalled.
	clk.Add(3*time.Minute + time.Second)
	if got, err := db.StalledRuns(ctx, quietSince(), 10); err != nil || len(got) != 1 || got[0] != (minipush.RunRef{CampaignID: "cw", Run: 1}) {
		t.Fatalf("quiet run: %v %v, want cw run 1", got, err)
	}
	// Done: the watch item is gone with it.
	finalDelivery(t, db, "cw", "u1", minipush.OutcomeSent, "")
	finalDelivery(t, db, "cw", "u2", minipush.OutcomeSent, "")
	if _, done, err := minipush.Reconcile(ctx, db, "cw", 1); err != nil || !done {
		t.Fatalf("Reconcile = %v, %v", done, err)
	}
	if w := get("w#1"); w != nil {
		t.Fatalf("done run still watched: %v", w)
	}
	// A watch item left behind (its delete lost) is removed by the next look.
	if _, err := db.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(db.Tables.Campaigns), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "c#cw"}, "sk": &types.AttributeValueMemberS{Value: "w#1"},
		"dueShard": &types.AttributeValueMemberS{Value: dynamo.WatchShard("cw", 1)}, "dueAt": &types.AttributeValueMemberN{Value: "0"},
	}}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.StalledRuns(ctx, quietSince(), 10); err != nil || len(got) != 0 {
		t.Fatalf("done run stalled: %v %v", got, err)
	}
	if w := get("w#1"); w != nil {
		t.Fatalf("leftover watch item not removed: %v", w)
	}
}
