// Package webhook delivers an app's events (run started, paused, aborted, done, and a
// daily digest of failures) to the URL its operator set, signed with the app's secret.
//
// Producers (plan, send, admin) only Publish: one SQS message per event on the webhook
// queue, never waiting for the endpoint, and a failed enqueue is logged and counted but
// never fails the producer's work. The webhook function (Handler) posts each event; a
// failed post is retried by SQS with growing visibility timeouts (backoff) until the
// queue's maxReceiveCount moves it to the dead-letter queue, which is alarmed. Every
// attempt's outcome is kept on the app's Webhook record, which the operator reads.
//
// Signature: header Minipush-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>" under the app's secret>. A receiver recomputes it (Verify) and rejects a
// timestamp more than Tolerance from its clock, so a captured delivery cannot be
// replayed later; within the window it dedupes on the event's id.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the signature of a delivery.
const SignatureHeader = "Minipush-Signature"

// Tolerance is how far a delivery's timestamp may be from the receiver's clock.
const Tolerance = 5 * time.Minute

// Sign returns the SignatureHeader value of body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("webhook: signature header is not t=<unix>,v1=<hex>")
	ErrStale     = errors.New("webhook: signature timestamp outside the tolerance (a replay?)")
	ErrMismatch  = errors.New("webhook: signature does not match the body")
)

// Verify checks header (the SignatureHeader value) against body, the exact bytes
// received, and rejects a timestamp more than tolerance from now. Several v1 values are
// accepted (any may match), so a sender may sign with two secrets while one is rotated.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s ago", ErrStale, d.Round(time.Second))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrMismatch
}
