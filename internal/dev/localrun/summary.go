package localrun

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"minipush/internal/metrics"
)

// Summary stands in for the CloudWatch dashboard locally. The runner hands it to every
// function as the writer of its EMF lines (metrics.WithWriter), exactly the lines
// CloudWatch Logs would extract in AWS, and it keeps running totals of the dashboard's
// metrics; Report prints a compact line of what changed every few seconds. Safe for
// concurrent use.
type Summary struct {
	mu      sync.Mutex
	partial []byte
	totals  map[string]float64 // metric name (Throttles: per Service) -> sum since start
	latency []float64          // WeChat latencies since the last report (ms)
	bad     int                // lines that were not valid EMF
	last    map[string]float64
	lastAt  time.Time
}

// NewSummary returns an empty summary.
func NewSummary() *Summary {
	return &Summary{totals: map[string]float64{}, last: map[string]float64{}, lastAt: time.Now()}
}

// Write takes EMF lines (whole or in pieces) and adds them up. A line that is not
// valid EMF is counted, never an error: it would be dropped by CloudWatch too, and the
// summary line shows the count so it does not go unnoticed.
func (s *Summary) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.add(s.partial[:i])
		s.partial = s.partial[i+1:]
	}
	return len(p), nil
}

func (s *Summary) add(line []byte) {
	pts, err := metrics.Parse(line)
	if err != nil {
		s.bad++
		return
	}
	for _, p := range pts {
		if p.Namespace != metrics.Namespace {
			continue
		}
		switch p.Name {
		case metrics.WeChatLatency:
			s.latency = append(s.latency, p.Values...)
			s.totals[p.Name] += float64(len(p.Values))
		case metrics.Throttles:
			s.totals["Throttles."+p.Dims["Service"]] += sum(p.Values)
		case metrics.Requests:
			s.totals["Requests."+p.Dims["Status"]] += sum(p.Values)
		case metrics.PlannerLag:
			s.totals[p.Name] = max(s.totals[p.Name], slices.Max(append([]float64{0}, p.Values...)))
		default:
			s.totals[p.Name] += sum(p.Values)
		}
	}
}

func sum(vs []float64) float64 {
	var t float64
	for _, v := range vs {
		t += v
	}
	return t
}

// Totals returns the running totals by metric name (Throttles as "Throttles.<Service>",
// WeChatLatency as the number of calls, PlannerLag as the largest lag seen).
func (s *Summary) Totals() map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]float64, len(s.totals))
	for k, v := range s.totals {
		out[k] = v
	}
	return out
}

// Line returns the summary of what changed since the previous Line, or "" when
// nothing did: recipients per second by outcome, WeChat latency p50/p99 of the calls
// since, throttles and the other counters' increase.
func (s *Summary) Line(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := now.Sub(s.lastAt).Seconds()
	if secs <= 0 {
		secs = 1
	}
	delta := func(k string) float64 { return s.totals[k] - s.last[k] }
	changed := s.bad > 0 && s.bad != int(s.last["_bad"])
	for k := range s.totals {
		if delta(k) != 0 {
			changed = true
		}
	}
	if !changed {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "metrics %s  sent %.1f/s  failed %.1f/s  unknown %.1f/s  no_grant %.1f/s  skipped %.1f/s",
		now.Format("15:04:05"), delta(metrics.Sent)/secs, delta(metrics.Failed)/secs, delta(metrics.Unknown)/secs,
		delta(metrics.NoGrant)/secs, delta(metrics.Skipped)/secs)
	if len(s.latency) > 0 {
		slices.Sort(s.latency)
		fmt.Fprintf(&b, "  wechat p50 %sms p99 %sms (%d calls)", num(percentile(s.latency, 0.50)), num(percentile(s.latency, 0.99)), len(s.latency))
	}
	var throttles []string
	for k := range s.totals {
		if svc, ok := strings.CutPrefix(k, "Throttles."); ok && delta(k) > 0 {
			throttles = append(throttles, fmt.Sprintf("%s %.0f", svc, delta(k)))
		}
	}
	if len(throttles) > 0 {
		slices.Sort(throttles)
		fmt.Fprintf(&b, "  throttles %s", strings.Join(throttles, ", "))
	}
	var answers []string
	for _, class := range []string{"2xx", "4xx", "5xx"} {
		if d := delta("Requests." + class); d > 0 {
			answers = append(answers, fmt.Sprintf("%s %.0f", class, d))
		}
	}
	if len(answers) > 0 {
		fmt.Fprintf(&b, "  api %s", strings.Join(answers, ", "))
	}
	for _, k := range []string{metrics.RecipientsPlanned, metrics.GrantsHarvested, metrics.GrantsExpired, metrics.DeadLettered, metrics.PushEvents} {
		if d := delta(k); d > 0 {
			fmt.Fprintf(&b, "  %s +%.0f", k, d)
		}
	}
	if d := delta(metrics.PlannerLag); d > 0 {
		fmt.Fprintf(&b, "  planner lag max %.1fs", s.totals[metrics.PlannerLag])
	}
	if s.bad > 0 {
		fmt.Fprintf(&b, "  invalid EMF lines %d", s.bad)
	}
	for k, v := range s.totals {
		s.last[k] = v
	}
	s.last["_bad"] = float64(s.bad)
	s.latency = s.latency[:0]
	s.lastAt = now
	return b.String()
}

// num prints a latency: whole milliseconds, or one decimal under 10 ms.
func num(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, q float64) float64 {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Report writes Line to w every interval while something changes, until ctx ends.
func (s *Summary) Report(ctx context.Context, w io.Writer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if l := s.Line(now); l != "" {
				fmt.Fprintln(w, l)
			}
		}
	}
}
