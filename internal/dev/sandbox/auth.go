package sandbox

import (
	"encoding/json"
	"net/http"
	"time"
)

// requestAppLocked names the app a request is for, for fault matching: the appid
// parameter or body field, or the app owning the access token.
func (s *Sandbox) requestAppLocked(r *http.Request, body []byte) string {
	q := r.URL.Query()
	if id := q.Get("appid"); id != "" {
		return id
	}
	if t := q.Get("access_token"); t != "" {
		for id, a := range s.apps {
			if _, ok := a.tokens[t]; ok {
				return id
			}
		}
		return ""
	}
	var b struct {
		AppID string `json:"appid"`
	}
	if json.Unmarshal(body, &b) == nil {
		return b.AppID
	}
	return ""
}

// credentialsLocked checks an appid and secret the way the token and login APIs do.
func (s *Sandbox) credentialsLocked(appID, secret string) (*app, *wxError) {
	a, ok := s.apps[appID]
	if !ok || appID == "" {
		return nil, errc(40013, "")
	}
	if secret != a.secret {
		return nil, errc(40125, "")
	}
	return a, nil
}

// code2Session serves GET /sns/jscode2session.
func (s *Sandbox) code2Session(r *http.Request, _ []byte) reply {
	q := r.URL.Query()
	a, e := s.credentialsLocked(q.Get("appid"), q.Get("secret"))
	if e != nil {
		return failReply(e)
	}
	if q.Get("grant_type") != "authorization_code" {
		return failReply(errc(40002, "invalid grant_type, must be authorization_code"))
	}
	code := q.Get("js_code")
	if code == "" {
		return failReply(errc(41008, ""))
	}
	c, ok := a.codes[code]
	switch {
	case !ok:
		return failReply(errc(40029, ""))
	case c.used:
		return failReply(errc(40163, ""))
	case !s.now().Before(c.issued.Add(CodeTTL)):
		return failReply(errc(40029, "invalid code, code expired"))
	}
	c.used = true
	return okReply(map[string]any{
		"openid":      c.openID,
		"session_key": s.randStringLocked(22, alnum) + "==",
	})
}

// issueLocked mints and stores a new token for a.
func (s *Sandbox) issueLocked(a *app) *token {
	t := &token{value: s.randStringLocked(136, tokenChars), expires: s.now().Add(s.tokenTTL)}
	a.tokens[t.value] = t
	s.stats.TokensIssued[a.id]++
	return t
}

func (s *Sandbox) tokenBody(t *token) map[string]any {
	secs := int64(t.expires.Sub(s.now()) / time.Second)
	return map[string]any{"access_token": t.value, "expires_in": max(secs, 1)}
}

// legacyToken serves GET /cgi-bin/token: a new token on every call; the previous one
// keeps working for TokenOverlap so callers can switch over.
func (s *Sandbox) legacyToken(r *http.Request, _ []byte) reply {
	q := r.URL.Query()
	if q.Get("grant_type") != "client_credential" {
		return failReply(errc(40002, ""))
	}
	a, e := s.credentialsLocked(q.Get("appid"), q.Get("secret"))
	if e != nil {
		return failReply(e)
	}
	if old := a.legacy; old != nil {
		if dies := s.now().Add(TokenOverlap); old.dies.IsZero() || dies.Before(old.dies) {
			old.dies = dies
		}
	}
	a.legacy = s.issueLocked(a)
	return okReply(s.tokenBody(a.legacy))
}

