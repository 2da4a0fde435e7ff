package localstack_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
)

// bumpingAPI extends the TTL of one item between the reaper's scan and its deletes, the
// race a conditional delete must lose gracefully.
type bumpingAPI struct {
	*dynamodb.Client
	table string
	key   map[string]ddbtypes.AttributeValue
	to    int64
}

func (b *bumpingAPI) Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	out, err := b.Client.Scan(ctx, in, optFns...)
	if err == nil && aws.ToString(in.TableName) == b.table && b.key != nil {
		_, err = b.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: in.TableName, Key: b.key,
			UpdateExpression:          aws.String("SET expiresAt = :t"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":t": n(strconv.FormatInt(b.to, 10))},
		})
		b.key = nil
	}
	return out, err
}

func TestReaper(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	grants, state := env.Table("GrantsTable"), env.Table("StateTable")
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	epoch := func(t time.Time) ddbtypes.AttributeValue { return n(strconv.FormatInt(t.Unix(), 10)) }
	put := func(table string, item map[string]ddbtypes.AttributeValue) {
		t.Helper()
		if _, err := env.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(table, pk, sk string) bool {
		t.Helper()
		out, err := env.DynamoDB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s(sk)}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item != nil
	}
	grant := func(pk string, exp ddbtypes.AttributeValue) map[string]ddbtypes.AttributeValue {
		it := map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s("g#1"), "ek": s("t#" + pk)}
		if exp != nil {
			it["expiresAt"] = exp
		}
		return it
	}
	put(grants, grant("past", epoch(now.Add(-time.Hour))))
	put(grants, grant("now", epoch(now)))
	put(grants, grant("future", epoch(now.Add(time.Second))))
	put(grants, grant("ancient", epoch(now.AddDate(-6, 0, 0)))) // AWS TTL ignores > 5 years old
	put(grants, grant("string", s(strconv.FormatInt(now.Add(-time.Hour).Unix(), 10))))
	put(grants, grant("none", nil))
	put(grants, grant("bumped", epoch(now.Add(-time.Minute))))
	put(state, map[string]ddbtypes.AttributeValue{"pk": s("state-past"), "sk": s("x"), "expiresAt": epoch(now.Add(-time.Hour))})

	api := &bumpingAPI{Client: env.DynamoDB, table: grants, to: now.Add(time.Hour).Unix(),
		key: map[string]ddbtypes.AttributeValue{"pk": s("bumped"), "sk": s("g#1")}}
	reaper := localstack.NewReaper(api, env.Template, env.Resources, clock)
	stream := mustReader(t, env, `{"eventName":["REMOVE"]}`)
	mustNext(t, stream) // skip the inserts

	t.Run("DeletesExpired", func(t *testing.T) {
		deleted, err := reaper.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if deleted != 3 {
			t.Errorf("deleted = %d, want 3 (past, now, state-past)", deleted)
		}
		for pk, want := range map[string]bool{"past": false, "now": false, "future": true, "ancient": true, "string": true, "none": true, "bumped": true} {
			if got := exists(grants, pk, "g#1"); got != want {
				t.Errorf("grant %s exists = %v, want %v", pk, got, want)
			}
		}
		if exists(state, "state-past", "x") {
			t.Error("expired state item survived")
		}
	})
	t.Run("StreamRemoves", func(t *testing.T) {
		recs := mustNext(t, stream)
		if got, want := summary(recs), "REMOVE:past REMOVE:now"; got != want {
			t.Fatalf("grants stream = %s, want %s", got, want)
		}
		if recs[0].Change.OldImage["expiresAt"].Number() != strconv.FormatInt(now.Add(-time.Hour).Unix(), 10) {
			t.Errorf("old image = %v", recs[0].Change.OldImage)
		}
	})
	t.Run("Idempotent", func(t *testing.T) {
		deleted, err := reaper.RunOnce(ctx)
		if err != nil || deleted != 0 {
			t.Fatalf("second pass = %d, %v; want 0, nil", deleted, err)
		}
	})
	t.Run("ClockMoves", func(t *testing.T) {
		now = now.Add(2 * time.Hour) // past "future" and the bumped expiry
		deleted, err := reaper.RunOnce(ctx)
		if err != nil || deleted != 2 {
			t.Fatalf("after the clock moved = %d, %v; want 2 (future, bumped), nil", deleted, err)
		}
		if exists(grants, "future", "g#1") || exists(grants, "bumped", "g#1") {
			t.Error("expired grants survived")
		}
		if got, want := summary(mustNext(t, stream)), "REMOVE:future REMOVE:bumped"; got != want {
			t.Errorf("grants stream = %s, want %s", got, want)
		}
	})
	t.Run("RunStopsWithContext", func(t *testing.T) {
		rctx, cancel := context.WithCancel(ctx)
		put(grants, grant("late", epoch(now.Add(-time.Second))))
		done := make(chan struct{})
		go func() { reaper.Run(rctx, time.Hour, nil); close(done) }()
		// Run's first pass happens at once: wait for its REMOVE on the stream.
		var got string
		for got == "" && ctx.Err() == nil {
			got = summary(mustNext(t, stream))
		}
		cancel()
		<-done
		if got != "REMOVE:late" {
			t.Fatalf("Run's first pass removed %q, want REMOVE:late", got)
		}
	})
}
