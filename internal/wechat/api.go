package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// API paths, shared with Classify (40001 means different things on token calls).
const (
	pathCode2Session      = "/sns/jscode2session"
	pathToken             = "/cgi-bin/token"
	pathStableToken       = "/cgi-bin/stable_token"
	pathSubscribeSend     = "/cgi-bin/message/subscribe/send"
	pathTemplateSend      = "/cgi-bin/message/wxopen/template/send"
	grantClientCredential = "client_credential"
)

// Session is the result of a login. SessionKey must stay on the server: never send
// it to the client or log it.
type Session struct {
	OpenID     string `json:"openid"`
	UnionID    string `json:"unionid,omitempty"` // only when the app is bound to an Open Platform account
	SessionKey string `json:"session_key"`
}

// LogValue keeps SessionKey out of logs when a Session is logged whole.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(slog.String("openid", s.OpenID), slog.String("unionid", s.UnionID))
}

// Code2Session exchanges a wx.login js_code for the user's openid and session key.
// A code is valid for 5 minutes and once; 40029, 40163 and 40226 classify as
// FailRecipient (the client must log in again), -1 and 45011 as Retry; a gateway 5xx is
// Unknown like any call's, which for a login only means the client logs in again.
//
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html
func (c *Client) Code2Session(ctx context.Context, appID, secret, jsCode string) (Session, error) {
	var s Session
	err := c.do(ctx, call{
		method: http.MethodGet,
		path:   pathCode2Session,
		query: url.Values{
			"appid":      {appID},
			"secret":     {secret},
			"js_code":    {jsCode},
			"grant_type": {"authorization_code"},
		},
		secrets: []string{secret, jsCode},
	}, &s)
	if err != nil {
		return Session{}, err
	}
	if s.OpenID == "" || s.SessionKey == "" {
		return Session{}, c.malformed(ctx, call{path: pathCode2Session}, http.StatusOK, errors.New("no openid or session_key"))
	}
	return s, nil
}

// Token is an access token and when it stops working. Refresh it well before
// ExpiresAt (WeChat issues a new stable token in the last 5 minutes).
type Token struct {
	AccessToken string
	ExpiresAt   time.Time
}

// LogValue keeps the token itself out of logs.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expires_at", t.ExpiresAt))
}

type tokenBody struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (c *Client) token(ctx context.Context, cl call) (Token, error) {
	var tb tokenBody
	if err := c.do(ctx, cl, &tb); err != nil {
		return Token{}, err
	}
	if tb.AccessToken == "" || tb.ExpiresIn <= 0 {
		return Token{}, c.malformed(ctx, cl, http.StatusOK, errors.New("no access_token or expires_in"))
	}
	return Token{AccessToken: tb.AccessToken, ExpiresAt: c.Now().Add(time.Duration(tb.ExpiresIn) * time.Second)}, nil
}

// StableToken gets the app's stable access token. In normal mode (force false)
// repeated calls return the same token while it is valid, so several instances do not
// invalidate each other; force invalidates the current token and is limited to 20 a
// day, so use it only for a leaked token. 40001 and 40125 here mean a wrong secret
// and classify as Abort.
//
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-access-token/getStableAccessToken.html
func (c *Client) StableToken(ctx context.Context, appID, secret string, force bool) (Token, error) {
	return c.token(ctx, call{
		method: http.MethodPost,
		path:   pathStableToken,
		body: struct {
			GrantType    string `json:"grant_type"`
			AppID        string `json:"appid"`
			Secret       string `json:"secret"`
			ForceRefresh bool   `json:"force_refresh"`
		}{grantClientCredential, appID, secret, force},
		secrets: []string{secret},
	})
}

// Token gets an access token from the legacy endpoint. Every call issues a new token
// and the previous one dies about 5 minutes later, so only one process per app may
// call it; prefer StableToken.
//
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-access-token/getAccessToken.html
func (c *Client) Token(ctx context.Context, appID, secret string) (Token, error) {
	return c.token(ctx, call{
		method: http.MethodGet,
		path:   pathToken,
		query: url.Values{
			"grant_type": {grantClientCredential},
			"appid":      {appID},
			"secret":     {secret},
		},
		secrets: []string{secret},
	})
}

