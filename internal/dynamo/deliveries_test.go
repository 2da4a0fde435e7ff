package dynamo_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
)

func TestListDeliveries(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	runKey := minipush.RunKey("c", 1)
	for i := range 30 {
		item := map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: runKey}, "sk": &types.AttributeValueMemberS{Value: fmt.Sprintf("u%02d", i)},
			"state":     &types.AttributeValueMemberS{Value: dynamo.DeliveryFinal},
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
			item["state"] = &types.AttributeValueMemberS{Value: dynamo.DeliverySending}
		}
		if _, err := db.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(db.Tables.Deliveries), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	all := func(t *testing.T, outcome minipush.Outcome, limit int) []dynamo.Delivery {
		var got []dynamo.Delivery
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
