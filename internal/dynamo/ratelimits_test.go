package dynamo_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestAllow(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	const limit = 5
	window := clk.Now().Truncate(time.Minute)

	// counter reads the window's item straight from the state table: its count and TTL.
	counter := func(t *testing.T, key string, start time.Time) (n, expires string) {
		t.Helper()
		out, err := db.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(db.Tables.State), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{
				"pk": &types.AttributeValueMemberS{Value: "rate#" + key},
				"sk": &types.AttributeValueMemberS{Value: strconv.FormatInt(start.Unix(), 10)},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if out.Item == nil {
			return "", ""
		}
		return out.Item["n"].(*types.AttributeValueMemberN).Value, out.Item["expiresAt"].(*types.AttributeValueMemberN).Value
	}

	t.Run("ConcurrentExactlyLimit", func(t *testing.T) {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				ok, err := db.Allow(ctx, "collect#wx1#u1", limit, time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		if allowed.Load() != limit {
			t.Fatalf("%d of 12 concurrent events allowed, want exactly %d", allowed.Load(), limit)
		}
		n, exp := counter(t, "collect#wx1#u1", window)
		if n != strconv.Itoa(limit) || exp != strconv.FormatInt(window.Add(2*time.Minute).Unix(), 10) {
			t.Fatalf("counter n=%s expiresAt=%s, want %d and the window's end plus one window", n, exp, limit)
		}
	})
	t.Run("DeniedChangesNothing", func(t *testing.T) {
		n0, exp0 := counter(t, "collect#wx1#u1", window)
		if ok, err := db.Allow(ctx, "collect#wx1#u1", limit, time.Minute); err != nil || ok {
			t.Fatalf("over the limit: %v %v, want denied", ok, err)
		}
		if n, exp := counter(t, "collect#wx1#u1", window); n != n0 || exp != exp0 {
			t.Fatalf("a denied event changed the counter: %s/%s -> %s/%s", n0, exp0, n, exp)
		}
	})
	t.Run("OtherKeyIndependent", func(t *testing.T) {
		if ok, err := db.Allow(ctx, "collect#wx1#u2", limit, time.Minute); err != nil || !ok {
			t.Fatalf("other key: %v %v", ok, err)
		}
	})
	t.Run("ZeroLimitDenies", func(t *testing.T) {
		if ok, err := db.Allow(ctx, "collect#wx1#u3", 0, time.Minute); err != nil || ok {
			t.Fatalf("limit 0: %v %v, want denied", ok, err)
		}
		if n, _ := counter(t, "collect#wx1#u3", window); n != "" {
			t.Fatalf("limit 0 wrote a counter n=%s", n)
		}
	})
	t.Run("NextWindow", func(t *testing.T) {
		clk.Add(time.Minute)
		if ok, err := db.Allow(ctx, "collect#wx1#u1", limit, time.Minute); err != nil || !ok {
			t.Fatalf("next window: %v %v, want allowed", ok, err)
		}
		if n, _ := counter(t, "collect#wx1#u1", window.Add(time.Minute)); n != "1" {
			t.Fatalf("next window's counter n=%s, want 1", n)
		}
	})
}

// TestSpent: the read-only check sees what Allow counted in the current window, counts
// nothing itself, and starts afresh in the next window.
func TestSpent(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	const key, limit = "session#h1", 2
	spent := func(t *testing.T, want bool) {
		t.Helper()
		if got, err := db.Spent(ctx, key, limit, time.Minute); err != nil || got != want {
			t.Fatalf("Spent: %v %v, want %v", got, err, want)
		}
	}
	spent(t, false) // no item yet
	for range limit {
		spent(t, false)
		if ok, err := db.Allow(ctx, key, limit, time.Minute); err != nil || !ok {
			t.Fatalf("Allow: %v %v", ok, err)
		}
	}
	// Many checks leave the count where it is: the next Allow is still refused.
	spent(t, true)
	spent(t, true)
	if ok, err := db.Allow(ctx, key, limit, time.Minute); err != nil || ok {
		t.Fatalf("Allow over the limit: %v %v, want refused", ok, err)
	}
	if got, err := db.Spent(ctx, key, 0, time.Minute); err != nil || !got {
		t.Fatalf("limit 0: %v %v, want spent", got, err)
	}
	clk.Add(time.Minute)
	spent(t, false)
}
