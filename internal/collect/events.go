package collect

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

// Message push (消息推送) of subscribe-message events. WeChat signs each request's URL with
// the token configured in the mini-program's admin console (the app's eventToken):
// signature = sha1(sort(token, timestamp, nonce) joined).
//
// That signature does not cover the body, so two more defences stand behind it:
//
//   - Each signed URL (appid, timestamp, nonce) is remembered in the state table until
//     its timestamp goes stale (dynamo.DB.ClaimPush), bound to the body it first came
//     with. Another body under the same URL is a replay and is refused (401); the same
//     body again is WeChat's retry: acknowledged, and applied only if it was not yet
//     (the URL is marked applied after the push's writes succeed, so a retry of a push
//     that failed midway is applied again, and every push effect is idempotent).
//   - Safe mode (see crypt.go): with the app's encodingAESKey, the body is encrypted and
//     msg_signature covers it, so nothing can be swapped. An app with an encodingAESKey
//     refuses plaintext pushes (401): an attacker with a captured URL could otherwise
//     simply send plaintext. In compatible mode the Encrypt field is used and the
//     plaintext copy ignored. An encrypted push to an app without a key is refused with
//     422 rather than acknowledged, so the misconfiguration shows in WeChat's console and
//     our logs instead of losing grants.
//
// https://developers.weixin.qq.com/miniprogram/dev/framework/server-ability/message-push.html
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/subscribeMessage.onPopupEvent.html
const (
	// MaxPushAge is how far a push's timestamp may be from now: older ones are replays.
	MaxPushAge    = 5 * time.Minute
	maxPushBody   = 64 << 10
	eventPopup    = "subscribe_msg_popup_event"
	eventChange   = "subscribe_msg_change_event"
	eventSent     = "subscribe_msg_sent_event" // a receipt: see receipts.go
	pushOK        = "success"
	statusAccept  = "accept"
	statusReject  = "reject"
	maxPushOpenID = 128
	maxEchoLen    = 128 // WeChat's echostr is a random string of about 20 characters
	// pushMemory is how long a signed URL is remembered past its timestamp: the
	// timestamp is accepted MaxPushAge either side of now, plus a minute of clock slack.
	pushMemory = MaxPushAge + time.Minute
)

