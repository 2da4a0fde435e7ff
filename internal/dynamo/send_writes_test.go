package dynamo_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
)

// The send path's conditional writes (deliveries_write.go, send_state.go), each
// checked on the condition that keeps a second message or a double spend out.

func mustAddGrant(t *testing.T, db *dynamo.DB, g minipush.Grant) {
	t.Helper()
	st, err := db.AddGrants(t.Context(), g.AppID, g.OpenID, []minipush.Grant{g}, 10)
	if err != nil || st[0] != dynamo.AddAccepted {
		t.Fatalf("AddGrants = %v, %v", st, err)
	}
}

func TestGrantLease(t *testing.T) {
	t.Parallel()
	const app = "wxlease"
	t.Run("OneOwnerAtATime", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "f1", clk.Now())
		mustAddGrant(t, db, g)
		leased, err := db.LeaseGrant(t.Context(), g, "a", clk.Now().Add(time.Minute))
		if err != nil || leased.LeaseOwner != "a" || leased.Uses != 1 {
			t.Fatalf("LeaseGrant = %+v, %v", leased, err)
		}
		if _, err := db.LeaseGrant(t.Context(), g, "b", clk.Now().Add(time.Minute)); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("second lease while the first is live: %v, want ECONFLICT", err)
		}
		if _, err := db.SpendableGrant(t.Context(), app, "u1", minipush.GrantChannel(minipush.GrantForm, "")); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("SpendableGrant of a leased grant: %v, want ECONFLICT (held by a live sender)", err)
		}
		// Released by someone else: nothing changes.
		if err := db.ReleaseGrant(t.Context(), g, "b"); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.GetGrant(t.Context(), app, "u1", g.ID); got.LeaseOwner != "a" {
			t.Errorf("release by a non-owner changed the lease to %q", got.LeaseOwner)
		}
		if err := db.SpendGrant(t.Context(), leased, "b"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("spend by a non-owner: %v, want ECONFLICT", err)
		}
		if err := db.ReleaseGrant(t.Context(), g, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.LeaseGrant(t.Context(), g, "b", clk.Now().Add(time.Minute)); err != nil {
			t.Errorf("lease after release: %v", err)
		}
	})
	t.Run("CrashedLeaseRunsOut", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "f1", clk.Now())
		mustAddGrant(t, db, g)
		if _, err := db.LeaseGrant(t.Context(), g, "crashed", clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
		if _, err := db.LeaseGrant(t.Context(), g, "b", clk.Now().Add(time.Minute)); err != nil {
			t.Errorf("lease after the crashed sender's lease ran out: %v", err)
		}
	})
	t.Run("ExpiredNeverLeased", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "f1", clk.Now())
		mustAddGrant(t, db, g)
		clk.Add(minipush.FormGrantValidity)
		if _, err := db.LeaseGrant(t.Context(), g, "a", clk.Now().Add(time.Minute)); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("lease of a grant expiring now: %v, want ECONFLICT", err)
		}
	})
	t.Run("PrepayUsesDecrement", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "p1", clk.Now())
		g.Kind, g.ID, g.Uses = minipush.GrantPrepay, minipush.GrantID(minipush.GrantPrepay, "p1"), 3
		mustAddGrant(t, db, g)
		for want := 2; want >= 0; want-- {
			leased, err := db.LeaseGrant(t.Context(), g, "a", clk.Now().Add(time.Minute))
			if err != nil {
				t.Fatalf("lease with %d uses left: %v", want+1, err)
			}
			if err := db.SpendGrant(t.Context(), leased, "a"); err != nil {
				t.Fatal(err)
			}
			got, err := db.GetGrant(t.Context(), app, "u1", g.ID)
			switch {
			case want == 0 && minipush.ErrorCode(err) != minipush.ENOTFOUND:
				t.Errorf("after the last use: %+v, %v; want the grant deleted", got, err)
			case want > 0 && (err != nil || got.Uses != want || got.LeaseOwner != ""):
				t.Errorf("after a spend: %+v, %v; want %d uses, no lease", got, err, want)
			}
		}
	})
}

