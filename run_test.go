package minipush_test

import (
	"testing"

	"minipush"
)

// TestRunProgressComplete: a run is complete only once planning is done and every
// planned recipient is final; a failure of any reason counts as final.
func TestRunProgressComplete(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		p        minipush.RunProgress
		planning bool // PlanningDone
		complete bool
	}{
		{"StillPlanning", minipush.RunProgress{Status: minipush.RunPlanning, Planned: 2, Counters: minipush.Counters{Sent: 2}}, false, false},
		{"SendingShort", minipush.RunProgress{Status: minipush.RunSending, Planned: 3, Counters: minipush.Counters{Sent: 1, Skipped: 1}}, true, false},
		{"SendingAllFinal", minipush.RunProgress{Status: minipush.RunSending, Planned: 4,
			Counters: minipush.Counters{Sent: 1, NoGrant: 1, Unknown: 1, Failed: map[string]int{"unreachable": 1}}}, true, true},
		{"Done", minipush.RunProgress{Status: minipush.RunDone, Planned: 1, Counters: minipush.Counters{Sent: 1}}, true, true},
		{"Nobody", minipush.RunProgress{Status: minipush.RunSending}, true, true},
		{"Unknown status", minipush.RunProgress{Status: "other", Planned: 0}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.PlanningDone(); got != tc.planning {
				t.Errorf("PlanningDone() = %v, want %v", got, tc.planning)
			}
			if got := tc.p.Complete(); got != tc.complete {
				t.Errorf("Complete() = %v, want %v", got, tc.complete)
			}
		})
	}
}
