package collect

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/config"
	"minipush/internal/httpapi"
)

// Message push (消息推送) of subscribe-message events. WeChat signs each request with the
// token configured in the mini-program's admin console (the app's eventToken):
// signature = sha1(sort(token, timestamp, nonce) joined). Only plaintext mode is
// supported; in compatible mode the plaintext fields are read and Encrypt is ignored. A
// safe-mode push (only Encrypt) is refused with 422 rather than acknowledged, so the
// misconfiguration shows in WeChat's console and our logs instead of losing grants.
//
// https://developers.weixin.qq.com/miniprogram/dev/framework/server-ability/message-push.html
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/subscribeMessage.onPopupEvent.html
const (
	// MaxPushAge is how far a push's timestamp may be from now: older ones are replays.
	MaxPushAge    = 5 * time.Minute
	maxPushBody   = 64 << 10
	eventPopup    = "subscribe_msg_popup_event"
	eventChange   = "subscribe_msg_change_event"
	pushOK        = "success"
	statusAccept  = "accept"
	statusReject  = "reject"
	maxPushOpenID = 128
	maxEchoLen    = 128 // WeChat's echostr is a random string of about 20 characters
)

// Signature computes WeChat's message-push signature for token, timestamp and nonce.
func Signature(token, timestamp, nonce string) string {
	parts := []string{token, timestamp, nonce}
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// verifyPush checks a push request's appId, signature and freshness, returning its app.
// Every failure is EUNAUTHORIZED, with one message, so a prober learns nothing.
func (h *Handler) verifyPush(req events.APIGatewayV2HTTPRequest) (config.App, error) {
	q := req.QueryStringParameters
	denied := minipush.Errorf(minipush.EUNAUTHORIZED, "push signature invalid or stale")
	appID := q["appId"]
	if appID == "" && len(h.Apps.Apps) == 1 {
		appID = h.Apps.Apps[0].AppID
	}
	app, ok := h.Apps.Find(appID)
	if !ok || app.EventToken == "" {
		return config.App{}, denied
	}
	ts, err := strconv.ParseInt(q["timestamp"], 10, 64)
	if err != nil {
		return config.App{}, denied
	}
	if age := h.Now().Sub(time.Unix(ts, 0)); age > MaxPushAge || age < -MaxPushAge {
		return config.App{}, denied
	}
	want := Signature(app.EventToken, q["timestamp"], q["nonce"])
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(q["signature"]))) != 1 {
		return config.App{}, denied
	}
	return app, nil
}

func text(status int, body string) events.APIGatewayV2HTTPResponse {
	return events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
		Body:       body,
	}
}

// eventCheck answers the GET handshake WeChat makes when message push is configured:
// echo echostr when the signature is right.
func (h *Handler) eventCheck(log *slog.Logger, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.verifyPush(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	echo := req.QueryStringParameters["echostr"]
	if len(echo) > maxEchoLen {
		// The signature does not cover echostr: bounding it keeps a replayed signature
		// from turning the check into a reflector of arbitrary text.
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.EMALFORMED, "echostr is %d bytes, at most %d", len(echo), maxEchoLen)
	}
	log.With("appid", app.AppID).Info("message push handshake")
	return text(http.StatusOK, echo), nil
}

// pushItem is one template's result in a subscribe event.
type pushItem struct {
	TemplateID string `xml:"TemplateId" json:"TemplateId"`
	Status     string `xml:"SubscribeStatusString" json:"SubscribeStatusString"`
}

// pushList is the JSON List field: WeChat sends an object for one template and an
// array for several.
type pushList []pushItem

func (l *pushList) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '{' {
		var one pushItem
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*l = pushList{one}
		return nil
	}
	var many []pushItem
	err := json.Unmarshal(b, &many)
	*l = many
	return err
}

// flexTime is CreateTime, a number in XML and a number or a string in JSON.
type flexTime string

func (f *flexTime) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return err
	}
	*f = flexTime(s)
	return nil
}

type pushXML struct {
	Encrypt      string `xml:"Encrypt"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   string `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Event        string `xml:"Event"`
	Popup        struct {
		List []pushItem `xml:"List"`
	} `xml:"SubscribeMsgPopupEvent"`
	Change struct {
		List []pushItem `xml:"List"`
	} `xml:"SubscribeMsgChangeEvent"`
}

type pushJSON struct {
	Encrypt      string   `json:"Encrypt"`
	FromUserName string   `json:"FromUserName"`
	CreateTime   flexTime `json:"CreateTime"`
	MsgType      string   `json:"MsgType"`
	Event        string   `json:"Event"`
	List         pushList `json:"List"`
}

// pushEvent is a decoded push, whatever its format.
type pushEvent struct {
	OpenID     string
	CreateTime string
	Event      string
	Items      []pushItem
}

