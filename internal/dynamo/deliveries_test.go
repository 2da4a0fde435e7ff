package dynamo_test

import (
	"fmt"
	"testing"
	"time"

	"minipush"
)

func TestListDeliveries(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	runKey := minipush.RunKey("c", 1)
	// Spread over the shards like any run: claims, then two thirds made final.
	for i := range 30 {
		u := fmt.Sprintf("u%02d", i)
		if _, err := db.CreateDelivery(ctx, minipush.Delivery{RunKey: runKey, OpenID: u, State: minipush.DeliverySending,
			Owner: "s", LeaseUntil: clk.Now().Add(time.Minute), ExpiresAt: clk.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		var err error
		switch i % 3 {
		case 0:
			err = db.FinishDelivery(ctx, runKey, u, "s", time.Time{}, minipush.OutcomeFailed, "unreachable", 0, "", "")
		case 1:
			err = db.FinishDelivery(ctx, runKey, u, "s", time.Time{}, minipush.OutcomeSent, "", 0, "", "")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if shards := distinctShards(30); shards < 10 {
		t.Fatalf("30 recipients on %d shards; the hash does not spread", shards)
	}
	all := func(t *testing.T, outcome minipush.Outcome, limit int) []minipush.Delivery {
		var got []minipush.Delivery
		cursor := ""
		for range 50 {
			dls, next, err := db.ListDeliveries(ctx, "c", 1, outcome, limit, cursor)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, dls...)
			if next == "" {
				return got
			}
			cursor = next
		}
		t.Fatal("cursor never ends")
		return nil
	}
	t.Run("ByOutcome", func(t *testing.T) {
		got := all(t, minipush.OutcomeFailed, 4)
		if len(got) != 10 {
			t.Fatalf("%d failed", len(got))
		}
		for _, d := range got {
			if d.Outcome != minipush.OutcomeFailed || d.Reason != "unreachable" {
				t.Fatalf("%+v", d)
			}
		}
	})
	t.Run("All", func(t *testing.T) {
		got := all(t, "", 7)
		seen := map[string]bool{}
		for _, d := range got {
			if d.RunKey != runKey || seen[d.OpenID] {
				t.Fatalf("%+v listed again or under another run", d)
			}
			seen[d.OpenID] = true
		}
		if len(seen) != 30 {
			t.Fatalf("%d deliveries", len(seen))
		}
	})
	t.Run("CountOutcomes", func(t *testing.T) {
		c, err := db.CountOutcomes(ctx, "c", 1)
		if err != nil || c.Sent != 10 || c.Failed["unreachable"] != 10 || c.Final() != 20 {
			t.Fatalf("CountOutcomes = %+v, %v; want 10 sent, 10 failed", c, err)
		}
	})
	t.Run("ErrCursorOfAnotherRun", func(t *testing.T) {
		_, next, err := db.ListDeliveries(ctx, "c", 1, minipush.OutcomeSent, 2, "")
		if err != nil || next == "" {
			t.Fatal(next, err)
		}
		if _, _, err := db.ListDeliveries(ctx, "c", 2, minipush.OutcomeSent, 2, next); minipush.ErrorCode(err) != minipush.EINVALID {
			t.Fatalf("other run: %v", err)
		}
		if _, _, err := db.ListDeliveries(ctx, "c", 1, minipush.OutcomeFailed, 2, next); minipush.ErrorCode(err) != minipush.EINVALID {
			t.Fatalf("other outcome: %v", err)
		}
	})
}

func TestDeliveryClaim(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	rk := minipush.RunKey("c", 1)
	claim := minipush.Delivery{RunKey: rk, OpenID: "u1", State: minipush.DeliverySending, Owner: "a",
		LeaseUntil: clk.Now().Add(time.Minute), GrantID: "g1", ExpiresAt: clk.Now().Add(24 * time.Hour)}
	if _, err := db.CreateDelivery(ctx, claim); err != nil {
		t.Fatal(err)
	}
	t.Run("SecondClaimSeesTheFirst", func(t *testing.T) {
		other := claim
		other.Owner = "b"
		got, err := db.CreateDelivery(ctx, other)
		if minipush.ErrorCode(err) != minipush.ECONFLICT || got.Owner != "a" || got.State != minipush.DeliverySending || got.GrantID != "g1" {
			t.Fatalf("second claim = %+v, %v; want ECONFLICT with a's claim", got, err)
		}
	})
	t.Run("OnlyTheOwnerFinishes", func(t *testing.T) {
		if err := db.FinishDelivery(ctx, rk, "u1", "b", time.Time{}, minipush.OutcomeSent, "", 0, "", ""); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("finish by b: %v, want ECONFLICT", err)
		}
		if err := db.DeleteClaim(ctx, rk, "u1", "b"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("delete by b: %v, want ECONFLICT", err)
		}
		// Taking over a crashed claim names its lease: a stale view of it loses.
		if err := db.FinishDelivery(ctx, rk, "u1", "a", clk.Now(), minipush.OutcomeUnknown, "sender_lost", 0, "", ""); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("take-over with the wrong lease: %v, want ECONFLICT", err)
		}
	})
	t.Run("FinalIsFinal", func(t *testing.T) {
		if err := db.FinishDelivery(ctx, rk, "u1", "a", time.Time{}, minipush.OutcomeFailed, "user_refused", 43101, "", ""); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishDelivery(ctx, rk, "u1", "a", time.Time{}, minipush.OutcomeSent, "", 0, "", ""); minipush.ErrorCode(err) != minipush.ECONFLICT {
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
		if _, err := db.CreateDelivery(ctx, minipush.Delivery{RunKey: rk, OpenID: "u2", State: minipush.DeliverySending, Owner: "a",
			LeaseUntil: clk.Now().Add(time.Minute), ExpiresAt: clk.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		c, err := db.CountOutcomes(ctx, "c", 1)
		if err != nil || c.Final() != 1 || c.Failed["user_refused"] != 1 {
			t.Errorf("CountOutcomes = %+v, %v; want only u1's failure", c, err)
		}
	})
}

func distinctShards(n int) int {
	seen := map[int]bool{}
	for i := range n {
		seen[minipush.DeliveryShard(fmt.Sprintf("u%02d", i))] = true
	}
	return len(seen)
}
