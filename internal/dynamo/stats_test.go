package dynamo_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
)

// expiredOn returns the inventory's expiry counts of day as "total form/prepay/subscribe",
// failing when the day is outside the reported window.
func expiredOn(t *testing.T, inv minipush.GrantInventory, day time.Time) string {
	t.Helper()
	for _, d := range inv.ExpiredPerDay {
		if d.Day == minipush.ExpiryDayOf(day) {
			return fmt.Sprintf("%d %d/%d/%d", d.Total, d.ByKind[minipush.GrantForm], d.ByKind[minipush.GrantPrepay], d.ByKind[minipush.GrantSubscribe])
		}
	}
	t.Fatalf("day %s is not among the reported days", minipush.ExpiryDayOf(day))
	return ""
}

func mustInventory(t *testing.T, db *dynamo.DB, app string) minipush.GrantInventory {
	t.Helper()
	inv, err := db.GrantInventory(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestRecordExpiry(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	expired := formGrant("wx1", "u1", "f1", now.Add(-minipush.FormGrantValidity-time.Hour)) // expired an hour ago, today

	t.Run("CountedOnce", func(t *testing.T) {
		counted, err := db.RecordExpiry(ctx, expired)
		if err != nil || !counted {
			t.Fatalf("first RecordExpiry = %v, %v; want counted", counted, err)
		}
		counted, err = db.RecordExpiry(ctx, expired)
		if err != nil || counted {
			t.Fatalf("replayed RecordExpiry = %v, %v; want not counted, no error", counted, err)
		}
		if got := expiredOn(t, mustInventory(t, db, "wx1"), now); got != "1 1/0/0" {
			t.Fatalf("today's expiries = %s, want 1 1/0/0", got)
		}
	})

	t.Run("ConcurrentReplays", func(t *testing.T) {
		g := formGrant("wx1", "u2", "f2", now.Add(-minipush.FormGrantValidity-time.Hour))
		var wins atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				counted, err := db.RecordExpiry(ctx, g)
				if err != nil {
					t.Error(err)
				}
				if counted {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d of 8 concurrent deliveries counted, want 1", wins.Load())
		}
		if got := expiredOn(t, mustInventory(t, db, "wx1"), now); got != "2 2/0/0" {
			t.Fatalf("today's expiries = %s, want 2 2/0/0", got)
		}
	})

	t.Run("ByKindAcrossShards", func(t *testing.T) {
		yesterday := now.Add(-24 * time.Hour)
		var gs []minipush.Grant
		for i := range 20 {
			gs = append(gs, formGrant("wx1", "s"+strconv.Itoa(i), "y"+strconv.Itoa(i), yesterday.Add(-minipush.FormGrantValidity)))
		}
		for i := range 3 {
			p := formGrant("wx1", "p"+strconv.Itoa(i), "pp"+strconv.Itoa(i), yesterday.Add(-minipush.FormGrantValidity))
			p.Kind, p.Uses = minipush.GrantPrepay, 3
			gs = append(gs, p)
		}
		for _, g := range gs {
			if _, err := db.RecordExpiry(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		if got := expiredOn(t, mustInventory(t, db, "wx1"), yesterday); got != "23 20/3/0" {
			t.Fatalf("yesterday's expiries = %s, want 23 20/3/0", got)
		}
	})

	t.Run("SameGrantStoredAgainExpiresAgain", func(t *testing.T) {
		// A formId re-uploaded after its first copy expired is a new stored grant with the
		// same ID and a later expiry: its expiry is a second, distinct event.
		again := expired
		again.ExpiresAt = expired.ExpiresAt.Add(time.Minute)
		counted, err := db.RecordExpiry(ctx, again)
		if err != nil || !counted {
			t.Fatalf("RecordExpiry of the re-stored grant = %v, %v; want counted", counted, err)
		}
	})

	t.Run("OtherAppSeparate", func(t *testing.T) {
		if got := expiredOn(t, mustInventory(t, db, "wx2"), now); got != "0 0/0/0" {
			t.Fatalf("other app's expiries = %s, want none", got)
		}
	})

	t.Run("ItemsCarryTTL", func(t *testing.T) {
		out, err := db.Client.Query(ctx, &dynamodb.QueryInput{
			TableName:              aws.String(db.Tables.State),
			KeyConditionExpression: aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": &types.AttributeValueMemberS{Value: "expired#" + minipush.UserKey("wx1", "u1")},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Items) != 2 {
			t.Fatalf("markers of u1 = %d, want 2", len(out.Items))
		}
		want := strconv.FormatInt(now.Add(7*24*time.Hour).Unix(), 10)
		if got := out.Items[0]["expiresAt"].(*types.AttributeValueMemberN).Value; got != want {
			t.Errorf("marker expiresAt = %s, want %s (a week after counting)", got, want)
		}
		day := now.Truncate(24 * time.Hour)
		// Counters are spread over partition keys expstats#<app>#<shard>.
		var counters []map[string]types.AttributeValue
		for shard := range 32 {
			out, err = db.Client.Query(ctx, &dynamodb.QueryInput{
				TableName:              aws.String(db.Tables.State),
				KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :day)"),
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":pk":  &types.AttributeValueMemberS{Value: "expstats#wx1#" + strconv.Itoa(shard)},
					":day": &types.AttributeValueMemberS{Value: minipush.ExpiryDayOf(day) + "#"},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			counters = append(counters, out.Items...)
		}
		if len(counters) == 0 {
			t.Fatal("no counters for today")
		}
		want = strconv.FormatInt(day.Add(dynamo.StatsRetention).Unix(), 10)
		for _, it := range counters {
			if got := it["expiresAt"].(*types.AttributeValueMemberN).Value; got != want {
				t.Errorf("counter expiresAt = %s, want %s (400 days after its day)", got, want)
			}
		}
	})
}

func TestGrantInventory(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	add := func(app, openid string, gs ...minipush.Grant) {
		t.Helper()
		st, err := db.AddGrants(ctx, app, openid, gs, minipush.DefaultMaxLiveGrants)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range st {
			if s != minipush.AddAccepted {
				t.Fatalf("grant %d: %s", i, s)
			}
		}
	}
	prepay := formGrant("wx1", "u2", "p1", now)
	prepay.Kind, prepay.Uses = minipush.GrantPrepay, 3
	usedUp := formGrant("wx1", "u2", "p2", now)
	usedUp.Kind, usedUp.Uses = minipush.GrantPrepay, 0
	add("wx1", "u1",
		formGrant("wx1", "u1", "in12h", now.Add(12*time.Hour-minipush.FormGrantValidity)),
		formGrant("wx1", "u1", "in4d", now.Add(4*24*time.Hour-minipush.FormGrantValidity)),
		formGrant("wx1", "u1", "gone", now.Add(-time.Second-minipush.FormGrantValidity)), // expired, not yet deleted
		subscribeGrant("wx1", "u1", "tpl1", "k1", now),
	)
	add("wx1", "u2", prepay, usedUp)
	add("wx2", "u1", formGrant("wx2", "u1", "other", now))
	if _, err := db.RecordExpiry(ctx, formGrant("wx1", "u9", "old", now.Add(-29*24*time.Hour-minipush.FormGrantValidity))); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RecordExpiry(ctx, formGrant("wx1", "u9", "older", now.Add(-30*24*time.Hour-minipush.FormGrantValidity))); err != nil {
		t.Fatal(err)
	}

	inv := mustInventory(t, db, "wx1")

	t.Run("LiveByKind", func(t *testing.T) {
		got := fmt.Sprintf("%d %d/%d/%d", inv.Live, inv.LiveByKind[minipush.GrantForm], inv.LiveByKind[minipush.GrantPrepay], inv.LiveByKind[minipush.GrantSubscribe])
		if want := "4 2/1/1"; got != want {
			t.Fatalf("live total form/prepay/subscribe = %s, want %s", got, want)
		}
	})
	t.Run("Expiring", func(t *testing.T) {
		// in12h within 24 h; in4d and the prepay (exactly 7 days) within 7 days too.
		if inv.Expiring24h != 1 || inv.Expiring7d != 3 {
			t.Fatalf("expiring within 24h/7d = %d/%d, want 1/3", inv.Expiring24h, inv.Expiring7d)
		}
	})
	t.Run("ExpiredPerDayWindow", func(t *testing.T) {
		days := inv.ExpiredPerDay
		if len(days) != minipush.ExpiryStatsDays {
			t.Fatalf("%d days reported, want %d", len(days), minipush.ExpiryStatsDays)
		}
		if days[len(days)-1].Day != "2026-11-25" || days[0].Day != "2026-10-27" {
			t.Fatalf("window %s..%s, want 2026-10-27..2026-11-25", days[0].Day, days[len(days)-1].Day)
		}
		if days[0].Total != 1 {
			t.Errorf("oldest day in the window = %+v, want the expiry of 29 days ago", days[0])
		}
		total := 0
		for _, d := range days {
			total += d.Total
		}
		if total != 1 {
			t.Errorf("expiries in the window = %d, want 1 (30 days ago is outside it)", total)
		}
	})
	t.Run("ClockMovesWindow", func(t *testing.T) {
		clk.Add(15 * time.Hour) // past midnight; in12h has expired
		later := mustInventory(t, db, "wx1")
		if later.Live != 3 || later.LiveByKind[minipush.GrantForm] != 1 || !later.At.Equal(now.Add(15*time.Hour)) {
			t.Fatalf("15 hours later: live %d (form %d) at %v, want 3 (form 1)", later.Live, later.LiveByKind[minipush.GrantForm], later.At)
		}
		if got := later.ExpiredPerDay[0].Day; got != "2026-10-28" {
			t.Errorf("window starts %s, want 2026-10-28", got)
		}
	})
	t.Run("NotTruncated", func(t *testing.T) {
		if inv.Truncated {
			t.Fatal("a small table's inventory is marked truncated")
		}
	})
	t.Run("Bounded", func(t *testing.T) {
		var gs []minipush.Grant
		for i := range 12 {
			gs = append(gs, formGrant("wx1", "many", "m"+strconv.Itoa(i), clk.Now()))
		}
		add("wx1", "many", gs...)
		full := mustInventory(t, db, "wx1")
		part, err := db.GrantInventoryBounded(ctx, "wx1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if full.Truncated || full.Live < 12 {
			t.Fatalf("unbounded inventory: live %d, truncated %v", full.Live, full.Truncated)
		}
		if !part.Truncated || part.Live >= full.Live {
			t.Fatalf("inventory bounded to 1 item: live %d of %d, truncated %v; want fewer, truncated", part.Live, full.Live, part.Truncated)
		}
	})
	t.Run("OtherApp", func(t *testing.T) {
		other := mustInventory(t, db, "wx2")
		if other.Live != 1 || other.LiveByKind[minipush.GrantForm] != 1 {
			t.Fatalf("wx2 live = %d %v, want 1 form", other.Live, other.LiveByKind)
		}
	})
}

func TestRetentionExpiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	if got, want := dynamo.RetentionExpiry(now, 30*24*time.Hour), time.Date(2026, 12, 25, 10, 0, 0, 0, time.UTC).Unix(); got != want {
		t.Fatalf("RetentionExpiry = %d, want %d", got, want)
	}
}
