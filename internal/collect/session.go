package collect

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/session"
	"minipush/internal/wechat"
)

// maxSessionBody bounds POST /v1/session: a code and an appid.
const maxSessionBody = 4 << 10

type sessionRequest struct {
	Code  string `json:"code"`
	AppID string `json:"appId"`
}

// SessionAnswer is the body of a successful login. The openid and WeChat's session_key
// stay on the server: the token carries the openid, signed.
type SessionAnswer struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// session exchanges a wx.login code for a session token. appId may be omitted when the
// deployment serves one mini-program.
func (h *Handler) session(ctx context.Context, log *slog.Logger, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	var in sessionRequest
	if err := httpapi.DecodeJSON(req, maxSessionBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if in.Code == "" {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.EMALFORMED, "code is required (the wx.login code)")
	}
	if len(in.Code) > minipush.MaxGrantValueLen {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.EMALFORMED, "code is %d bytes, at most %d: not a wx.login code", len(in.Code), minipush.MaxGrantValueLen)
	}
	if in.AppID == "" && len(h.Apps.Apps) == 1 {
		in.AppID = h.Apps.Apps[0].AppID
	}
	app, ok := h.Apps.Find(in.AppID)
	if !ok {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.EINVALID, "unknown appId")
	}
	log = log.With("appid", app.AppID)
	// Only codes WeChat refuses are counted, per source: a flood of forged codes from one
	// address costs at most the limit in jscode2session calls a minute, and is refused
	// here before WeChat is called; a flood of real codes needs real WeChat logins, so
	// valid logins, from however many users share a carrier NAT, are not counted (and
	// write nothing). The check is one eventually consistent read; the source address
	// enters the key only as a keyed hash, so the state table holds no client addresses.
	source := "session#" + session.Pseudonym(h.SessionKey, "ip", req.RequestContext.HTTP.SourceIP)
	spent, err := h.Limiter.Spent(ctx, source, h.SessionRefusalsPerMinute, time.Minute)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if spent {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ERATELIMIT, "%d refused login codes from this address this minute: retry later", h.SessionRefusalsPerMinute)
	}
	s, err := h.WeChat.Code2Session(ctx, app.AppID, app.AppSecret, in.Code)
	if err != nil {
		switch wechat.Reason(err) {
		case "code_invalid", "code_used", "code_blocked", "code_missing":
			// The client must call wx.login again; nothing WeChat-side is broken. The
			// refusal counts against its source; a failure to count is logged, not
			// answered, since the client's answer is the 401 either way.
			if _, cerr := h.Limiter.Allow(ctx, source, h.SessionRefusalsPerMinute, time.Minute); cerr != nil {
				log.Warn("refused login not counted", "err", cerr)
			}
			return events.APIGatewayV2HTTPResponse{}, &minipush.Error{Code: minipush.EUNAUTHORIZED, Message: "login code invalid, used or blocked: call wx.login again", Err: err}
		}
		return events.APIGatewayV2HTTPResponse{}, &minipush.Error{Code: minipush.EUPSTREAM, Message: "WeChat login failed", Err: err}
	}
	if err := h.Store.UpsertUser(ctx, app.AppID, s.OpenID, s.UnionID); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	expires := h.Now().Add(h.SessionTTL).Truncate(time.Second).UTC()
	log.Info("session issued", "user", h.userTag(app.AppID, s.OpenID))
	return httpapi.JSON(200, SessionAnswer{Token: session.Sign(h.SessionKey, app.AppID, s.OpenID, expires), ExpiresAt: expires}), nil
}

// authenticate returns the user a request's Bearer session token names. A missing,
// forged or expired token is EUNAUTHORIZED, with the same message for all three so the
// answer tells a forger nothing.
func (h *Handler) authenticate(req events.APIGatewayV2HTTPRequest) (appID, openID string, err error) {
	// The scheme is case-insensitive (RFC 9110 §11.1).
	scheme, tok, ok := strings.Cut(strings.TrimSpace(httpapi.Header(req, "Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", "", minipush.Errorf(minipush.EUNAUTHORIZED, "Authorization: Bearer <session token> required")
	}
	appID, openID, err = session.Verify(h.SessionKey, strings.TrimSpace(tok), h.Now())
	if err != nil {
		// The cause is dropped, not wrapped: it is not worth risking a token in the log.
		return "", "", minipush.Errorf(minipush.EUNAUTHORIZED, "session token invalid or expired: log in again")
	}
	if _, ok := h.Apps.Find(appID); !ok {
		return "", "", minipush.Errorf(minipush.EUNAUTHORIZED, "session token invalid or expired: log in again")
	}
	return appID, openID, nil
}
