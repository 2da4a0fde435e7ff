// Package session signs and verifies the session tokens the collect API hands a
// mini-program after login. A token names the app and the user (the openid WeChat gave
// for the login code, never one the client claims) and when it expires, signed with
// HMAC-SHA256 under the deployment's session key; verification is constant-time.
//
// Format: base64url(appID "\n" openID "\n" expiryUnix) "." base64url(mac). The parts are
// not secret (an openid is an app-scoped pseudonym); the mac makes them unforgeable.
package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors of Verify. Callers answer all of them with 401 and need not tell them apart;
// they are distinct for logs and tests.
var (
	ErrMalformed = errors.New("session: malformed token")
	ErrForged    = errors.New("session: bad signature")
	ErrExpired   = errors.New("session: token expired")
)

// maxTokenLen bounds the work Verify does on hostile input.
const maxTokenLen = 1024

// MinKeyLen is the shortest session key a deployment may use: 32 bytes, the output size
// of SHA-256, below which HMAC-SHA256's strength is the key's, not the hash's. The stack
// generates 64 characters and the local runner 48.
const MinKeyLen = 32

// enc is strict so that a token has exactly one spelling: lenient base64 would also
// accept the signature with different unused trailing bits, a second valid token.
// (Verify refuses line breaks itself, which even a strict decoder skips.)
var enc = base64.RawURLEncoding.Strict()

// Sign returns a token for the user of appID valid until expires.
func Sign(key []byte, appID, openID string, expires time.Time) string {
	payload := enc.EncodeToString([]byte(appID + "\n" + openID + "\n" + strconv.FormatInt(expires.Unix(), 10)))
	return payload + "." + enc.EncodeToString(mac(key, payload))
}

// Verify checks token's signature and expiry at now and returns whose it is.
func Verify(key []byte, token string, now time.Time) (appID, openID string, err error) {
	if len(token) == 0 || len(token) > maxTokenLen {
		return "", "", ErrMalformed
	}
	// Only the base64url alphabet and one dot: Go's decoder skips CR and LF even when
	// strict, which would make the same token valid with line breaks inserted.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", ErrMalformed
		}
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok {
		return "", "", ErrMalformed
	}
	got, err := enc.DecodeString(sig)
	if err != nil {
		return "", "", ErrMalformed
	}
	// The signature is checked before the payload is parsed, so nothing an attacker
	// wrote is interpreted unless it was signed.
	if !hmac.Equal(got, mac(key, payload)) {
		return "", "", ErrForged
	}
	raw, err := enc.DecodeString(payload)
	if err != nil {
		return "", "", ErrMalformed
	}
	parts := strings.Split(string(raw), "\n")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", ErrMalformed
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", "", ErrMalformed
	}
	if !now.Before(time.Unix(exp, 0)) {
		return "", "", ErrExpired
	}
	return parts[0], parts[1], nil
}

// Pseudonym is a keyed hash of value for purpose (e.g. "log" for an openid in a log
// line, "ip" for a client address in a rate-limit key): stable for one deployment, so a
// user's or a source's lines and counters still group, but not reversible without the
// session key, and unlinkable across purposes. 16 hex digits are plenty to group by and
// too short to be mistaken for the value itself.
func Pseudonym(key []byte, purpose, value string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("minipush-pseudonym-v1\n" + purpose + "\n"))
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

func mac(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("minipush-session-v1\n")) // domain separation from any other use of the key
	m.Write([]byte(payload))
	return m.Sum(nil)
}
