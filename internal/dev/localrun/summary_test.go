package localrun

import (
	"strings"
	"testing"
	"time"

	"minipush/internal/metrics"
)

// TestSummary feeds the summary the EMF lines two functions' emitters write and checks
// the live line: rates per second over the interval, WeChat p50/p99 of the interval's
// calls, throttles by service, and nothing printed while nothing changes.
func TestSummary(t *testing.T) {
	t.Parallel()
	s := NewSummary()
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s.lastAt = start
	send := metrics.New(s, "minipush-SendFunction", nil)
	_, rec := send.Start(t.Context())
	app := metrics.Dim{Name: "AppId", Value: "wx1"}
	rec.Add(metrics.Sent, 40, app)
	rec.Add(metrics.Failed, 10, app, metrics.Dim{Name: "Reason", Value: "user_refused"})
	for i := 1; i <= 100; i++ {
		rec.Observe(metrics.WeChatLatency, float64(i), metrics.Dim{Name: "API", Value: "cgi-bin/message/subscribe/send"})
	}
	rec.Add(metrics.Throttles, 3, metrics.Dim{Name: "Service", Value: "DynamoDB"})
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_, prec := metrics.New(s, "minipush-PlanFunction", nil).Start(t.Context())
	prec.Add(metrics.RecipientsPlanned, 50, app)
	prec.Observe(metrics.PlannerLag, 2.5, app)
	if err := prec.Flush(); err != nil {
		t.Fatal(err)
	}
	_, crec := metrics.New(s, "minipush-CollectFunction", nil).Start(t.Context())
	crec.Add(metrics.Requests, 7, metrics.Dim{Name: "Status", Value: "2xx"})
	crec.Add(metrics.Requests, 2, metrics.Dim{Name: "Status", Value: "4xx"})
	crec.Observe(metrics.WeChatLatency, 0.4, metrics.Dim{Name: "API", Value: "sns/jscode2session"})
	if err := crec.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("{\"level\":\"INFO\"}\n")); err != nil { // not EMF: counted, not fatal
		t.Fatal(err)
	}

	line := s.Line(start.Add(10 * time.Second))
	for _, want := range []string{"sent 4.0/s", "failed 1.0/s", "wechat p50 50ms p99 99ms (101 calls)", "api 2xx 7, 4xx 2", "throttles DynamoDB 3", "RecipientsPlanned +50", "planner lag max 2.5s", "invalid EMF lines 1"} {
		if !strings.Contains(line, want) {
			t.Errorf("summary %q lacks %q", line, want)
		}
	}
	if l := s.Line(start.Add(20 * time.Second)); l != "" {
		t.Errorf("nothing changed, yet the summary printed %q", l)
	}
	if got := s.Totals()[metrics.Sent]; got != 40 {
		t.Errorf("total sent %v, want 40", got)
	}
}
