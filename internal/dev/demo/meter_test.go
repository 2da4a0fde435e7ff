package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMeterLine(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		n       int
		elapsed time.Duration
		note    string
		want    string
	}{
		{"Start", 0, 0, "", "sending  [..............................] 0/2000 recipients  0/s  ETA -"},
		{"Half", 1000, 2 * time.Second, "run sending: sent 1000", "sending  [###############...............] 1000/2000 recipients  500/s  ETA 2s  run sending: sent 1000"},
		{"Done", 2000, 4 * time.Second, "", "sending  [##############################] 2000/2000 recipients  500/s  in 4.0s"},
		{"OverTotal", 2001, 4 * time.Second, "", "sending  [##############################] 2001/2000 recipients  500/s  in 4.0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMeter(nil, false, "sending", "recipients", 2000)
			m.start = t0
			m.n, m.note = tt.n, tt.note
			if got := m.line(t0.Add(tt.elapsed)); got != tt.want {
				t.Errorf("line:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Off a terminal (make demo piped into a file or a CI log) the meter writes plain lines,
// at most one a second and only on change, so 2,000 seeded users are not 2,000 lines.
func TestMeterPlainLinesThrottled(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	m := newMeter(&out, false, "seeding", "users", 100)
	m.start, m.now = now, func() time.Time { return now }
	for range 100 {
		now = now.Add(25 * time.Millisecond) // 100 users in 2.5 s
		m.add(1)
	}
	m.finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || len(lines) > 4 {
		t.Fatalf("want 2-4 lines for 2.5 s, got %d:\n%s", len(lines), out.String())
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "100/100 users") || strings.Contains(last, "\r") {
		t.Errorf("last line %q: want the final count, no carriage return", last)
	}
}

// On a terminal the meter redraws one line in place: every draw starts with a carriage
// return and clears the line, and finish ends it with a newline.
func TestMeterTerminalRedraws(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	m := newMeter(&out, true, "sending", "recipients", 10)
	m.start, m.now = now, func() time.Time { return now }
	for range 10 {
		now = now.Add(200 * time.Millisecond)
		m.set(m.n+1, "")
	}
	m.finish()
	s := out.String()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("want one line redrawn in place, got %q", s)
	}
	if !strings.HasPrefix(s, "\r\033[K") || !strings.Contains(s, "10/10 recipients") {
		t.Errorf("want redraws and the final count, got %q", s)
	}
}
