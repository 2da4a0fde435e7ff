package session

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	key := []byte("k1")
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tok := Sign(key, "wx1", "openid-1", now.Add(time.Hour))

	t.Run("OK", func(t *testing.T) {
		app, openid, err := Verify(key, tok, now)
		if err != nil || app != "wx1" || openid != "openid-1" {
			t.Fatalf("Verify = %q %q %v", app, openid, err)
		}
	})
	tests := []struct {
		name  string
		key   []byte
		token string
		now   time.Time
		want  error
	}{
		{"ErrExpired", key, tok, now.Add(time.Hour), ErrExpired},
		{"ErrOtherKey", []byte("k2"), tok, now, ErrForged},
		{"ErrTamperedPayload", key, tamper(tok, 0), now, ErrForged},
		{"ErrTamperedSignature", key, tamper(tok, len(tok)-2), now, ErrForged},
		{"ErrOtherUsersPayload", key, strings.Split(Sign(key, "wx1", "openid-2", now.Add(time.Hour)), ".")[0] + "." + strings.Split(tok, ".")[1], now, ErrForged},
		{"ErrEmpty", key, "", now, ErrMalformed},
		{"ErrNoDot", key, "abc", now, ErrMalformed},
		{"ErrBadBase64", key, "a.!!", now, ErrMalformed},
		{"ErrHuge", key, strings.Repeat("a", 5000), now, ErrMalformed},
		{"ErrTrailingBits", key, trailingBits(tok), now, ErrMalformed},
		{"ErrTwoDots", key, tok + ".x", now, ErrMalformed},
		{"ErrLineBreak", key, tok[:10] + "\n" + tok[10:], now, ErrMalformed},
		{"ErrNewlineInOpenID", key, Sign(key, "wx1", "a\nb", now.Add(time.Hour)), now, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := Verify(tc.key, tc.token, tc.now); !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
}

// trailingBits respells tok's signature with a different last character that decodes
// to the same bytes under lenient base64 (43 characters carry 258 bits for 256).
func trailingBits(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last^1])
}

func tamper(tok string, i int) string {
	b := []byte(tok)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// FuzzVerify checks Verify never panics and accepts only tokens Sign would have made:
// every accepted token is the canonical signature of what it names.
func FuzzVerify(f *testing.F) {
	key := []byte("k")
	f.Add(Sign(key, "wx1", "o", time.Unix(2e9, 0)))
	f.Add(Sign(key, "wx1", "o\nx", time.Unix(2e9, 0)))
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, tok string) {
		app, openid, err := Verify(key, tok, time.Unix(1e9, 0))
		if err != nil {
			if app != "" || openid != "" {
				t.Fatalf("error %v with identity %q/%q", err, app, openid)
			}
			return
		}
		payload, _, _ := strings.Cut(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(payload)
		parts := strings.Split(string(raw), "\n")
		exp, perr := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if perr != nil || Sign(key, app, openid, time.Unix(exp, 0)) != tok {
			t.Fatalf("accepted %q as %q/%q, which Sign does not produce", tok, app, openid)
		}
	})
}

func TestPseudonym(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	a := Pseudonym(key, "log", "oUser1")
	switch {
	case len(a) != 16:
		t.Fatalf("pseudonym %q, want 16 hex digits", a)
	case a != Pseudonym(key, "log", "oUser1"):
		t.Fatal("pseudonym not stable")
	case a == Pseudonym(key, "log", "oUser2"):
		t.Fatal("two values, one pseudonym")
	case a == Pseudonym(key, "ip", "oUser1"):
		t.Fatal("purposes not separated")
	case a == Pseudonym([]byte("another-key-another-key-another!!"), "log", "oUser1"):
		t.Fatal("pseudonym does not depend on the key")
	case strings.Contains(a, "oUser1"):
		t.Fatal("pseudonym holds the value")
	}
}