func TestDeliveryClaim(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	rk := minipush.RunKey("c", 1)
	claim := dynamo.Delivery{RunKey: rk, OpenID: "u1", State: dynamo.DeliverySending, Owner: "a",
		LeaseUntil: clk.Now().Add(time.Minute), GrantID: "g1", ExpiresAt: clk.Now().Add(24 * time.Hour)}
	if _, err := db.CreateDelivery(ctx, claim); err != nil {
		t.Fatal(err)
	}
	t.Run("SecondClaimSeesTheFirst", func(t *testing.T) {
		other := claim
		other.Owner = "b"
		got, err := db.CreateDelivery(ctx, other)
		if minipush.ErrorCode(err) != minipush.ECONFLICT || got.Owner != "a" || got.State != dynamo.DeliverySending || got.GrantID != "g1" {
			t.Fatalf("second claim = %+v, %v; want ECONFLICT with a's claim", got, err)
		}
	})
	t.Run("OnlyTheOwnerFinishes", func(t *testing.T) {
		if err := db.FinishDelivery(ctx, rk, "u1", "b", time.Time{}, minipush.OutcomeSent, "", 0); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("finish by b: %v, want ECONFLICT", err)
		}
		if err := db.DeleteClaim(ctx, rk, "u1", "b"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("delete by b: %v, want ECONFLICT", err)
		}
		// Taking over a crashed claim names its lease: a stale view of it loses.
		if err := db.FinishDelivery(ctx, rk, "u1", "a", clk.Now(), minipush.OutcomeUnknown, "sender_lost", 0); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("take-over with the wrong lease: %v, want ECONFLICT", err)
		}
	})
	t.Run("FinalIsFinal", func(t *testing.T) {
		if err := db.FinishDelivery(ctx, rk, "u1", "a", time.Time{}, minipush.OutcomeFailed, "user_refused", 43101); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishDelivery(ctx, rk, "u1", "a", time.Time{}, minipush.OutcomeSent, "", 0); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("second finish: %v, want ECONFLICT", err)
		}
		if err := db.DeleteClaim(ctx, rk, "u1", "a"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("delete of a final item: %v, want ECONFLICT", err)
		}
		got, err := db.Deliveries(ctx, rk, []string{"u1", "nobody"})
		if err != nil {
			t.Fatal(err)
		}
		d, ok := got["u1"]
		if len(got) != 1 || !ok || !d.Final() || d.Outcome != minipush.OutcomeFailed || d.ErrCode != 43101 || d.Reason != "user_refused" || !d.LeaseUntil.IsZero() {
			t.Errorf("Deliveries = %+v, want u1 final failed/user_refused 43101 without a lease", got)
		}
	})
	t.Run("ClaimIsNotInTheOutcomeIndex", func(t *testing.T) {
		if _, err := db.CreateDelivery(ctx, dynamo.Delivery{RunKey: rk, OpenID: "u2", State: dynamo.DeliverySending, Owner: "a",
			LeaseUntil: clk.Now().Add(time.Minute), ExpiresAt: clk.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		c, err := db.CountOutcomes(ctx, "c", 1)
		if err != nil || c.Final() != 1 || c.Failed["user_refused"] != 1 {
			t.Errorf("CountOutcomes = %+v, %v; want only u1's failure", c, err)
		}
	})
}

func TestDailySlot(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()
	take := func(day, run string) error { return db.TakeDailySlot(ctx, "wxday", "u1", day, run) }
	if err := take("2026-11-25", "a#1"); err != nil {
		t.Fatal(err)
	}
	if err := take("2026-11-25", "a#1"); err != nil {
		t.Errorf("the same run again (a retried recipient): %v", err)
	}
	if err := take("2026-11-25", "b#1"); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("another run the same day: %v, want ECONFLICT", err)
	}
	if err := take("2026-11-26", "b#1"); err != nil {
		t.Errorf("another run the next day: %v", err)
	}
}

