package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/session"
)

// TestSessionTokenRefused presents a genuine, unexpired mini-program session token (as
// collect issues them) to the operator API: it is not the operator token, so every
// route answers 401 and nothing is stored.
func TestSessionTokenRefused(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	sess := session.Sign([]byte("a-session-signing-key-0123456789"), "wx1", "oUser", now.Add(time.Hour))

	for _, tc := range []struct {
		name string
		call call
	}{
		{"List", call{method: "GET", target: "/v1/admin/campaigns?status=draft"}},
		{"Create", call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}},
		{"PutUser", call{method: "PUT", target: "/v1/admin/users/oUser?appId=wx1", body: `{"optOut":true}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.call.auth = "Bearer " + sess
			resp := do(t, h, tc.call)
			var body httpapi.ErrorBody
			if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
				t.Fatalf("body %q: %v", resp.Body, err)
			}
			if resp.StatusCode != http.StatusUnauthorized || body.Code != minipush.EUNAUTHORIZED {
				t.Fatalf("%d %+v, want 401 %s", resp.StatusCode, body, minipush.EUNAUTHORIZED)
			}
		})
	}
	t.Run("StorageUnchanged", func(t *testing.T) {
		cs, _, err := db.ListCampaigns(t.Context(), minipush.StatusDraft, 10, "")
		if err != nil || len(cs) != 0 {
			t.Fatalf("drafts %v %v, want none", cs, err)
		}
		if _, err := db.GetUser(t.Context(), "wx1", "oUser"); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Fatalf("user written: %v", err)
		}
	})
}

// TestBearerSchemeAnyCase: the auth scheme is case-insensitive (RFC 9110 §11.1), the
// token itself is not.
func TestBearerSchemeAnyCase(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"bearer " + token, http.StatusOK},
		{"BEARER " + token, http.StatusOK},
		{"Bearer  " + token, http.StatusOK},
		{"bearer " + strings.ToUpper(token), http.StatusUnauthorized},
		{"Bearertoken " + token, http.StatusUnauthorized},
		{"bearer", http.StatusUnauthorized},
	} {
		if resp := do(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft", auth: tc.auth}); resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: %d %s, want %d", tc.auth, resp.StatusCode, resp.Body, tc.want)
		}
	}
}
