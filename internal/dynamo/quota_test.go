package dynamo_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
)

// TestQuota: a shard's counter never gives more than its capacity however many
// senders take at once (the last take gets what is left, not nothing), tokens given
// back can be taken again, the pause is set once, and QuotaUse adds the shards up.
func TestQuota(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()
	const app, day = "wxquota", "2026-11-25"

	t.Run("ConcurrentTakesFitCapacity", func(t *testing.T) {
		const capacity = 47 // not a multiple of the chunk: the last take is partial
		var got atomic.Int64
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				n, err := db.TakeQuota(ctx, app, day, 0, 10, capacity, minipush.QuotaMarketing)
				if err != nil {
					t.Error(err)
				}
				got.Add(int64(n))
			})
		}
		wg.Wait()
		if got.Load() != capacity {
			t.Fatalf("12 senders took %d tokens of a shard of %d, want exactly %d", got.Load(), capacity, capacity)
		}
		if n, err := db.TakeQuota(ctx, app, day, 0, 10, capacity, minipush.QuotaMarketing); err != nil || n != 0 {
			t.Fatalf("take from a full shard: %d, %v; want 0", n, err)
		}
	})

	t.Run("ReturnedTokensAreTakenAgain", func(t *testing.T) {
		if err := db.ReturnQuota(ctx, app, day, 0, 7, minipush.QuotaMarketing); err != nil {
			t.Fatal(err)
		}
		// Transactional's larger capacity on the same counter sees the marketing use.
		if n, err := db.TakeQuota(ctx, app, day, 0, 50, 50, minipush.QuotaTransactional); err != nil || n != 10 {
			t.Fatalf("transactional take after 7 returned: %d, %v; want 10 (50 less the 40 marketing still holds)", n, err)
		}
		// Giving back more than a counter holds changes nothing.
		if err := db.ReturnQuota(ctx, app, day, 1, 5, minipush.QuotaMarketing); err != nil {
			t.Fatal(err)
		}
		u, err := db.QuotaUse(ctx, app, day, minipush.DefaultQuotaShards)
		if err != nil {
			t.Fatal(err)
		}
		if u.Used != 50 || u.UsedMarketing != 40 || u.UsedTransactional != 10 {
			t.Fatalf("use %+v, want 50 used: 40 marketing, 10 transactional", u)
		}
	})

	t.Run("PauseOnce", func(t *testing.T) {
		until := time.Date(2026, 11, 26, 0, 0, 0, 0, minipush.QuotaZone)
		set, err := db.PauseQuota(ctx, app, day, minipush.QuotaMarketing, until, "daily budget used up")
		if err != nil || !set {
			t.Fatalf("first pause: %v, %v; want set", set, err)
		}
		if set, err := db.PauseQuota(ctx, app, day, minipush.QuotaMarketing, until, "again"); err != nil || set {
			t.Fatalf("second pause: %v, %v; want not set (another sender's stands)", set, err)
		}
		read := minipush.QuotaRead{DailyLimit: 100, Used: 60, Remain: 40, RateCount: 10, RateSecond: 1, ReadAt: until.Add(-time.Hour)}
		if err := db.RecordQuotaRead(ctx, app, day, read); err != nil {
			t.Fatal(err)
		}
		st, err := db.QuotaStatus(ctx, app, day)
		if err != nil {
			t.Fatal(err)
		}
		if !st.MarketingPausedUntil.Equal(until) || !st.PausedUntil.IsZero() || st.PauseReason != "daily budget used up" ||
			st.Read.DailyLimit != 100 || st.Read.Remain != 40 || !st.Read.ReadAt.Equal(read.ReadAt) {
			t.Fatalf("status %+v, want marketing paused until %v with the first reason and the read kept", st, until)
		}
		if _, paused := st.PausedFor(minipush.QuotaTransactional, until.Add(-time.Minute)); paused {
			t.Fatal("a marketing pause holds transactional sends")
		}
		if _, paused := st.PausedFor(minipush.QuotaMarketing, until); paused {
			t.Fatal("the pause outlives the reset")
		}
	})
}
