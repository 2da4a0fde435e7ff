package token_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/token"
	"minipush/internal/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const appID, secret = "wxtokentest", "tokensecret"

// instances returns n caches that share one store, like n Lambda instances.
func instances(t *testing.T, n int) ([]*token.Cache, *sandbox.Sandbox) {
	t.Helper()
	env := testenv.New(t)
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: appID, Secret: secret}}, Seed: 1})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	wc := wechat.New(wechat.Options{BaseURL: srv.URL})
	db := dynamo.New(env.DynamoDB, dynamo.Tables{State: env.Table("StateTable")})
	fetch := func(ctx context.Context, app string) (string, time.Time, error) {
		tok, err := wc.StableToken(ctx, app, secret, false)
		return tok.AccessToken, tok.ExpiresAt, err
	}
	var out []*token.Cache
	for range n {
		c := token.New(db, fetch)
		c.PollEvery = 5 * time.Millisecond
		out = append(out, c)
	}
	return out, sb
}

// hammer calls f from many goroutines on every instance and returns the tokens seen.
func hammer(t *testing.T, caches []*token.Cache, f func(*token.Cache) (string, error)) map[string]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, c := range caches {
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := f(c)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[tok]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return seen
}

func TestNoStampede(t *testing.T) {
	t.Parallel()
	caches, sb := instances(t, 4)
	ctx := t.Context()

	seen := hammer(t, caches, func(c *token.Cache) (string, error) { return c.Get(ctx, appID) })
	if len(seen) != 1 {
		t.Fatalf("instances saw %d different tokens, want 1", len(seen))
	}
	if n := sb.Stats().TokensIssued[appID]; n != 1 {
		t.Fatalf("sandbox issued %d tokens for 80 cold callers on 4 instances, want 1", n)
	}
	fetches := 0
	for _, c := range caches {
		fetches += c.Fetches()
	}
	if fetches != 1 {
		t.Fatalf("%d fetches from WeChat, want 1 (the others read the shared copy)", fetches)
	}

	t.Run("OneRefreshPerInvalidation", func(t *testing.T) {
		var stale string
		for tok := range seen {
			stale = tok
		}
		sb.InvalidateTokens(appID)
		seen := hammer(t, caches, func(c *token.Cache) (string, error) { return c.Invalidate(ctx, appID, stale) })
		if len(seen) != 1 {
			t.Fatalf("after invalidation instances saw %d tokens, want 1", len(seen))
		}
		if _, ok := seen[stale]; ok {
			t.Fatal("Invalidate returned the stale token")
		}
		if n := sb.Stats().TokensIssued[appID]; n != 2 {
			t.Fatalf("sandbox issued %d tokens in all, want 2 (one refresh for 80 reports)", n)
		}
		// A late report about the old token gets the new one without a fetch.
		before := sb.Stats().TokensIssued[appID]
		if tok, err := caches[0].Invalidate(ctx, appID, stale); err != nil || seen[tok] == 0 {
			t.Fatalf("late invalidate = %q, %v", tok, err)
		}
		if sb.Stats().TokensIssued[appID] != before {
			t.Fatal("a late stale report caused another refresh")
		}
	})
}
