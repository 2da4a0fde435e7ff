package dynamo_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	const limit = 5
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := db.Allow(ctx, "collect#wx1#u1", limit, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != limit {
		t.Fatalf("%d of 12 concurrent events allowed, want exactly %d", allowed.Load(), limit)
	}
	t.Run("OtherKeyIndependent", func(t *testing.T) {
		if ok, err := db.Allow(ctx, "collect#wx1#u2", limit, time.Minute); err != nil || !ok {
			t.Fatalf("other key: %v %v", ok, err)
		}
	})
	t.Run("NextWindow", func(t *testing.T) {
		clk.Add(time.Minute)
		if ok, err := db.Allow(ctx, "collect#wx1#u1", limit, time.Minute); err != nil || !ok {
			t.Fatalf("next window: %v %v, want allowed", ok, err)
		}
	})
}
