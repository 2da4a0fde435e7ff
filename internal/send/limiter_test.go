package send_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/send"
)

// limiterClock is a limiter clock that moves only when the limiter sleeps.
type limiterClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
	waits int
}

func (c *limiterClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits++
	return c.t
}

func (c *limiterClock) sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
	return nil
}

// TestRateLimited: with SEND_RATE_PER_SECOND set, every WeChat call waits for the
// instance's token bucket, and recipients that end without a call do not.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 20)
	idle := []string{f.sb.NewUser(appID), f.sb.NewUser(appID)} // no grant: no call
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids)+len(idle))
	clk := &limiterClock{t: time.Unix(1e9, 0)}
	h := f.handler(4)
	h.Limiter = &send.RateLimiter{PerSecond: 10, Burst: 1, Now: clk.now, Sleep: clk.sleep}
	handle(t, h, events10(t, batches("c", append(ids, idle...), 22))[0])
	if n := f.sb.Stats().Requests[sandbox.PathSubscribeSend]; n != len(ids) {
		t.Fatalf("WeChat saw %d sends, want %d", n, len(ids))
	}
	// The first call takes the burst; the other 19 wait 0.1 s each on the fake clock.
	if clk.waits != len(ids) || clk.slept < 1850*time.Millisecond || clk.slept > 1950*time.Millisecond {
		t.Errorf("limiter consulted %d times, slept %v; want %d and about 1.9s", clk.waits, clk.slept, len(ids))
	}
	got := f.outcomes(t, "c")
	for _, u := range ids {
		if got[u].Outcome != minipush.OutcomeSent {
			t.Errorf("%s: %s, want sent", u, got[u].Outcome)
		}
	}
	for _, u := range idle {
		if got[u].Outcome != minipush.OutcomeNoGrant {
			t.Errorf("%s: %s, want no_grant", u, got[u].Outcome)
		}
	}
}
