package localstack_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"minipush/internal/dev/testenv"
)

// TestTemplateWiring fails when a function lacks its build target, code, event, policy or
// environment, or when a reference in its environment or policies resolves to nothing.
func TestTemplateWiring(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	tpl := env.Template
	makefile, err := os.ReadFile(filepath.Join(testenv.Root(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	required := map[string][]string{
		"CollectFunction":    {"GRANTS_TABLE", "USERS_TABLE", "STATE_TABLE", "DELIVERIES_TABLE", "SESSION_SECRET_ARN", "WECHAT_SECRET_ARN", "WECHAT_BASE_URL"},
		"AdminFunction":      {"CAMPAIGNS_TABLE", "AUDIENCE_TABLE", "USERS_TABLE", "DELIVERIES_TABLE", "OPERATOR_SECRET_ARN"},
		"PlanFunction":       {"CAMPAIGNS_TABLE", "AUDIENCE_TABLE", "USERS_TABLE", "DELIVERIES_TABLE", "SEND_QUEUE_URL"},
		"SendFunction":       {"GRANTS_TABLE", "DELIVERIES_TABLE", "CAMPAIGNS_TABLE", "STATE_TABLE", "SEND_QUEUE_URL", "WECHAT_SECRET_ARN", "SEND_RATE_PER_SECOND"},
		"ExpireFunction":     {"GRANTS_TABLE", "USERS_TABLE", "STATE_TABLE"},
		"DeadLetterFunction": {"GRANTS_TABLE", "DELIVERIES_TABLE", "CAMPAIGNS_TABLE"},
		"WebhookFunction":    {"STATE_TABLE", "WEBHOOK_QUEUE_URL"},
	}
	if got, want := len(tpl.Functions), len(required); got != want {
		t.Errorf("template has %d functions, want %d", got, want)
	}
	for _, id := range tpl.FunctionIDs() {
		f := tpl.Functions[id]
		t.Run(id, func(t *testing.T) {
			if f.BuildMethod != "makefile" || f.CodeURI != "." {
				t.Errorf("BuildMethod %q CodeUri %q, want makefile and . (SAM copies only CodeUri)", f.BuildMethod, f.CodeURI)
			}
			m := regexp.MustCompile(`sam_target,` + id + `,([a-z]+)\)`).FindSubmatch(makefile)
			if m == nil {
				t.Fatalf("Makefile has no build-%s target", id)
			}
			if _, err := os.Stat(filepath.Join(testenv.Root(), "functions", string(m[1]), "main.go")); err != nil {
				t.Errorf("build-%s builds functions/%s: %v", id, m[1], err)
			}
			if len(f.Events) == 0 {
				t.Error("no events: nothing would ever invoke it")
			}
			statements := 0
			for _, p := range f.Policies {
				for _, s := range p.Statement {
					statements++
					if s.Effect == "Deny" && len(s.Condition) > 0 {
						// A conditional Deny fences items off whatever the role allows; a
						// wildcard is its point (see TestTemplateSafety/TokenItemsDenied).
						continue
					}
					if s.Effect != "Allow" || len(s.Action) == 0 || len(s.Resource) == 0 {
						t.Errorf("statement %+v: want Allow with actions and resources", s)
					}
					for _, r := range s.Resource {
						v, err := r.Resolve(env.Resources)
						if err != nil {
							t.Errorf("policy resource %s: %v", r, err)
						}
						if v == "*" {
							t.Errorf("policy resource is *: scope it to the resources the function touches")
						}
					}
					for _, a := range s.Action {
						if strings.HasSuffix(a, ":*") || a == "*" {
							t.Errorf("policy action %s is a wildcard", a)
						}
					}
				}
			}
			if statements == 0 {
				t.Error("no policy statements")
			}
			vars, err := env.FunctionEnv(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range required[id] {
				if vars[k] == "" {
					t.Errorf("environment lacks %s", k)
				}
			}
		})
	}

	t.Run("SendQueueOutlastsSendFunction", func(t *testing.T) {
		timeout, _ := strconv.Atoi(tpl.Functions["SendFunction"].Timeout.Literal)
		v, err := tpl.Queues["SendQueue"].VisibilityTimeout.Resolve(env.Resources)
		vis, _ := strconv.Atoi(v)
		if err != nil || vis <= timeout {
			t.Fatalf("send queue visibility %q (%v) must exceed the send function timeout %d", v, err, timeout)
		}
		ev := tpl.Functions["SendFunction"].Events["Batches"].SQS
		if ev == nil || ev.ScalingConfig == nil || ev.ScalingConfig.MaximumConcurrency.Ref == "" {
			t.Fatal("send event must take MaximumConcurrency from a parameter")
		}
		if _, ok := tpl.Parameters[ev.ScalingConfig.MaximumConcurrency.Ref]; !ok {
			t.Fatal("MaximumConcurrency parameter missing")
		}
	})

	t.Run("NoPlaintextSecrets", func(t *testing.T) {
		for name, p := range tpl.Parameters {
			lower := strings.ToLower(name)
			if (strings.Contains(lower, "secret") || strings.Contains(lower, "token") || strings.Contains(lower, "key")) &&
				!strings.HasSuffix(name, "Arn") && name != "TokenEndpoint" {
				t.Errorf("parameter %s looks like a secret: pass an ARN instead", name)
			}
			if strings.HasSuffix(name, "SecretArn") && p.Default != nil {
				t.Errorf("parameter %s must not have a default", name)
			}
		}
	})
}
