package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"minipush"
)

// TestWebhookRoute: PUT sets the URL and answers a fresh secret once; GET shows the URL
// and delivery health but never the secret; bad URLs change nothing.
func TestWebhookRoute(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	target := "/v1/admin/apps/wx1/webhook"
	for _, bad := range []string{`{"url":"http://example.com/hook"}`, `{"url":"ftp://x/y"}`, `{"url":"https://u:p@x/y"}`, `{"url":""}`} {
		if resp := do(t, h, call{method: "PUT", target: target, body: bad}); resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %d %s, want 422", bad, resp.StatusCode, resp.Body)
		}
	}
	if _, err := db.GetWebhook(t.Context(), "wx1"); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Fatalf("a refused URL was stored: %v", err)
	}
	var put struct {
		URL, Secret string
	}
	mustOK(t, h, call{method: "PUT", target: target, body: `{"url":"https://hooks.example.com/minipush"}`}, http.StatusOK, &put)
	if put.URL != "https://hooks.example.com/minipush" || !strings.HasPrefix(put.Secret, "whsec_") || len(put.Secret) != 6+64 {
		t.Fatalf("PUT answered %+v", put)
	}
	resp := do(t, h, call{method: "GET", target: target})
	if resp.StatusCode != http.StatusOK || strings.Contains(resp.Body, put.Secret) || !strings.Contains(resp.Body, `"consecutiveFailures":0`) {
		t.Fatalf("GET %d %s, want the URL and health without the secret", resp.StatusCode, resp.Body)
	}
	if resp := do(t, h, call{method: "GET", target: "/v1/admin/apps/wx2/webhook"}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("app without a webhook: %d %s", resp.StatusCode, resp.Body)
	}
}
