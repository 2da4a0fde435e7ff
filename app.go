package minipush

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
	_ "time/tzdata" // zones load from the binary: Lambda's provided.al2023 has no zoneinfo
)

// App is one mini-program the deployment serves, as the WeChat secret describes it: its
// credentials, where its subscribe accepts come from, and the zone of its users.
type App struct {
	AppID      string `json:"appId"`
	AppSecret  string `json:"appSecret"`
	EventToken string `json:"eventToken,omitempty"` // the message-push token, for signature checks
	// SubscribeSource picks where subscribe accepts are recorded from: "client" (the
	// mini-program's upload), "push" (WeChat's signed subscribe_msg_popup_event; needs
	// EventToken) or "" for both. One accept reported by both sources cannot be
	// recognised as one (they share no id), so it would be stored twice: an app that
	// receives the push should pick one.
	SubscribeSource string `json:"subscribeSource,omitempty"`
	// EncodingAESKey is the message-push EncodingAESKey of the mini-program's console (43
	// base64 characters, 32 bytes once decoded). With it, pushes must come in safe or
	// compatible mode (encrypted, msg_signature over the ciphertext) and plaintext
	// pushes are refused: a plaintext push's signature does not cover its body.
	EncodingAESKey string `json:"encodingAESKey,omitempty"`
	// TimeZone is the IANA zone of the app's users (default DefaultAppTimeZone): the
	// day of the one-push-per-day cap is the recipient's day, so it is computed in this
	// one zone for every campaign of the app, whatever zone a campaign's schedule names.
	TimeZone string `json:"timeZone,omitempty"`
	// Caps are the frequency caps of the app's non-transactional campaigns, e.g.
	// {"perDay":1,"perWeek":3}; absent or 0 is no cap.
	Caps Caps `json:"caps,omitzero"`
	// QuietHours is the app's window without marketing messages; absent is
	// DefaultQuietHours, {"off":true} none. A campaign may override it.
	QuietHours *QuietHours `json:"quietHours,omitempty"`
	// DailyQuota is WeChat's daily message quota of the app (the forecast's share of
	// it); absent is DefaultDailyQuota.
	DailyQuota int `json:"dailyQuota,omitempty"`
	// QuotaReservePercent is the share of WeChat's daily limit that marketing campaigns
	// may not take, kept for transactional ones (quota.go); absent is
	// DefaultQuotaReservePercent, 0 no reserve.
	QuotaReservePercent *int `json:"quotaReservePercent,omitempty"`
	// Receipts turns on delivery receipts (WeChat's subscribe_msg_sent_event) for the
	// app: its sent subscribe messages are indexed by msgid so a receipt finds its
	// delivery. Off by default because the index entry costs a write with every sent
	// subscribe message (4 instead of 3) and a receipt 4 more, while WeChat reports
	// mostly asynchronous failures (WECHAT.md §8), which not every app acts on. With it
	// off, receipts are acknowledged and change nothing.
	Receipts bool `json:"receipts,omitempty"`
}

// DefaultAppTimeZone is an App's TimeZone when the secret names none: mini-program
// users are mostly in mainland China.
const DefaultAppTimeZone = "Asia/Shanghai"

