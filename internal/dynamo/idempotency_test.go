package dynamo_test

import (
	"testing"
	"time"

	"minipush"
)

// TestIdempotencyKeyRecord: the state-table record behind Idempotency-Key. A key is held
// by one request at a time; a holder that died is taken over only after its lock and only
// by the same request; an answer is kept for the retention and then forgotten.
func TestIdempotencyKeyRecord(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	lock := now.Add(time.Minute)
	claim := func(t *testing.T, key, fp, owner string, at time.Time) (minipush.IdempotentRequest, bool) {
		t.Helper()
		r, ok, err := db.ClaimIdempotencyKey(ctx, key, fp, owner, at, at.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return r, ok
	}

	if _, ok := claim(t, "k1", "fpA", "o1", now); !ok {
		t.Fatal("first claim refused")
	}
	t.Run("HeldWhileLocked", func(t *testing.T) {
		if r, ok := claim(t, "k1", "fpA", "o2", now.Add(30*time.Second)); ok || r.Done || r.Fingerprint != "fpA" {
			t.Fatalf("claim during the lock: %v %+v, want pending fpA", ok, r)
		}
	})
	t.Run("AbandonedTakenOverBySameRequestOnly", func(t *testing.T) {
		if r, ok := claim(t, "k1", "fpB", "o3", lock); ok || r.Fingerprint != "fpA" {
			t.Fatalf("another request after the lock: %v %+v, want refused with fpA", ok, r)
		}
		if _, ok := claim(t, "k1", "fpA", "o2", lock); !ok {
			t.Fatal("the same request after the lock was refused")
		}
		// The presumed-dead first holder can neither answer nor release any more.
		err := db.FinishIdempotencyKey(ctx, "k1", "o1", minipush.IdempotentAnswer{Status: 201, Body: "late"})
		if minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("finish by the old holder: %v, want ECONFLICT", err)
		}
		if err := db.ReleaseIdempotencyKey(ctx, "k1", "o1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("AnswerKept", func(t *testing.T) {
		a := minipush.IdempotentAnswer{Status: 201, Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"id":"c1"}`}
		if err := db.FinishIdempotencyKey(ctx, "k1", "o2", a); err != nil {
			t.Fatal(err)
		}
		r, ok := claim(t, "k1", "fpA", "o4", now.Add(23*time.Hour))
		if ok || !r.Done || r.Answer.Status != 201 || r.Answer.Body != a.Body || r.Answer.Headers["Content-Type"] != "application/json" {
			t.Fatalf("claim of an answered key: %v %+v", ok, r)
		}
		if err := db.ReleaseIdempotencyKey(ctx, "k1", "o2"); err != nil {
			t.Fatal(err)
		}
		if r, _ := claim(t, "k1", "fpA", "o4", now.Add(23*time.Hour)); !r.Done {
			t.Fatal("release after the answer forgot it")
		}
	})
	t.Run("ForgottenAfterRetention", func(t *testing.T) {
		// TTL deletes late: the record is stored still, but no longer counts.
		if _, ok := claim(t, "k1", "fpB", "o5", lock.Add(minipush.IdempotencyRetention)); !ok {
			t.Fatal("a key past its retention was refused")
		}
	})
	t.Run("ReleasedKeyRunsAgain", func(t *testing.T) {
		if _, ok := claim(t, "k2", "fpA", "o1", now); !ok {
			t.Fatal("claim refused")
		}
		if err := db.ReleaseIdempotencyKey(ctx, "k2", "o1"); err != nil {
			t.Fatal(err)
		}
		if _, ok := claim(t, "k2", "fpA", "o2", now); !ok {
			t.Fatal("a released key was refused")
		}
	})
}
