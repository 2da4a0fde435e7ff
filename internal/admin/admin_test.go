package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "operator-token-for-tests"

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// envDB is the storage layer on env's tables, as the functions get it.
func envDB(env *testenv.Env) *dynamo.DB {
	return dynamo.New(env.DynamoDB, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
}

// MustAdmin returns a handler on a fresh namespace of DynamoDB Local, with a fixed
// clock and sequential campaign ids (c1, c2, ...).
func MustAdmin(t *testing.T) (*admin.Handler, *dynamo.DB) {
	t.Helper()
	env := testenv.New(t)
	db := envDB(env)
	db.Now = func() time.Time { return now }
	h := admin.New(db, token, []string{"wx1", "wx2"})
	h.Now = db.Now
	var n atomic.Int64
	h.NewID = func() string { return fmt.Sprintf("c%d", n.Add(1)) }
	// Keyed creates get sequential ids too, one per seed, as hashedID gives one per seed.
	var mu sync.Mutex
	keyed := map[string]string{}
	h.KeyedID = func(seed string) string {
		mu.Lock()
		defer mu.Unlock()
		if id, ok := keyed[seed]; ok {
			return id
		}
		keyed[seed] = h.NewID()
		return keyed[seed]
	}
	return h, db
}

type call struct {
	method, target, body, contentType string
	auth                              string // "" means the operator token
	header                            map[string]string
}

func do(t *testing.T, h *admin.Handler, c call) events.APIGatewayV2HTTPResponse {
	t.Helper()
	path, query, _ := strings.Cut(c.target, "?")
	headers := map[string]string{"authorization": "Bearer " + token}
	switch c.auth {
	case "":
	case "none":
		delete(headers, "authorization")
	default:
		headers["authorization"] = c.auth
	}
	for k, v := range c.header {
		headers[k] = v
	}
	if c.contentType != "" {
		headers["content-type"] = c.contentType
	} else if c.body != "" {
		headers["content-type"] = "application/json"
	}
	req := events.APIGatewayV2HTTPRequest{
		RouteKey: "ANY /v1/admin/{proxy+}", RawPath: path, RawQueryString: query, Headers: headers, Body: c.body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: c.method, Path: path}},
	}
	resp, err := h.Handle(t.Context(), req)
	if err != nil {
		t.Fatalf("%s %s: handler error %v", c.method, c.target, err)
	}
	return resp
}

func mustOK(t *testing.T, h *admin.Handler, c call, want int, into any) {
	t.Helper()
	resp := do(t, h, c)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", c.method, c.target, resp.StatusCode, resp.Body, want)
	}
	if into != nil {
		if err := json.Unmarshal([]byte(resp.Body), into); err != nil {
			t.Fatalf("%s %s: %v in %s", c.method, c.target, err, resp.Body)
		}
	}
}

const subscribeCampaign = `{"appId":"wx1","name":"check-in","message":{"kind":"subscribe","templateId":"tplA",
"page":"pages/checkin/index?from=push","data":{"thing1":{"value":"Daily check-in"},"time2":{"value":"2026-11-25 10:00"}},
"miniprogramState":"formal","lang":"zh_CN"},"audience":{"kind":"list"}}`

