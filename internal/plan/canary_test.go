package plan_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
)

// canaryCampaign is a one-off list campaign of n recipients with a 1 % canary.
func (f *fixture) canaryCampaign(tb testing.TB, id string, n int) {
	tb.Helper()
	now := f.clk.Now()
	c := minipush.Campaign{
		ID: id, AppID: appID, Name: id, Message: message(), Audience: minipush.Audience{Kind: minipush.AudienceList},
		Status: minipush.StatusDraft, CreatedAt: now, UpdatedAt: now,
		Policy: minipush.Policy{SkipOptedOut: true, CanaryPercent: 1},
	}
	if err := f.db.CreateCampaign(context.Background(), c); err != nil {
		tb.Fatal(err)
	}
	f.mustAudience(tb, id, n)
	if _, err := f.db.ScheduleCampaign(context.Background(), id, minipush.Schedule{At: now}, now); err != nil {
		tb.Fatal(err)
	}
}

// TestCanary: the planner queues the canary (1 % of 3,000, so 30) and holds the rest
// until those 30 are final; then a healthy canary releases the rest with no operator
// action, and one with 47003 above 10 % aborts the run: nothing more is queued, the
// campaign is aborted with the reason, the run carries it and finishes with the canary
// alone, and the campaign can be edited and scheduled again.
func TestCanary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		wrong     int // of the 30 canary recipients, failed data_invalid (47003)
		wantAbort bool
	}{
		{"Healthy", 3, false}, // 10 %: not above the threshold
		{"Aborts", 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			id := "canary-" + strings.ToLower(tc.name)
			const n, canary = 3000, 30
			f.canaryCampaign(t, id, n)
			h := f.handler("p1")
			h.CanaryWait = 30 * time.Second
			done := make(chan error, 1)
			go func() { done <- h.Handle(context.Background(), events.EventBridgeEvent{ID: "tick"}) }()

			d := f.drain(t, canary)
			if len(d.recipients) != canary {
				t.Fatalf("queued %d recipients before the canary was final, want the canary's %d", len(d.recipients), canary)
			}
			// The canary's sends, as send counts them.
			c := minipush.Counters{Sent: canary - tc.wrong, Failed: map[string]int{"data_invalid": tc.wrong}}
			if _, err := f.db.AddRunCounters(context.Background(), id, 1, c); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("planner did not return")
			}
			camp := f.mustCampaignNow(t, id)
			if !tc.wantAbort {
				rest := f.drain(t, n-canary)
				if len(rest.recipients) != n-canary {
					t.Fatalf("after a healthy canary %d more were queued, want %d", len(rest.recipients), n-canary)
				}
				if camp.Status != minipush.StatusSending {
					t.Fatalf("campaign %s, want sending", camp.Status)
				}
				return
			}
			if rest := f.drain(t, 0); len(rest.recipients) != 0 {
				t.Fatalf("an aborted canary let %d more recipients be queued", len(rest.recipients))
			}
			if camp.Status != minipush.StatusAborted || !strings.HasPrefix(camp.AbortedReason, minipush.ReasonCanaryAborted) {
				t.Fatalf("campaign %s (%q), want aborted with the reason", camp.Status, camp.AbortedReason)
			}
			prog := f.mustRun(t, id, 1)
			if prog.Planned != canary || prog.Status != minipush.RunSending {
				t.Fatalf("run %+v, want sending with the canary's %d planned", prog, canary)
			}
			runs, err := f.db.CampaignRuns(context.Background(), id)
			if err != nil || len(runs) != 1 || !strings.HasPrefix(runs[0].Aborted, minipush.ReasonCanaryAborted) {
				t.Fatalf("runs %+v, %v: want the abort reason on run 1", runs, err)
			}
			// Fixed and run again: the edit and the schedule are allowed.
			if _, err := f.db.UpdateDraft(context.Background(), id, func(c *minipush.Campaign) error { c.Name = "fixed"; return nil }); err != nil {
				t.Fatal(err)
			}
			again, err := f.db.ScheduleCampaign(context.Background(), id, minipush.Schedule{At: f.clk.Now()}, f.clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			if again.AbortedReason != "" {
				t.Fatalf("scheduled again with the old abort reason %q", again.AbortedReason)
			}
		})
	}
}
