package send

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{0, 1, DefaultRetryBase},
		{0, 2, 2 * DefaultRetryBase},
		{0, 5, 16 * DefaultRetryBase},
		{0, 12, MaxDelay},
		{time.Minute, 100, MaxDelay},
		{-1, 3, 0},
	} {
		if got := backoff(tc.base, tc.attempt); got != tc.want {
			t.Errorf("backoff(%v, %d) = %v, want %v", tc.base, tc.attempt, got, tc.want)
		}
	}
}

func TestRequeueID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"c-1-7": "c-1-7-r1", "c-1-7-r1": "c-1-7-r1", "c-1-7-r3": "c-1-7-r1", "x-run": "x-run-r1"} {
		if got := requeueID(in, 1); got != want {
			t.Errorf("requeueID(%q, 1) = %q, want %q", in, got, want)
		}
	}
}

// fakeClock moves only when the limiter sleeps, so the test measures the waits the
// limiter asks for without waiting.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
	return nil
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	t.Run("Paces", func(t *testing.T) {
		t.Parallel()
		c := &fakeClock{t: time.Unix(1e9, 0)}
		l := &RateLimiter{PerSecond: 10, Burst: 10, Now: c.now, Sleep: c.sleep}
		for range 30 {
			if err := l.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		// 10 from the burst, then 20 at 10/s.
		if c.slept < 1900*time.Millisecond || c.slept > 2100*time.Millisecond {
			t.Errorf("30 calls at 10/s with burst 10 slept %v, want about 2s", c.slept)
		}
	})
	t.Run("Off", func(t *testing.T) {
		t.Parallel()
		if l := NewRateLimiter(0); l != nil || l.Wait(t.Context()) != nil {
			t.Error("rate 0 should mean no limiter")
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		c := &fakeClock{t: time.Unix(1e9, 0)}
		l := &RateLimiter{PerSecond: 1, Burst: 1, Now: c.now, Sleep: func(ctx context.Context, d time.Duration) error { return context.Canceled }}
		_ = l.Wait(t.Context())
		if err := l.Wait(t.Context()); err == nil {
			t.Error("Wait with a failing sleep returned nil")
		}
	})
}

// TestBusyDelay: a recipient another live sender holds is looked at again after
// seconds, the delay growing toward the lease and never past it, jittered down to half.
func TestBusyDelay(t *testing.T) {
	lease := 2 * time.Minute
	for _, tc := range []struct {
		looks  int
		jitter float64
		want   time.Duration
	}{
		{1, 1, 2 * time.Second},
		{1, 0.5, time.Second},
		{1, 0, time.Second}, // clamped to half
		{2, 1, 4 * time.Second},
		{4, 1, 16 * time.Second},
		{7, 1, lease + time.Second},
		{30, 1, lease + time.Second},
	} {
		if got := busyDelay(lease, tc.looks, tc.jitter); got != tc.want {
			t.Errorf("busyDelay(%v, %d, %v) = %v, want %v", lease, tc.looks, tc.jitter, got, tc.want)
		}
	}
}
