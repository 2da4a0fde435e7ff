// Package token owns each mini-program's WeChat access token, as WeChat asks: one
// shared copy (a DynamoDB item) that every instance reads, an in-memory copy per
// instance, and a refresh lock so that many instances starting at once, or many
// goroutines seeing 40001 at once, cause one fetch rather than a stampede. It never
// uses stable_token's force mode (20 a day); a token rejected as stale is replaced by
// re-reading the shared copy first and fetching only if that is the stale one too.
package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"minipush"
)

// Store is the shared copy (implemented by *dynamo.DB).
type Store interface {
	// GetToken returns the shared token; a zero value when there is none yet.
	GetToken(ctx context.Context, appID string) (minipush.SharedToken, error)
	// LockTokenRefresh takes the refresh lock; ECONFLICT when another owner holds it.
	LockTokenRefresh(ctx context.Context, appID, owner string, ttl time.Duration) error
	// PutToken stores a new token and releases the lock.
	PutToken(ctx context.Context, appID, owner, accessToken string, expiresAt time.Time) error
}

// Fetcher gets a token from WeChat for an app (stable_token in normal mode, or the
// legacy endpoint); it looks up the app's secret itself so secrets stay out of here.
type Fetcher func(ctx context.Context, appID string) (accessToken string, expiresAt time.Time, err error)

// Cache hands out access tokens. It is safe for concurrent use.
type Cache struct {
	Store Store
	Fetch Fetcher
	Now   func() time.Time
	// RefreshBefore is how long before expiry a token is replaced. stable_token issues
	// the next token in the last 5 minutes, so asking then gets the new one.
	RefreshBefore time.Duration
	// LockTTL bounds how long a crashed refresher can hold the others up.
	LockTTL time.Duration
	// PollEvery is how often an instance waiting on another's refresh re-reads the store.
	PollEvery time.Duration
	// Owner names this instance in the refresh lock.
	Owner string

	mu   sync.Mutex
	apps map[string]*appToken
	// Fetches counts fetches from WeChat by this instance, for tests and metrics.
	fetches int
}

type appToken struct {
	mu        sync.Mutex // serialises refreshes of one app in this instance (single flight)
	token     string
	expiresAt time.Time
}

// New returns a cache with the defaults.
func New(store Store, fetch Fetcher) *Cache {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Cache{
		Store: store, Fetch: fetch, Now: time.Now,
		RefreshBefore: 5 * time.Minute, LockTTL: 15 * time.Second, PollEvery: 100 * time.Millisecond,
		Owner: hex.EncodeToString(b),
	}
}

func (c *Cache) app(appID string) *appToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apps == nil {
		c.apps = map[string]*appToken{}
	}
	a, ok := c.apps[appID]
	if !ok {
		a = &appToken{}
		c.apps[appID] = a
	}
	return a
}

// Fetches returns how many times this instance fetched from WeChat.
func (c *Cache) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

func (c *Cache) fresh(expiresAt time.Time) bool {
	return c.Now().Add(c.RefreshBefore).Before(expiresAt)
}

// Get returns a valid token for appID.
func (c *Cache) Get(ctx context.Context, appID string) (string, error) {
	return c.get(ctx, appID, "")
}

// Invalidate is called with a token WeChat rejected as stale (40001/40014/42001) and
// returns a different one. Many goroutines reporting the same stale token cause one
// refresh; a report about a token already replaced returns the replacement at once.
func (c *Cache) Invalidate(ctx context.Context, appID, stale string) (string, error) {
	return c.get(ctx, appID, stale)
}

func (c *Cache) get(ctx context.Context, appID, stale string) (string, error) {
	a := c.app(appID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && a.token != stale && c.fresh(a.expiresAt) {
		return a.token, nil
	}
	tok, exp, err := c.refresh(ctx, appID, stale)
	if err != nil {
		return "", err
	}
	a.token, a.expiresAt = tok, exp
	return tok, nil
}

// refresh gets a token that is fresh and not stale: from the shared copy if another
// instance already has one, else by taking the lock and fetching.
func (c *Cache) refresh(ctx context.Context, appID, stale string) (string, time.Time, error) {
	deadline := c.Now().Add(2 * c.LockTTL)
	for {
		shared, err := c.Store.GetToken(ctx, appID)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("token: %w", err)
		}
		if shared.AccessToken != "" && shared.AccessToken != stale && c.fresh(shared.ExpiresAt) {
			return shared.AccessToken, shared.ExpiresAt, nil
		}
		err = c.Store.LockTokenRefresh(ctx, appID, c.Owner, c.LockTTL)
		switch {
		case err == nil:
			// Another instance may have stored a token between our read and our lock
			// (and released the lock doing so): look again before asking WeChat.
			shared, err := c.Store.GetToken(ctx, appID)
			if err != nil {
				return "", time.Time{}, fmt.Errorf("token: %w", err)
			}
			if shared.AccessToken != "" && shared.AccessToken != stale && c.fresh(shared.ExpiresAt) {
				if err := c.Store.PutToken(ctx, appID, c.Owner, shared.AccessToken, shared.ExpiresAt); err != nil {
					return "", time.Time{}, fmt.Errorf("token: release lock: %w", err)
				}
				return shared.AccessToken, shared.ExpiresAt, nil
			}
			return c.fetch(ctx, appID)
		case minipush.ErrorCode(err) != minipush.ECONFLICT:
			return "", time.Time{}, fmt.Errorf("token: %w", err)
		case c.Now().After(deadline):
			return "", time.Time{}, minipush.Errorf(minipush.EUNAVAILABLE, "token refresh of %s held by another instance", appID)
		}
		select {
		case <-ctx.Done():
			return "", time.Time{}, ctx.Err()
		case <-time.After(c.PollEvery):
		}
	}
}

func (c *Cache) fetch(ctx context.Context, appID string) (string, time.Time, error) {
	c.mu.Lock()
	c.fetches++
	c.mu.Unlock()
	tok, exp, err := c.Fetch(ctx, appID)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: fetch for %s: %w", appID, err)
	}
	if err := c.Store.PutToken(ctx, appID, c.Owner, tok, exp); err != nil {
		return "", time.Time{}, fmt.Errorf("token: %w", err)
	}
	return tok, exp, nil
}
