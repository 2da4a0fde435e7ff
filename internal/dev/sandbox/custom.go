package sandbox

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"minipush"
)

// The customer-service channel (WECHAT.md §5): POST /cgi-bin/message/custom/send needs
// no grant, only a window the user opened by writing to customer service: 48 hours and
// 5 messages, each new message of the user resetting both. Outside a window the answer
// is 45015, with the window's messages used up 45047; nothing is recorded then.

// PathCustomSend is the customer-service send.
const PathCustomSend = "/cgi-bin/message/custom/send"

// Customer-service window, as WeChat documents it for mini-programs.
const (
	CSWindow         = minipush.CSWindow
	CSWindowMessages = minipush.CSWindowMessages
)

func init() {
	endpoints[PathCustomSend] = endpoint{http.MethodPost, true, (*Sandbox).customSend}
	errmsgs[40008] = "invalid message type"
	errmsgs[45015] = "response out of time limit or subscription is canceled"
	errmsgs[45047] = "out of response count limit"
	ControlRoutes = append(ControlRoutes,
		`POST   /_sandbox/customer-service    {"appid","openid","msgtype"?,"content"?,"push"?:{"url","token","encoding_aes_key"?}} -> {"until","push_status"?} (the user writes to customer service; the push goes to url when given)`)
}

// csWindow is a user's customer-service window at WeChat.
type csWindow struct {
	until time.Time
	left  int
}

// customSend serves POST /cgi-bin/message/custom/send: strict on the body (one msgtype
// and exactly its part, every field of it present), then the window.
func (s *Sandbox) customSend(r *http.Request, body []byte) reply {
	a, e := s.authLocked(r)
	if e != nil {
		return failReply(e)
	}
	var b struct {
		ToUser string `json:"touser"`
		Type   string `json:"msgtype"`
		Text   *struct {
			Content *string `json:"content"`
		} `json:"text"`
		Image *struct {
			MediaID *string `json:"media_id"`
		} `json:"image"`
		Link *struct {
			Title       *string `json:"title"`
			Description *string `json:"description"`
			URL         *string `json:"url"`
			ThumbURL    *string `json:"thumb_url"`
		} `json:"link"`
		Page *struct {
			Title        *string `json:"title"`
			PagePath     *string `json:"pagepath"`
			ThumbMediaID *string `json:"thumb_media_id"`
		} `json:"miniprogrampage"`
	}
	if err := strictDecode(body, &b); err != nil {
		return failReply(errc(47001, "data format error: %v", err))
	}
	parts := map[string]bool{"text": b.Text != nil, "image": b.Image != nil, "link": b.Link != nil, "miniprogrampage": b.Page != nil}
	present, ok := parts[b.Type]
	if !ok {
		return failReply(errc(40008, "invalid message type %q", b.Type))
	}
	for name, set := range parts {
		if set != (name == b.Type) {
			return failReply(errc(47001, "data format error: msgtype %s with a %s part", b.Type, name))
		}
	}
	if !present {
		return failReply(errc(47001, "data format error: msgtype %s without its part", b.Type))
	}
	data := map[string]string{}
	need := func(field string, v *string) bool {
		if v == nil || *v == "" {
			return false
		}
		data[field] = *v
		return true
	}
	complete := true
	switch b.Type {
	case "text":
		complete = need("content", b.Text.Content)
	case "image":
		complete = need("media_id", b.Image.MediaID)
	case "link":
		complete = need("title", b.Link.Title) && need("description", b.Link.Description) &&
			need("url", b.Link.URL) && need("thumb_url", b.Link.ThumbURL)
	case "miniprogrampage":
		complete = need("title", b.Page.Title) && need("pagepath", b.Page.PagePath) && need("thumb_media_id", b.Page.ThumbMediaID)
		if complete {
			if e := checkPage(a, *b.Page.PagePath); e != nil {
				return failReply(e)
			}
		}
	}
	if !complete {
		return failReply(errc(47001, "data format error: %s misses a required field", b.Type))
	}
	u, ok := a.users[b.ToUser]
	if !ok {
		return failReply(errc(40003, ""))
	}
	switch {
	case !s.now().Before(u.cs.until):
		return failReply(errc(45015, ""))
	case u.cs.left <= 0:
		return failReply(errc(45047, ""))
	}
	u.cs.left--
	return acceptedReply(s.recordLocked(Message{AppID: a.id, API: PathCustomSend, ToUser: b.ToUser, TemplateID: b.Type, Data: data}))
}

