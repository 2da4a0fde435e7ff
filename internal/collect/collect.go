// Package collect is the mini-program's side of the API: sessions, grant uploads and
// WeChat's message push.
package collect

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/awsenv"
	"minipush/internal/config"
	"minipush/internal/dynamo"
	"minipush/internal/httpapi"
	"minipush/internal/session"
	"minipush/internal/wechat"
)

// Defaults of the handler's knobs.
const (
	DefaultSessionTTL    = 7 * 24 * time.Hour // then the mini-program logs in again silently with wx.login
	DefaultRatePerMinute = 30                 // uploads per user per minute
	RateEnv              = "COLLECT_RATE_PER_MINUTE"
	// DefaultSessionRatePerMinute bounds logins per source address: each costs a Lambda
	// and a jscode2session call, which WeChat limits per app, so a flood from one
	// source must not use up what real logins need. A user logs in about once a week
	// (DefaultSessionTTL); the headroom is for many users behind one carrier NAT.
	DefaultSessionRatePerMinute = 60
	SessionRateEnv              = "SESSION_RATE_PER_MINUTE"
	// SessionTTLEnv optionally overrides DefaultSessionTTL, as a Go duration ("72h").
	SessionTTLEnv = "SESSION_TTL"
	// MinSessionKeyLen refuses a short, empty or placeholder signing key at init
	// (session.MinKeyLen, 32 bytes).
	MinSessionKeyLen = session.MinKeyLen
	// throttleRetryAfter is the Retry-After, in seconds, of a 503 answered because
	// DynamoDB throttled: on-demand tables absorb a burst within seconds.
	throttleRetryAfter = 2
)

// Store is the storage collect needs (package dynamo in production).
type Store interface {
	// UpsertUser records a login.
	UpsertUser(ctx context.Context, appID, openID, unionID string) error
	// AddGrants stores one user's grants in one transaction and answers per grant.
	AddGrants(ctx context.Context, appID, openID string, grants []minipush.Grant, limit int) ([]dynamo.AddStatus, error)
	// DeleteGrantsAcceptedBefore drops a user's subscribe grants of one template
	// collected before a time.
	DeleteGrantsAcceptedBefore(ctx context.Context, appID, openID, templateID string, before time.Time) (int, error)
	// ClaimPush binds a signed message-push URL to the body digest it came with and
	// reports whether the push is new, already applied, or a replay with another body.
	ClaimPush(ctx context.Context, appID, timestamp, nonce, digest string, until time.Time) (dynamo.PushClaim, error)
	// MarkPushApplied records that a claimed push was applied.
	MarkPushApplied(ctx context.Context, appID, timestamp, nonce, digest string) error
	// RecomputeInventory recounts a user's live grants onto the user item.
	RecomputeInventory(ctx context.Context, appID, openID string) (minipush.User, error)
}

// Limiter is a fixed-window rate limit shared by every instance (dynamo.DB.Allow).
type Limiter interface {
	// Allow counts one event for key and reports whether it is within limit per window.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error)
}

// Login exchanges a wx.login code (wechat.Client in production).
type Login interface {
	Code2Session(ctx context.Context, appID, secret, jsCode string) (wechat.Session, error)
}

// Handler serves the collect routes. Every field but Log is required; New fills the
// knobs with their defaults.
type Handler struct {
	Store   Store
	Limiter Limiter
	WeChat  Login
	Apps    config.Apps
	// SessionKey signs session tokens (HMAC-SHA256); never logged or returned.
	SessionKey         []byte
	SessionTTL         time.Duration
	MaxLiveGrants      int
	SubscribeRetention time.Duration
	RatePerMinute      int
	// SessionRatePerMinute bounds POST /v1/session per source address.
	SessionRatePerMinute int
	Now                  func() time.Time
	Log                  *slog.Logger
}

