package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"minipush"
)

// Receipts: after it accepts a subscribe message, WeChat pushes a
// subscribe_msg_sent_event to the app's message-push URL, saying whether an asynchronous
// failure kept the message from the user (WECHAT.md §8). The sandbox does the same for
// an app once SetReceipts configured it (off by default, so no test receives pushes it
// did not ask for): signed with the app's token, encrypted in safe mode when the app has
// an EncodingAESKey, in XML or JSON the way WeChat writes them (JSON: List an object for
// one item and an array for several, no SubscribeMsgSentEvent wrapper, the msgid a bare
// number above 2^53 and ErrorCode a string), after a small delay, retried like WeChat
// (three retries) when the system answers other than 2xx.

// DefaultReceiptErrorCode is the ErrorCode of an injected asynchronous failure.
const DefaultReceiptErrorCode = 10005

// ReceiptPush configures the sent-event pushes of one app.
type ReceiptPush struct {
	AppID string `json:"appid"`
	// URL is the system's message-push URL, e.g. http://127.0.0.1:3000/v1/wechat/events;
	// the sandbox adds appId, timestamp, nonce and the signatures. Empty turns pushes off.
	URL   string `json:"url"`
	Token string `json:"token"` // the app's message-push token (eventToken)
	// EncodingAESKey, when set, sends safe-mode pushes (the app's encodingAESKey).
	EncodingAESKey string `json:"encoding_aes_key,omitempty"`
	Format         string `json:"format,omitempty"` // "xml" (default) or "json"
	// Batch is the most List items one push carries (default 1): messages to one user
	// accepted within Delay of each other go out in one push, as WeChat may send them.
	Batch int           `json:"batch,omitempty"`
	Delay time.Duration `json:"-"` // default 100ms; delay_ms in the control API
	// RetryPause is the pause before the n-th retry, times n (default 1s): WeChat
	// retries a push answered other than 2xx three times, and minipush answers 503 to a
	// receipt that overtook the sender's final write so that a retry finds it.
	RetryPause time.Duration `json:"-"`
	// FailRate is the share of receipts that report an asynchronous failure, and
	// FailOpenIDs users whose receipts always do, with ErrorCode (default
	// DefaultReceiptErrorCode).
	FailRate    float64  `json:"fail_rate,omitempty"`
	FailOpenIDs []string `json:"fail_openids,omitempty"`
	ErrorCode   int      `json:"errcode,omitempty"`
}

// receiptItem is one List item waiting for its push.
type receiptItem struct {
	templateID string
	msgID      int64
	errorCode  int
}

// receipts is the sandbox's push state, under its own lock: pushes are HTTP calls made
// outside s.mu.
type receipts struct {
	mu      sync.Mutex
	cfg     map[string]ReceiptPush      // by appid
	pending map[[2]string][]receiptItem // by appid and openid
	client  *http.Client
	stats   struct{ pushed, refused, items int } // pushes answered 2xx, pushes given up, items pushed
	wg      sync.WaitGroup
}