// Signature computes WeChat's message-push signature for token, timestamp and nonce.
func Signature(token, timestamp, nonce string) string {
	parts := []string{token, timestamp, nonce}
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// errPushDenied is the one answer to a push that fails any check of its origin. The
// caller's reason, when it has one worth an operator's time, goes only to the log (as
// the error's cause), never to the answer.
func errPushDenied(reason ...string) *minipush.Error {
	e := minipush.Errorf(minipush.EUNAUTHORIZED, "push signature invalid or stale")
	if len(reason) > 0 {
		e.Err = errors.New(reason[0])
	}
	return e
}

// verifyPush checks a push request's appId, signature and freshness, returning its app.
// Every failure is EUNAUTHORIZED, with one message, so a prober learns nothing.
func (h *Handler) verifyPush(req events.APIGatewayV2HTTPRequest) (minipush.App, error) {
	q := req.QueryStringParameters
	denied := errPushDenied()
	appID := q["appId"]
	if appID == "" && len(h.Apps.Apps) == 1 {
		appID = h.Apps.Apps[0].AppID
	}
	app, ok := h.Apps.Find(appID)
	if !ok || app.EventToken == "" {
		return minipush.App{}, denied
	}
	ts, err := strconv.ParseInt(q["timestamp"], 10, 64)
	if err != nil {
		return minipush.App{}, denied
	}
	if age := h.Now().Sub(time.Unix(ts, 0)); age > MaxPushAge || age < -MaxPushAge {
		return minipush.App{}, denied
	}
	want := Signature(app.EventToken, q["timestamp"], q["nonce"])
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(q["signature"]))) != 1 {
		return minipush.App{}, denied
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

// pushItem is one template's result in a subscribe event, or one message's receipt in
// a sent event (the fields of receipts.go).
type pushItem struct {
	TemplateID  string  `xml:"TemplateId" json:"TemplateId"`
	Status      string  `xml:"SubscribeStatusString" json:"SubscribeStatusString"`
	MsgID       flexNum `xml:"MsgID" json:"MsgID"`
	ErrorCode   flexNum `xml:"ErrorCode" json:"ErrorCode"`
	ErrorStatus string  `xml:"ErrorStatus" json:"ErrorStatus"`
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
	Sent struct {
		List []pushItem `xml:"List"`
	} `xml:"SubscribeMsgSentEvent"`
}

type pushJSON struct {
	Encrypt      string   `json:"Encrypt"`
	FromUserName string   `json:"FromUserName"`
	CreateTime   flexTime `json:"CreateTime"`
	MsgType      string   `json:"MsgType"`
	Event        string   `json:"Event"`
	List         pushList `json:"List"`
	// Sent is the wrapper WeChat's JSON sent event does not have (its List is at the
	// top, WECHAT.md §8), accepted should it ever come.
	Sent struct {
		List pushList `json:"List"`
	} `json:"SubscribeMsgSentEvent"`
}

// pushEvent is a decoded push, whatever its format.
type pushEvent struct {
	OpenID     string
	CreateTime string
	MsgType    string
	Event      string
	Items      []pushItem
}

// decodePush reads an XML or JSON push body (WeChat sends the format chosen in the
// console; the first byte tells them apart). It returns the event's plaintext fields and
// the Encrypt field, either of which may be empty; checkEvent validates the event.
func decodePush(body []byte) (ev pushEvent, encrypt string, err error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '<' {
		var x pushXML
		if err := xml.Unmarshal(body, &x); err != nil {
			return ev, "", minipush.Errorf(minipush.EMALFORMED, "push body is not WeChat XML")
		}
		ev = pushEvent{OpenID: x.FromUserName, CreateTime: strings.TrimSpace(x.CreateTime), MsgType: x.MsgType, Event: x.Event, Items: x.Popup.List}
		switch x.Event {
		case eventChange:
			ev.Items = x.Change.List
		case eventSent:
			ev.Items = x.Sent.List
		}
		return ev, strings.TrimSpace(x.Encrypt), nil
	}
	var j pushJSON
	if err := json.Unmarshal(body, &j); err != nil {
		return ev, "", minipush.Errorf(minipush.EMALFORMED, "push body is not WeChat JSON")
	}
	items := j.List
	if len(items) == 0 {
		items = j.Sent.List
	}
	return pushEvent{OpenID: j.FromUserName, CreateTime: string(j.CreateTime), MsgType: j.MsgType, Event: j.Event, Items: items}, strings.TrimSpace(j.Encrypt), nil
}

// checkEvent refuses a subscribe event without a usable user or time, and a sent event
// any of whose receipts does not parse (nothing of such a push is applied).
func checkEvent(ev pushEvent) error {
	if ev.Event == eventPopup || ev.Event == eventChange || ev.Event == eventSent || opensCSWindow(ev) {
		if ev.OpenID == "" || len(ev.OpenID) > maxPushOpenID {
			return minipush.Errorf(minipush.EMALFORMED, "push without a valid FromUserName")
		}
		if _, err := strconv.ParseInt(ev.CreateTime, 10, 64); err != nil {
			return minipush.Errorf(minipush.EMALFORMED, "push without a valid CreateTime")
		}
	}
	if ev.Event == eventSent {
		_, err := receiptsOf("", ev)
		return err
	}
	return nil
}

// digest identifies what a push says (not how it was encoded or encrypted), so that
// WeChat's retry of one push matches its first delivery.
func (ev pushEvent) digest() string {
	b, _ := json.Marshal(ev) // plain strings: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// openPush reads a verified push request's event: in safe mode (the app has an
// encodingAESKey) from the Encrypt field, after checking msg_signature over it; in
// plaintext mode from the body itself.
func (h *Handler) openPush(app minipush.App, req events.APIGatewayV2HTTPRequest) (pushEvent, error) {
	body, err := httpapi.Body(req, maxPushBody)
	if err != nil {
		return pushEvent{}, err
	}
	ev, encrypt, err := decodePush(body)
	if err != nil {
		return pushEvent{}, err
	}
	q := req.QueryStringParameters
	switch {
	case app.EncodingAESKey != "":
		if encrypt == "" {
			return pushEvent{}, errPushDenied("plaintext push refused: the app has an encodingAESKey, so its pushes must be encrypted")
		}
		if !checkMsgSignature(app.EventToken, q["timestamp"], q["nonce"], encrypt, q["msg_signature"]) {
			return pushEvent{}, errPushDenied()
		}
		key, err := app.AESKey()
		if err != nil {
			return pushEvent{}, err // ParseApps checked it: not reached
		}
		msg, err := decryptPush(key, app.AppID, encrypt)
		if err != nil {
			// Signed by WeChat with our token, yet it does not open: the key is wrong.
			return pushEvent{}, &minipush.Error{Code: minipush.EINVALID, Message: "safe-mode push does not decrypt: check the app's encodingAESKey in the WeChat secret", Err: err}
		}
		var inner string
		if ev, inner, err = decodePush(msg); err != nil {
			return pushEvent{}, err
		}
		if inner != "" {
			return pushEvent{}, minipush.Errorf(minipush.EMALFORMED, "safe-mode push holds another Encrypt")
		}
	case ev.Event == "" && encrypt != "":
		return pushEvent{}, minipush.Errorf(minipush.EINVALID, "encrypted (safe-mode) push, but the app has no encodingAESKey: add it to the WeChat secret, or set message push to plaintext mode")
	}
	return ev, checkEvent(ev)
}

// eventPush handles a signed message push: a popup accept becomes a subscribe grant
// (its id from the user, the event time and the template, so WeChat's retries of the
// same push store it once), a change reject drops the user's grants of that template
// accepted before the reject. Other events are acknowledged and ignored. Every push's
// URL is claimed first and marked applied after (see the top of this file), so a replay
// changes nothing. A storage failure answers 500 so WeChat retries the push.
func (h *Handler) eventPush(ctx context.Context, log *slog.Logger, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	app, err := h.verifyPush(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	log = log.With("appid", app.AppID)
	ev, err := h.openPush(app, req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if ev.OpenID != "" {
		log = log.With("user", h.userTag(app.AppID, ev.OpenID))
	}
	q := req.QueryStringParameters
	ts, _ := strconv.ParseInt(q["timestamp"], 10, 64) // verifyPush parsed it
	digest := ev.digest()
	claim, err := h.Store.ClaimPush(ctx, app.AppID, q["timestamp"], q["nonce"], digest, time.Unix(ts, 0).Add(pushMemory))
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	switch claim {
	case minipush.PushApplied:
		log.Info("push already applied: acknowledged", "event", ev.Event)
		return text(http.StatusOK, pushOK), nil
	case minipush.PushOtherBody:
		return events.APIGatewayV2HTTPResponse{}, errPushDenied("replay refused: this signed URL came before with another body")
	}
	if err := h.applyPush(ctx, log, app, ev); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if err := h.Store.MarkPushApplied(ctx, app.AppID, q["timestamp"], q["nonce"], digest); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return text(http.StatusOK, pushOK), nil
}

// applyPush makes a claimed push's changes. Each is idempotent: WeChat's retry of a push
// that failed midway applies it again.
func (h *Handler) applyPush(ctx context.Context, log *slog.Logger, app minipush.App, ev pushEvent) error {
	countPush(ctx, app.AppID, ev.Event)
	if opensCSWindow(ev) {
		return h.openCSWindow(ctx, log, app, ev) // cswindow.go
	}
	switch ev.Event {
	case eventPopup:
		if !app.AcceptsFrom(minipush.SourcePush) {
			// The app records accepts from the client's upload; storing the push's copy
			// too would count the one accept twice.
			log.Info("push accepts ignored: the app records subscribe accepts from the client")
			return nil
		}
		now := h.Now().Truncate(time.Second).UTC()
		// The accept's time is WeChat's CreateTime (a later reject compares with it),
		// not later than now: a grant collected in the future would outlive rejects.
		created, _ := strconv.ParseInt(ev.CreateTime, 10, 64) // checkEvent parsed it
		accepted := time.Unix(created, 0).UTC()
		if accepted.After(now) {
			accepted = now
		}
		var grants []minipush.Grant
		for _, it := range ev.Items {
			if it.Status != statusAccept || checkValue(it.TemplateID) != "" || checkKeyPart(it.TemplateID) != "" {
				continue
			}
			grants = append(grants, minipush.Grant{
				AppID: app.AppID, OpenID: ev.OpenID, Kind: minipush.GrantSubscribe,
				ID:         minipush.GrantID(minipush.GrantSubscribe, it.TemplateID, "push#"+ev.OpenID+"#"+ev.CreateTime),
				TemplateID: it.TemplateID, Uses: 1, CollectedAt: accepted, ExpiresAt: now.Add(h.SubscribeRetention),
			})
		}
		if len(grants) > MaxGrantsPerUpload {
			grants = grants[:MaxGrantsPerUpload] // WeChat asks for at most 3 templates at once
		}
		if len(grants) > 0 {
			st, err := h.Store.AddGrants(ctx, app.AppID, ev.OpenID, grants, h.MaxLiveGrants)
			if err != nil {
				return err
			}
			countHarvested(ctx, app.AppID, grants, st, minipush.AddAccepted)
			log.Info("push accepts stored", "grants", len(grants), "statuses", st)
		}
	case eventChange:
		created, _ := strconv.ParseInt(ev.CreateTime, 10, 64) // checkEvent parsed it
		for _, it := range ev.Items {
			if it.Status != statusReject || checkValue(it.TemplateID) != "" || checkKeyPart(it.TemplateID) != "" {
				continue
			}
			// Only the accepts before the reject: an old reject that arrives late (or is
			// retried) must not wipe an accept the user gave after it.
			n, err := h.Store.DeleteGrantsAcceptedBefore(ctx, app.AppID, ev.OpenID, it.TemplateID, time.Unix(created, 0))
			if err != nil {
				return err
			}
			if _, err := h.Store.RecomputeInventory(ctx, app.AppID, ev.OpenID); err != nil {
				return err
			}
			log.Info("template turned off", "template", it.TemplateID, "dropped", n)
		}
	case eventSent:
		return h.applyReceipts(ctx, log, app, ev)
	default:
		log.Info("push ignored", "event", ev.Event)
	}
	return nil
}
