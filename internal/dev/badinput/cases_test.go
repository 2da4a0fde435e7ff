package badinput_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/collect"
	"minipush/internal/dev/localrun"
	"minipush/internal/session"
)

// The template's routes.
const (
	sessionRoute = "POST /v1/session"
	grantsRoute  = "POST /v1/grants"
	pushRoute    = "POST /v1/wechat/events"
	echoRoute    = "GET /v1/wechat/events"
	adminRoute   = "ANY /v1/admin/{proxy+}"
)

// adminOps are the operations behind the admin function's one greedy route (the
// README's operator API table). The template cannot list them; each must have cases.
var adminOps = []string{
	"POST campaigns", "GET campaigns", "GET campaigns/{id}", "PATCH campaigns/{id}",
	"POST campaigns/{id}/audience", "POST campaigns/{id}/schedule",
	"POST campaigns/{id}/cancel", "POST campaigns/{id}/pause", "POST campaigns/{id}/resume",
	"GET campaigns/{id}/progress", "GET campaigns/{id}/runs/{n}/deliveries",
	"PUT users/{openId}", "POST users:import", "GET inventory",
	"POST apps/{appId}/templates:sync", "GET apps/{appId}/templates", "GET apps/{appId}/templates/{priTmplId}",
	"POST apps/{appId}/templates/{priTmplId}/preview",
	"POST campaigns/{id}/forecast", "GET apps/{appId}/webhook", "PUT apps/{appId}/webhook",
	"POST campaigns:validate", "GET apps", "GET schedule/next",
	"POST campaigns/{id}/test", "GET apps/{appId}/quota",
}

// gatewayLimit is API Gateway's request payload limit (10 MB), which the emulation enforces.
const gatewayLimit = 10 << 20

// fixture is what the suite stores through the public API before the cases, so that
// refusals happen against real data (a user with grants, campaigns in several states)
// and replays have something to replay.
type fixture struct {
	s          *system
	openID     string // the logged-in demo user
	token      string // their session token
	upload     []byte // the grant upload stored for them
	usedCode   string // a wx.login code already exchanged
	pushTarget string // a signed message push already delivered...
	push       []byte // ...and its body
	draft      string // a draft list campaign with an audience page
	page       []byte // that page
	cancelled  string // a cancelled campaign
	segment    string // a draft segment campaign
	attrsUser  string // a user whose attributes were set...
	attrs      []byte // ...to these
}

const campaignBody = `{"appId":"` + "wx0000000000demo" + `","name":"bad-input fixture","message":{"kind":"subscribe",
"templateId":"` + localrun.DemoSubscribeTemplate + `","data":{"thing1":{"value":"Check in"},"time2":{"value":"2026-12-01 10:00"}}},
"audience":{"kind":"list"}}`

func setUp(t *testing.T, s *system) *fixture {
	t.Helper()
	if demo.AppID != "wx0000000000demo" {
		t.Fatalf("the demo app is %s: update campaignBody", demo.AppID)
	}
	fx := &fixture{s: s}
	// A user logs in and uploads a formId and a subscribe accept.
	var code string
	fx.openID, code = s.sb.NewLogin(demo.AppID)
	sess := mustJSON[collect.SessionAnswer](t, s.do(t, jsonPost("/v1/session", `{"code":"`+code+`","appId":"`+demo.AppID+`"}`, "")), 200)
	fx.token = sess.Token
	fx.upload = []byte(`{"grants":[{"type":"form","formId":"fixture-form-1"},{"type":"subscribe","key":"k1","results":{"` + localrun.DemoSubscribeTemplate + `":"accept"}}]}`)
	up := mustJSON[collect.UploadAnswer](t, s.do(t, request{method: "POST", target: "/v1/grants", header: bearer(fx.token), body: fx.upload}), 200)
	if up.Accepted != 2 {
		t.Fatalf("fixture upload %+v", up)
	}
	// A code exchanged once.
	_, fx.usedCode = s.sb.NewLogin(demo.AppID)
	mustJSON[collect.SessionAnswer](t, s.do(t, jsonPost("/v1/session", `{"code":"`+fx.usedCode+`","appId":"`+demo.AppID+`"}`, "")), 200)
	// WeChat pushes an accept of another user.
	fx.pushTarget = "/v1/wechat/events?" + pushQuery(demo.AppID, demo.EventToken, time.Now(), "fixturenonce")
	fx.push = []byte(fmt.Sprintf(popupJSON, "oPushUser0000000000000000001", time.Now().Unix()))
	if a := s.do(t, jsonPost(fx.pushTarget, string(fx.push), "")); a.status != 200 || string(a.body) != "success" {
		t.Fatalf("fixture push: %d %s", a.status, a.body)
	}
	// The operator creates campaigns and sets a user's attributes.
	type created struct{ ID string }
	fx.draft = mustJSON[created](t, s.do(t, fx.admin("POST", "/v1/admin/campaigns", campaignBody)), 201).ID
	fx.page = []byte(`{"openIds":["oAudience1","oAudience2"]}`)
	mustJSON[map[string]int](t, s.do(t, fx.admin("POST", "/v1/admin/campaigns/"+fx.draft+"/audience", string(fx.page))), 200)
	fx.cancelled = mustJSON[created](t, s.do(t, fx.admin("POST", "/v1/admin/campaigns", campaignBody)), 201).ID
	mustJSON[created](t, s.do(t, fx.admin("POST", "/v1/admin/campaigns/"+fx.cancelled+"/cancel", "")), 200)
	fx.segment = mustJSON[created](t, s.do(t, fx.admin("POST", "/v1/admin/campaigns",
		strings.Replace(campaignBody, `{"kind":"list"}`, `{"kind":"segment","segment":{"regions":["sh"]}}`, 1))), 201).ID
	fx.attrsUser = "oAttrUser1"
	fx.attrs = []byte(`{"region":"sh","tags":["vip"]}`)
	mustJSON[map[string]any](t, s.do(t, fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, string(fx.attrs))), 200)
	// The operator creates a campaign with an Idempotency-Key; cases retry it.
	mustJSON[created](t, s.do(t, with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Idempotency-Key", idempotencyFixtureKey)), 201)
	return fx
}

// popupJSON is a subscribe_msg_popup_event in JSON (FromUserName, CreateTime).
const popupJSON = `{"ToUserName":"gh_1","FromUserName":%q,"CreateTime":%d,"MsgType":"event","Event":"subscribe_msg_popup_event",
"List":[{"TemplateId":"` + localrun.DemoSubscribeTemplate + `","SubscribeStatusString":"accept","PopupScene":"0"}]}`

func jsonPost(target, body, auth string) request {
	h := map[string]string{"Content-Type": "application/json"}
	if auth != "" {
		h["Authorization"] = auth
	}
	return request{method: "POST", target: target, header: h, body: []byte(body)}
}

func bearer(tok string) map[string]string {
	return map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + tok}
}

func (fx *fixture) admin(method, target, body string) request {
	return request{method: method, target: target, header: bearer(fx.s.operator), body: []byte(body)}
}

