package collect

import (
	"strconv"
	"testing"

	"minipush"
)

// FuzzDecodePush checks the message-push decoder on arbitrary bodies (signed by WeChat,
// but a leaked event token makes them anyone's): it never panics, every error is a coded
// 4xx, and a subscribe event it accepts names a user and a numeric CreateTime, the parts
// of the grant id that make WeChat's retries idempotent.
func FuzzDecodePush(f *testing.F) {
	for _, s := range []string{
		`<xml><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1764057600</CreateTime><MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event><SubscribeMsgPopupEvent><List><TemplateId>T</TemplateId><SubscribeStatusString>accept</SubscribeStatusString></List></SubscribeMsgPopupEvent></xml>`,
		`<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><Event>subscribe_msg_change_event</Event><SubscribeMsgChangeEvent><List><TemplateId>T</TemplateId><SubscribeStatusString>reject</SubscribeStatusString></List></SubscribeMsgChangeEvent></xml>`,
		`{"FromUserName":"o1","CreateTime":"1764057601","Event":"subscribe_msg_popup_event","List":[{"TemplateId":"T","SubscribeStatusString":"accept"}]}`,
		`{"FromUserName":"o1","CreateTime":1764057700,"Event":"subscribe_msg_change_event","List":{"TemplateId":"T","SubscribeStatusString":"reject"}}`,
		`{"ToUserName":"gh_1","Encrypt":"c2VjcmV0"}`,
		`<xml><Encrypt>x</Encrypt></xml>`, `{}`, `<xml/>`, ``, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, _, err := decodePush(body)
		if err == nil {
			err = checkEvent(ev)
		}
		if err != nil {
			if c := minipush.ErrorCode(err); c != minipush.EMALFORMED && c != minipush.EINVALID {
				t.Fatalf("error %v has code %q, want malformed or invalid", err, c)
			}
			return
		}
		if ev.Event != eventPopup && ev.Event != eventChange {
			return
		}
		if ev.OpenID == "" || len(ev.OpenID) > maxPushOpenID {
			t.Fatalf("subscribe event for openid %q", ev.OpenID)
		}
		if _, err := strconv.ParseInt(ev.CreateTime, 10, 64); err != nil {
			t.Fatalf("subscribe event with CreateTime %q", ev.CreateTime)
		}
	})
}
