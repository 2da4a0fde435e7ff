package config

import (
	"strings"
	"testing"
)

// TestAppTimeZone: an app's zone defaults to Asia/Shanghai, loads when named, and a
// zone that does not load fails ParseApps (init) with an error naming the app and zone.
func TestAppTimeZone(t *testing.T) {
	t.Parallel()
	a, err := ParseApps(`{"apps":[{"appId":"cn","appSecret":"s"},{"appId":"utc","appSecret":"s","timeZone":"UTC"},{"appId":"ny","appSecret":"s","timeZone":"America/New_York"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for app, want := range map[string]string{"cn": "Asia/Shanghai", "utc": "UTC", "ny": "America/New_York"} {
		got, _ := a.Find(app)
		if loc := got.Location(); loc.String() != want {
			t.Errorf("app %s: Location = %s, want %s", app, loc, want)
		}
	}
	for _, zone := range []string{"Mars/Olympus", "Local", "+08:00", "../../etc/passwd"} {
		_, err := ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s3cr3t","timeZone":"` + zone + `"}]}`)
		if err == nil {
			t.Errorf("timeZone %q accepted", zone)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "wx1") || !strings.Contains(msg, "timeZone") || strings.Contains(msg, "s3cr3t") {
			t.Errorf("timeZone %q: error %q should name the app and the field, never the secret", zone, msg)
		}
	}
}