// FromEnv builds the production handler from a function's environment, read only through
// getenv: configuration, AWS clients, both secrets, the WeChat client and storage, built
// once and reused by warm invocations.
func FromEnv(ctx context.Context, getenv func(string) string) (*Handler, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	if err := cfg.Require("GRANTS_TABLE", "USERS_TABLE", "STATE_TABLE", "WECHAT_SECRET_ARN", "SESSION_SECRET_ARN"); err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	rate := DefaultRatePerMinute
	if v := getenv(RateEnv); v != "" {
		if rate, err = strconv.Atoi(v); err != nil || rate <= 0 {
			return nil, fmt.Errorf("collect: %s %q: want a positive integer", RateEnv, v)
		}
	}
	sessionRate := DefaultSessionRatePerMinute
	if v := getenv(SessionRateEnv); v != "" {
		if sessionRate, err = strconv.Atoi(v); err != nil || sessionRate <= 0 {
			return nil, fmt.Errorf("collect: %s %q: want a positive integer", SessionRateEnv, v)
		}
	}
	ttl := DefaultSessionTTL
	if v := getenv(SessionTTLEnv); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl < time.Minute {
			return nil, fmt.Errorf("collect: %s %q: want a duration of at least 1m, e.g. 168h", SessionTTLEnv, v)
		}
	}
	clients, err := awsenv.Load(ctx, getenv)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	local, err := config.ParseLocalSecrets(getenv(config.LocalSecretsEnv))
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	secrets := config.Secrets{Client: clients.SecretsManager, Local: local}
	raw, err := secrets.Get(ctx, cfg.WeChatSecretARN)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	apps, err := config.ParseApps(raw)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	key, err := secrets.Get(ctx, cfg.SessionSecretARN)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	if len(key) < MinSessionKeyLen {
		// The key itself is never part of the message.
		return nil, fmt.Errorf("collect: the SESSION_SECRET_ARN secret is %d bytes, want at least %d", len(key), MinSessionKeyLen)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	db := dynamo.New(clients.DynamoDB, cfg.Tables)
	h := New(db, db, wechat.New(wechat.Options{BaseURL: cfg.WeChatBaseURL, Logger: log}), apps, []byte(key))
	h.MaxLiveGrants = cfg.MaxLiveGrants
	h.SubscribeRetention = cfg.SubscribeRetention
	h.RatePerMinute = rate
	h.SessionRatePerMinute = sessionRate
	h.SessionTTL = ttl
	h.Now = db.Now
	h.Log = log
	return h, nil
}

// New returns a handler with the default knobs and a discarding logger.
func New(store Store, limiter Limiter, wc Login, apps config.Apps, sessionKey []byte) *Handler {
	return &Handler{
		Store: store, Limiter: limiter, WeChat: wc, Apps: apps, SessionKey: sessionKey,
		SessionTTL:           DefaultSessionTTL,
		MaxLiveGrants:        minipush.DefaultMaxLiveGrants,
		SubscribeRetention:   minipush.DefaultSubscribeRetention,
		RatePerMinute:        DefaultRatePerMinute,
		SessionRatePerMinute: DefaultSessionRatePerMinute,
		Now:                  time.Now,
		Log:                  slog.New(slog.DiscardHandler),
	}
}

// Routes of the collect function (template.yaml, CollectFunction events).
const (
	routeSession     = "POST /v1/session"
	routeGrants      = "POST /v1/grants"
	routeEventsPush  = "POST /v1/wechat/events"
	routeEventsCheck = "GET /v1/wechat/events"
)

// Handle answers one HTTP API request (payload format 2.0). Its error is always nil:
// every failure becomes a JSON {code, message} answer with its status, logged once here.
func (h *Handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	route := req.RouteKey
	if route == "" || route == "$default" {
		route = req.RequestContext.HTTP.Method + " " + req.RawPath
	}
	log := h.logger().With("request_id", req.RequestContext.RequestID, "route", route)
	var (
		resp events.APIGatewayV2HTTPResponse
		err  error
	)
	switch route {
	case routeSession:
		resp, err = h.session(ctx, log, req)
	case routeGrants:
		resp, err = h.grants(ctx, log, req)
	case routeEventsPush:
		resp, err = h.eventPush(ctx, log, req)
	case routeEventsCheck:
		resp, err = h.eventCheck(log, req)
	default:
		err = minipush.Errorf(minipush.ENOTFOUND, "no route %s", route)
	}
	if err != nil {
		if dynamo.Throttled(err) {
			// Not our failure: the client (or WeChat, for a push) should come back.
			err = &minipush.Error{Code: minipush.EUNAVAILABLE, Message: "storage is busy: retry in a few seconds", Err: err}
		}
		status := httpapi.Status(err)
		level := slog.LevelWarn
		if status >= http.StatusInternalServerError {
			level = slog.LevelError
		}
		log.Log(ctx, level, "request failed", "status", status, "code", minipush.ErrorCode(err), "error", err.Error())
		resp = httpapi.Error(err)
		if status == http.StatusTooManyRequests {
			// The fixed window turns at the next minute: tell the client when.
			now := h.Now()
			wait := now.Truncate(time.Minute).Add(time.Minute).Sub(now)
			resp.Headers["Retry-After"] = strconv.Itoa(int((wait + time.Second - 1) / time.Second))
		}
		if status == http.StatusServiceUnavailable {
			resp.Headers["Retry-After"] = strconv.Itoa(throttleRetryAfter)
		}
		return resp, nil
	}
	return resp, nil
}

// userTag names a user in logs without their openid, which is personal data: a keyed
// hash (session.Pseudonym under the session key), stable for one deployment so one
// user's lines still group.
func (h *Handler) userTag(appID, openID string) string {
	return session.Pseudonym(h.SessionKey, "log", minipush.UserKey(appID, openID))
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}
