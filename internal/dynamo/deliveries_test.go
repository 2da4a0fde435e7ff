package dynamo_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

func TestListDeliveries(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	runKey := minipush.RunKey("c", 1)
	for i := range 30 {
		item := map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: runKey}, "sk": &types.AttributeValueMemberS{Value: fmt.Sprintf("u%02d", i)},
			"state":     &types.AttributeValueMemberS{Value: string(minipush.DeliveryFinal)},
			"updatedAt": &types.AttributeValueMemberN{Value: fmt.Sprint(clk.Now().Unix())},
			"expiresAt": &types.AttributeValueMemberN{Value: fmt.Sprint(clk.Now().Add(time.Hour).Unix())},
		}
		switch {
		case i%3 == 0:
			item["outcome"] = &types.AttributeValueMemberS{Value: string(minipush.OutcomeFailed)}
			item["reason"] = &types.AttributeValueMemberS{Value: "unreachable"}
		case i%3 == 1:
			item["outcome"] = &types.AttributeValueMemberS{Value: string(minipush.OutcomeSent)}
		default:
			item["state"] = &types.AttributeValueMemberS{Value: string(minipush.DeliverySending)}
		}
		if _, err := db.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(db.Tables.Deliveries), Item: item}); err != nil {
			t.Fatal(err)
		}
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
		if got := all(t, "", 7); len(got) != 30 {
			t.Fatalf("%d deliveries", len(got))
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
