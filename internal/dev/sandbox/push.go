package sandbox

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"minipush"
	"minipush/internal/collect"
)

// signedPush is a push as WeChat posts it to a system's message-push URL: the query
// parameters signing it with the app's token (appId is minipush's own parameter naming
// the app) and the body. In safe mode (aesKey set) the body is msg encrypted, random
// being the cipher's 16 random leading bytes, in WeChat's envelope (XML, or JSON when
// format is "json"), and msg_signature signs the ciphertext too. Both kinds of push the
// sandbox delivers use it: a user's customer-service message (deliverPush) and the
// sent-event receipts (pushReceipts).
func signedPush(appID, token, aesKey, format string, at time.Time, nonce string, random, msg []byte) (url.Values, []byte, error) {
	ts := strconv.FormatInt(at.Unix(), 10)
	q := url.Values{}
	q.Set("appId", appID)
	q.Set("timestamp", ts)
	q.Set("nonce", nonce)
	q.Set("signature", collect.Signature(token, ts, nonce))
	if aesKey == "" {
		return q, msg, nil
	}
	key, err := minipush.App{AppID: appID, EncodingAESKey: aesKey}.AESKey()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encoding_aes_key: %v", errBadRequest, err)
	}
	enc, err := collect.EncryptPush(key, appID, msg, random)
	if err != nil {
		return nil, nil, err
	}
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", collect.MsgSignature(token, ts, nonce, enc))
	if format == "json" {
		body, err := json.Marshal(map[string]string{"ToUserName": "gh_sandbox", "Encrypt": enc})
		return q, body, err
	}
	return q, []byte(`<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><Encrypt><![CDATA[` + enc + `]]></Encrypt></xml>`), nil
}