// OpenCSWindow opens (or resets) the user's customer-service window at WeChat as if
// they wrote to customer service now, and returns its end. The user must exist.
func (s *Sandbox) OpenCSWindow(appID, openID string) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openCSWindowLocked(appID, openID)
}

func (s *Sandbox) openCSWindowLocked(appID, openID string) (time.Time, error) {
	a, err := s.controlAppLocked(appID)
	if err != nil {
		return time.Time{}, err
	}
	u, ok := a.users[openID]
	if !ok {
		return time.Time{}, fmt.Errorf("%w: unknown openid %q", errBadRequest, openID)
	}
	u.cs = csWindow{until: s.now().Add(CSWindow), left: CSWindowMessages}
	return u.cs.until, nil
}

// CSWindowLeft returns how many customer-service messages the user's window still
// allows now (0 when it is closed).
func (s *Sandbox) CSWindowLeft(appID, openID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID, "CSWindowLeft")
	if a == nil {
		return 0
	}
	u, ok := a.users[openID]
	if !ok || !s.now().Before(u.cs.until) {
		return 0
	}
	return u.cs.left
}

// PushTarget is a system's message-push URL as configured in WeChat's console: where
// WeChat posts, the token it signs with, and the EncodingAESKey of safe mode ("" for
// plaintext mode).
type PushTarget struct {
	URL            string `json:"url"`
	Token          string `json:"token"`
	EncodingAESKey string `json:"encoding_aes_key,omitempty"`
}

// UserWritesCS is a user writing a text to the mini-program's customer service: it
// opens their window (OpenCSWindow) and, when push is not nil, delivers WeChat's
// signed push of the message to it (XML; in safe mode encrypted), returning the HTTP
// status the push URL answered.
func (s *Sandbox) UserWritesCS(appID, openID, content string, push *PushTarget) (until time.Time, status int, err error) {
	s.mu.Lock()
	until, err = s.openCSWindowLocked(appID, openID)
	at := s.now()
	nonce := s.randStringLocked(10, alnum)
	msgID := s.rng.Int64N(1 << 62)
	s.mu.Unlock()
	if err != nil || push == nil {
		return until, 0, err
	}
	msg := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId></xml>`,
		openID, at.Unix(), content, msgID)
	status, err = deliverPush(appID, *push, at, nonce, []byte(msg))
	return until, status, err
}

// deliverPush posts a customer-service message push as WeChat does (signedPush, XML)
// and returns the status the push URL answered.
func deliverPush(appID string, t PushTarget, at time.Time, nonce string, msg []byte) (int, error) {
	u, err := url.Parse(t.URL)
	if err != nil || u.Scheme == "" {
		return 0, fmt.Errorf("%w: push url %q", errBadRequest, t.URL)
	}
	signed, body, err := signedPush(appID, t.Token, t.EncodingAESKey, "xml", at, nonce, []byte(nonce + "012345")[:16], msg)
	if err != nil {
		return 0, err
	}
	q := u.Query() // the URL's own parameters stay; the signing ones replace any of theirs
	for k, v := range signed {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	resp, err := http.Post(u.String(), "text/xml", bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("deliver push: %w", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// customControl adds the customer-service control route.
func (s *Sandbox) customControl(handle func(pattern string, f func(r *http.Request) (any, error))) {
	handle("POST /_sandbox/customer-service", func(r *http.Request) (any, error) {
		var b struct {
			AppID   string      `json:"appid"`
			OpenID  string      `json:"openid"`
			MsgType string      `json:"msgtype"`
			Content string      `json:"content"`
			Push    *PushTarget `json:"push"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		if b.MsgType != "" && b.MsgType != "text" {
			return nil, fmt.Errorf("%w: msgtype %q: the sandbox pushes text messages", errBadRequest, b.MsgType)
		}
		if b.Content == "" {
			b.Content = "hello"
		}
		until, status, err := s.UserWritesCS(b.AppID, b.OpenID, b.Content, b.Push)
		if err != nil {
			return nil, err
		}
		out := map[string]any{"until": until.UTC().Format(time.RFC3339)}
		if b.Push != nil {
			out["push_status"] = status
		}
		return out, nil
	})
}