// SetReceipts turns sent-event pushes on for cfg.AppID (off with an empty URL).
func (s *Sandbox) SetReceipts(cfg ReceiptPush) error {
	if cfg.AppID == "" {
		return fmt.Errorf("%w: receipts need an appid", errBadRequest)
	}
	switch cfg.Format {
	case "":
		cfg.Format = "xml"
	case "xml", "json":
	default:
		return fmt.Errorf("%w: receipts format %q: want xml or json", errBadRequest, cfg.Format)
	}
	if cfg.URL != "" && cfg.Token == "" {
		return fmt.Errorf("%w: receipts need the app's token to sign pushes", errBadRequest)
	}
	if cfg.EncodingAESKey != "" {
		if _, err := (minipush.App{AppID: cfg.AppID, EncodingAESKey: cfg.EncodingAESKey}).AESKey(); err != nil {
			return fmt.Errorf("%w: %v", errBadRequest, err)
		}
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return fmt.Errorf("%w: fail_rate %v: want 0..1", errBadRequest, cfg.FailRate)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1
	}
	if cfg.Delay <= 0 {
		cfg.Delay = 100 * time.Millisecond
	}
	if cfg.ErrorCode == 0 {
		cfg.ErrorCode = DefaultReceiptErrorCode
	}
	if cfg.RetryPause <= 0 {
		cfg.RetryPause = time.Second
	}
	r := &s.rcpt
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg == nil {
		r.cfg = map[string]ReceiptPush{}
		r.pending = map[[2]string][]receiptItem{}
		r.client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.URL == "" {
		delete(r.cfg, cfg.AppID)
		return nil
	}
	r.cfg[cfg.AppID] = cfg
	return nil
}

// WaitReceipts waits until every push scheduled so far was answered or given up, and
// returns how many pushes were answered 2xx and how many items they carried.
func (s *Sandbox) WaitReceipts() (pushes, items int) {
	s.rcpt.wg.Wait()
	s.rcpt.mu.Lock()
	defer s.rcpt.mu.Unlock()
	return s.rcpt.stats.pushed, s.rcpt.stats.items
}

// queueReceiptLocked schedules the receipt of an accepted subscribe message; the caller
// holds s.mu (the failure draw uses s.rng).
func (s *Sandbox) queueReceiptLocked(appID, openID, templateID string, msgID int64) {
	r := &s.rcpt
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, ok := r.cfg[appID]
	if !ok {
		return
	}
	it := receiptItem{templateID: templateID, msgID: msgID}
	if slices.Contains(cfg.FailOpenIDs, openID) || (cfg.FailRate > 0 && s.rng.Float64() < cfg.FailRate) {
		it.errorCode = cfg.ErrorCode
	}
	key := [2]string{appID, openID}
	r.pending[key] = append(r.pending[key], it)
	if len(r.pending[key]) > 1 {
		return // a push for this user is already scheduled: this item goes with it
	}
	r.wg.Add(1)
	time.AfterFunc(cfg.Delay, func() {
		defer r.wg.Done()
		r.mu.Lock()
		items := r.pending[key]
		delete(r.pending, key)
		r.mu.Unlock()
		for len(items) > 0 {
			n := min(len(items), cfg.Batch)
			s.mu.Lock() // s.rng: the nonce and the random bytes of safe mode
			nonce := strconv.FormatUint(s.rng.Uint64(), 36)
			random := make([]byte, 16)
			for i := range random {
				random[i] = byte(s.rng.IntN(256))
			}
			s.mu.Unlock()
			s.pushReceipts(cfg, openID, items[:n], nonce, random)
			items = items[n:]
		}
	})
}

// sentEventBody is the push's plaintext: XML or JSON as WeChat writes it.
func sentEventBody(format, openID string, created int64, items []receiptItem) []byte {
	status := func(it receiptItem) string {
		if it.errorCode == 0 {
			return "success"
		}
		return "fail:system error"
	}
	if format == "json" {
		type jsonItem struct {
			TemplateID  string      `json:"TemplateId"`
			MsgID       json.Number `json:"MsgID"`
			ErrorCode   string      `json:"ErrorCode"`
			ErrorStatus string      `json:"ErrorStatus"`
		}
		list := make([]jsonItem, 0, len(items))
		for _, it := range items {
			list = append(list, jsonItem{it.templateID, json.Number(strconv.FormatInt(it.msgID, 10)), strconv.Itoa(it.errorCode), status(it)})
		}
		var l any = list
		if len(list) == 1 {
			l = list[0] // one item: an object, not an array (WECHAT.md §8)
		}
		b, _ := json.Marshal(map[string]any{
			"ToUserName": "gh_sandbox", "FromUserName": openID, "CreateTime": created,
			"MsgType": "event", "Event": "subscribe_msg_sent_event", "List": l,
		})
		return b
	}
	var buf bytes.Buffer
	cdata := func(tag, v string) {
		// openids, template ids and statuses never hold "]]>"
		buf.WriteString("<" + tag + "><![CDATA[" + v + "]]></" + tag + ">")
	}
	buf.WriteString("<xml>")
	cdata("ToUserName", "gh_sandbox")
	cdata("FromUserName", openID)
	buf.WriteString("<CreateTime>" + strconv.FormatInt(created, 10) + "</CreateTime>")
	cdata("MsgType", "event")
	cdata("Event", "subscribe_msg_sent_event")
	buf.WriteString("<SubscribeMsgSentEvent>")
	for _, it := range items {
		buf.WriteString("<List>")
		cdata("TemplateId", it.templateID)
		buf.WriteString("<MsgID>" + strconv.FormatInt(it.msgID, 10) + "</MsgID>")
		buf.WriteString("<ErrorCode>" + strconv.Itoa(it.errorCode) + "</ErrorCode>")
		cdata("ErrorStatus", status(it))
		buf.WriteString("</List>")
	}
	buf.WriteString("</SubscribeMsgSentEvent></xml>")
	return buf.Bytes()
}

// pushReceipts delivers one push, retrying three times as WeChat does.
func (s *Sandbox) pushReceipts(cfg ReceiptPush, openID string, items []receiptItem, nonce string, random []byte) {
	now := s.now()
	signed, body, err := signedPush(cfg.AppID, cfg.Token, cfg.EncodingAESKey, cfg.Format, now, nonce, random,
		sentEventBody(cfg.Format, openID, now.Unix(), items))
	if err != nil { // SetReceipts checked the key: not expected
		s.log.Warn("sandbox: receipt push not sealed", "err", err)
		return
	}
	q := signed.Encode()
	sep := "?"
	if bytes.ContainsRune([]byte(cfg.URL), '?') {
		sep = "&"
	}
	contentType := "text/xml"
	if cfg.Format == "json" {
		contentType = "application/json"
	}
	for attempt := range 4 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * cfg.RetryPause) // WeChat's pause between retries, not synchronisation
		}
		if err = s.postReceipt(cfg.URL+sep+q, contentType, body); err == nil {
			s.rcpt.mu.Lock()
			s.rcpt.stats.pushed++
			s.rcpt.stats.items += len(items)
			s.rcpt.mu.Unlock()
			return
		}
	}
	s.rcpt.mu.Lock()
	s.rcpt.stats.refused++
	s.rcpt.mu.Unlock()
	s.log.Warn("sandbox: receipt push given up after 3 retries", "appid", cfg.AppID, "err", err)
}

func (s *Sandbox) postReceipt(url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := s.rcpt.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode/100 != 2 {
		return errors.New("push answered " + resp.Status + ": " + string(b))
	}
	return nil
}