// stableToken serves POST /cgi-bin/stable_token (JSON only). Normal mode returns the
// current token until its last TokenOverlap; force_refresh invalidates it, at most
// ForceRefreshPerDay times a day and not within ForceRefreshInterval of the last one.
func (s *Sandbox) stableToken(r *http.Request, body []byte) reply {
	var b struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := strictDecode(body, &b); err != nil {
		return failReply(errc(47001, "data format error: %v", err))
	}
	if b.GrantType != "client_credential" {
		return failReply(errc(40002, ""))
	}
	a, e := s.credentialsLocked(b.AppID, b.Secret)
	if e != nil {
		return failReply(e)
	}
	now := s.now()
	cur := a.stable
	if cur != nil && (s.tokenStateLocked(a, cur) != nil) {
		cur = nil
	}
	if b.ForceRefresh {
		if n := len(a.forced); n > 0 && now.Sub(a.forced[n-1]) < ForceRefreshInterval && cur != nil {
			// WeChat does not refresh within 30 s of the last forced refresh.
			return okReply(s.tokenBody(cur))
		}
		var recent []time.Time
		for _, t := range a.forced {
			if now.Sub(t) < 24*time.Hour {
				recent = append(recent, t)
			}
		}
		a.forced = recent
		if len(recent) >= ForceRefreshPerDay {
			return failReply(errc(45009, "reach max api daily quota limit, force_refresh over %d a day", ForceRefreshPerDay))
		}
		a.forced = append(a.forced, now)
		s.stats.ForceRefreshes[a.id]++
		if cur != nil {
			delete(a.tokens, cur.value)
		}
		a.stable = s.issueLocked(a)
		return okReply(s.tokenBody(a.stable))
	}
	if cur != nil && now.Before(cur.expires.Add(-TokenOverlap)) {
		return okReply(s.tokenBody(cur))
	}
	// Missing, expired, or in its last minutes: a new one; the old one lives out its TTL.
	a.stable = s.issueLocked(a)
	return okReply(s.tokenBody(a.stable))
}

// tokenStateLocked reports why t no longer works, or nil.
func (s *Sandbox) tokenStateLocked(a *app, t *token) *wxError {
	now := s.now()
	switch {
	case !now.Before(t.expires):
		return errc(42001, "")
	case !t.dies.IsZero() && !now.Before(t.dies):
		delete(a.tokens, t.value)
		return errc(40001, "")
	}
	return nil
}

// authLocked resolves the access_token of a business call to its app.
func (s *Sandbox) authLocked(r *http.Request) (*app, *wxError) {
	v := r.URL.Query().Get("access_token")
	if v == "" {
		return nil, errc(41001, "")
	}
	for _, a := range s.apps {
		if t, ok := a.tokens[v]; ok {
			if e := s.tokenStateLocked(a, t); e != nil {
				return nil, e
			}
			return a, nil
		}
	}
	return nil, errc(40001, "")
}

// InvalidateTokens makes every token of appID stop working at once (answering
// 40001), as when another process refreshes it or WeChat revokes it.
func (s *Sandbox) InvalidateTokens(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID, "InvalidateTokens")
	if a == nil {
		return
	}
	clear(a.tokens)
	a.stable, a.legacy = nil, nil
}

// NewUser creates a user of appID and returns the openid ("" and a setup error for
// an unknown app).
func (s *Sandbox) NewUser(appID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID, "NewUser")
	if a == nil {
		return ""
	}
	return s.newUserLocked(a)
}

func (s *Sandbox) newUserLocked(a *app) string {
	id := "o" + s.randStringLocked(27, tokenChars)
	a.users[id] = &user{openID: id, subGrants: map[string]int{}}
	return id
}

// LoginCode issues a js_code for a known user, as wx.login does: valid CodeTTL, once.
func (s *Sandbox) LoginCode(appID, openID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID, "LoginCode")
	if a == nil {
		return ""
	}
	if _, ok := a.users[openID]; !ok {
		s.setupErrorLocked("LoginCode: unknown openid " + openID)
		return ""
	}
	return s.codeLocked(a, openID)
}

func (s *Sandbox) codeLocked(a *app, openID string) string {
	c := s.randStringLocked(32, alnum)
	a.codes[c] = &jsCode{openID: openID, issued: s.now()}
	return c
}

// NewLogin creates a user and a js_code for them in one call.
func (s *Sandbox) NewLogin(appID string) (openID, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID, "NewLogin")
	if a == nil {
		return "", ""
	}
	openID = s.newUserLocked(a)
	return openID, s.codeLocked(a, openID)
}
