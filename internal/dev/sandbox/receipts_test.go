package sandbox_test

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"minipush/internal/collect"
	"minipush/internal/dev/sandbox"
)

// pushSink records the message pushes the sandbox makes.
type pushSink struct {
	mu     sync.Mutex
	pushes []*http.Request
	bodies []string
}

func newPushSink(t *testing.T) (*pushSink, string) {
	t.Helper()
	s := &pushSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.pushes = append(s.pushes, r)
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
		io.WriteString(w, "success")
	}))
	t.Cleanup(srv.Close)
	return s, srv.URL + "/v1/wechat/events"
}

// TestReceiptPushes: once configured, every accepted subscribe message is followed by a
// signed subscribe_msg_sent_event push in the format WeChat uses: JSON List an object
// for one item and an array for several, the msgid a bare number, ErrorCode a string;
// XML with the SubscribeMsgSentEvent wrapper; safe mode encrypted with msg_signature.
// Users named in fail_openids get ErrorCode 10005. Without configuration nothing is
// pushed.
func TestReceiptPushes(t *testing.T) {
	t.Parallel()
	const token = "push-token"
	e := newEnv(t)
	tok := e.token(t)
	sink, url := newPushSink(t)
	send := func(u string, n int) {
		t.Helper()
		for range n {
			e.sb.AddSubscribeGrant(appID, u, tmpl)
			if a := e.subscribe(t, tok, map[string]any{"touser": u, "template_id": tmpl, "data": validData()}); a.code() != 0 {
				t.Fatalf("send: %v", a)
			}
		}
	}
	last := func(t *testing.T, n int) (*http.Request, string) {
		t.Helper()
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if len(sink.pushes) != n {
			t.Fatalf("%d pushes, want %d", len(sink.pushes), n)
		}
		if n == 0 {
			return nil, ""
		}
		return sink.pushes[n-1], sink.bodies[n-1]
	}
	signed := func(t *testing.T, r *http.Request) {
		t.Helper()
		q := r.URL.Query()
		if q.Get("appId") != appID || q.Get("signature") != collect.Signature(token, q.Get("timestamp"), q.Get("nonce")) {
			t.Fatalf("push URL %s not signed with the token", r.URL)
		}
	}

	t.Run("OffByDefault", func(t *testing.T) {
		send(e.sb.NewUser(appID), 1)
		if pushes, _ := e.sb.WaitReceipts(); pushes != 0 {
			t.Fatalf("%d pushes without configuration", pushes)
		}
		last(t, 0)
	})
	t.Run("JSONBatchWithFailure", func(t *testing.T) {
		failing := e.sb.NewUser(appID)
		if err := e.sb.SetReceipts(sandbox.ReceiptPush{AppID: appID, URL: url, Token: token, Format: "json", Batch: 2,
			Delay: 300 * time.Millisecond, FailOpenIDs: []string{failing}}); err != nil {
			t.Fatal(err)
		}
		u := e.sb.NewUser(appID)
		send(u, 2)
		send(failing, 1)
		if pushes, items := e.sb.WaitReceipts(); pushes != 2 || items != 3 {
			t.Fatalf("%d pushes of %d items, want 2 of 3", pushes, items)
		}
		sink.mu.Lock()
		bodies := append([]string(nil), sink.bodies...)
		reqs := append([]*http.Request(nil), sink.pushes...)
		sink.mu.Unlock()
		for i, b := range bodies {
			signed(t, reqs[i])
			switch {
			case strings.Contains(b, u):
				if !strings.Contains(b, `"List":[{`) || strings.Count(b, `"ErrorCode":"0"`) != 2 || strings.Contains(b, "SubscribeMsgSentEvent") {
					t.Fatalf("two-item JSON push %s: want a List array, ErrorCode strings, no wrapper", b)
				}
			case strings.Contains(b, failing):
				if !strings.Contains(b, `"List":{`) || !strings.Contains(b, `"ErrorCode":"10005"`) {
					t.Fatalf("one-item JSON push %s: want a List object with ErrorCode 10005", b)
				}
			default:
				t.Fatalf("push for nobody sent to: %s", b)
			}
			// The msgid is a bare number above 2^53, as WeChat writes it.
			var raw struct{ List json.RawMessage }
			if err := json.Unmarshal([]byte(b), &raw); err != nil || !strings.Contains(string(raw.List), `"MsgID":900719925474`) {
				t.Fatalf("push %s: msgid not a bare number (%v)", b, err)
			}
		}
	})
	t.Run("XML", func(t *testing.T) {
		if err := e.sb.SetReceipts(sandbox.ReceiptPush{AppID: appID, URL: url, Token: token, Format: "xml"}); err != nil {
			t.Fatal(err)
		}
		u := e.sb.NewUser(appID)
		send(u, 1)
		e.sb.WaitReceipts()
		r, b := last(t, 3)
		signed(t, r)
		var x struct {
			From  string `xml:"FromUserName"`
			Event string `xml:"Event"`
			List  []struct {
				MsgID     string `xml:"MsgID"`
				ErrorCode string `xml:"ErrorCode"`
			} `xml:"SubscribeMsgSentEvent>List"`
		}
		if err := xml.Unmarshal([]byte(b), &x); err != nil || x.From != u || x.Event != "subscribe_msg_sent_event" || len(x.List) != 1 || x.List[0].ErrorCode != "0" {
			t.Fatalf("XML push %s: %+v %v", b, x, err)
		}
	})
	t.Run("SafeMode", func(t *testing.T) {
		const aesKey = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
		if err := e.sb.SetReceipts(sandbox.ReceiptPush{AppID: appID, URL: url, Token: token, EncodingAESKey: aesKey}); err != nil {
			t.Fatal(err)
		}
		u := e.sb.NewUser(appID)
		send(u, 1)
		e.sb.WaitReceipts()
		r, b := last(t, 4)
		signed(t, r)
		var x struct {
			Encrypt string `xml:"Encrypt"`
		}
		q := r.URL.Query()
		if err := xml.Unmarshal([]byte(b), &x); err != nil || x.Encrypt == "" || strings.Contains(b, u) ||
			q.Get("msg_signature") != collect.MsgSignature(token, q.Get("timestamp"), q.Get("nonce"), x.Encrypt) {
			t.Fatalf("safe-mode push %s %s: want the message encrypted under msg_signature", r.URL, b)
		}
	})
	t.Run("ErrBadConfig", func(t *testing.T) {
		for _, cfg := range []sandbox.ReceiptPush{
			{URL: url, Token: token},
			{AppID: appID, URL: url},
			{AppID: appID, URL: url, Token: token, Format: "yaml"},
			{AppID: appID, URL: url, Token: token, FailRate: 2},
			{AppID: appID, URL: url, Token: token, EncodingAESKey: "short"},
		} {
			if err := e.sb.SetReceipts(cfg); err == nil {
				t.Errorf("SetReceipts(%+v) accepted", cfg)
			}
		}
	})
}
