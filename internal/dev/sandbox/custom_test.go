package sandbox_test

import (
	"testing"
	"time"

	"minipush/internal/dev/sandbox"
	"minipush/internal/wechat"
)

// TestCustomSend: custom/send needs a window the user opened (45015 without one or
// after 48 h), allows 5 messages in it (45047 after), a new message of the user resets
// both, and bodies are checked strictly (a msgtype and exactly its complete part).
func TestCustomSend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client(time.Second)
	tok, err := c.StableToken(t.Context(), appID, secret, false)
	if err != nil {
		t.Fatal(err)
	}
	u := e.sb.NewUser(appID)
	text := wechat.CustomMessage{ToUser: u, MsgType: wechat.CustomText, Text: &wechat.CustomTextBody{Content: "hi"}}
	send := func(m wechat.CustomMessage) string {
		return wechat.Reason(c.SendCustom(t.Context(), tok.AccessToken, m))
	}

	if r := send(text); r != "cs_window_closed" {
		t.Fatalf("without a window: %q, want cs_window_closed", r)
	}
	if _, err := e.sb.OpenCSWindow(appID, u); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    wechat.CustomMessage
		want string
	}{
		{"ErrUnknownType", wechat.CustomMessage{ToUser: u, MsgType: "video"}, "errcode_40008"},
		{"ErrNoPart", wechat.CustomMessage{ToUser: u, MsgType: wechat.CustomText}, "body_invalid"},
		{"ErrOtherPart", wechat.CustomMessage{ToUser: u, MsgType: wechat.CustomText, Link: &wechat.CustomLinkBody{Title: "t"}}, "body_invalid"},
		{"ErrIncompleteLink", wechat.CustomMessage{ToUser: u, MsgType: wechat.CustomLink, Link: &wechat.CustomLinkBody{Title: "t", URL: "https://a.cn"}}, "body_invalid"},
		{"ErrBadPage", wechat.CustomMessage{ToUser: u, MsgType: wechat.CustomMiniprogramPage, MiniprogramPage: &wechat.CustomPageBody{Title: "t", PagePath: "nopages", ThumbMediaID: "m"}}, "page_invalid"},
		{"ErrUnknownUser", wechat.CustomMessage{ToUser: "nobody", MsgType: wechat.CustomText, Text: &wechat.CustomTextBody{Content: "x"}}, "invalid_openid"},
	} {
		if r := send(tc.m); r != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, r, tc.want)
		}
	}
	if left := e.sb.CSWindowLeft(appID, u); left != sandbox.CSWindowMessages {
		t.Fatalf("refused sends used the window: %d left", left)
	}
	for i := range sandbox.CSWindowMessages {
		if r := send(text); r != "" {
			t.Fatalf("message %d: %q", i+1, r)
		}
	}
	if r := send(text); r != "cs_quota" {
		t.Fatalf("sixth message: %q, want cs_quota", r)
	}
	if _, err := e.sb.OpenCSWindow(appID, u); err != nil { // the user writes again
		t.Fatal(err)
	}
	if r := send(text); r != "" {
		t.Fatalf("after a new message: %q", r)
	}
	e.clock.Advance(sandbox.CSWindow)
	if tok, err = c.StableToken(t.Context(), appID, secret, false); err != nil { // 2 h tokens
		t.Fatal(err)
	}
	if r := send(text); r != "cs_window_closed" {
		t.Fatalf("after 48 h: %q, want cs_window_closed", r)
	}
}
