package dynamo_test

import (
	"sync"
	"testing"
	"time"

	"minipush"
)

// TestClaimPush: a signed push URL is bound to its first body; the same body passes
// until it is marked applied, another body never does, and concurrent claims of the
// same body all pass (the push's effects are idempotent).
func TestClaimPush(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	until := clk.Now().Add(6 * time.Minute)
	claim := func(ts, nonce, digest string) minipush.PushClaim {
		t.Helper()
		c, err := db.ClaimPush(ctx, "wx1", ts, nonce, digest, until)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if c, err := db.ClaimPush(ctx, "wx1", "100", "n1", "body-a", until); err != nil || c != minipush.PushNew {
				t.Errorf("concurrent claim of one body: %v %v, want new", c, err)
			}
		})
	}
	wg.Wait()
	if c := claim("100", "n1", "body-b"); c != minipush.PushOtherBody {
		t.Fatalf("another body: %v, want PushOtherBody", c)
	}
	if err := db.MarkPushApplied(ctx, "wx1", "100", "n1", "body-a"); err != nil {
		t.Fatal(err)
	}
	if c := claim("100", "n1", "body-a"); c != minipush.PushApplied {
		t.Fatalf("same body after applied: %v, want PushApplied", c)
	}
	if c := claim("100", "n1", "body-b"); c != minipush.PushOtherBody {
		t.Fatalf("another body after applied: %v, want PushOtherBody", c)
	}
	// Another timestamp, nonce or app is another URL.
	for _, u := range [][2]string{{"101", "n1"}, {"100", "n2"}} {
		if c := claim(u[0], u[1], "body-b"); c != minipush.PushNew {
			t.Fatalf("URL %v: %v, want new", u, c)
		}
	}
	if c, err := db.ClaimPush(ctx, "wx2", "100", "n1", "body-b", until); err != nil || c != minipush.PushNew {
		t.Fatalf("other app: %v %v, want new", c, err)
	}
}