func TestCampaignFlow(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	ctx := t.Context()

	var c minipush.Campaign
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, &c)
	if c.ID != "c1" || c.Status != minipush.StatusDraft || !c.Policy.SkipOptedOut || c.Policy.RetryBudget != minipush.DefaultRetryBudget {
		t.Fatalf("created %+v", c)
	}

	t.Run("GetAndList", func(t *testing.T) {
		var got minipush.Campaign
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1"}, 200, &got)
		if got.Message.Data["thing1"].Value != "Daily check-in" || got.Message.Lang != "zh_CN" {
			t.Fatalf("got %+v", got)
		}
		var list struct {
			Campaigns []minipush.Campaign `json:"campaigns"`
			Cursor    string              `json:"cursor"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft&limit=10"}, 200, &list)
		if len(list.Campaigns) != 1 || list.Campaigns[0].ID != "c1" || list.Cursor != "" {
			t.Fatalf("list %+v", list)
		}
	})

	t.Run("Patch", func(t *testing.T) {
		var got minipush.Campaign
		mustOK(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/c1", body: `{"name":"renamed","policy":{"holdoutPercent":10}}`}, 200, &got)
		if got.Name != "renamed" || got.Policy.HoldoutPercent != 10 || !got.Policy.SkipOptedOut {
			t.Fatalf("patched %+v", got)
		}
	})

	t.Run("AudienceJSONAndCSV", func(t *testing.T) {
		var res struct{ Received, Distinct int }
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: `{"openIds":["oA","oB","oA","oC"]}`}, 200, &res)
		if res.Received != 4 || res.Distinct != 3 {
			t.Fatalf("json page %+v", res)
		}
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: "openid\noC\n oD \n\noE,extra\n", contentType: "text/csv"}, 200, &res)
		if res.Received != 3 || res.Distinct != 3 {
			t.Fatalf("csv page %+v", res)
		}
		ids, _, err := db.AudiencePage(ctx, "c1", "", 100)
		if err != nil || strings.Join(ids, ",") != "oA,oB,oC,oD,oE" {
			t.Fatalf("audience %v %v", ids, err)
		}
	})

	t.Run("ScheduleCronPauseResumeCancel", func(t *testing.T) {
		var got minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"cron":"0 10 * * *","timeZone":"Asia/Shanghai"}`}, 200, &got)
		// 10:00 UTC is 18:00 in Shanghai; the next 10:00 there is 02:00 UTC tomorrow.
		if want := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC); got.Status != minipush.StatusScheduled || !got.NextRunAt.Equal(want) {
			t.Fatalf("scheduled %+v, want next %s", got, want)
		}
		mustOK(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/c1", body: `{"name":"late"}`}, http.StatusConflict, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: `{"openIds":["oZ"]}`}, http.StatusConflict, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/pause"}, 200, &got)
		if got.Status != minipush.StatusPaused {
			t.Fatalf("paused %+v", got)
		}
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/resume"}, 200, &got)
		if got.Status != minipush.StatusScheduled {
			t.Fatalf("resumed %+v", got)
		}
		var prog struct {
			Status minipush.CampaignStatus `json:"status"`
			Runs   []minipush.Run          `json:"runs"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1/progress"}, 200, &prog)
		if prog.Status != minipush.StatusScheduled || len(prog.Runs) != 0 {
			t.Fatalf("progress %+v", prog)
		}
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/cancel"}, 200, &got)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/resume"}, http.StatusConflict, nil)
		if got.Status != minipush.StatusCancelled {
			t.Fatalf("cancelled %+v", got)
		}
	})

	t.Run("ScheduleNow", func(t *testing.T) {
		var c2 minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"kind":"list"`, `"kind":"reachable"`, 1)}, 201, &c2)
		var got minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + c2.ID + "/schedule", body: `{"now":true}`}, 200, &got)
		if !got.NextRunAt.Equal(now) || !got.Schedule.At.Equal(now) {
			t.Fatalf("now: %+v", got)
		}
	})

	t.Run("UsersAndInventory", func(t *testing.T) {
		mustOK(t, h, call{method: "PUT", target: "/v1/admin/users/oA?appId=wx1", body: `{"region":"sh","tags":["vip"],"optOut":true}`}, 200, nil)
		u, err := db.GetUser(ctx, "wx1", "oA")
		if err != nil || u.Region != "sh" || !u.OptOut || len(u.Tags) != 1 {
			t.Fatalf("user %+v %v", u, err)
		}
		mustOK(t, h, call{method: "POST", target: "/v1/admin/users:import", body: `{"appId":"wx1","users":[{"openId":"oB","industry":"retail"},{"openId":"oC","optOut":true}]}`}, 200, nil)
		out, err := db.OptedOut(ctx, "wx1", []string{"oA", "oB", "oC"})
		if err != nil || len(out) != 2 || out["oB"] {
			t.Fatalf("opted out %v %v", out, err)
		}
		var inv minipush.GrantInventory
		mustOK(t, h, call{method: "GET", target: "/v1/admin/inventory?appId=wx1"}, 200, &inv)
		if inv.AppID != "wx1" || inv.Live != 0 || len(inv.ExpiredPerDay) == 0 {
			t.Fatalf("inventory %+v", inv)
		}
	})

	t.Run("Deliveries", func(t *testing.T) {
		var res struct {
			Deliveries []json.RawMessage `json:"deliveries"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1/runs/1/deliveries?outcome=failed"}, 200, &res)
		if res.Deliveries == nil || len(res.Deliveries) != 0 {
			t.Fatalf("deliveries %+v", res)
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1/runs/1/deliveries?outcome=lost"}, http.StatusUnprocessableEntity, nil)
	})

	t.Run("DeliveryMsgID", func(t *testing.T) {
		// WeChat's msgid is above 2^53: listed as a string, every digit kept.
		rk := minipush.RunKey("c1", 2)
		if _, err := db.CreateDelivery(ctx, minipush.Delivery{RunKey: rk, OpenID: "oM", State: minipush.DeliverySending, Owner: "s",
			LeaseUntil: now.Add(time.Minute), ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishDelivery(ctx, rk, "oM", "s", time.Time{}, minipush.OutcomeSent, "", 0, "9007199254740993", ""); err != nil {
			t.Fatal(err)
		}
		var res struct {
			Deliveries []json.RawMessage `json:"deliveries"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1/runs/2/deliveries?outcome=sent"}, 200, &res)
		if len(res.Deliveries) != 1 || !strings.Contains(string(res.Deliveries[0]), `"msgId":"9007199254740993"`) {
			t.Fatalf("deliveries %s", res.Deliveries)
		}
	})
}
