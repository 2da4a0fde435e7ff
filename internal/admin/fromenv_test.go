package admin_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"minipush/internal/dev/testenv"
	"minipush/internal/lambdaenv"
)

// TestFromEnv builds the handler the way the function does, from the template's
// environment for AdminFunction and a local operator secret.
func TestFromEnv(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	env := e.MustFunctionEnv(t, "AdminFunction")
	for _, kv := range e.Endpoints.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	name, ok := strings.CutPrefix(env["OPERATOR_SECRET_ARN"], "local:")
	if !ok {
		t.Fatalf("OPERATOR_SECRET_ARN = %q, want a local: secret", env["OPERATOR_SECRET_ARN"])
	}

	t.Run("ErrEmptySecret", func(t *testing.T) {
		local, _ := json.Marshal(map[string]string{name: "  "})
		if _, err := lambdaenv.Admin(t.Context(), lambdaenv.Env{Getenv: func(k string) string {
			if k == lambdaenv.LocalSecretsEnv {
				return string(local)
			}
			return env[k]
		}}); err == nil {
			t.Fatal("FromEnv with a blank operator token succeeded")
		}
	})
	t.Run("ErrMissingEnv", func(t *testing.T) {
		if _, err := lambdaenv.Admin(t.Context(), lambdaenv.Env{Getenv: func(k string) string {
			if k == "OPERATOR_SECRET_ARN" {
				return ""
			}
			return env[k]
		}}); err == nil {
			t.Fatal("FromEnv without OPERATOR_SECRET_ARN succeeded")
		}
	})
	wechat, ok := strings.CutPrefix(env["WECHAT_SECRET_ARN"], "local:")
	if !ok {
		t.Fatalf("WECHAT_SECRET_ARN = %q, want a local: secret", env["WECHAT_SECRET_ARN"])
	}
	apps := `{"apps":[{"appId":"wx1","appSecret":"s1"},{"appId":"wx2","appSecret":"s2"}]}`
	t.Run("ErrNoWeChatSecret", func(t *testing.T) {
		local, _ := json.Marshal(map[string]string{name: token})
		if _, err := lambdaenv.Admin(t.Context(), lambdaenv.Env{Getenv: func(k string) string {
			if k == lambdaenv.LocalSecretsEnv {
				return string(local)
			}
			return env[k]
		}}); err == nil || !strings.Contains(err.Error(), wechat) {
			t.Fatalf("FromEnv without the WeChat secret: %v, want an error naming it", err)
		}
	})
	t.Run("Serves", func(t *testing.T) {
		local, _ := json.Marshal(map[string]string{name: token + "\n", wechat: apps})
		env[lambdaenv.LocalSecretsEnv] = string(local)
		h, err := lambdaenv.Admin(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
		var list struct {
			Campaigns []json.RawMessage `json:"campaigns"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft"}, http.StatusOK, &list)
		if len(list.Campaigns) != 1 {
			t.Fatalf("%d drafts listed", len(list.Campaigns))
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft", auth: "Bearer wrong"}, http.StatusUnauthorized, nil)
		// The served apps are the WeChat secret's, and its app secrets are not kept.
		if !slices.Equal(h.AppIDs, []string{"wx1", "wx2"}) {
			t.Fatalf("AppIDs %v, want the secret's wx1, wx2", h.AppIDs)
		}
		resp := do(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: strings.Replace(subscribeCampaign, `"wx1"`, `"wx3"`, 1)})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(resp.Body, "appId") {
			t.Fatalf("campaign of an app the secret does not list: %d %s, want 422 naming appId", resp.StatusCode, resp.Body)
		}
	})
}
