package collect_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// csTextXML is a user's text to customer service, as WeChat pushes it in XML.
const csTextXML = `<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>
<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[在吗]]></Content><MsgId>23637352235060880</MsgId></xml>`

// csJSON is a user's message or entry event in JSON, numbers as strings.
const csJSON = `{"ToUserName":"gh_123","FromUserName":"%s","CreateTime":"%d","MsgType":"%s","Event":"%s","MsgId":"23637352235060881"}`

// TestCSWindowFromPush (issue #14 item 3): a user's message to customer service (text
// in XML, a card or the entry event in JSON) opens their window of 48 h and 5 messages
// from the message's CreateTime, answered "success"; an older push arriving later
// does not shrink it, nor does a retried one reset its count.
func TestCSWindowFromPush(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	window := func(openID string) minipush.CSWindowState {
		t.Helper()
		w, err := f.db.CSWindow(t.Context(), appID, openID)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	pushOK := func(body string) {
		t.Helper()
		resp := f.do(t, f.push("POST", body, nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push answered %d %q, want 200 success", resp.StatusCode, resp.Body)
		}
	}
	at := func(ago time.Duration) int64 { return f.now.Add(-ago).Unix() }

	t.Run("OK", func(t *testing.T) {
		for _, tc := range []struct{ name, body string }{
			{"XMLText", fmt.Sprintf(csTextXML, "cs-xml", at(time.Hour))},
			{"JSONCard", fmt.Sprintf(csJSON, "cs-card", at(time.Hour), "miniprogrampage", "")},
			{"JSONEnter", fmt.Sprintf(csJSON, "cs-enter", at(time.Hour), "event", "user_enter_tempsession")},
		} {
			user := map[string]string{"XMLText": "cs-xml", "JSONCard": "cs-card", "JSONEnter": "cs-enter"}[tc.name]
			pushOK(tc.body)
			want := time.Unix(at(time.Hour), 0).Add(minipush.CSWindow)
			if w := window(user); !w.Until.Equal(want) || w.Left != minipush.CSWindowMessages {
				t.Errorf("%s: window %+v, want until %v with %d", tc.name, w, want, minipush.CSWindowMessages)
			}
		}
	})

	t.Run("OlderPushDoesNotShrink", func(t *testing.T) {
		const u = "cs-late"
		pushOK(fmt.Sprintf(csTextXML, u, at(time.Minute)))
		newer := window(u)
		// Two messages taken from it by send, then WeChat delivers an older message's
		// push late, and retries the newer one.
		for range 2 {
			if _, err := f.db.TakeCSMessage(t.Context(), appID, u, f.now); err != nil {
				t.Fatal(err)
			}
		}
		pushOK(fmt.Sprintf(csTextXML, u, at(10*time.Hour)))
		pushOK(fmt.Sprintf(csTextXML, u, at(time.Minute)))
		if w := window(u); !w.Until.Equal(newer.Until) || w.Left != minipush.CSWindowMessages-2 {
			t.Errorf("window %+v after an older and a retried push, want until %v with %d", w, newer.Until, minipush.CSWindowMessages-2)
		}
		// A newer message resets both.
		pushOK(fmt.Sprintf(csTextXML, u, at(0)))
		if w := window(u); !w.Until.Equal(f.now.Add(minipush.CSWindow)) || w.Left != minipush.CSWindowMessages {
			t.Errorf("window %+v after a newer message, want a fresh one", w)
		}
	})

	t.Run("TooOldOpensNothing", func(t *testing.T) {
		pushOK(fmt.Sprintf(csTextXML, "cs-old", at(minipush.CSWindow+time.Minute)))
		if w := window("cs-old"); w.Open(f.now) || !w.Until.IsZero() {
			t.Errorf("window %+v from a message older than 48 h", w)
		}
	})

	t.Run("ErrNoCreateTime", func(t *testing.T) {
		before := f.snapshot(t)
		resp := f.do(t, f.push("POST", `{"FromUserName":"cs-bad","MsgType":"text","CreateTime":"soon"}`, nil))
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("push without a CreateTime answered %d %s, want 4xx", resp.StatusCode, resp.Body)
		}
		f.mustUnchanged(t, before, "push#")
	})
}

// TestSandboxPushOpensWindow: the sandbox's control route for a user writing to
// customer service opens the window at WeChat and delivers the signed push to the
// system's push URL, where collect records the same window.
func TestSandboxPushOpensWindow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	openID := f.sb.NewUser(appID)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := r.URL.Query()
		req := f.push("POST", string(body), func(u url.Values) {
			for k := range u {
				delete(u, k)
			}
			for k, v := range q {
				u[k] = v
			}
		})
		resp := f.do(t, req)
		w.WriteHeader(resp.StatusCode)
		fmt.Fprint(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	until, status, err := f.sb.UserWritesCS(appID, openID, "你好", &sandbox.PushTarget{URL: srv.URL, Token: eventToken})
	if err != nil || status != http.StatusOK {
		t.Fatalf("push delivered with status %d, err %v", status, err)
	}
	w, err := f.db.CSWindow(t.Context(), appID, openID)
	if err != nil {
		t.Fatal(err)
	}
	// The handler's clock is the fixture's (within a minute of the sandbox's real one);
	// a message it sees from its future opens the window from its now.
	if d := until.Sub(w.Until); d < 0 || d > time.Minute || !w.Open(f.now) || w.Left != minipush.CSWindowMessages {
		t.Errorf("stored window %+v, want open until about %v (WeChat's) with %d", w, until, minipush.CSWindowMessages)
	}
	if left := f.sb.CSWindowLeft(appID, openID); left != minipush.CSWindowMessages {
		t.Errorf("sandbox window has %d left, want %d", left, minipush.CSWindowMessages)
	}
}
