package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"minipush"
	"minipush/internal/httpapi"
)

func openIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprintf("o%05d", i))
	}
	return `{"openIds":[` + strings.Join(ids, ",") + `]}`
}

// TestBadInput sends every kind of bad request and then reads storage back: each is
// refused with a clear 4xx {code, message} and nothing changed.
func TestBadInput(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	ctx := t.Context()
	var c minipush.Campaign
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, &c)
	withMessage := func(msg string) string {
		return `{"appId":"wx1","name":"x","message":` + msg + `,"audience":{"kind":"list"}}`
	}
	csv := "openid\n" + strings.Repeat("oX\n", admin5001)

	for _, tc := range []struct {
		name   string
		call   call
		status int
		code   string
		says   string // part of the message
	}{
		{"ErrNoToken", call{method: "GET", target: "/v1/admin/campaigns?status=draft", auth: "none"}, 401, minipush.EUNAUTHORIZED, "token"},
		{"ErrWrongToken", call{method: "GET", target: "/v1/admin/campaigns?status=draft", auth: "Bearer wrong"}, 401, minipush.EUNAUTHORIZED, "token"},
		{"ErrNotBearer", call{method: "GET", target: "/v1/admin/campaigns?status=draft", auth: token}, 401, minipush.EUNAUTHORIZED, "token"},
		{"ErrTokenOnWrite", call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign, auth: "Bearer " + token + "x"}, 401, minipush.EUNAUTHORIZED, "token"},
		{"ErrUnknownKind", call{method: "POST", target: "/v1/admin/campaigns", body: withMessage(`{"kind":"sms","templateId":"t","data":{}}`)}, 422, minipush.EINVALID, `message.kind "sms"`},
		{"ErrThingTooLong", call{method: "POST", target: "/v1/admin/campaigns", body: withMessage(`{"kind":"subscribe","templateId":"t","data":{"thing1":{"value":"` + strings.Repeat("长", 21) + `"}}}`)}, 422, minipush.EINVALID, "thing1"},
		{"ErrControlChar", call{method: "POST", target: "/v1/admin/campaigns", body: withMessage(`{"kind":"subscribe","templateId":"t","data":{"thing1":{"value":"a\u0007b"}}}`)}, 422, minipush.EINVALID, "thing1"},
		{"ErrColourOnSubscribe", call{method: "POST", target: "/v1/admin/campaigns", body: withMessage(`{"kind":"subscribe","templateId":"t","data":{"thing1":{"value":"a","color":"#ff0000"}}}`)}, 422, minipush.EINVALID, "colour"},
		{"ErrTemplateBadColour", call{method: "POST", target: "/v1/admin/campaigns", body: withMessage(`{"kind":"template","templateId":"t","data":{"keyword1":{"value":"a","color":"red"}}}`)}, 422, minipush.EINVALID, "keyword1"},
		{"ErrBadPage", call{method: "POST", target: "/v1/admin/campaigns", body: withMessage(`{"kind":"subscribe","templateId":"t","page":"pages/a b","data":{"thing1":{"value":"a"}}}`)}, 422, minipush.EINVALID, "page"},
		{"ErrUnknownField", call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"name"`, `"nmae"`, 1)}, 400, minipush.EMALFORMED, "nmae"},
		{"ErrEmptySegment", call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `{"kind":"list"}`, `{"kind":"segment","segment":{}}`, 1)}, 422, minipush.EINVALID, "segment"},
		{"ErrRetryBudget", call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"audience"`, `"policy":{"retryBudget":99},"audience"`, 1)}, 422, minipush.EINVALID, "retryBudget"},
		{"ErrRetryBudgetZero", call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"audience"`, `"policy":{"retryBudget":0},"audience"`, 1)}, 422, minipush.EINVALID, "want 1 to"},
		{"ErrPatchThingTooLong", call{method: "PATCH", target: "/v1/admin/campaigns/c1", body: `{"name":"changed","message":{"kind":"subscribe","templateId":"t","data":{"thing1":{"value":"` + strings.Repeat("x", 21) + `"}}}}`}, 422, minipush.EINVALID, "thing1"},
		{"ErrCronNeverFires", call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"cron":"0 0 31 2 *","timeZone":"Asia/Shanghai"}`}, 422, minipush.EINVALID, "cron"},
		{"ErrBadTimeZone", call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"cron":"0 10 * * *","timeZone":"Mars/Olympus"}`}, 422, minipush.EINVALID, "Mars"},
		{"ErrAtInPast", call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"at":"2026-11-24T10:00:00Z"}`}, 422, minipush.EINVALID, "past"},
		{"ErrNowAndCron", call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"now":true,"cron":"0 10 * * *"}`}, 422, minipush.EINVALID, "exactly one"},
		{"ErrAudienceTooLarge", call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: openIDs(5001)}, 413, minipush.ETOOLARGE, "5000"},
		{"ErrAudienceCSVTooLarge", call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: csv, contentType: "text/csv"}, 413, minipush.ETOOLARGE, "5000"},
		{"ErrBadOpenID", call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: `{"openIds":["ok1","not ok"]}`}, 422, minipush.EINVALID, "openIds[1]"},
		{"ErrAudienceContentType", call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: "oA", contentType: "text/plain"}, 400, minipush.EMALFORMED, "Content-Type"},
		{"ErrNoCampaign", call{method: "POST", target: "/v1/admin/campaigns/zzz/audience", body: `{"openIds":["oA"]}`}, 404, minipush.ENOTFOUND, "zzz"},
		{"ErrListStatus", call{method: "GET", target: "/v1/admin/campaigns?status=bogus"}, 422, minipush.EINVALID, "status"},
		{"ErrListCursor", call{method: "GET", target: "/v1/admin/campaigns?status=draft&cursor=bogus"}, 422, minipush.EINVALID, "cursor"},
		{"ErrUserBadTag", call{method: "PUT", target: "/v1/admin/users/oA?appId=wx1", body: `{"tags":[""]}`}, 422, minipush.EINVALID, "tags"},
		{"ErrUserNoApp", call{method: "PUT", target: "/v1/admin/users/oA", body: `{"region":"sh"}`}, 422, minipush.EINVALID, "appId"},
		{"ErrImportOneBad", call{method: "POST", target: "/v1/admin/users:import", body: `{"appId":"wx1","users":[{"openId":"oB","region":"sh"},{"openId":"bad id"}]}`}, 422, minipush.EINVALID, "users[1]"},
		{"ErrImportDuplicate", call{method: "POST", target: "/v1/admin/users:import", body: `{"appId":"wx1","users":[{"openId":"oB","region":"sh"},{"openId":"oA"},{"openId":"oB","region":"bj"}]}`}, 422, minipush.EINVALID, "users[2].openId"},
		{"ErrImportTooLarge", call{method: "POST", target: "/v1/admin/users:import", body: importUsers(1001)}, 413, minipush.ETOOLARGE, "1000"},
		{"ErrUnknownRoute", call{method: "GET", target: "/v1/admin/nothing"}, 404, minipush.ENOTFOUND, "nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, h, tc.call)
			var body httpapi.ErrorBody
			if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
				t.Fatalf("body %q: %v", resp.Body, err)
			}
			t.Logf("%d %s", resp.StatusCode, body.Message)
			if resp.StatusCode != tc.status || body.Code != tc.code || !strings.Contains(body.Message, tc.says) {
				t.Fatalf("%d %+v, want %d %s mentioning %q", resp.StatusCode, body, tc.status, tc.code, tc.says)
			}
		})
	}
	t.Run("ErrMethod", func(t *testing.T) {
		resp := do(t, h, call{method: "DELETE", target: "/v1/admin/campaigns/c1"})
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Headers["Allow"], "PATCH") {
			t.Fatalf("%d %v", resp.StatusCode, resp.Headers)
		}
	})

	t.Run("StorageUnchanged", func(t *testing.T) {
		got, err := db.GetCampaign(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != c.Name || got.Status != minipush.StatusDraft || got.Message.Data["thing1"].Value != "Daily check-in" ||
			!got.Schedule.At.IsZero() || got.Schedule.Cron != "" || got.Policy != c.Policy {
			t.Fatalf("campaign changed: %+v", got)
		}
		for _, st := range []minipush.CampaignStatus{minipush.StatusDraft, minipush.StatusScheduled} {
			cs, _, err := db.ListCampaigns(ctx, st, 10, "")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[minipush.CampaignStatus]int{minipush.StatusDraft: 1}[st]; len(cs) != want {
				t.Fatalf("%d %s campaigns, want %d", len(cs), st, want)
			}
		}
		if ids, _, err := db.AudiencePage(ctx, "c1", "", 10); err != nil || len(ids) != 0 {
			t.Fatalf("audience %v %v", ids, err)
		}
		for _, id := range []string{"oA", "oB"} {
			if _, err := db.GetUser(ctx, "wx1", id); minipush.ErrorCode(err) != minipush.ENOTFOUND {
				t.Fatalf("user %s written: %v", id, err)
			}
		}
	})
}

const admin5001 = 5001

// importUsers is an import request of n users oA, o1, o2, ...: oA first, so a request
// refused after a partial write would show in the storage check.
func importUsers(n int) string {
	us := []string{`{"openId":"oA","region":"sh"}`}
	for i := 1; i < n; i++ {
		us = append(us, fmt.Sprintf(`{"openId":"o%d"}`, i))
	}
	return `{"appId":"wx1","users":[` + strings.Join(us, ",") + `]}`
}