// with returns req with header k set to v ("" deletes it).
func with(req request, k, v string) request {
	h := map[string]string{}
	for hk, hv := range req.header {
		h[hk] = hv
	}
	if v == "" {
		delete(h, k)
	} else {
		h[k] = v
	}
	req.header = h
	return req
}

func repeatJSON(item string, n int) string {
	return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
}

// junk is bytes that are no text format at all; sent as application/octet-stream, API
// Gateway hands them to the function base64-encoded.
var junk = []byte{0x00, 0xff, 0xfe, 0x1f, 0x8b, 0x08, 0x00, '{', 0x80, 0x81}

func (fx *fixture) cases() []tcase {
	s := fx.s
	now := time.Now()
	tok := fx.token
	auth := "Bearer " + tok
	signed := func(body string) request { // a push signed right, now
		return jsonPost("/v1/wechat/events?"+pushQuery(demo.AppID, demo.EventToken, now, "n1"), body, "")
	}
	// signedOwn is a push signed right with a nonce of its own: one that is applied is
	// remembered, and its URL cannot carry another body.
	signedOwn := func(nonce, body string) request {
		return jsonPost("/v1/wechat/events?"+pushQuery(demo.AppID, demo.EventToken, now, nonce), body, "")
	}
	signedXML := func(body string) request {
		return with(signed(body), "Content-Type", "text/xml")
	}
	echo := func(query string) request { return request{method: "GET", target: "/v1/wechat/events?" + query} }
	popup := func(openID string) string { return fmt.Sprintf(popupJSON, openID, now.Unix()) }
	sent := func(list string) string {
		return fmt.Sprintf(`{"FromUserName":"oSentUser","CreateTime":%d,"MsgType":"event","Event":"subscribe_msg_sent_event","List":%s}`, now.Unix(), list)
	}
	over := strings.Repeat("x", gatewayLimit)
	form := `{"type":"form","formId":"f"}`
	sub3 := func(i int) string {
		return fmt.Sprintf(`{"type":"subscribe","key":"k%d","results":{"T1":"accept","T2":"accept","T3":"accept"}}`, i)
	}
	c := "/v1/admin/campaigns/"
	userKey := "collect#" + minipush.UserKey(demo.AppID, fx.openID)
	// The emulated gateway sees this machine as every request's source.
	sourceKey := "session#" + session.Pseudonym(s.key, "ip", "127.0.0.1")

	cs := []tcase{
		// POST /v1/session
		{route: sessionRoute, kind: malformed, name: "SessionTruncated", req: jsonPost("/v1/session", `{"code":"abc`, ""), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: sessionRoute, kind: malformed, name: "SessionEmpty", req: jsonPost("/v1/session", ``, ""), want: 400, code: minipush.EMALFORMED, says: "empty body"},
		{route: sessionRoute, kind: malformed, name: "SessionTrailing", req: jsonPost("/v1/session", `{"code":"a"} {"code":"b"}`, ""), want: 400, code: minipush.EMALFORMED, says: "trailing"},
		{route: sessionRoute, kind: malformed, name: "SessionFormEncoded", req: with(jsonPost("/v1/session", `code=abc&appId=`+demo.AppID, ""), "Content-Type", "application/x-www-form-urlencoded"), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: sessionRoute, kind: malformed, name: "SessionBinaryJunk", req: with(jsonPost("/v1/session", string(junk), ""), "Content-Type", "application/octet-stream"), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: sessionRoute, kind: malformed, name: "SessionBase64Text", req: jsonPost("/v1/session", base64.StdEncoding.EncodeToString([]byte(`{"code":"abc"}`)), ""), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: sessionRoute, kind: malformed, name: "SessionNotObject", req: jsonPost("/v1/session", `["abc"]`, ""), want: 400, code: minipush.EMALFORMED, says: "object"},
		{route: sessionRoute, kind: wrongType, name: "SessionCodeNumber", req: jsonPost("/v1/session", `{"code":123,"appId":"`+demo.AppID+`"}`, ""), want: 400, code: minipush.EMALFORMED, says: "code"},
		{route: sessionRoute, kind: wrongType, name: "SessionAppIDObject", req: jsonPost("/v1/session", `{"code":"abc","appId":{}}`, ""), want: 400, code: minipush.EMALFORMED, says: "appId"},
		{route: sessionRoute, kind: wrongType, name: "SessionUnknownField", req: jsonPost("/v1/session", `{"code":"abc","openId":"oChosenByClient"}`, ""), want: 400, code: minipush.EMALFORMED, says: "openId"},
		{route: sessionRoute, kind: wrongType, name: "SessionNoCode", req: jsonPost("/v1/session", `{"appId":"`+demo.AppID+`"}`, ""), want: 400, code: minipush.EMALFORMED, says: "code is required"},
		{route: sessionRoute, kind: wrongType, name: "SessionUnknownApp", req: jsonPost("/v1/session", `{"code":"abc","appId":"`+notServed+`"}`, ""), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: sessionRoute, kind: wrongType, name: "SessionAppOmittedOfTwo", req: jsonPost("/v1/session", `{"code":"abc"}`, ""), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: sessionRoute, kind: oversized, name: "SessionBodyOver4KiB", req: jsonPost("/v1/session", `{"code":"`+strings.Repeat("c", 5000)+`"}`, ""), want: 413, code: minipush.ETOOLARGE, says: "4096"},
		{route: sessionRoute, kind: oversized, name: "SessionCodeTooLong", req: jsonPost("/v1/session", `{"code":"`+strings.Repeat("c", 129)+`","appId":"`+demo.AppID+`"}`, ""), want: 400, code: minipush.EMALFORMED, says: "128"},
		// A code WeChat refuses counts against its source (the refused-code limit is
		// checked before jscode2session is called: that call is what a flood costs);
		// a valid login does not.
		{route: sessionRoute, kind: forged, name: "SessionCodeNotIssued", req: jsonPost("/v1/session", `{"code":"0a1b2c3d4e5f-forged","appId":"`+demo.AppID+`"}`, ""), want: 401, code: minipush.EUNAUTHORIZED, says: "wx.login", rateOf: sourceKey},
		{route: sessionRoute, kind: forged, name: "SessionCodeOfOtherApp", req: jsonPost("/v1/session", `{"code":"`+fx.newCode()+`","appId":"`+other.AppID+`"}`, ""), want: 401, code: minipush.EUNAUTHORIZED, says: "wx.login", rateOf: sourceKey},
		{route: sessionRoute, kind: replayed, name: "SessionCodeUsed", req: jsonPost("/v1/session", `{"code":"`+fx.usedCode+`","appId":"`+demo.AppID+`"}`, ""), want: 401, code: minipush.EUNAUTHORIZED, says: "wx.login", rateOf: sourceKey},

		// POST /v1/grants
		{route: grantsRoute, kind: malformed, name: "GrantsTruncated", req: jsonPost("/v1/grants", `{"grants":[{"type":"form",`, auth), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: grantsRoute, kind: malformed, name: "GrantsEmpty", req: jsonPost("/v1/grants", ` `, auth), want: 400, code: minipush.EMALFORMED, says: "empty body"},
		{route: grantsRoute, kind: malformed, name: "GrantsNull", req: jsonPost("/v1/grants", `null`, auth), want: 400, code: minipush.EMALFORMED, says: "grants is required"},
		{route: grantsRoute, kind: malformed, name: "GrantsArray", req: jsonPost("/v1/grants", `[`+form+`]`, auth), want: 400, code: minipush.EMALFORMED, says: "object"},
		{route: grantsRoute, kind: malformed, name: "GrantsCSV", req: with(jsonPost("/v1/grants", "type,formId\nform,f1\n", auth), "Content-Type", "text/csv"), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: grantsRoute, kind: malformed, name: "GrantsBinaryJunk", req: with(jsonPost("/v1/grants", string(junk), auth), "Content-Type", "application/octet-stream"), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: grantsRoute, kind: malformed, name: "GrantsBase64Text", req: jsonPost("/v1/grants", base64.StdEncoding.EncodeToString(fx.upload), auth), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: grantsRoute, kind: malformed, name: "GrantsTrailing", req: jsonPost("/v1/grants", `{"grants":[`+form+`]}]`, auth), want: 400, code: minipush.EMALFORMED, says: "trailing"},
		{route: grantsRoute, kind: wrongType, name: "GrantsObject", req: jsonPost("/v1/grants", `{"grants":`+form+`}`, auth), want: 400, code: minipush.EMALFORMED, says: "grants"},
		{route: grantsRoute, kind: wrongType, name: "GrantsItemNumber", req: jsonPost("/v1/grants", `{"grants":[1]}`, auth), want: 400, code: minipush.EMALFORMED, says: "grants"},
		{route: grantsRoute, kind: wrongType, name: "GrantsFormIDNumber", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":7}]}`, auth), want: 400, code: minipush.EMALFORMED, says: "formId"},
		{route: grantsRoute, kind: wrongType, name: "GrantsResultsArray", req: jsonPost("/v1/grants", `{"grants":[{"type":"subscribe","key":"k","results":["T1"]}]}`, auth), want: 400, code: minipush.EMALFORMED, says: "results"},
		{route: grantsRoute, kind: wrongType, name: "GrantsNamesAUser", req: jsonPost("/v1/grants", `{"grants":[`+form+`],"openId":"oSomeoneElse"}`, auth), want: 400, code: minipush.EMALFORMED, says: "openId"},
		{route: grantsRoute, kind: wrongType, name: "GrantsItemUnknownField", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":"f","appId":"wxother"}]}`, auth), want: 400, code: minipush.EMALFORMED, says: "appId"},
		{route: grantsRoute, kind: wrongType, name: "GrantsNone", req: jsonPost("/v1/grants", `{"grants":[]}`, auth), want: 422, code: minipush.EINVALID, says: "empty"},
		{route: grantsRoute, kind: wrongType, name: "GrantsBadType", req: jsonPost("/v1/grants", `{"grants":[{"type":"sms","formId":"f"}]}`, auth), want: 422, code: minipush.EINVALID, says: "unknown_type"},
		{route: grantsRoute, kind: wrongType, name: "GrantsBadResult", req: jsonPost("/v1/grants", `{"grants":[{"type":"subscribe","key":"k","results":{"T1":"maybe"}}]}`, auth), want: 422, code: minipush.EINVALID, says: "bad_result"},
		{route: grantsRoute, kind: wrongType, name: "GrantsBadCollectedAt", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":"f","collectedAt":"yesterday"}]}`, auth), want: 422, code: minipush.EINVALID, says: "bad_collected_at"},
		{route: grantsRoute, kind: wrongType, name: "GrantsExpired", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":"f","collectedAt":"`+now.Add(-8*24*time.Hour).UTC().Format(time.RFC3339)+`"}]}`, auth), want: 422, code: minipush.EINVALID, says: "expired"},
		{route: grantsRoute, kind: wrongType, name: "GrantsMockFormID", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":"the formId is a mock one"}]}`, auth), want: 422, code: minipush.EINVALID, says: "mock_form_id"},
		{route: grantsRoute, kind: oversized, name: "GrantsOver50Items", req: jsonPost("/v1/grants", `{"grants":[`+repeatJSON(form, collect.MaxBatch+1)+`]}`, auth), want: 413, code: minipush.ETOOLARGE, says: "at most 50"},
		{route: grantsRoute, kind: oversized, name: "GrantsOver99Grants", req: jsonPost("/v1/grants", `{"grants":[`+func() string {
			var items []string
			for i := range 34 {
				items = append(items, sub3(i))
			}
			return strings.Join(items, ",")
		}()+`]}`, auth), want: 413, code: minipush.ETOOLARGE, says: "at most 99"},
		{route: grantsRoute, kind: oversized, name: "GrantsBodyOver64KiB", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":"`+strings.Repeat("x", collect.MaxUploadBytes)+`"}]}`, auth), want: 413, code: minipush.ETOOLARGE, says: "65536"},
		{route: grantsRoute, kind: oversized, name: "GrantsFormIDTooLong", req: jsonPost("/v1/grants", `{"grants":[{"type":"form","formId":"`+strings.Repeat("x", 129)+`"}]}`, auth), want: 422, code: minipush.EINVALID, says: "too_long"},
		// Characters the storage keys use as separators ("#", NUL) in a template id or key.
		{route: grantsRoute, kind: wrongType, name: "GrantsTemplateWithHash", req: jsonPost("/v1/grants", `{"grants":[{"type":"subscribe","key":"k","results":{"`+localrun.DemoSubscribeTemplate+`#0":"accept"}}]}`, auth), want: 422, code: minipush.EINVALID, says: "bad_characters"},
		{route: grantsRoute, kind: wrongType, name: "GrantsKeyWithHash", req: jsonPost("/v1/grants", `{"grants":[{"type":"subscribe","key":"k#1","results":{"`+localrun.DemoSubscribeTemplate+`":"accept"}}]}`, auth), want: 422, code: minipush.EINVALID, says: "bad_characters"},
		{route: grantsRoute, kind: wrongType, name: "GrantsKeyWithNUL", req: jsonPost("/v1/grants", `{"grants":[{"type":"subscribe","key":"k\u00001","results":{"`+localrun.DemoSubscribeTemplate+`":"accept"}}]}`, auth), want: 422, code: minipush.EINVALID, says: "bad_characters"},
		{route: grantsRoute, kind: oversized, name: "GrantsFourTemplates", req: jsonPost("/v1/grants", `{"grants":[{"type":"subscribe","key":"k","results":{"T1":"accept","T2":"accept","T3":"accept","T4":"accept"}}]}`, auth), want: 422, code: minipush.EINVALID, says: "too_many_templates"},
		{route: grantsRoute, kind: forged, name: "GrantsNoToken", req: jsonPost("/v1/grants", string(fx.upload), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "Bearer"},
		{route: grantsRoute, kind: forged, name: "GrantsBasicScheme", req: jsonPost("/v1/grants", string(fx.upload), "Basic "+base64.StdEncoding.EncodeToString([]byte("user:"+tok))), want: 401, code: minipush.EUNAUTHORIZED, says: "Bearer"},
		{route: grantsRoute, kind: forged, name: "GrantsGarbageToken", req: jsonPost("/v1/grants", string(fx.upload), "Bearer not-a-token-at-all"), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		{route: grantsRoute, kind: forged, name: "GrantsExpiredToken", req: jsonPost("/v1/grants", string(fx.upload), "Bearer "+session.Sign(s.key, demo.AppID, fx.openID, now.Add(-time.Second))), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		{route: grantsRoute, kind: forged, name: "GrantsAppNotServed", req: jsonPost("/v1/grants", string(fx.upload), "Bearer "+session.Sign(s.key, notServed, fx.openID, now.Add(time.Hour))), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		{route: grantsRoute, kind: forged, name: "GrantsWrongKey", req: jsonPost("/v1/grants", string(fx.upload), "Bearer "+session.Sign([]byte("another-deployments-signing-key"), demo.AppID, fx.openID, now.Add(time.Hour))), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		{route: grantsRoute, kind: forged, name: "GrantsOtherUsersPayload", req: jsonPost("/v1/grants", string(fx.upload), "Bearer "+swapPayload(tok, demo.AppID, "oVictim", now.Add(time.Hour))), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		{route: grantsRoute, kind: forged, name: "GrantsOperatorToken", req: jsonPost("/v1/grants", string(fx.upload), "Bearer "+s.operator), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		{route: grantsRoute, kind: forged, name: "GrantsTokenWithJunk", req: jsonPost("/v1/grants", string(fx.upload), auth+" x"), want: 401, code: minipush.EUNAUTHORIZED, says: "log in again"},
		// The same grants again: stored once, so 200 "duplicate" for each and no grant,
		// user or inventory change. It does count as an upload (the caller's counter
		// goes up by one): the limiter runs before the store can know they are duplicates.
		{route: grantsRoute, kind: replayed, name: "GrantsSameUploadAgainIsIdempotent", req: jsonPost("/v1/grants", string(fx.upload), auth), want: 200, says: `"accepted":0,"duplicate":2,"rejected":0`, rateOf: userKey},

		// POST /v1/wechat/events (message push)
		{route: pushRoute, kind: malformed, name: "PushXMLTruncated", req: signedXML(`<xml><FromUserName><![CDATA[oX]]></FromUserName><Event>`), want: 400, code: minipush.EMALFORMED, says: "XML"},
		{route: pushRoute, kind: malformed, name: "PushJSONTruncated", req: signed(`{"FromUserName":"oX","Event":`), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: pushRoute, kind: malformed, name: "PushEmpty", req: signed(``), want: 400, code: minipush.EMALFORMED, says: "push body"},
		{route: pushRoute, kind: malformed, name: "PushBinaryJunk", req: with(signed(string(junk)), "Content-Type", "application/octet-stream"), want: 400, code: minipush.EMALFORMED, says: "push body"},
		{route: pushRoute, kind: malformed, name: "PushSafeModeEncrypted", req: signedXML(`<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[bm90IHJlYWxseSBlbmNyeXB0ZWQ=]]></Encrypt></xml>`), want: 422, code: minipush.EINVALID, says: "plaintext"},
		{route: pushRoute, kind: wrongType, name: "PushCreateTimeText", req: signed(strings.Replace(popup("oPushUser2"), fmt.Sprint(now.Unix()), `"yesterday"`, 1)), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: pushRoute, kind: wrongType, name: "PushXMLCreateTimeText", req: signedXML(`<xml><FromUserName>oX</FromUserName><CreateTime>soon</CreateTime><Event>subscribe_msg_popup_event</Event></xml>`), want: 400, code: minipush.EMALFORMED, says: "CreateTime"},
		{route: pushRoute, kind: wrongType, name: "PushNoFromUser", req: signed(popup("")), want: 400, code: minipush.EMALFORMED, says: "FromUserName"},
		{route: pushRoute, kind: wrongType, name: "PushFromUserNumber", req: signed(strings.Replace(popup("X"), `"X"`, `12345`, 1)), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: pushRoute, kind: wrongType, name: "PushListString", req: signed(`{"FromUserName":"oX","CreateTime":1,"Event":"subscribe_msg_popup_event","List":"accept"}`), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		// subscribe_msg_sent_event (receipts): a push with any item that does not parse is
		// refused whole (400, so WeChat retries and the log shows it), nothing applied.
		{route: pushRoute, kind: wrongType, name: "PushSentMsgIDText", req: signed(sent(`{"TemplateId":"T","MsgID":"abc","ErrorCode":0}`)), want: 400, code: minipush.EMALFORMED, says: "MsgID"},
		{route: pushRoute, kind: wrongType, name: "PushSentMsgIDFloat", req: signed(sent(`{"TemplateId":"T","MsgID":1.7e18,"ErrorCode":0}`)), want: 400, code: minipush.EMALFORMED, says: "MsgID"},
		{route: pushRoute, kind: wrongType, name: "PushSentMsgIDNegative", req: signed(sent(`{"TemplateId":"T","MsgID":"-5","ErrorCode":0}`)), want: 400, code: minipush.EMALFORMED, says: "MsgID"},
		{route: pushRoute, kind: wrongType, name: "PushSentErrorCodeText", req: signed(sent(`{"TemplateId":"T","MsgID":"9007199254740993","ErrorCode":"ok"}`)), want: 400, code: minipush.EMALFORMED, says: "ErrorCode"},
		{route: pushRoute, kind: wrongType, name: "PushSentNoList", req: signed(sent(`[]`)), want: 400, code: minipush.EMALFORMED, says: "List"},
		{route: pushRoute, kind: wrongType, name: "PushSentOneBadItemOfTwo", req: signed(sent(`[{"TemplateId":"T","MsgID":"9007199254740993","ErrorCode":0},{"TemplateId":"","MsgID":"9007199254740995","ErrorCode":0}]`)), want: 400, code: minipush.EMALFORMED, says: "List[1]"},
		// WeChat pushes many event types; acknowledging the ones it does not store is
		// what keeps WeChat from retrying them. 200 "success", nothing stored but the
		// push's URL, remembered so that it cannot carry another body.
		{route: pushRoute, kind: wrongType, name: "PushUnknownEventAcknowledged", req: signedOwn("n3", strings.Replace(popup("oPushUser3"), "subscribe_msg_popup_event", "no_such_event", 1)), want: 200, says: "success", pushClaim: true},
		{route: pushRoute, kind: wrongType, name: "PushBadStatusStoresNothing", req: signedOwn("n4", strings.Replace(popup("oPushUser3"), `"accept"`, `"maybe"`, 1)), want: 200, says: "success", pushClaim: true},
		{route: pushRoute, kind: wrongType, name: "PushTemplateWithHashStoresNothing", req: signedOwn("n5", strings.Replace(popup("oPushUser3"), localrun.DemoSubscribeTemplate, localrun.DemoSubscribeTemplate+"#0", 1)), want: 200, says: "success", pushClaim: true},
		{route: pushRoute, kind: oversized, name: "PushBodyOver64KiB", req: signed(popup(strings.Repeat("o", 70<<10))), want: 413, code: minipush.ETOOLARGE, says: "65536"},
		{route: pushRoute, kind: oversized, name: "PushFromUserTooLong", req: signed(popup(strings.Repeat("o", 129))), want: 400, code: minipush.EMALFORMED, says: "FromUserName"},
		{route: pushRoute, kind: forged, name: "PushUnsigned", req: jsonPost("/v1/wechat/events?appId="+demo.AppID, popup("oForged1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: pushRoute, kind: forged, name: "PushWrongToken", req: jsonPost("/v1/wechat/events?"+pushQuery(demo.AppID, "guessed-token", now, "n1"), popup("oForged1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: pushRoute, kind: forged, name: "PushSignatureOfOtherNonce", req: jsonPost("/v1/wechat/events?"+strings.Replace(pushQuery(demo.AppID, demo.EventToken, now, "n1"), "nonce=n1", "nonce=n2", 1), popup("oForged1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: pushRoute, kind: forged, name: "PushAppNotServed", req: jsonPost("/v1/wechat/events?"+pushQuery(notServed, demo.EventToken, now, "n1"), popup("oForged1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: pushRoute, kind: forged, name: "PushAppWithoutEventToken", req: jsonPost("/v1/wechat/events?"+pushQuery(other.AppID, "", now, "n1"), popup("oForged1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: pushRoute, kind: forged, name: "PushAppOmittedOfTwo", req: jsonPost("/v1/wechat/events?"+pushQuery("", demo.EventToken, now, "n1"), popup("oForged1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: pushRoute, kind: replayed, name: "PushStale", req: jsonPost("/v1/wechat/events?"+pushQuery(demo.AppID, demo.EventToken, now.Add(-collect.MaxPushAge-time.Minute), "n1"), popup("oReplay1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "stale"},
		{route: pushRoute, kind: replayed, name: "PushFromTheFuture", req: jsonPost("/v1/wechat/events?"+pushQuery(demo.AppID, demo.EventToken, now.Add(collect.MaxPushAge+time.Minute), "n1"), popup("oReplay1"), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "stale"},
		// The push delivered again within its window, same URL and body (WeChat retries
		// so): its URL is remembered as applied, so 200 "success" and nothing changes.
		{route: pushRoute, kind: replayed, name: "PushSameAgainIsIdempotent", req: jsonPost(fx.pushTarget, string(fx.push), ""), want: 200, says: "success"},
		// The applied push's signed URL with another body (a captured URL replayed):
		// refused, nothing minted.
		{route: pushRoute, kind: replayed, name: "PushURLWithOtherBody", req: jsonPost(fx.pushTarget, fmt.Sprintf(popupJSON, "oReplayAttacker", now.Unix()), ""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},

		// GET /v1/wechat/events (the URL check)
		{route: echoRoute, kind: malformed, name: "EchoTimestampNotNumber", req: echo("appId=" + demo.AppID + "&timestamp=abc&nonce=n1&signature=" + collect.Signature(demo.EventToken, "abc", "n1") + "&echostr=e1"), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: echoRoute, kind: malformed, name: "EchoNoQuery", req: echo(""), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: echoRoute, kind: wrongType, name: "EchoTimestampFraction", req: echo("appId=" + demo.AppID + "&timestamp=" + fmt.Sprint(now.Unix()) + ".5&nonce=n1&signature=" + collect.Signature(demo.EventToken, fmt.Sprint(now.Unix())+".5", "n1") + "&echostr=e1"), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: echoRoute, kind: oversized, name: "EchoEchostrTooLong", req: echo(pushQuery(demo.AppID, demo.EventToken, now, "n1") + "&echostr=" + strings.Repeat("e", 4096)), want: 400, code: minipush.EMALFORMED, says: "echostr"},
		{route: echoRoute, kind: forged, name: "EchoBadSignature", req: echo(strings.Replace(pushQuery(demo.AppID, demo.EventToken, now, "n1"), "signature=", "signature=0", 1) + "&echostr=e1"), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: echoRoute, kind: forged, name: "EchoAppWithoutEventToken", req: echo(pushQuery(other.AppID, "", now, "n1") + "&echostr=e1"), want: 401, code: minipush.EUNAUTHORIZED, says: "signature"},
		{route: echoRoute, kind: replayed, name: "EchoStale", req: echo(pushQuery(demo.AppID, demo.EventToken, now.Add(-time.Hour), "n1") + "&echostr=e1"), want: 401, code: minipush.EUNAUTHORIZED, says: "stale"},

		// The admin routes (ANY /v1/admin/{proxy+}).
		{route: adminRoute, op: "POST campaigns", kind: malformed, name: "CreateTruncated", req: fx.admin("POST", "/v1/admin/campaigns", campaignBody[:40]), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: adminRoute, op: "POST campaigns", kind: malformed, name: "CreateBinaryJunk", req: with(fx.admin("POST", "/v1/admin/campaigns", string(junk)), "Content-Type", "application/octet-stream"), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: adminRoute, op: "POST campaigns", kind: malformed, name: "CreateBase64Text", req: fx.admin("POST", "/v1/admin/campaigns", base64.StdEncoding.EncodeToString([]byte(campaignBody))), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: adminRoute, op: "POST campaigns", kind: wrongType, name: "CreateNameNumber", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"bad-input fixture"`, `42`, 1)), want: 400, code: minipush.EMALFORMED, says: "name"},
		{route: adminRoute, op: "POST campaigns", kind: wrongType, name: "CreateMessageArray", req: fx.admin("POST", "/v1/admin/campaigns", `{"appId":"`+demo.AppID+`","name":"x","message":[],"audience":{"kind":"list"}}`), want: 400, code: minipush.EMALFORMED, says: "message"},
		{route: adminRoute, op: "POST campaigns", kind: wrongType, name: "CreateUnknownField", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"name"`, `"status":"sending","name"`, 1)), want: 400, code: minipush.EMALFORMED, says: "status"},
		{route: adminRoute, op: "POST campaigns", kind: wrongType, name: "CreateBadAudienceKind", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `{"kind":"list"}`, `{"kind":"everyone"}`, 1)), want: 422, code: minipush.EINVALID, says: "audience"},
		{route: adminRoute, op: "POST campaigns", kind: wrongType, name: "CreateRetryBudgetString", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"audience"`, `"policy":{"retryBudget":"5"},"audience"`, 1)), want: 400, code: minipush.EMALFORMED, says: "retryBudget"},
		{route: adminRoute, op: "POST campaigns", kind: oversized, name: "CreateBodyOver64KiB", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"bad-input fixture"`, `"`+strings.Repeat("n", 70<<10)+`"`, 1)), want: 413, code: minipush.ETOOLARGE, says: "65536"},
		{route: adminRoute, op: "POST campaigns", kind: oversized, name: "CreateNameTooLong", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"bad-input fixture"`, `"`+strings.Repeat("n", 101)+`"`, 1)), want: 422, code: minipush.EINVALID, says: "name"},
		{route: adminRoute, op: "POST campaigns", kind: oversized, name: "CreateThingTooLong", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"Check in"`, `"`+strings.Repeat("长", 21)+`"`, 1)), want: 422, code: minipush.EINVALID, says: "thing1"},
		{route: adminRoute, op: "POST campaigns", kind: forged, name: "CreateSessionToken", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Authorization", auth), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},
		{route: adminRoute, op: "POST campaigns", kind: forged, name: "CreateTokenPlusOne", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Authorization", "Bearer "+s.operator+"x"), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},
		{route: adminRoute, op: "POST campaigns", kind: forged, name: "CreateTokenWithoutScheme", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Authorization", s.operator), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},
		{route: adminRoute, op: "POST campaigns", kind: forged, name: "CreateBasicScheme", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("operator:"+s.operator))), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},
		{route: adminRoute, op: "POST campaigns", kind: forged, name: "CreateGarbageToken", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Authorization", "Bearer garbage-!!-token"), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},

		{route: adminRoute, op: "GET campaigns", kind: wrongType, name: "ListBadStatus", req: fx.admin("GET", "/v1/admin/campaigns?status=bogus", ""), want: 422, code: minipush.EINVALID, says: "status"},
		{route: adminRoute, op: "GET campaigns", kind: wrongType, name: "ListLimitText", req: fx.admin("GET", "/v1/admin/campaigns?status=draft&limit=ten", ""), want: 422, code: minipush.EINVALID, says: "limit"},
		{route: adminRoute, op: "GET campaigns", kind: malformed, name: "ListBadCursor", req: fx.admin("GET", "/v1/admin/campaigns?status=draft&cursor=%25%25not-a-cursor", ""), want: 422, code: minipush.EINVALID, says: "cursor"},
		{route: adminRoute, op: "GET campaigns", kind: oversized, name: "ListLimitTooHigh", req: fx.admin("GET", "/v1/admin/campaigns?status=draft&limit=100000", ""), want: 422, code: minipush.EINVALID, says: "limit"},

		{route: adminRoute, op: "GET campaigns/{id}", kind: wrongType, name: "GetIDNotAnID", req: fx.admin("GET", c+"c$1", ""), want: 404, code: minipush.ENOTFOUND, says: "no campaign"},
		{route: adminRoute, op: "GET campaigns/{id}", kind: forged, name: "GetNoSuchCampaign", req: fx.admin("GET", c+"0123456789abcdef01234567", ""), want: 404, code: minipush.ENOTFOUND, says: "0123456789abcdef01234567"},

		{route: adminRoute, op: "PATCH campaigns/{id}", kind: malformed, name: "PatchArray", req: fx.admin("PATCH", c+fx.draft, `[]`), want: 400, code: minipush.EMALFORMED, says: "object"},
		{route: adminRoute, op: "PATCH campaigns/{id}", kind: wrongType, name: "PatchPolicyString", req: fx.admin("PATCH", c+fx.draft, `{"policy":"strict"}`), want: 400, code: minipush.EMALFORMED, says: "policy"},
		{route: adminRoute, op: "PATCH campaigns/{id}", kind: wrongType, name: "PatchMessageKind", req: fx.admin("PATCH", c+fx.draft, `{"message":{"kind":"sms","templateId":"t","data":{}}}`), want: 422, code: minipush.EINVALID, says: "sms"},
		{route: adminRoute, op: "PATCH campaigns/{id}", kind: replayed, name: "PatchCancelled", req: fx.admin("PATCH", c+fx.cancelled, `{"name":"renamed"}`), want: 409, code: minipush.ECONFLICT, says: "cancelled"},

		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: malformed, name: "AudienceBadCSV", req: with(fx.admin("POST", c+fx.draft+"/audience", "openid\n\"oA\n"), "Content-Type", "text/csv"), want: 400, code: minipush.EMALFORMED, says: "CSV"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: malformed, name: "AudienceWrongContentType", req: with(fx.admin("POST", c+fx.draft+"/audience", "oA\noB\n"), "Content-Type", "text/plain"), want: 400, code: minipush.EMALFORMED, says: "Content-Type"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: wrongType, name: "AudienceOpenIDsObject", req: fx.admin("POST", c+fx.draft+"/audience", `{"openIds":{"oA":true}}`), want: 400, code: minipush.EMALFORMED, says: "openIds"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: wrongType, name: "AudienceBadOpenID", req: fx.admin("POST", c+fx.draft+"/audience", `{"openIds":["oA","o B"]}`), want: 422, code: minipush.EINVALID, says: "openIds[1]"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: wrongType, name: "AudienceOfSegment", req: fx.admin("POST", c+fx.segment+"/audience", `{"openIds":["oA"]}`), want: 422, code: minipush.EINVALID, says: "segment"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: oversized, name: "AudienceOver5000", req: fx.admin("POST", c+fx.draft+"/audience", `{"openIds":[`+repeatJSON(`"oA"`, 5001)+`]}`), want: 413, code: minipush.ETOOLARGE, says: "5000"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: oversized, name: "AudienceBodyOver1MiB", req: with(fx.admin("POST", c+fx.draft+"/audience", strings.Repeat("oAudienceX\n", (1<<20)/11+1)), "Content-Type", "text/csv"), want: 413, code: minipush.ETOOLARGE, says: "1048576"},
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: replayed, name: "AudienceOfCancelled", req: fx.admin("POST", c+fx.cancelled+"/audience", `{"openIds":["oA"]}`), want: 409, code: minipush.ECONFLICT, says: "draft"},
		// The same page again: duplicates collapse, so 200 and nothing new stored.
		{route: adminRoute, op: "POST campaigns/{id}/audience", kind: replayed, name: "AudienceSamePageAgainIsIdempotent", req: fx.admin("POST", c+fx.draft+"/audience", string(fx.page)), want: 200, says: `"distinct":2`},

		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: malformed, name: "ScheduleEmpty", req: fx.admin("POST", c+fx.draft+"/schedule", ``), want: 400, code: minipush.EMALFORMED, says: "empty body"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: wrongType, name: "ScheduleAtNotATime", req: fx.admin("POST", c+fx.draft+"/schedule", `{"at":"tomorrow"}`), want: 400, code: minipush.EMALFORMED, says: "at: want an RFC 3339 time"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: wrongType, name: "ScheduleNowString", req: fx.admin("POST", c+fx.draft+"/schedule", `{"now":"yes"}`), want: 400, code: minipush.EMALFORMED, says: "now"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: wrongType, name: "ScheduleBadZone", req: fx.admin("POST", c+fx.draft+"/schedule", `{"cron":"0 10 * * *","timeZone":"Mars/Olympus"}`), want: 422, code: minipush.EINVALID, says: "Mars/Olympus"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: wrongType, name: "ScheduleBadCron", req: fx.admin("POST", c+fx.draft+"/schedule", `{"cron":"every day","timeZone":"Asia/Shanghai"}`), want: 422, code: minipush.EINVALID, says: "cron"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: wrongType, name: "ScheduleInThePast", req: fx.admin("POST", c+fx.draft+"/schedule", `{"at":"2020-01-01T00:00:00Z"}`), want: 422, code: minipush.EINVALID, says: "past"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: replayed, name: "ScheduleCancelled", req: fx.admin("POST", c+fx.cancelled+"/schedule", `{"now":true}`), want: 409, code: minipush.ECONFLICT, says: "cancelled"},

		{route: adminRoute, op: "POST campaigns/{id}/cancel", kind: replayed, name: "CancelCancelled", req: fx.admin("POST", c+fx.cancelled+"/cancel", ``), want: 409, code: minipush.ECONFLICT, says: "cancelled"},
		{route: adminRoute, op: "POST campaigns/{id}/pause", kind: replayed, name: "PauseCancelled", req: fx.admin("POST", c+fx.cancelled+"/pause", ``), want: 409, code: minipush.ECONFLICT, says: "cancelled"},
		{route: adminRoute, op: "POST campaigns/{id}/resume", kind: replayed, name: "ResumeDraft", req: fx.admin("POST", c+fx.draft+"/resume", ``), want: 409, code: minipush.ECONFLICT, says: "draft"},
		{route: adminRoute, op: "GET campaigns/{id}/progress", kind: wrongType, name: "ProgressIDNotAnID", req: fx.admin("GET", c+"c%20id/progress", ""), want: 404, code: minipush.ENOTFOUND, says: "campaign"},

		{route: adminRoute, op: "GET campaigns/{id}/runs/{n}/deliveries", kind: wrongType, name: "DeliveriesRunText", req: fx.admin("GET", c+fx.draft+"/runs/one/deliveries", ""), want: 404, code: minipush.ENOTFOUND, says: "run"},
		{route: adminRoute, op: "GET campaigns/{id}/runs/{n}/deliveries", kind: wrongType, name: "DeliveriesBadOutcome", req: fx.admin("GET", c+fx.draft+"/runs/1/deliveries?outcome=maybe", ""), want: 422, code: minipush.EINVALID, says: "outcome"},
		{route: adminRoute, op: "GET campaigns/{id}/runs/{n}/deliveries", kind: oversized, name: "DeliveriesRunHuge", req: fx.admin("GET", c+fx.draft+"/runs/99999999999999999999/deliveries", ""), want: 404, code: minipush.ENOTFOUND, says: "run"},

		{route: adminRoute, op: "PUT users/{openId}", kind: malformed, name: "UserFormEncoded", req: with(fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, "region=sh"), "Content-Type", "application/x-www-form-urlencoded"), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: adminRoute, op: "PUT users/{openId}", kind: wrongType, name: "UserOptOutString", req: fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, `{"optOut":"yes"}`), want: 400, code: minipush.EMALFORMED, says: "optOut"},
		{route: adminRoute, op: "PUT users/{openId}", kind: wrongType, name: "UserTagsString", req: fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, `{"tags":"vip"}`), want: 400, code: minipush.EMALFORMED, says: "tags"},
		{route: adminRoute, op: "PUT users/{openId}", kind: wrongType, name: "UserNoApp", req: fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser, `{"region":"bj"}`), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "PUT users/{openId}", kind: oversized, name: "UserOpenIDTooLong", req: fx.admin("PUT", "/v1/admin/users/"+strings.Repeat("o", 65)+"?appId="+demo.AppID, `{"region":"bj"}`), want: 422, code: minipush.EINVALID, says: "openId"},
		{route: adminRoute, op: "PUT users/{openId}", kind: oversized, name: "UserTooManyTags", req: fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, `{"tags":[`+func() string {
			var tags []string
			for i := range 51 {
				tags = append(tags, fmt.Sprintf(`"t%d"`, i))
			}
			return strings.Join(tags, ",")
		}()+`]}`), want: 422, code: minipush.EINVALID, says: "tags"},
		// The same attributes again: a whole-user replacement, so 200 and no change.
		{route: adminRoute, op: "PUT users/{openId}", kind: replayed, name: "UserSameAttrsAgainIsIdempotent", req: fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, string(fx.attrs)), want: 200, says: `"region":"sh"`},

		{route: adminRoute, op: "POST users:import", kind: malformed, name: "ImportTruncated", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1"`), want: 400, code: minipush.EMALFORMED, says: "invalid JSON"},
		{route: adminRoute, op: "POST users:import", kind: wrongType, name: "ImportUsersObject", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":{"openId":"oI1"}}`), want: 400, code: minipush.EMALFORMED, says: "users"},
		{route: adminRoute, op: "POST users:import", kind: wrongType, name: "ImportUnknownField", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1","vip":true}]}`), want: 400, code: minipush.EMALFORMED, says: "vip"},
		{route: adminRoute, op: "POST users:import", kind: wrongType, name: "ImportOneBadOfTwo", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1","region":"sh"},{"openId":"bad id"}]}`), want: 422, code: minipush.EINVALID, says: "users[1]"},
		{route: adminRoute, op: "POST users:import", kind: oversized, name: "ImportOver1000", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[`+func() string {
			var us []string
			for i := range 1001 {
				us = append(us, fmt.Sprintf(`{"openId":"oI%d"}`, i))
			}
			return strings.Join(us, ",")
		}()+`]}`), want: 413, code: minipush.ETOOLARGE, says: "1000"},
		{route: adminRoute, op: "POST users:import", kind: oversized, name: "ImportBodyOver512KiB", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1","region":"`+strings.Repeat("r", 520<<10)+`"}]}`), want: 413, code: minipush.ETOOLARGE, says: "524288"},
		{route: adminRoute, op: "POST users:import", kind: wrongType, name: "ImportDuplicateUser", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1","region":"sh"},{"openId":"oI1","region":"bj"}]}`), want: 422, code: minipush.EINVALID, says: "already given"},

		{route: adminRoute, op: "GET inventory", kind: wrongType, name: "InventoryNoApp", req: fx.admin("GET", "/v1/admin/inventory", ""), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "GET inventory", kind: oversized, name: "InventoryAppTooLong", req: fx.admin("GET", "/v1/admin/inventory?appId="+strings.Repeat("w", 65), ""), want: 422, code: minipush.EINVALID, says: "appId"},

		// Idempotency-Key on the admin writes: refused keys change nothing; the fixture's key
		// replays its answer for the same request and refuses any other.
		{route: adminRoute, op: "POST campaigns", kind: malformed, name: "IdempotencyKeyEmpty", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Idempotency-Key", `""`), want: 400, code: minipush.EMALFORMED, says: "Idempotency-Key"},
		{route: adminRoute, op: "PATCH campaigns/{id}", kind: oversized, name: "IdempotencyKeyOver255", req: with(fx.admin("PATCH", c+fx.draft, `{"name":"renamed"}`), "Idempotency-Key", strings.Repeat("k", 256)), want: 400, code: minipush.EMALFORMED, says: "Idempotency-Key"},
		{route: adminRoute, op: "POST campaigns/{id}/schedule", kind: wrongType, name: "IdempotencyKeyBadCharacters", req: with(fx.admin("POST", c+fx.draft+"/schedule", `{"now":true}`), "Idempotency-Key", "key with spaces;"), want: 400, code: minipush.EMALFORMED, says: "Idempotency-Key"},
		{route: adminRoute, op: "POST campaigns", kind: replayed, name: "IdempotencyKeyOtherBody", req: with(fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, `"bad-input fixture"`, `"another"`, 1)), "Idempotency-Key", idempotencyFixtureKey), want: 422, code: minipush.EINVALID, says: "Idempotency-Key"},
		{route: adminRoute, op: "POST campaigns/{id}/cancel", kind: replayed, name: "IdempotencyKeyOtherRoute", req: with(fx.admin("POST", c+fx.draft+"/cancel", ""), "Idempotency-Key", idempotencyFixtureKey), want: 422, code: minipush.EINVALID, says: "Idempotency-Key"},
		{route: adminRoute, op: "POST campaigns", kind: replayed, name: "IdempotencyKeyRetryReplaysTheDraft", req: with(fx.admin("POST", "/v1/admin/campaigns", campaignBody), "Idempotency-Key", idempotencyFixtureKey), want: 201, says: `"name":"bad-input fixture"`},
		// An appId the deployment does not serve (not in the WeChat secret).
		{route: adminRoute, op: "POST campaigns", kind: wrongType, name: "CreateUnservedApp", req: fx.admin("POST", "/v1/admin/campaigns", strings.Replace(campaignBody, demo.AppID, "wx0000000000typo", 1)), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "PUT users/{openId}", kind: wrongType, name: "UserUnservedApp", req: fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId=wx0000000000typo", string(fx.attrs)), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "POST users:import", kind: wrongType, name: "ImportUnservedApp", req: fx.admin("POST", "/v1/admin/users:import", `{"appId":"wx0000000000typo","users":[{"openId":"oI1"}]}`), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "GET inventory", kind: wrongType, name: "InventoryUnservedApp", req: fx.admin("GET", "/v1/admin/inventory?appId=wx0000000000typo", ""), want: 422, code: minipush.EINVALID, says: "appId"},

		// Requests no route takes: API Gateway's own 404.
		{kind: wrongType, name: "NoRouteDeleteGrants", req: request{method: "DELETE", target: "/v1/grants", header: bearer(tok)}, want: 404, says: "Not Found"},
		{kind: wrongType, name: "NoRoutePutSession", req: request{method: "PUT", target: "/v1/session", header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"code":"c"}`)}, want: 404, says: "Not Found"},
		{kind: wrongType, name: "NoRouteAdminRoot", req: fx.admin("GET", "/v1/admin", ""), want: 404, says: "Not Found"},
		{kind: forged, name: "NoRouteLocalTickIsNotAnAPIRoute", req: request{method: "GET", target: "/_local/tick"}, want: 404, says: "Not Found"},
	}

	// Generated for every route: a body over API Gateway's 10 MB payload limit is
	// refused by the gateway before any function runs.
	for _, r := range []struct{ route, op, method, target string }{
		{sessionRoute, "", "POST", "/v1/session"},
		{grantsRoute, "", "POST", "/v1/grants"},
		{pushRoute, "", "POST", "/v1/wechat/events?" + pushQuery(demo.AppID, demo.EventToken, now, "n1")},
		{echoRoute, "", "GET", "/v1/wechat/events?" + pushQuery(demo.AppID, demo.EventToken, now, "n1") + "&echostr=e1"},
		{adminRoute, "POST users:import", "POST", "/v1/admin/users:import"},
	} {
		cs = append(cs, tcase{route: r.route, op: r.op, kind: oversized, name: "OverGatewayLimit" + strings.NewReplacer(" ", "", "/", "_", "{", "", "}", "", "+", "").Replace(r.route),
			req: request{method: r.method, target: r.target, header: bearer(s.operator), body: []byte(`{"x":"` + over + `"}`)}, want: 413, says: "Request Entity Too Large"})
	}
	cs = append(cs, fx.consoleCases()...)
	cs = append(cs, fx.templateCases()...)
	cs = append(cs, fx.apiCases()...)
	// Generated for every admin operation: no credential at all.
	targets := map[string]request{
		"POST campaigns":                         fx.admin("POST", "/v1/admin/campaigns", campaignBody),
		"GET campaigns":                          fx.admin("GET", "/v1/admin/campaigns?status=draft", ""),
		"GET campaigns/{id}":                     fx.admin("GET", c+fx.draft, ""),
		"PATCH campaigns/{id}":                   fx.admin("PATCH", c+fx.draft, `{"name":"taken over"}`),
		"POST campaigns/{id}/audience":           fx.admin("POST", c+fx.draft+"/audience", `{"openIds":["oIntruder"]}`),
		"POST campaigns/{id}/schedule":           fx.admin("POST", c+fx.draft+"/schedule", `{"now":true}`),
		"POST campaigns/{id}/cancel":             fx.admin("POST", c+fx.draft+"/cancel", ""),
		"POST campaigns/{id}/pause":              fx.admin("POST", c+fx.draft+"/pause", ""),
		"POST campaigns/{id}/resume":             fx.admin("POST", c+fx.draft+"/resume", ""),
		"GET campaigns/{id}/progress":            fx.admin("GET", c+fx.draft+"/progress", ""),
		"GET campaigns/{id}/runs/{n}/deliveries": fx.admin("GET", c+fx.draft+"/runs/1/deliveries", ""),
		"PUT users/{openId}":                     fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, `{"optOut":true}`),
		"POST users:import":                      fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1"}]}`),
		"GET inventory":                          fx.admin("GET", "/v1/admin/inventory?appId="+demo.AppID, ""),
	}
	for op, req := range fx.templateTargets() {
		targets[op] = req
	}
	for op, req := range fx.apiTargets() {
		targets[op] = req
	}
	for _, op := range adminOps {
		req, ok := targets[op]
		if !ok {
			panic("no sample request for admin operation " + op)
		}
		cs = append(cs,
			tcase{route: adminRoute, op: op, kind: forged, name: "NoToken " + op, req: with(req, "Authorization", ""), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},
			tcase{route: adminRoute, op: op, kind: forged, name: "WrongToken " + op, req: with(req, "Authorization", "Bearer "+s.operator[1:]+s.operator[:1]), want: 401, code: minipush.EUNAUTHORIZED, says: "operator"},
		)
	}
	return cs
}

// newCode is a fresh wx.login code of a new demo user, unused.
func (fx *fixture) newCode() string {
	_, code := fx.s.sb.NewLogin(demo.AppID)
	return code
}

// swapPayload keeps tok's signature but names another user: a forger's edit.
func swapPayload(tok, appID, openID string, exp time.Time) string {
	_, sig, _ := strings.Cut(tok, ".")
	payload := base64.RawURLEncoding.EncodeToString([]byte(appID + "\n" + openID + "\n" + fmt.Sprint(exp.Unix())))
	return payload + "." + sig
}

// idempotencyFixtureKey is the Idempotency-Key of the fixture's keyed campaign create.
const idempotencyFixtureKey = "bad-input-fixture-create-1"
