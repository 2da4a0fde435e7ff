package badinput_test

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dynamo"
)

// apiCases are the bad input of the operator routes added with the console, the
// forecast and webhooks, and the scoped token's refusals: a token scoped to the other
// app gets 403 on every route that names the demo app (404 for its campaigns, covered
// by checkScope's own tests), and changes nothing.
func (fx *fixture) apiCases() []tcase {
	c := "/v1/admin/campaigns/"
	forecast := c + fx.draft + "/forecast"
	hook := "/v1/admin/apps/" + demo.AppID + "/webhook"
	cs := []tcase{
		{route: adminRoute, op: "POST campaigns/{id}/forecast", kind: malformed, name: "ForecastTruncated", req: fx.admin("POST", forecast, `{"at":`), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: adminRoute, op: "POST campaigns/{id}/forecast", kind: wrongType, name: "ForecastAtNotATime", req: fx.admin("POST", forecast, `{"at":"tomorrow"}`), want: 400, code: minipush.EMALFORMED, says: "parsing time"},
		{route: adminRoute, op: "POST campaigns/{id}/forecast", kind: oversized, name: "ForecastBodyOver1KiB", req: fx.admin("POST", forecast, `{"at":"`+strings.Repeat("9", 1100)+`"}`), want: 413, code: minipush.ETOOLARGE, says: "1024"},
		{route: adminRoute, op: "POST campaigns/{id}/forecast", kind: forged, name: "ForecastNoSuchCampaign", req: fx.admin("POST", c+"0123456789abcdef01234567/forecast", ``), want: 404, code: minipush.ENOTFOUND, says: "campaign"},
		// A forecast writes nothing: asking twice is the same answer and no change.
		{route: adminRoute, op: "POST campaigns/{id}/forecast", kind: replayed, name: "ForecastWritesNothing", req: fx.admin("POST", forecast, ``), want: 200, says: `"audience":2`},

		{route: adminRoute, op: "GET apps/{appId}/webhook", kind: wrongType, name: "WebhookOfUnservedApp", req: fx.admin("GET", "/v1/admin/apps/"+notServed+"/webhook", ""), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "GET apps/{appId}/webhook", kind: replayed, name: "WebhookNoneSet", req: fx.admin("GET", hook, ""), want: 404, code: minipush.ENOTFOUND, says: "webhook"},
		{route: adminRoute, op: "PUT apps/{appId}/webhook", kind: malformed, name: "WebhookTruncated", req: fx.admin("PUT", hook, `{"url":"https://`), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: adminRoute, op: "PUT apps/{appId}/webhook", kind: wrongType, name: "WebhookURLNumber", req: fx.admin("PUT", hook, `{"url":443}`), want: 400, code: minipush.EMALFORMED, says: "url"},
		{route: adminRoute, op: "PUT apps/{appId}/webhook", kind: wrongType, name: "WebhookPlainHTTP", req: fx.admin("PUT", hook, `{"url":"http://example.com/hook"}`), want: 422, code: minipush.EINVALID, says: "https"},
		{route: adminRoute, op: "PUT apps/{appId}/webhook", kind: oversized, name: "WebhookURLOver2048", req: fx.admin("PUT", hook, `{"url":"https://example.com/`+strings.Repeat("p", 2048)+`"}`), want: 422, code: minipush.EINVALID, says: "2048"},

		{route: adminRoute, op: "POST campaigns:validate", kind: malformed, name: "ValidateTruncated", req: fx.admin("POST", "/v1/admin/campaigns:validate", campaignBody[:40]), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: adminRoute, op: "POST campaigns:validate", kind: wrongType, name: "ValidateBadAudienceKind", req: fx.admin("POST", "/v1/admin/campaigns:validate", strings.Replace(campaignBody, `{"kind":"list"}`, `{"kind":"everyone"}`, 1)), want: 422, code: minipush.EINVALID, says: "audience"},
		{route: adminRoute, op: "POST campaigns:validate", kind: oversized, name: "ValidateBodyOver64KiB", req: fx.admin("POST", "/v1/admin/campaigns:validate", strings.Replace(campaignBody, `"bad-input fixture"`, `"`+strings.Repeat("n", 70<<10)+`"`, 1)), want: 413, code: minipush.ETOOLARGE, says: "65536"},
		{route: adminRoute, op: "POST campaigns:validate", kind: replayed, name: "ValidateStoresNothing", req: fx.admin("POST", "/v1/admin/campaigns:validate", campaignBody), want: 200, says: `"valid":true`},
		{route: adminRoute, op: "GET apps", kind: replayed, name: "AppsListed", req: fx.admin("GET", "/v1/admin/apps", ""), want: 200, says: demo.AppID},
		{route: adminRoute, op: "GET schedule/next", kind: wrongType, name: "NextRunsBadCron", req: fx.admin("GET", "/v1/admin/schedule/next?cron=every+day", ""), want: 422, code: minipush.EINVALID, says: "cron"},
		{route: adminRoute, op: "GET schedule/next", kind: oversized, name: "NextRunsTooMany", req: fx.admin("GET", "/v1/admin/schedule/next?cron=0+10+*+*+*&timeZone=Asia/Shanghai&n=21", ""), want: 422, code: minipush.EINVALID, says: "n"},
		{route: adminRoute, op: "GET schedule/next", kind: replayed, name: "NextRunsReadOnly", req: fx.admin("GET", "/v1/admin/schedule/next?cron=0+10+*+*+*&timeZone=Asia/Shanghai", ""), want: 200, says: `"next":[`},

		// A test send refuses before it sends or spends anything.
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: malformed, name: "TestSendTruncated", req: fx.admin("POST", c+fx.draft+"/test", `{"openIds":[`), want: 400, code: minipush.EMALFORMED, says: "JSON"},
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: wrongType, name: "TestSendOpenIDsNotAList", req: fx.admin("POST", c+fx.draft+"/test", `{"openIds":"`+fx.openID+`"}`), want: 400, code: minipush.EMALFORMED, says: "openIds"},
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: wrongType, name: "TestSendRepeatedUser", req: fx.admin("POST", c+fx.draft+"/test", `{"openIds":["`+fx.openID+`","`+fx.openID+`"]}`), want: 422, code: minipush.EINVALID, says: "openIds[1]"},
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: oversized, name: "TestSend21Users", req: fx.admin("POST", c+fx.draft+"/test", `{"openIds":["o`+strings.Repeat(`","o`, 20)+`"]}`), want: 422, code: minipush.EINVALID, says: "openIds"},
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: oversized, name: "TestSendBodyOver8KiB", req: fx.admin("POST", c+fx.draft+"/test", `{"openIds":["`+strings.Repeat("o", 9<<10)+`"]}`), want: 413, code: minipush.ETOOLARGE, says: "8192"},
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: forged, name: "TestSendUnknownUser", req: fx.admin("POST", c+fx.draft+"/test", `{"openIds":["oNoSuchUserOfTheApp"]}`), want: 422, code: minipush.EINVALID, says: "openIds[0]"},
		{route: adminRoute, op: "POST campaigns/{id}/test", kind: forged, name: "TestSendNoSuchCampaign", req: fx.admin("POST", c+"0123456789abcdef01234567/test", `{"openIds":["`+fx.openID+`"]}`), want: 404, code: minipush.ENOTFOUND, says: "campaign"},

		// Today's quota use: reading it changes nothing; an app not served is named.
		{route: adminRoute, op: "GET apps/{appId}/quota", kind: wrongType, name: "QuotaOfUnservedApp", req: fx.admin("GET", "/v1/admin/apps/"+notServed+"/quota", ""), want: 422, code: minipush.EINVALID, says: "appId"},
		{route: adminRoute, op: "GET apps/{appId}/quota", kind: replayed, name: "QuotaReadOnly", req: fx.admin("GET", "/v1/admin/apps/"+demo.AppID+"/quota", ""), want: 200, says: `"appId":"` + demo.AppID + `"`},

		// A bad Idempotency-Key on a route whose own answers have no 400: the key's
		// refusal is one any admin write may give (openapi.json x-admin-writes).
		{route: adminRoute, op: "POST campaigns/{id}/cancel", kind: malformed, name: "IdempotencyKeyBadOnCancel", req: with(fx.admin("POST", c+fx.draft+"/cancel", ""), "Idempotency-Key", "two words"), want: 400, code: minipush.EMALFORMED, says: "Idempotency-Key"},
	}
	scoped := map[string]request{
		"POST campaigns":                         fx.admin("POST", "/v1/admin/campaigns", campaignBody),
		"POST campaigns:validate":                fx.admin("POST", "/v1/admin/campaigns:validate", campaignBody),
		"PUT users/{openId}":                     fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, `{"optOut":true}`),
		"POST users:import":                      fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oI1"}]}`),
		"GET inventory":                          fx.admin("GET", "/v1/admin/inventory?appId="+demo.AppID, ""),
		"GET apps/{appId}/webhook":               fx.admin("GET", hook, ""),
		"PUT apps/{appId}/webhook":               fx.admin("PUT", hook, `{"url":"https://attacker.example/hook"}`),
		"GET campaigns/{id}":                     fx.admin("GET", c+fx.draft, ""),
		"POST campaigns/{id}/cancel":             fx.admin("POST", c+fx.draft+"/cancel", ""),
		"GET campaigns/{id}/runs/{n}/deliveries": fx.admin("GET", c+fx.draft+"/runs/1/deliveries", ""),
		"POST campaigns/{id}/test":               fx.admin("POST", c+fx.draft+"/test", `{"openIds":["`+fx.openID+`"]}`),
		"GET apps/{appId}/quota":                 fx.admin("GET", "/v1/admin/apps/"+demo.AppID+"/quota", ""),
	}
	for op, req := range fx.templateTargets() {
		scoped[op] = req
	}
	for op, req := range scoped {
		tc := tcase{route: adminRoute, op: op, kind: forged, name: "ScopedToOtherApp " + op, req: with(req, "Authorization", "Bearer "+fx.s.scoped),
			want: 403, code: minipush.EFORBIDDEN, says: demo.AppID}
		if strings.Contains(op, "campaigns/{id}") {
			// Another app's campaign is answered as if it did not exist: ids do not leak.
			tc.want, tc.code, tc.says = 404, minipush.ENOTFOUND, fx.draft
		}
		cs = append(cs, tc)
	}
	return cs
}

// apiTargets are the operations of apiCases with a request each, for the generated
// no-credential cases.
func (fx *fixture) apiTargets() map[string]request {
	hook := "/v1/admin/apps/" + demo.AppID + "/webhook"
	return map[string]request{
		"POST campaigns/{id}/forecast": fx.admin("POST", "/v1/admin/campaigns/"+fx.draft+"/forecast", ""),
		"GET apps/{appId}/webhook":     fx.admin("GET", hook, ""),
		"PUT apps/{appId}/webhook":     fx.admin("PUT", hook, `{"url":"https://attacker.example/hook"}`),
		"POST campaigns:validate":      fx.admin("POST", "/v1/admin/campaigns:validate", campaignBody),
		"GET apps":                     fx.admin("GET", "/v1/admin/apps", ""),
		"GET schedule/next":            fx.admin("GET", "/v1/admin/schedule/next?cron=0+10+*+*+*", ""),
		"POST campaigns/{id}/test":     fx.admin("POST", "/v1/admin/campaigns/"+fx.draft+"/test", `{"openIds":["`+fx.openID+`"]}`),
		"GET apps/{appId}/quota":       fx.admin("GET", "/v1/admin/apps/"+demo.AppID+"/quota", ""),
	}
}

// checkOpenAPI is the suite's last step: the answers the cases cannot give because
// they change storage (every 2xx of a write, a campaign run to done, a template sync,
// the rate limits, a key still in flight) are asked for here, and then every status
// openapi.json documents must have been answered by some request of the suite (each
// answer was checked against its schema as it came, in do). A new documented status
// with no request producing it fails here, as does an answer the document does not
// describe.
func (fx *fixture) checkOpenAPI(t *testing.T) {
	if f := flag.Lookup("test.run"); f != nil && strings.Contains(f.Value.String(), "/") {
		t.Skipf("-run %s selects some cases only: the documented statuses cannot all have been answered", f.Value.String())
	}
	s := fx.s
	ctx := t.Context()
	c := "/v1/admin/campaigns/"
	none := c + "0123456789abcdef01234567"
	apps := "/v1/admin/apps/" + demo.AppID
	tpl := apps + "/templates/" + localrun.DemoSubscribeTemplate
	big := `{"name":"` + strings.Repeat("n", 70<<10) + `"}`
	type call struct {
		req  request
		want int
	}
	run := func(calls ...call) []answer {
		t.Helper()
		var out []answer
		for _, cl := range calls {
			a := s.do(t, cl.req)
			if a.status != cl.want {
				t.Errorf("%s %s: %d %.300s, want %d", cl.req.method, cl.req.target, a.status, a.body, cl.want)
			}
			out = append(out, a)
		}
		return out
	}
	type created struct{ ID string }
	recurring := mustJSON[created](t, s.do(t, fx.admin("POST", "/v1/admin/campaigns", campaignBody)), 201).ID
	run(
		call{fx.admin("GET", "/v1/admin/campaigns?status=draft", ""), 200},
		call{fx.admin("GET", c+fx.draft, ""), 200},
		call{fx.admin("PATCH", c+fx.draft, `{"name":"renamed by the OpenAPI step"}`), 200},
		call{fx.admin("PATCH", none, `{"name":"x"}`), 404},
		call{fx.admin("PATCH", c+fx.draft, big), 413},
		call{fx.admin("POST", none+"/audience", `{"openIds":["oA"]}`), 404},
		call{fx.admin("POST", none+"/schedule", `{"now":true}`), 404},
		call{fx.admin("POST", c+fx.draft+"/schedule", big), 413},
		call{fx.admin("POST", none+"/pause", ""), 404},
		call{fx.admin("POST", none+"/resume", ""), 404},
		call{fx.admin("POST", c+recurring+"/audience", `{"openIds":["oRecurring1"]}`), 200},
		call{fx.admin("POST", c+recurring+"/schedule", `{"cron":"0 10 * * *","timeZone":"Asia/Shanghai"}`), 200},
		call{fx.admin("POST", c+recurring+"/pause", ""), 200},
		call{fx.admin("POST", c+recurring+"/resume", `{"catchUp":`), 400},
		call{fx.admin("POST", c+recurring+"/resume", `{"catchUp":false}`), 200},
		call{fx.admin("PUT", "/v1/admin/users/"+fx.attrsUser+"?appId="+demo.AppID, `{"region":"`+strings.Repeat("r", 520<<10)+`"}`), 413},
		call{fx.admin("POST", "/v1/admin/users:import", `{"appId":"`+demo.AppID+`","users":[{"openId":"oImported1","region":"sh"}]}`), 200},
		call{fx.admin("GET", "/v1/admin/inventory?appId="+demo.AppID, ""), 200},
		call{fx.admin("PUT", apps+"/webhook", `{"url":"http://127.0.0.1:9/hook"}`), 200},
		call{fx.admin("GET", apps+"/webhook", ""), 200},
		call{request{method: "GET", target: "/v1/wechat/events?" + pushQuery(demo.AppID, demo.EventToken, time.Now(), "walk1") + "&echostr=walk"}, 200},
		// A test send to the demo user (sent with one of their grants, or no_grant).
		call{fx.admin("POST", c+fx.draft+"/test", `{"openIds":["`+fx.openID+`"]}`), 200},
	)

	// The template registry: WeChat refuses a sync once (48001, not a token problem:
	// 502), then a sync fills the registry from the sandbox's templates.
	if err := s.sb.AddFault(sandbox.Fault{Path: sandbox.PathGetTemplate, ErrCode: 48001, Times: 1}); err != nil {
		t.Fatal(err)
	}
	run(
		call{fx.admin("POST", apps+"/templates:sync", ""), 502},
		call{fx.admin("POST", apps+"/templates:sync", ""), 200},
		call{fx.admin("GET", apps+"/templates", ""), 200},
		call{fx.admin("GET", tpl, ""), 200},
		call{fx.admin("POST", tpl+"/preview", `{"data":{"thing1":{"value":"Check in"},"time2":{"value":"2026-12-01 10:00"}}}`), 200},
		call{fx.admin("POST", tpl+"/preview", `{"data":{"thing1":{"value":"`+strings.Repeat("x", 70<<10)+`"}}}`), 413},
	)

	// The draft runs: its two openids hold no grant, so the run is done at once.
	run(call{fx.admin("POST", c+fx.draft+"/schedule", `{"now":true}`), 200})
	if err := s.r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		a := run(call{fx.admin("GET", c+fx.draft+"/progress", ""), 200})[0]
		if strings.Contains(string(a.body), `"status":"done"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the draft's run is not done after 30s: %s", a.body)
		}
		time.Sleep(100 * time.Millisecond) // polling the API with a deadline
	}
	run(call{fx.admin("GET", c+fx.draft+"/runs/1/deliveries", ""), 200})

	// An Idempotency-Key whose first request is still running: claimed in the store as
	// the admin function claims it (fingerprint: method, path, query, body), never
	// finished. Its retry is 409, on create (which documents 409) and on a forecast
	// (which has it only as an admin write, x-admin-writes).
	db := &dynamo.DB{Client: s.ddb, Tables: dynamo.Tables{State: s.r.Resources.Tables["StateTable"]}}
	for _, req := range []request{fx.admin("POST", "/v1/admin/campaigns", campaignBody), fx.admin("POST", c+fx.draft+"/forecast", "")} {
		key := "in-flight-" + req.target[len(req.target)-8:]
		sum := sha256.Sum256([]byte(req.method + " " + req.target + "?\n" + string(req.body)))
		now := time.Now()
		if _, claimed, err := db.ClaimIdempotencyKey(ctx, key, hex.EncodeToString(sum[:]), "the-first-request", now, now.Add(time.Minute)); err != nil || !claimed {
			t.Fatalf("claim %s: %v (claimed %v)", key, err, claimed)
		}
		run(call{with(req, "Idempotency-Key", key), 409})
	}

	// The collect rate limits: refused login codes per source, uploads per user.
	limited := func(req func() request, most int) {
		t.Helper()
		for range most {
			if a := s.do(t, req()); a.status == 429 {
				return
			}
		}
		t.Errorf("%s %s: no 429 after %d requests", req().method, req().target, most)
	}
	limited(func() request {
		return jsonPost("/v1/session", `{"code":"0a1b2c3d4e5f-refused","appId":"`+demo.AppID+`"}`, "")
	}, 30)
	limited(func() request {
		return request{method: "POST", target: "/v1/grants", header: bearer(fx.token), body: fx.upload}
	}, 40)

	unseen := map[string]bool{}
	for _, k := range spec.Unseen() {
		unseen[k] = true
	}
	for k, why := range unproduced {
		if !unseen[k] {
			t.Errorf("%q is exempt (%s) but the suite produced it, or openapi.json no longer documents it: drop the exemption", k, why)
		}
		delete(unseen, k)
	}
	for _, k := range slices.Sorted(maps.Keys(unseen)) {
		t.Errorf("openapi.json documents %s, but no request of the suite was answered so: add the request, or fix the document", k)
	}
}

// unproduced are the documented answers the suite's system cannot give, each with why
// and where it is tested instead.
var unproduced = map[string]string{
	"POST /v1/admin/campaigns/{id}/test 501":         "only a deployment with TokenEndpoint=legacy answers it, and the suite runs the template's default (stable); internal/admin's TestTestSend/ErrNoTokenSource covers it",
	"POST /v1/admin/apps/{appId}/templates:sync 501": "only a deployment with TokenEndpoint=legacy answers it, and the suite runs the template's default (stable); internal/admin's TestTemplateSyncErrors covers it",
}
