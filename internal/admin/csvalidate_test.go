package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"minipush"
	"minipush/internal/httpapi"
)

// TestCustomerServiceMessage: a campaign's customerService message is checked at
// creation (exactly one kind; every field present and within its bound) and refused
// with 422 naming the field; a good one is stored as sent.
func TestCustomerServiceMessage(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	withCS := func(cs string) string {
		return `{"appId":"wx1","name":"cs","message":{"kind":"subscribe","templateId":"t","data":{"thing1":{"value":"a"}},"customerService":` + cs + `},"audience":{"kind":"list"}}`
	}
	for _, tc := range []struct{ name, cs, says string }{
		{"ErrNone", `{}`, "exactly one of"},
		{"ErrTwo", `{"text":{"content":"a"},"link":{"title":"t","description":"d","url":"https://a.cn","thumbUrl":"https://a.cn/t.jpg"}}`, "exactly one of"},
		{"ErrEmptyText", `{"text":{"content":" "}}`, "customerService.text.content: required"},
		{"ErrLongText", `{"text":{"content":"` + strings.Repeat("长", 683) + `"}}`, "customerService.text.content: 2049 bytes"},
		{"ErrLinkURL", `{"link":{"title":"t","description":"d","url":"javascript:alert(1)","thumbUrl":"https://a.cn/t.jpg"}}`, "customerService.link.url"},
		{"ErrLinkNoThumb", `{"link":{"title":"t","description":"d","url":"https://a.cn"}}`, "customerService.link.thumbUrl: required"},
		{"ErrPageTitle", `{"miniprogrampage":{"title":"` + strings.Repeat("x", 65) + `","pagepath":"pages/a","thumbMediaId":"m1"}}`, "customerService.miniprogrampage.title: 65 characters"},
		{"ErrPagePath", `{"miniprogrampage":{"title":"t","pagepath":"pages/a b","thumbMediaId":"m1"}}`, "customerService.miniprogrampage.pagepath"},
		{"ErrMediaID", `{"miniprogrampage":{"title":"t","pagepath":"pages/a","thumbMediaId":""}}`, "customerService.miniprogrampage.thumbMediaId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: withCS(tc.cs)})
			var body httpapi.ErrorBody
			if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
				t.Fatalf("body %q: %v", resp.Body, err)
			}
			if resp.StatusCode != http.StatusUnprocessableEntity || body.Code != minipush.EINVALID || !strings.Contains(body.Message, tc.says) {
				t.Fatalf("%d %+v, want 422 mentioning %q", resp.StatusCode, body, tc.says)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		var c minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: withCS(`{"miniprogrampage":{"title":"课程提醒","pagepath":"pages/course?id=7","thumbMediaId":"MEDIA_1"}}`)}, http.StatusCreated, &c)
		got, err := db.GetCampaign(t.Context(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p := got.Message.CustomerService; p == nil || p.MiniprogramPage == nil || p.MiniprogramPage.PagePath != "pages/course?id=7" {
			t.Fatalf("stored customerService %+v", got.Message.CustomerService)
		}
	})
}
