package minipush_test

import (
	"strings"
	"testing"

	"minipush"
)

func TestParseApps(t *testing.T) {
	t.Parallel()
	a, err := minipush.ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s3cr3t"}]}`)
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
		if _, err := minipush.ParseApps(bad); err == nil {
			t.Errorf("minipush.ParseApps(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "b") && strings.Contains(bad, `"b"`) && strings.Contains(err.Error(), `"b"`) {
			t.Errorf("error echoes a secret: %v", err)
		}
	}
	a, err = minipush.ParseApps(`{"apps":[{"appId":"p","appSecret":"s","eventToken":"t","subscribeSource":"push"},{"appId":"c","appSecret":"s","subscribeSource":"client"},{"appId":"b","appSecret":"s"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		app          string
		client, push bool
	}{{"p", false, true}, {"c", true, false}, {"b", true, true}} {
		app, _ := a.Find(tc.app)
		if app.AcceptsFrom(minipush.SourceClient) != tc.client || app.AcceptsFrom(minipush.SourcePush) != tc.push {
			t.Errorf("app %s: accepts from client %v, push %v; want %v, %v", tc.app,
				app.AcceptsFrom(minipush.SourceClient), app.AcceptsFrom(minipush.SourcePush), tc.client, tc.push)
		}
	}
}

// TestEncodingAESKey checks the safe-mode key of an app: 43 base64 characters that
// decode to 32 bytes, only with an eventToken, and never quoted in an error.
func TestEncodingAESKey(t *testing.T) {
	t.Parallel()
	const good = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" // 43 characters, 32 bytes
	a, err := minipush.ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s","eventToken":"t","encodingAESKey":"` + good + `"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	app, _ := a.Find("wx1")
	// The console picks 43 characters at random from [A-Za-z0-9], so the last one
	// usually has non-zero unused bits: decoding must be lenient about them, as WeChat's.
	app.EncodingAESKey = good[:42] + "H"
	if _, err := app.AESKey(); err != nil {
		t.Fatalf("a key ending in non-zero unused bits: %v", err)
	}
	app.EncodingAESKey = good
	if key, err := app.AESKey(); err != nil || len(key) != 32 {
		t.Fatalf("AESKey = %d bytes, %v", len(key), err)
	}
	for name, bad := range map[string]string{
		"ErrShort":      `{"apps":[{"appId":"wx1","appSecret":"s","eventToken":"t","encodingAESKey":"` + good[:42] + `"}]}`,
		"ErrPadded":     `{"apps":[{"appId":"wx1","appSecret":"s","eventToken":"t","encodingAESKey":"` + good + `="}]}`,
		"ErrNotBase64":  `{"apps":[{"appId":"wx1","appSecret":"s","eventToken":"t","encodingAESKey":"` + good[:42] + `!"}]}`,
		"ErrNoEventTok": `{"apps":[{"appId":"wx1","appSecret":"s","encodingAESKey":"` + good + `"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := minipush.ParseApps(bad)
			if err == nil || !strings.Contains(err.Error(), "encodingAESKey") {
				t.Fatalf("error %v, want one naming encodingAESKey", err)
			}
			if strings.Contains(err.Error(), good[:40]) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

// TestAppTimeZone: an app's zone defaults to Asia/Shanghai, loads when named, and a
// zone that does not load fails ParseApps (init) with an error naming the app and zone.
func TestAppTimeZone(t *testing.T) {
	t.Parallel()
	a, err := minipush.ParseApps(`{"apps":[{"appId":"cn","appSecret":"s"},{"appId":"utc","appSecret":"s","timeZone":"UTC"},{"appId":"ny","appSecret":"s","timeZone":"America/New_York"}]}`)
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
		_, err := minipush.ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s3cr3t","timeZone":"` + zone + `"}]}`)
		if err == nil {
			t.Errorf("timeZone %q accepted", zone)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "wx1") || !strings.Contains(msg, "timeZone") || strings.Contains(msg, "s3cr3t") {
			t.Errorf("timeZone %q: error %q should name the app and the field, never the secret", zone, msg)
		}
	}
}