// Location loads the app's TimeZone (ParseApps has checked that it loads), falling
// back to UTC only if it somehow does not.
func (a App) Location() *time.Location {
	name := a.TimeZone
	if name == "" {
		name = DefaultAppTimeZone
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Subscribe sources of an App.
const (
	SourceClient = "client"
	SourcePush   = "push"
)

// AcceptsFrom reports whether the app records subscribe accepts reported by source.
func (a App) AcceptsFrom(source string) bool {
	return a.SubscribeSource == "" || a.SubscribeSource == source
}

// AESKey decodes EncodingAESKey: 43 base64 characters (WeChat drops the trailing "="),
// 32 bytes, the AES-256 key of safe-mode pushes. The console picks the 43 characters at
// random from [A-Za-z0-9], so the last one's unused bits are not zero and decoding is
// lenient about them, as WeChat's own. The error never quotes the key.
func (a App) AESKey() ([]byte, error) {
	if len(a.EncodingAESKey) != 43 {
		return nil, fmt.Errorf("wechat secret app %s: encodingAESKey is %d characters, want 43", a.AppID, len(a.EncodingAESKey))
	}
	key, err := base64.StdEncoding.DecodeString(a.EncodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("wechat secret app %s: encodingAESKey is not 43 base64 characters of a 32-byte key", a.AppID)
	}
	return key, nil
}

// String hides the secret so an App can never be logged by accident.
func (a App) String() string { return "App{" + a.AppID + "}" }

// LogValue hides the secret from slog too.
func (a App) LogValue() slog.Value { return slog.StringValue(a.AppID) }

// Apps is the content of the WeChat secret: every app the deployment serves.
type Apps struct {
	Apps []App `json:"apps"`
}

// Find returns the app with the given id.
func (a Apps) Find(appID string) (App, bool) {
	for _, app := range a.Apps {
		if app.AppID == appID {
			return app, true
		}
	}
	return App{}, false
}

// IDs returns the served appIds, in the secret's order.
func (a Apps) IDs() []string {
	ids := make([]string, len(a.Apps))
	for i, app := range a.Apps {
		ids[i] = app.AppID
	}
	return ids
}

// ParseApps parses and checks the WeChat secret's JSON. Its errors name the app and the
// field, never a secret.
func ParseApps(s string) (Apps, error) {
	var a Apps
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return a, fmt.Errorf("wechat secret is not {\"apps\":[...]} JSON")
	}
	if len(a.Apps) == 0 {
		return a, fmt.Errorf("wechat secret lists no apps")
	}
	seen := map[string]bool{}
	for i, app := range a.Apps {
		if app.AppID == "" || app.AppSecret == "" {
			return a, fmt.Errorf("wechat secret app %d lacks appId or appSecret", i)
		}
		switch app.SubscribeSource {
		case "", SourceClient:
		case SourcePush:
			if app.EventToken == "" {
				return a, fmt.Errorf("wechat secret app %s takes subscribe accepts from the push but has no eventToken to verify it", app.AppID)
			}
		default:
			return a, fmt.Errorf("wechat secret app %s: subscribeSource %q, want %q, %q or absent (both)", app.AppID, app.SubscribeSource, SourceClient, SourcePush)
		}
		if app.EncodingAESKey != "" {
			if app.EventToken == "" {
				return a, fmt.Errorf("wechat secret app %s has an encodingAESKey but no eventToken to verify pushes", app.AppID)
			}
			if _, err := app.AESKey(); err != nil {
				return a, err
			}
		}
		if app.TimeZone != "" {
			// "Local" would be the zone of whatever machine runs the code (UTC on Lambda).
			if _, err := time.LoadLocation(app.TimeZone); err != nil || app.TimeZone == "Local" {
				return a, fmt.Errorf("wechat secret app %s: timeZone %q is not an IANA zone such as %q", app.AppID, app.TimeZone, DefaultAppTimeZone)
			}
		}
		if app.Caps.PerDay < 0 || app.Caps.PerWeek < 0 || app.DailyQuota < 0 {
			return a, fmt.Errorf("wechat secret app %s: caps.perDay, caps.perWeek and dailyQuota are counts, 0 or more", app.AppID)
		}
		if r := app.QuotaReservePercent; r != nil && (*r < 0 || *r > 100) {
			return a, fmt.Errorf("wechat secret app %s: quotaReservePercent %d is not a percentage (0 to 100)", app.AppID, *r)
		}
		if app.QuietHours != nil {
			if err := app.QuietHours.Check("wechat secret app " + app.AppID + " quietHours"); err != nil {
				return a, err
			}
		}
		if seen[app.AppID] {
			return a, fmt.Errorf("wechat secret lists app %s twice", app.AppID)
		}
		seen[app.AppID] = true
	}
	return a, nil
}
