package send

import (
	"context"
	"sync"
	"time"
)

// RateLimiter is a token bucket pacing one instance's WeChat calls: PerSecond calls a
// second on average, bursts of up to one second's worth. With the SQS event source's
// MaximumConcurrency it bounds the load on WeChat's quotas (instances × rate). A nil
// *RateLimiter never waits. Its clock and sleep are fields so tests run it without
// waiting.
type RateLimiter struct {
	PerSecond float64
	Burst     float64
	Now       func() time.Time
	// Sleep waits d or until ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter of perSecond calls a second on the wall clock, or
// nil (no limit) when perSecond is not positive.
func NewRateLimiter(perSecond float64) *RateLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &RateLimiter{PerSecond: perSecond, Burst: max(1, perSecond), Now: time.Now, Sleep: sleep}
}

// Wait blocks until the caller may make one call, or returns ctx's error. Callers are
// served in the order they reserved: a token taken on credit puts the bucket below
// zero and the next caller waits for it too.
func (l *RateLimiter) Wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := l.Now()
	if l.last.IsZero() {
		l.tokens = l.Burst
	} else if el := now.Sub(l.last); el > 0 {
		l.tokens = min(l.Burst, l.tokens+el.Seconds()*l.PerSecond)
	}
	l.last = now
	l.tokens--
	wait := time.Duration(0)
	if l.tokens < 0 {
		wait = time.Duration(-l.tokens / l.PerSecond * float64(time.Second))
	}
	l.mu.Unlock()
	if wait == 0 {
		return ctx.Err()
	}
	if err := l.Sleep(ctx, wait); err != nil {
		// Give the reservation back so the callers behind are not delayed by it.
		l.mu.Lock()
		l.tokens++
		l.mu.Unlock()
		return err
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
