package wechat_test

import (
	"net/http/httptest"
	"testing"

	"minipush/internal/dev/sandbox"
	"minipush/internal/wechat"
)

// TestTemplateAPIs calls gettemplate and getpubtemplatekeywords on the sandbox and
// checks their answers and classified errors.
func TestTemplateAPIs(t *testing.T) {
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: "wx1", Secret: "s1"}}})
	if err := sb.Apply(sandbox.Config{Templates: []sandbox.TemplateConfig{{AppID: "wx1", TemplateID: "T1", TID: "1234",
		Fields: map[string]string{"thing1": "thing", "phrase2": "phrase"}, Enums: map[string][]string{"phrase2": {"已发货", "未发货"}}}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	c := wechat.New(wechat.Options{BaseURL: srv.URL})
	tok, err := c.StableToken(t.Context(), "wx1", "s1", false)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.GetTemplates(t.Context(), tok.AccessToken)
	if err != nil || len(ts) != 1 || ts[0].PriTmplID != "T1" || ts[0].Content != "事项:{{thing1.DATA}}\n状态:{{phrase2.DATA}}\n" ||
		len(ts[0].KeywordEnumValueList) != 1 || ts[0].KeywordEnumValueList[0].KeywordCode != "phrase2.DATA" {
		t.Fatalf("gettemplate: %+v %v", ts, err)
	}
	kws, err := c.GetPubTemplateKeywords(t.Context(), tok.AccessToken, "1234")
	if err != nil || len(kws) != 2 || kws[1].KID != 2 || kws[1].Rule != "phrase" {
		t.Fatalf("getpubtemplatekeywords: %+v %v", kws, err)
	}
	// The sandbox's send keeps to the same enum list: another value is 47003.
	user := sb.NewUser("wx1")
	sb.AddSubscribeGrant("wx1", user, "T1")
	msg := wechat.SubscribeMessage{ToUser: user, TemplateID: "T1", Data: map[string]wechat.Value{"thing1": {Value: "键盘"}, "phrase2": {Value: "已签收"}}}
	if _, err := c.SendSubscribe(t.Context(), tok.AccessToken, msg); wechat.Reason(err) != "data_invalid" {
		t.Fatalf("send outside the enum: %v, want 47003", err)
	}
	msg.Data["phrase2"] = wechat.Value{Value: "已发货"}
	if _, err := c.SendSubscribe(t.Context(), tok.AccessToken, msg); err != nil {
		t.Fatalf("send inside the enum: %v", err)
	}
	for _, tc := range []struct {
		name   string
		err    error
		reason string
	}{
		{"BadToken", errOf(c.GetTemplates(t.Context(), "nope")), "token_invalid"},
		{"UnknownTID", errOf(c.GetPubTemplateKeywords(t.Context(), tok.AccessToken, "999")), "tid_invalid"},
		{"NoTID", errOf(c.GetPubTemplateKeywords(t.Context(), tok.AccessToken, "")), "param_invalid"},
	} {
		if got := wechat.Reason(tc.err); got != tc.reason {
			t.Errorf("%s: %v reason %q, want %q", tc.name, tc.err, got, tc.reason)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }
