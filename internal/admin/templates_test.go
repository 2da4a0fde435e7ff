package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/sandbox"
	"minipush/internal/wechat"
)

// mustTemplates gives h a template registry on its DynamoDB Local tables and a source
// reading the sandbox's templates of wx1: a check-in template (thing1, time2) and an
// order-status one whose phrase2 is an enum of 已发货/未发货.
func mustTemplates(t *testing.T, h *admin.Handler, reg admin.TemplateStore) *sandbox.Sandbox {
	t.Helper()
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: "wx1", Secret: "s1"}}})
	if err := sb.Apply(sandbox.Config{Templates: []sandbox.TemplateConfig{
		{AppID: "wx1", TemplateID: "tplA", Fields: map[string]string{"thing1": "thing", "time2": "time"},
			Title: "签到提醒", Names: map[string]string{"thing1": "活动名称", "time2": "签到时间"}},
		{AppID: "wx1", TemplateID: "tplS", Fields: map[string]string{"thing1": "thing", "phrase2": "phrase"},
			Title: "订单状态通知", Names: map[string]string{"thing1": "商品名称", "phrase2": "订单状态"},
			Enums: map[string][]string{"phrase2": {"已发货", "未发货"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	wc := wechat.New(wechat.Options{BaseURL: srv.URL})
	h.Registry = reg
	h.TemplateSource = admin.WeChatTemplates{Client: wc, Token: func(ctx context.Context, appID string, _ bool) (string, error) {
		tok, err := wc.StableToken(ctx, appID, "s1", false)
		return tok.AccessToken, err
	}}
	return sb
}

const statusCampaign = `{"appId":"wx1","name":"order status","message":{"kind":"subscribe","templateId":"tplS",
"data":%s},"audience":{"kind":"list"}}`

// TestTemplateRegistry syncs wx1's templates from the sandbox into DynamoDB Local,
// then checks campaigns against them: each bad data is refused at creation (and on
// PATCH) with the field and the rule it broke, and nothing is stored.
func TestTemplateRegistry(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	sb := mustTemplates(t, h, db)

	t.Run("NeverSyncedFallsBack", func(t *testing.T) {
		// No sync yet: an unknown template id gets the generic checks only.
		var c minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, "tplA", "tplNotYetKnown", 1)}, 201, &c)
	})

	var sync minipush.TemplateSync
	mustOK(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/templates:sync"}, 200, &sync)
	if len(sync.Templates) != 2 || strings.Join(sync.Added, ",") != "tplA,tplS" || len(sync.Changed)+len(sync.Removed) != 0 {
		t.Fatalf("first sync %+v", sync)
	}
	st := sync.Templates[1]
	if f, ok := st.Field("phrase2"); !ok || f.Rule != minipush.RuleEnum || strings.Join(f.Enum, ",") != "已发货,未发货" || f.Name != "订单状态" {
		t.Fatalf("tplS fields %+v", st.Fields)
	}

	t.Run("ListAndGet", func(t *testing.T) {
		var reg minipush.TemplateRegistry
		mustOK(t, h, call{method: "GET", target: "/v1/admin/apps/wx1/templates"}, 200, &reg)
		if !reg.Synced() || len(reg.Templates) != 2 || reg.Templates[0].ID != "tplA" {
			t.Fatalf("registry %+v", reg)
		}
		var one minipush.Template
		mustOK(t, h, call{method: "GET", target: "/v1/admin/apps/wx1/templates/tplA"}, 200, &one)
		if one.Title != "签到提醒" || len(one.Fields) != 2 || one.Fields[0].Key != "thing1" || one.Fields[1].Rule != "time" {
			t.Fatalf("tplA %+v", one)
		}
		for _, target := range []string{"/v1/admin/apps/wx1/templates/nope", "/v1/admin/apps/wxOther/templates"} {
			if r := do(t, h, call{method: "GET", target: target}); r.StatusCode != 404 {
				t.Errorf("GET %s: %d %s, want 404", target, r.StatusCode, r.Body)
			}
		}
	})

	t.Run("ResyncReportsChanges", func(t *testing.T) {
		sb.AddSubscribeTemplate("wx1", "tplN", map[string]string{"number1": "number"})
		sb.SetTemplateInfo("wx1", "tplA", "签到提醒（新）", "", nil, nil)
		var again minipush.TemplateSync
		mustOK(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/templates:sync"}, 200, &again)
		if strings.Join(again.Added, ",") != "tplN" || strings.Join(again.Changed, ",") != "tplA" || len(again.Removed) != 0 || len(again.Templates) != 3 {
			t.Fatalf("resync %+v", again)
		}
	})

	before := countDrafts(t, h)
	for _, tc := range []struct {
		name, data, says string
	}{
		{"BadEnum", `{"thing1":{"value":"键盘"},"phrase2":{"value":"已签收"}}`, `data.phrase2.value: "已签收" is not one of [已发货 未发货] (rule enum)`},
		// The key's own type (thing1: thing) is checked first, by the generic rules.
		{"ThingTooLong", `{"thing1":{"value":"一二三四五六七八九十一二三四五六七八九十一"},"phrase2":{"value":"已发货"}}`, `data.thing1.value: longer than 20 characters`},
		{"MissingKey", `{"thing1":{"value":"键盘"}}`, `data.phrase2: missing: the template's content uses it (rule enum)`},
		{"UnknownKey", `{"thing1":{"value":"键盘"},"phrase2":{"value":"已发货"},"thing3":{"value":"x"}}`, `data.thing3: not a field of this template`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: fmt.Sprintf(statusCampaign, tc.data)})
			if r.StatusCode != 422 || !strings.Contains(message(t, r), tc.says) {
				t.Fatalf("%d %s, want 422 saying %s", r.StatusCode, r.Body, tc.says)
			}
		})
	}
	t.Run("UnknownTemplateAfterSync", func(t *testing.T) {
		r := do(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, "tplA", "tplGone", 1)})
		if r.StatusCode != 422 || !strings.Contains(r.Body, `app wx1 has no such template`) {
			t.Fatalf("%d %s, want 422 naming the unknown template", r.StatusCode, r.Body)
		}
	})
	if after := countDrafts(t, h); after != before {
		t.Fatalf("refused campaigns stored: %d drafts, was %d", after, before)
	}

	var good minipush.Campaign
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: fmt.Sprintf(statusCampaign, `{"thing1":{"value":"键盘"},"phrase2":{"value":"已发货"}}`)}, 201, &good)

	t.Run("Patch", func(t *testing.T) {
		r := do(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/" + good.ID,
			body: `{"message":{"kind":"subscribe","templateId":"tplS","data":{"thing1":{"value":"键盘"},"phrase2":{"value":"退货"}}}}`})
		if r.StatusCode != 422 || !strings.Contains(message(t, r), `"退货" is not one of`) {
			t.Fatalf("PATCH: %d %s, want 422", r.StatusCode, r.Body)
		}
		var got minipush.Campaign
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/" + good.ID}, 200, &got)
		if got.Message.Data["phrase2"].Value != "已发货" {
			t.Fatalf("refused PATCH changed the draft: %+v", got.Message.Data)
		}
	})

	t.Run("Preview", func(t *testing.T) {
		var p admin.Preview
		mustOK(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/templates/tplS/preview",
			body: `{"data":{"thing1":{"value":"机械键盘"},"phrase2":{"value":"已发货"}}}`}, 200, &p)
		if p.Text != "商品名称:机械键盘\n订单状态:已发货" || !p.Valid || len(p.Errors) != 0 {
			t.Fatalf("preview %+v", p)
		}
		mustOK(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/templates/tplS/preview",
			body: `{"data":{"thing1":{"value":"机械键盘"},"phrase2":{"value":"丢了"}}}`}, 200, &p)
		if p.Valid || len(p.Errors) != 1 || !strings.Contains(p.Errors[0], "data.phrase2.value") {
			t.Fatalf("bad preview %+v", p)
		}
	})
}

// message is the message of an error answer.
func message(t *testing.T, r events.APIGatewayV2HTTPResponse) string {
	t.Helper()
	var e struct{ Message string }
	if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
		t.Fatalf("error answer %s: %v", r.Body, err)
	}
	return e.Message
}

func countDrafts(t *testing.T, h *admin.Handler) int {
	t.Helper()
	var list struct {
		Campaigns []minipush.Campaign `json:"campaigns"`
	}
	mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft&limit=100"}, 200, &list)
	return len(list.Campaigns)
}

// TestTemplateSyncErrors: WeChat's refusal of gettemplate reaches the operator as a 502
// naming the errcode, and the registry keeps its state.
func TestTemplateSyncErrors(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	sb := mustTemplates(t, h, db)
	if err := sb.AddFault(sandbox.Fault{Path: sandbox.PathGetTemplate, ErrCode: 200100}); err != nil {
		t.Fatal(err)
	}
	r := do(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/templates:sync"})
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.Body, "errcode 200100") {
		t.Fatalf("%d %s, want 502 naming errcode 200100", r.StatusCode, r.Body)
	}
	if at, err := db.TemplatesSyncedAt(t.Context(), "wx1"); err != nil || !at.IsZero() {
		t.Fatalf("a failed sync marked the registry synced: %v %v", at, err)
	}
	h.TemplateSource = nil
	if r := do(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/templates:sync"}); r.StatusCode != http.StatusNotImplemented {
		t.Fatalf("no source: %d %s, want 501", r.StatusCode, r.Body)
	}
}

// TestDailyTemplateSync: a scheduled event syncs every served app once; a second tick
// within DailySyncAge calls WeChat no more.
func TestDailyTemplateSync(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	h.AppIDs = []string{"wx1"}
	sb := mustTemplates(t, h, db)
	tick := []byte(`{"version":"0","id":"e1","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-25T10:00:00Z","resources":[],"detail":{}}`)
	for range 2 {
		if _, err := h.Invoke(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
	}
	if n := sb.Stats().Requests[sandbox.PathGetTemplate]; n != 1 {
		t.Fatalf("gettemplate called %d times by two ticks, want 1", n)
	}
	reg, err := db.Templates(t.Context(), "wx1")
	if err != nil || len(reg.Templates) != 2 || !reg.SyncedAt.Equal(now) {
		t.Fatalf("registry after the tick: %+v %v", reg, err)
	}
	// The same entry point still serves the HTTP API.
	out, err := h.Invoke(t.Context(), []byte(`{"rawPath":"/v1/admin/campaigns","requestContext":{"http":{"method":"GET"}}}`))
	if resp, ok := out.(events.APIGatewayV2HTTPResponse); err != nil || !ok || resp.StatusCode != 401 {
		t.Fatalf("HTTP through Invoke: %#v %v", out, err)
	}
}
