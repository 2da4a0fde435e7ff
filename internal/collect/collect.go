// Package collect is the mini-program's side of the API: sessions, grant uploads and
// WeChat's message push.
package collect

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/logs"
	"minipush/internal/metrics"
	"minipush/internal/session"
	"minipush/internal/wechat"
)

// Defaults of the handler's knobs.
const (
	DefaultSessionTTL    = 7 * 24 * time.Hour // then the mini-program logs in again silently with wx.login
	DefaultRatePerMinute = 30                 // uploads per user per minute
	// DefaultSessionRefusalsPerMinute bounds the login codes WeChat refuses per source
	// address: each refused code cost a jscode2session call, which WeChat limits per
	// app, so a flood of forged codes from one source must not use up what real logins
	// need. Valid logins are not counted: thousands of real users behind one carrier
	// NAT log in freely, while a real user's own retries (a used code, a stale one)
	// stay far below it.
	DefaultSessionRefusalsPerMinute = 20
)

// Store is the storage collect needs (package dynamo in production).
type Store interface {
	// UpsertUser records a login.
	UpsertUser(ctx context.Context, appID, openID, unionID string) error
	// AddGrants stores one user's grants in one transaction and answers per grant.
	AddGrants(ctx context.Context, appID, openID string, grants []minipush.Grant, limit int) ([]minipush.AddStatus, error)
	// DeleteGrantsAcceptedBefore drops a user's subscribe grants of one template
	// collected before a time.
	DeleteGrantsAcceptedBefore(ctx context.Context, appID, openID, templateID string, before time.Time) (int, error)
	// ClaimPush binds a signed message-push URL to the body digest it came with and
	// reports whether the push is new, already applied, or a replay with another body.
	ClaimPush(ctx context.Context, appID, timestamp, nonce, digest string, until time.Time) (minipush.PushClaim, error)
	// MarkPushApplied records that a claimed push was applied.
	MarkPushApplied(ctx context.Context, appID, timestamp, nonce, digest string) error
	// RecomputeInventory recounts a user's live grants onto the user item.
	RecomputeInventory(ctx context.Context, appID, openID string) (minipush.User, error)
	// OpenCSWindow stores a user's customer-service window unless the stored one ends
	// as late or later, and reports whether it did.
	OpenCSWindow(ctx context.Context, appID, openID string, w minipush.CSWindowState) (bool, error)
	// RecordReceipt moves the sent delivery with the receipt's msgid to its receipt
	// state and counts it, once, and reports what it did.
	RecordReceipt(ctx context.Context, r minipush.Receipt) (minipush.ReceiptResult, error)
}

// Limiter is a fixed-window rate limit shared by every instance (dynamo.DB.Allow and
// Spent).
type Limiter interface {
	// Allow counts one event for key and reports whether it is within limit per window.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error)
	// Spent reports, without counting, whether key's current window has reached limit.
	Spent(ctx context.Context, key string, limit int, window time.Duration) (bool, error)
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
	Apps    minipush.Apps
	// SessionKey signs session tokens (HMAC-SHA256); never logged or returned.
	SessionKey         []byte
	SessionTTL         time.Duration
	MaxLiveGrants      int
	SubscribeRetention time.Duration
	RatePerMinute      int
	// SessionRefusalsPerMinute bounds, per source address, the login codes WeChat
	// refuses; once reached, POST /v1/session from that address is 429 until the window ends.
	SessionRefusalsPerMinute int
	Now                      func() time.Time
	Log                      *slog.Logger
	Metrics                  *metrics.Emitter // one EMF flush per request; nil emits nothing
}

// New returns a handler with the default knobs and a discarding logger.
func New(store Store, limiter Limiter, wc Login, apps minipush.Apps, sessionKey []byte) *Handler {
	return &Handler{
		Store: store, Limiter: limiter, WeChat: wc, Apps: apps, SessionKey: sessionKey,
		SessionTTL:               DefaultSessionTTL,
		MaxLiveGrants:            minipush.DefaultMaxLiveGrants,
		SubscribeRetention:       minipush.DefaultSubscribeRetention,
		RatePerMinute:            DefaultRatePerMinute,
		SessionRefusalsPerMinute: DefaultSessionRefusalsPerMinute,
		Now:                      time.Now,
	}
}

// Routes of the collect function (template.yaml, CollectFunction events).
const (
	routeSession     = "POST /v1/session"
	routeGrants      = "POST /v1/grants"
	routeEventsPush  = "POST /v1/wechat/events"
	routeEventsCheck = "GET /v1/wechat/events"
)

// handle answers one HTTP API request (payload format 2.0) for Handle. Its error is
// always nil: every failure becomes a JSON {code, message} answer with its status,
// logged once here.
func (h *Handler) handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
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
		err = httpapi.Classify(err) // a throttle is 503: the client (or WeChat) should come back
		status := httpapi.Status(err)
		level := slog.LevelWarn
		if status >= http.StatusInternalServerError {
			level = slog.LevelError
		}
		log.Log(ctx, level, "request failed", "status", status, "code", minipush.ErrorCode(err), logs.KeyErr, err.Error())
		resp = httpapi.Error(err)
		if status == http.StatusTooManyRequests {
			// The fixed window turns at the next minute: tell the client when.
			now := h.Now()
			wait := now.Truncate(time.Minute).Add(time.Minute).Sub(now)
			resp.Headers["Retry-After"] = strconv.Itoa(int((wait + time.Second - 1) / time.Second))
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

func (h *Handler) logger() *slog.Logger { return logs.Or(h.Log) }
