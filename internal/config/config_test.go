package config

import (
	"strings"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GRANTS_TABLE": "g", "RETENTION_DAYS": "7", "SEND_RATE_PER_SECOND": "12.5"}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Tables.Grants != "g" || c.Retention != 7*24*time.Hour || c.SendRatePerSecond != 12.5 || c.MaxLiveGrants != 200 || c.TokenEndpoint != "stable" {
		t.Fatalf("config = %+v", c)
	}
	if err := c.Require("GRANTS_TABLE", "USERS_TABLE", "SEND_QUEUE_URL"); err == nil ||
		!strings.Contains(err.Error(), "USERS_TABLE, SEND_QUEUE_URL") {
		t.Fatalf("Require error = %v, want both missing names", err)
	}
	t.Run("ErrBadNumbers", func(t *testing.T) {
		bad := map[string]string{"RETENTION_DAYS": "0", "MAX_LIVE_GRANTS": "x", "SEND_RATE_PER_SECOND": "-1", "TOKEN_ENDPOINT": "fast"}
		for k, v := range bad {
			_, err := FromEnv(func(key string) string {
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
}

func TestParseApps(t *testing.T) {
	t.Parallel()
	a, err := ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s3cr3t"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if app, ok := a.Find("wx1"); !ok || app.AppSecret != "s3cr3t" {
		t.Fatalf("Find = %+v %v", app, ok)
	}
	if app, _ := a.Find("wx1"); strings.Contains(app.String(), "s3cr3t") {
		t.Fatal("App.String leaks the secret")
	}
	for _, bad := range []string{``, `{}`, `{"apps":[{"appId":"wx1"}]}`, `{"apps":[{"appId":"a","appSecret":"b"},{"appId":"a","appSecret":"c"}]}`,
		`{"apps":[{"appId":"a","appSecret":"b","subscribeSource":"push"}]}`, // push without a token to verify it
		`{"apps":[{"appId":"a","appSecret":"b","subscribeSource":"both"}]}`,
	} {
		if _, err := ParseApps(bad); err == nil {
			t.Errorf("ParseApps(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "b") && strings.Contains(bad, `"b"`) && strings.Contains(err.Error(), `"b"`) {
			t.Errorf("error echoes a secret: %v", err)
		}
	}
	a, err = ParseApps(`{"apps":[{"appId":"p","appSecret":"s","eventToken":"t","subscribeSource":"push"},{"appId":"c","appSecret":"s","subscribeSource":"client"},{"appId":"b","appSecret":"s"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		app          string
		client, push bool
	}{{"p", false, true}, {"c", true, false}, {"b", true, true}} {
		app, _ := a.Find(tc.app)
		if app.AcceptsFrom(SourceClient) != tc.client || app.AcceptsFrom(SourcePush) != tc.push {
			t.Errorf("app %s: accepts from client %v, push %v; want %v, %v", tc.app,
				app.AcceptsFrom(SourceClient), app.AcceptsFrom(SourcePush), tc.client, tc.push)
		}
	}
}