// decodePush reads an XML or JSON push body (WeChat sends the format chosen in the
// console; the first byte tells them apart).
func decodePush(body []byte) (pushEvent, error) {
	body = bytes.TrimSpace(body)
	var (
		ev      pushEvent
		encrypt string
	)
	if len(body) > 0 && body[0] == '<' {
		var x pushXML
		if err := xml.Unmarshal(body, &x); err != nil {
			return ev, minipush.Errorf(minipush.EMALFORMED, "push body is not WeChat XML")
		}
		ev = pushEvent{OpenID: x.FromUserName, CreateTime: strings.TrimSpace(x.CreateTime), Event: x.Event, Items: x.Popup.List}
		encrypt = x.Encrypt
		if x.Event == eventChange {
			ev.Items = x.Change.List
		}
	} else {
		var j pushJSON
		if err := json.Unmarshal(body, &j); err != nil {
			return ev, minipush.Errorf(minipush.EMALFORMED, "push body is not WeChat JSON")
		}
		ev = pushEvent{OpenID: j.FromUserName, CreateTime: string(j.CreateTime), Event: j.Event, Items: j.List}
		encrypt = j.Encrypt
	}
	if ev.Event == "" && encrypt != "" {
		return ev, minipush.Errorf(minipush.EINVALID, "encrypted (safe-mode) push is not supported: set message push to plaintext or compatible mode")
	}
	if ev.Event == eventPopup || ev.Event == eventChange {
		if ev.OpenID == "" || len(ev.OpenID) > maxPushOpenID {
			return ev, minipush.Errorf(minipush.EMALFORMED, "push without a valid FromUserName")
		}
		if _, err := strconv.ParseInt(ev.CreateTime, 10, 64); err != nil {
			return ev, minipush.Errorf(minipush.EMALFORMED, "push without a valid CreateTime")
		}
	}
	return ev, nil
}

// eventPush handles a signed message push: a popup accept becomes a subscribe grant
// (its id from the user, the event time and the template, so WeChat's retries of the
// same push store it once), a change reject drops the user's grants of that template.
// Other events are acknowledged and ignored. A storage failure answers 500 so WeChat
// retries the push.
func (h *Handler) eventPush(ctx context.Context, log *slog.Logger, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.verifyPush(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	log = log.With("appid", app.AppID)
	body, err := httpapi.Body(req, maxPushBody)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	ev, err := decodePush(body)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	switch ev.Event {
	case eventPopup:
		if !app.AcceptsFrom(config.SourcePush) {
			// The app records accepts from the client's upload; storing the push's copy
			// too would count the one accept twice.
			log.Info("push accepts ignored: the app records subscribe accepts from the client", "openid", ev.OpenID)
			break
		}
		now := h.Now().Truncate(time.Second).UTC()
		var grants []minipush.Grant
		for _, it := range ev.Items {
			if it.Status != statusAccept || checkValue(it.TemplateID) != "" {
				continue
			}
			grants = append(grants, minipush.Grant{
				AppID: app.AppID, OpenID: ev.OpenID, Kind: minipush.GrantSubscribe,
				ID:         minipush.GrantID(minipush.GrantSubscribe, it.TemplateID, "push#"+ev.OpenID+"#"+ev.CreateTime),
				TemplateID: it.TemplateID, Uses: 1, CollectedAt: now, ExpiresAt: now.Add(h.SubscribeRetention),
			})
		}
		if len(grants) > MaxGrantsPerUpload {
			grants = grants[:MaxGrantsPerUpload] // WeChat asks for at most 3 templates at once
		}
		if len(grants) > 0 {
			st, err := h.Store.AddGrants(ctx, app.AppID, ev.OpenID, grants, h.MaxLiveGrants)
			if err != nil {
				return events.APIGatewayV2HTTPResponse{}, err
			}
			log.Info("push accepts stored", "openid", ev.OpenID, "grants", len(grants), "statuses", st)
		}
	case eventChange:
		for _, it := range ev.Items {
			if it.Status != statusReject || checkValue(it.TemplateID) != "" {
				continue
			}
			n, err := h.Store.DeleteGrantsOfTemplate(ctx, app.AppID, ev.OpenID, it.TemplateID)
			if err != nil {
				return events.APIGatewayV2HTTPResponse{}, err
			}
			if _, err := h.Store.RecomputeInventory(ctx, app.AppID, ev.OpenID); err != nil {
				return events.APIGatewayV2HTTPResponse{}, err
			}
			log.Info("template turned off", "openid", ev.OpenID, "template", it.TemplateID, "dropped", n)
		}
	default:
		log.Info("push ignored", "event", ev.Event)
	}
	return text(http.StatusOK, pushOK), nil
}
