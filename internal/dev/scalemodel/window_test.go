package scalemodel

import (
	"math"
	"testing"
	"time"
)

// TestSustainedWindow checks the sustained figure against hand-counted windows: the
// busiest 10-second window (sliding by a second) over 10 s of the key's limit, next to
// the peak second, and that throttling stays per second whatever the window says.
func TestSustainedWindow(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	l := newLimiter(func() time.Time { return now }, 30, 10, 1, 10) // K = 100, a 10 s window
	key := touch{res: resource{table: "t"}, key: "S:k", kind: write, estimate: 1}
	writeAt := func(second float64, units int) (refused int) {
		now = start.Add(time.Duration(second * float64(time.Second)))
		for range units {
			if l.admit([]touch{key}) != nil {
				refused++
				continue
			}
			l.charge(key, 1)
		}
		return refused
	}
	// 2 units a second for 30 s, 8 in second 12 and 6 in second 25: the peak second is
	// 8 of 10 (80 %); the busiest window holds seconds 12-21 or 3-12, 9 × 2 + 8 = 26 of
	// 100 (26 %), not both bursts (13 s apart).
	for s := range 30 {
		units := 2
		switch s {
		case 12:
			units = 8
		case 25:
			units = 6
		}
		if refused := writeAt(float64(s)+0.5, units); refused != 0 {
			t.Fatalf("second %d: %d of %d units refused under the limit", s, refused, units)
		}
	}
	st := l.snapshot()
	if st.Window != 10*time.Second || len(st.Keys) != 1 {
		t.Fatalf("window %s, %d keys", st.Window, len(st.Keys))
	}
	k := st.Keys[0]
	if math.Abs(k.PeakWriteShare-0.8) > 1e-9 || math.Abs(k.SustainedWriteShare-0.26) > 1e-9 || k.SustainedReadShare != 0 {
		t.Errorf("peak %.3f, sustained %.3f (read %.3f); want 0.8 and 0.26", k.PeakWriteShare, k.SustainedWriteShare, k.SustainedReadShare)
	}
	if r, _ := st.Resource("t", ""); math.Abs(r.SustainedShare-0.26) > 1e-9 {
		t.Errorf("table's sustained share %.3f, want the key's 0.26", r.SustainedShare)
	}
	// A low sustained load admits no more in one second: 25 units at once against a
	// bucket of one second (10) are refused past it.
	if refused := writeAt(45, 25); refused == 0 {
		t.Errorf("25 units in one second at 10 WCU/s: none refused")
	}
}
