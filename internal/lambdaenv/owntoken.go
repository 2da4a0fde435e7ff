package lambdaenv

import (
	"context"
	"fmt"
	"sync"
	"time"

	"minipush"
	"minipush/internal/wechat"
)

// stableTokens is the admin function's own access tokens (the template sync, test
// sends): stable_token in normal mode answers the token the senders already use, so
// neither invalidates the other, and the admin role keeps no access to send's shared
// token cache (template.yaml denies it the token#* items). Tokens are kept per instance
// until shortly before they expire; force_refresh is never used (20 a day, and it would
// invalidate every sender's token).
type stableTokens struct {
	client *wechat.Client
	apps   minipush.Apps
	now    func() time.Time

	mu     sync.Mutex
	tokens map[string]wechat.Token // by appId
}

func newStableTokens(client *wechat.Client, apps minipush.Apps, now func() time.Time) *stableTokens {
	return &stableTokens{client: client, apps: apps, now: now, tokens: map[string]wechat.Token{}}
}

// Get returns appID's token, fetching it when none is kept or it expires within 5
// minutes (stable_token hands out the next token then).
func (s *stableTokens) Get(ctx context.Context, appID string) (string, error) {
	s.mu.Lock()
	tok, ok := s.tokens[appID]
	s.mu.Unlock()
	if ok && s.now().Add(5*time.Minute).Before(tok.ExpiresAt) {
		return tok.AccessToken, nil
	}
	return s.fetch(ctx, appID)
}

// Invalidate drops stale (WeChat refused it) and fetches again.
func (s *stableTokens) Invalidate(ctx context.Context, appID, stale string) (string, error) {
	s.mu.Lock()
	if s.tokens[appID].AccessToken == stale {
		delete(s.tokens, appID)
	}
	s.mu.Unlock()
	return s.Get(ctx, appID)
}

func (s *stableTokens) fetch(ctx context.Context, appID string) (string, error) {
	app, ok := s.apps.Find(appID)
	if !ok {
		return "", fmt.Errorf("no credentials for app %s in the wechat secret", appID)
	}
	tok, err := s.client.StableToken(ctx, app.AppID, app.AppSecret, false)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.tokens[appID] = tok
	s.mu.Unlock()
	return tok.AccessToken, nil
}