// putRun stores a campaign and one run as the planner leaves them.
func putRun(t *testing.T, db *dynamo.DB, id, status, runStatus string, planned int, cron string) {
	t.Helper()
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	meta := map[string]types.AttributeValue{"pk": s("c#" + id), "sk": s("meta"), "id": s(id), "appId": s("wxrun"), "status": s(status)}
	if cron != "" {
		meta["schedule"] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"cron": s(cron), "timeZone": s("UTC")}}
	}
	run := map[string]types.AttributeValue{"pk": s("c#" + id), "sk": s("run#1"), "status": s(runStatus),
		"planned": &types.AttributeValueMemberN{Value: strconv.Itoa(planned)}}
	for _, it := range []map[string]types.AttributeValue{meta, run} {
		if _, err := db.Client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(db.Tables.Campaigns), Item: it}); err != nil {
			t.Fatal(err)
		}
	}
}

func finalDelivery(t *testing.T, db *dynamo.DB, id, openID string, o minipush.Outcome, reason string) {
	t.Helper()
	if _, err := db.CreateDelivery(t.Context(), dynamo.Delivery{RunKey: minipush.RunKey(id, 1), OpenID: openID,
		State: dynamo.DeliveryFinal, Outcome: o, Reason: reason, ExpiresAt: db.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func TestRunCompletion(t *testing.T) {
	t.Parallel()
	t.Run("DoneWithTheRecount", func(t *testing.T) {
		t.Parallel()
		db, _, _ := MustDB(t)
		ctx := t.Context()
		putRun(t, db, "c", "sending", dynamo.RunSending, 4, "")
		finalDelivery(t, db, "c", "u1", minipush.OutcomeSent, "")
		finalDelivery(t, db, "c", "u2", minipush.OutcomeNoGrant, "")
		finalDelivery(t, db, "c", "u3", minipush.OutcomeFailed, "user_refused")
		// A counter update that ran twice (or a wrong one) is corrected by the recount.
		if _, err := db.AddRunCounters(ctx, "c", 1, minipush.Counters{Sent: 2, NoGrant: 1, Failed: map[string]int{"stale": 1}}); err != nil {
			t.Fatal(err)
		}
		if _, done, err := db.Reconcile(ctx, "c", 1); err != nil || done {
			t.Fatalf("Reconcile with 3 of 4 final = done %v, %v; want not done", done, err)
		}
		finalDelivery(t, db, "c", "u4", minipush.OutcomeUnknown, "timeout")
		sum, done, err := db.Reconcile(ctx, "c", 1)
		if err != nil || !done {
			t.Fatalf("Reconcile = %v, %v; want done", done, err)
		}
		p, err := db.RunCounters(ctx, "c", 1)
		if err != nil {
			t.Fatal(err)
		}
		want := minipush.Counters{Planned: 4, Sent: 1, NoGrant: 1, Unknown: 1, Failed: map[string]int{"user_refused": 1, "stale": 0}}
		if p.Status != dynamo.RunDone || p.Counters.Sent != 1 || p.Counters.NoGrant != 1 || p.Counters.Unknown != 1 ||
			p.Counters.Failed["user_refused"] != 1 || p.Counters.Failed["stale"] != 0 || p.Counters.Final() != 4 || sum.Final() != want.Final() {
			t.Errorf("run %s %+v (recount %+v), want done %+v", p.Status, p.Counters, sum, want)
		}
		c, err := db.SendCampaign(ctx, "c")
		if err != nil || c.Status != minipush.StatusDone {
			t.Errorf("one-off campaign %s, %v; want done", c.Status, err)
		}
		// Idempotent: again changes nothing and still reports done.
		if _, done, err := db.Reconcile(ctx, "c", 1); err != nil || !done {
			t.Errorf("second Reconcile = %v, %v", done, err)
		}
	})
	t.Run("NotBeforePlanningEnds", func(t *testing.T) {
		t.Parallel()
		db, _, _ := MustDB(t)
		putRun(t, db, "c", "planning", dynamo.RunPlanning, 1, "")
		finalDelivery(t, db, "c", "u1", minipush.OutcomeSent, "")
		if _, done, err := db.Reconcile(t.Context(), "c", 1); err != nil || done {
			t.Errorf("Reconcile while planning = %v, %v; want not done", done, err)
		}
	})
	t.Run("RecurringCampaignStays", func(t *testing.T) {
		t.Parallel()
		db, _, _ := MustDB(t)
		putRun(t, db, "c", "sending", dynamo.RunSending, 1, "0 10 * * *")
		finalDelivery(t, db, "c", "u1", minipush.OutcomeSent, "")
		if _, done, err := db.Reconcile(t.Context(), "c", 1); err != nil || !done {
			t.Fatalf("Reconcile = %v, %v", done, err)
		}
		if c, err := db.SendCampaign(t.Context(), "c"); err != nil || c.Status != "sending" {
			t.Errorf("recurring campaign %s, %v after a run; want it left to the planner", c.Status, err)
		}
	})
}

func TestPauseCampaign(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()
	putRun(t, db, "c", "sending", dynamo.RunSending, 1, "")
	if err := db.PauseCampaign(ctx, "c", "template_invalid (errcode 40037)"); err != nil {
		t.Fatal(err)
	}
	if err := db.PauseCampaign(ctx, "c", "again"); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("second pause: %v, want ECONFLICT (log once)", err)
	}
	putRun(t, db, "x", "cancelled", dynamo.RunSending, 1, "")
	if err := db.PauseCampaign(ctx, "x", "r"); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("pause of a cancelled campaign: %v, want ECONFLICT", err)
	}
	if c, err := db.SendCampaign(ctx, "x"); err != nil || c.Status != minipush.StatusCancelled {
		t.Errorf("cancelled campaign became %s, %v", c.Status, err)
	}
}

func TestSpendableGrant(t *testing.T) {
	t.Parallel()
	const app = "wxspend"
	db, _, clk := MustDB(t)
	ctx := t.Context()
	ch := minipush.GrantChannel(minipush.GrantForm, "")
	lookup := func() (minipush.Grant, error) { return db.SpendableGrant(ctx, app, "u1", ch) }
	if _, err := lookup(); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Fatalf("no grants: %v, want ENOTFOUND", err)
	}
	early := formGrant(app, "u1", "early", clk.Now().Add(-2*time.Hour))
	late := formGrant(app, "u1", "late", clk.Now())
	mustAddGrant(t, db, early)
	mustAddGrant(t, db, late)
	if _, err := db.LeaseGrant(ctx, early, "other", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if g, err := lookup(); err != nil || g.ID != late.ID {
		t.Errorf("earliest leased: %+v, %v; want the later grant", g, err)
	}
	if _, err := db.LeaseGrant(ctx, late, "other", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := lookup(); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("every grant leased: %v, want ECONFLICT (not no grant)", err)
	}
	clk.Add(time.Minute)
	if g, err := lookup(); err != nil || g.ID != early.ID {
		t.Errorf("leases ran out: %+v, %v; want the earliest grant again", g, err)
	}
	// Past the earlier grant's expiry only the later one is left; past both, none.
	clk.Add(minipush.FormGrantValidity - time.Hour - time.Minute)
	if g, err := lookup(); err != nil || g.ID != late.ID {
		t.Errorf("earliest expired: %+v, %v; want the later grant", g, err)
	}
	clk.Add(2 * time.Hour)
	if _, err := lookup(); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Errorf("all expired: %v, want ENOTFOUND", err)
	}
}
