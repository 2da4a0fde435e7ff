package plan_test

import (
	"encoding/json"
	"strings"
	"testing"

	"minipush/internal/lambdaenv"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		env := f.env.MustFunctionEnv(t, "PlanFunction")
		for _, kv := range f.env.Endpoints.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		// The planner reads the WeChat secret for the apps' zones and quiet hours (never
		// their app secrets): the template names a local: secret, given here.
		wechat, ok := strings.CutPrefix(env["WECHAT_SECRET_ARN"], "local:")
		if !ok {
			t.Fatalf("WECHAT_SECRET_ARN = %q, want a local: secret", env["WECHAT_SECRET_ARN"])
		}
		local, _ := json.Marshal(map[string]string{wechat: `{"apps":[{"appId":"` + appID + `","appSecret":"s1"}]}`})
		env[lambdaenv.LocalSecretsEnv] = string(local)
		h, err := lambdaenv.Plan(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		// The production wiring plans a due campaign end to end.
		f.oneOff(t, "cwired", listAudience)
		f.mustAudience(t, "cwired", 120)
		if err := h.Handle(t.Context(), tick); err != nil {
			t.Fatal(err)
		}
		f.drain(t, 120).assertExactlyOnce(t, 1, 120)
	})

	t.Run("ErrMissingConfig", func(t *testing.T) {
		t.Parallel()
		_, err := lambdaenv.Plan(t.Context(), lambdaenv.Env{Getenv: func(string) string { return "" }})
		if err == nil || !strings.Contains(err.Error(), "SEND_QUEUE_URL") {
			t.Fatalf("err %v, want one naming the missing SEND_QUEUE_URL", err)
		}
	})
}
