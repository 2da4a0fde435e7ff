package config

import (
	"strings"
	"testing"
)

// TestEncodingAESKey checks the safe-mode key of an app: 43 base64 characters that
// decode to 32 bytes, only with an eventToken, and never quoted in an error.
func TestEncodingAESKey(t *testing.T) {
	t.Parallel()
	const good = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" // 43 characters, 32 bytes
	a, err := ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s","eventToken":"t","encodingAESKey":"` + good + `"}]}`)
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
			_, err := ParseApps(bad)
			if err == nil || !strings.Contains(err.Error(), "encodingAESKey") {
				t.Fatalf("error %v, want one naming encodingAESKey", err)
			}
			if strings.Contains(err.Error(), good[:40]) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}
