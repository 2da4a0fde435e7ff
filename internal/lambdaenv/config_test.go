package lambdaenv

import (
	"strings"
	"testing"
	"time"
)

func TestReadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GRANTS_TABLE": "g", "RETENTION_DAYS": "7", "SEND_RATE_PER_SECOND": "12.5"}
	c, err := readConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.tables.Grants != "g" || c.retention != 7*24*time.Hour || c.sendRatePerSecond != 12.5 || c.maxLiveGrants != 200 || c.tokenEndpoint != "stable" {
		t.Fatalf("config = %+v", c)
	}
	if err := c.require("GRANTS_TABLE", "USERS_TABLE", "SEND_QUEUE_URL"); err == nil ||
		!strings.Contains(err.Error(), "USERS_TABLE, SEND_QUEUE_URL") {
		t.Fatalf("require error = %v, want both missing names", err)
	}
	t.Run("ErrBadNumbers", func(t *testing.T) {
		bad := map[string]string{"RETENTION_DAYS": "0", "MAX_LIVE_GRANTS": "x", "SEND_RATE_PER_SECOND": "-1", "TOKEN_ENDPOINT": "fast"}
		for k, v := range bad {
			_, err := readConfig(func(key string) string {
				if key == k {
					return v
				}
				return ""
			})
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%s=%s: error %v, want one naming %s", k, v, err, k)
			}
		}
	})
	t.Run("ErrBadKnobs", func(t *testing.T) {
		for _, k := range []string{SendLeaseEnv, PlanQuietEnv} {
			c, _ := readConfig(func(key string) string { return map[string]string{k: "0"}[key] })
			if _, err := c.seconds(k, time.Minute); err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%s=0: error %v, want one naming it", k, err)
			}
		}
	})
}

// TestSecrets: a local: secret comes from LocalSecretsEnv and never from Secrets
// Manager; a missing one, or a malformed LocalSecretsEnv, fails naming the variable,
// never quoting a value.
func TestSecrets(t *testing.T) {
	t.Parallel()
	s, err := newSecrets(nil, func(k string) string { return map[string]string{LocalSecretsEnv: `{"Op":"s3cr3t"}`}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.get(t.Context(), "OPERATOR_SECRET_ARN", "local:Op"); err != nil || v != "s3cr3t" {
		t.Fatalf("get = %q, %v", v, err)
	}
	if _, err := s.get(t.Context(), "SESSION_SECRET_ARN", "local:Missing"); err == nil || !strings.Contains(err.Error(), "SESSION_SECRET_ARN") {
		t.Fatalf("missing local secret: %v, want an error naming the variable", err)
	}
	if _, err := newSecrets(nil, func(k string) string { return map[string]string{LocalSecretsEnv: `{"Op":s3cr3t}`}[k] }); err == nil ||
		strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("malformed %s: %v, want an error without the value", LocalSecretsEnv, err)
	}
}