// Value is one field of a subscribe message's data.
type Value struct {
	Value string `json:"value"`
}

// SubscribeMessage is the body of a subscribe send. Data keys are the template's
// field keys (type prefix plus number, e.g. "thing1"); each value must fit its type's
// limit or WeChat answers 47003.
type SubscribeMessage struct {
	ToUser           string           `json:"touser"`
	TemplateID       string           `json:"template_id"`
	Page             string           `json:"page,omitempty"`
	Data             map[string]Value `json:"data"`
	MiniprogramState string           `json:"miniprogram_state,omitempty"` // developer, trial or formal (default)
	Lang             string           `json:"lang,omitempty"`              // zh_CN (default), en_US, zh_HK, zh_TW
}

// SendSubscribe sends a subscribe message, spending one of the user's one-time grants
// for the template on success, and returns the msgid WeChat gave it ("" when the
// answer has none: it is optional), which its subscribe_msg_sent_event names later.
// 43101 (no grant left) and 47003 classify as FailRecipient, 40037 as Abort, token
// errors as Refresh.
//
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
func (c *Client) SendSubscribe(ctx context.Context, token string, m SubscribeMessage) (string, error) {
	var out struct {
		MsgID json.RawMessage `json:"msgid"`
	}
	if err := c.send(ctx, pathSubscribeSend, token, m, &out); err != nil {
		return "", err
	}
	id, err := ParseMsgID(out.MsgID)
	if err != nil {
		// The message went out (errcode 0): an unreadable msgid loses the receipt
		// match, never the outcome.
		c.Logger.LogAttrs(ctx, slog.LevelWarn, "wechat unreadable msgid",
			slog.String("api", pathSubscribeSend), slog.String("err", err.Error()))
		return "", nil
	}
	return id, nil
}

// ParseMsgID reads a msgid as WeChat answers it: a JSON number (above 2^53, so
// never through float64, which would round it) or a string of digits; absent or
// null is "". The result is the id in canonical decimal.
func ParseMsgID(raw json.RawMessage) (string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "", nil
	}
	if strings.HasPrefix(s, `"`) {
		var q string
		if err := json.Unmarshal([]byte(s), &q); err != nil {
			return "", fmt.Errorf("msgid %s: %w", s, err)
		}
		if s = strings.TrimSpace(q); s == "" {
			return "", nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return "", fmt.Errorf("msgid %.40q is not an integer", s)
	}
	return strconv.FormatInt(n, 10), nil
}

// TemplateValue is one keyword of a legacy template message.
type TemplateValue struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// TemplateMessage is the body of a legacy template send; FormID is a formId or a
// payment's prepay_id produced by ToUser within the last 7 days.
type TemplateMessage struct {
	ToUser          string                   `json:"touser"`
	TemplateID      string                   `json:"template_id"`
	Page            string                   `json:"page,omitempty"`
	FormID          string                   `json:"form_id"`
	Data            map[string]TemplateValue `json:"data,omitempty"`
	EmphasisKeyword string                   `json:"emphasis_keyword,omitempty"`
}

// SendTemplate sends a legacy template message, spending one use of the formId.
// 41028/41029 classify as NextGrant; after WeChat retired the API (2020) it answers
// 45103, which is Abort.
//
// https://developers.weixin.qq.com/miniprogram/dev/api-backend/open-api/template-message/templateMessage.send.html
func (c *Client) SendTemplate(ctx context.Context, token string, m TemplateMessage) error {
	return c.send(ctx, pathTemplateSend, token, m, nil)
}

func (c *Client) send(ctx context.Context, path, token string, body, out any) error {
	return c.do(ctx, call{
		method:  http.MethodPost,
		path:    path,
		query:   url.Values{"access_token": {token}},
		body:    body,
		secrets: []string{token},
	}, out)
}
