package plan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"minipush"
)

// Canary tunables' defaults.
const (
	// DefaultCanaryWait bounds how long one tick waits for a canary to become final
	// before releasing the run to the next tick (the tick plans other campaigns too).
	DefaultCanaryWait = 20 * time.Second
	// DefaultCanaryPoll is how often a waiting planner reads the run's counters (one
	// strongly consistent GetItem each): a healthy canary is released within this of
	// its last recipient's counter update.
	DefaultCanaryPoll = 200 * time.Millisecond
)

// canaryStore is what the canary needs beyond the planner's Store.
type canaryStore interface {
	AbortRun(ctx context.Context, campaignID string, run int, owner string, planned int, reason string, now time.Time) error
	AudienceSize(ctx context.Context, campaignID string) (int, error)
}

// canaryLimit is the page limit of the next round while the canary is being queued:
// the recipients the canary still wants, spread over the unfinished segments, so the
// canary is queued in about its size and the cursor stays exact (no page is cut).
// 0 when the canary is not being queued.
func (p *runPlanner) canaryLimit() int {
	cs := p.st.Cursor.Canary
	if cs == nil || cs.Released || cs.Held > 0 {
		return 0
	}
	open := 0
	for _, s := range p.st.Cursor.Segments {
		if !s.Done {
			open++
		}
	}
	want := cs.Size - p.st.Planned
	if open == 0 || want <= 0 {
		return 0
	}
	return max(1, (want+open-1)/open)
}

// startCanary decides the run's canary once, before anything is queued: its size from
// the audience's (a count of a list audience's keys; a segment or reachable audience is
// counted by streaming it once, the price of sizing its canary), or none when the
// policy turns it off or the canary would be the whole audience.
func (p *runPlanner) startCanary(ctx context.Context) error {
	if p.st.Cursor.Canary != nil {
		return nil
	}
	cs := &minipush.CanaryState{Released: true}
	if p.st.Planned == 0 && p.c.Policy.CanarySize(1_000_000) > 0 {
		n, err := p.audienceSize(ctx)
		if err != nil {
			return fmt.Errorf("size canary: %w", err)
		}
		if size := p.c.Policy.CanarySize(n); size > 0 && size < n {
			cs = &minipush.CanaryState{Size: size}
		}
	}
	p.st.Cursor.Canary = cs
	return nil
}

func (p *runPlanner) audienceSize(ctx context.Context) (int, error) {
	cs, ok := p.h.DB.(canaryStore)
	if p.c.Audience.Kind == minipush.AudienceList {
		if !ok {
			return 0, errors.New("store cannot count an audience")
		}
		return cs.AudienceSize(ctx, p.c.ID)
	}
	q := minipush.AudienceScan{
		AppID: p.c.AppID, Segment: p.c.Audience.Segment, SkipOptedOut: p.c.Policy.SkipOptedOut,
		Reachable: p.c.Audience.Kind == minipush.AudienceReachable, Channel: p.c.Message.Channel(), Now: p.h.now(),
	}
	n := 0
	for after := ""; ; {
		ids, next, err := p.h.DB.ScanAudience(ctx, q, 0, 1, after, 10*orDefault(p.h.PageSize, DefaultPageSize))
		if err != nil {
			return 0, err
		}
		n += len(ids)
		if next == "" {
			return n, nil
		}
		after = next
	}
}

// canaryQueued marks the canary queued once the round that completed it is saved: the
// rest of the audience is held from now on.
func (p *runPlanner) canaryQueued() {
	cs := p.st.Cursor.Canary
	if cs == nil || cs.Released || cs.Held > 0 {
		return
	}
	if p.allDone() {
		cs.Released = true // the audience ended inside the canary: nothing to hold
		return
	}
	if p.st.Planned >= cs.Size {
		cs.Held = p.st.Planned
	}
}

// errCanaryAborted stops planning a run its canary aborted.
var errCanaryAborted = errors.New("canary aborted the run")

// awaitCanary waits (polling the run's counters, within DefaultCanaryWait and the
// invocation's margin) until every held canary recipient is final, then either
// releases the rest of the audience (saving that in the cursor) or aborts the run. It
// reports false when the canary is still going: the caller releases the lease and a
// later tick looks again.
func (p *runPlanner) awaitCanary(ctx context.Context, lease time.Duration) (bool, error) {
	cs := p.st.Cursor.Canary
	if cs == nil || cs.Released || cs.Held == 0 {
		return true, nil
	}
	wait := time.NewTimer(orDefault(p.h.CanaryWait, DefaultCanaryWait))
	defer wait.Stop()
	tick := time.NewTicker(orDefault(p.h.CanaryPoll, DefaultCanaryPoll))
	defer tick.Stop()
	var counters minipush.Counters
	for {
		prog, err := p.h.DB.RunCounters(ctx, p.c.ID, p.run)
		if err != nil {
			return false, fmt.Errorf("canary counters: %w", err)
		}
		counters = prog.Counters
		if counters.Final() >= cs.Held {
			break
		}
		select {
		case <-tick.C:
			if !p.h.stopping(ctx) {
				continue
			}
		case <-wait.C:
		case <-ctx.Done():
		}
		// A counter update a sender lost would hold the run for good: recount the
		// deliveries (one Query of the canary's) before giving the tick up.
		if c, err := p.h.DB.CountOutcomes(ctx, p.c.ID, p.run); err == nil && c.Final() >= cs.Held {
			counters = c
			break
		}
		return false, nil
	}
	abort, bad := p.c.Policy.CanaryVerdict(counters)
	if !abort {
		cs.Released = true
		p.log.InfoContext(ctx, "plan: canary healthy; the rest of the audience is queued",
			"canary", cs.Held, "message_wrong", bad, "final", counters.Final())
		return true, p.h.DB.SavePlanCursor(ctx, p.c.ID, p.run, p.owner, p.st, p.h.now().Add(lease))
	}
	reason := fmt.Sprintf("%s: %d of %d canary recipients failed because the message is wrong (above %d%%): %v",
		minipush.ReasonCanaryAborted, bad, counters.Final(), abortPercent(p.c.Policy), wrongCounts(counters))
	st, ok := p.h.DB.(canaryStore)
	if !ok {
		return false, errors.New("store cannot abort a run")
	}
	if err := st.AbortRun(ctx, p.c.ID, p.run, p.owner, cs.Held, reason, p.h.now()); err != nil {
		return false, fmt.Errorf("abort run: %w", err)
	}
	p.log.WarnContext(ctx, "plan: canary aborted the run; nothing more is queued",
		"canary", cs.Held, "message_wrong", bad, "final", counters.Final())
	ev := minipush.RunEvent(minipush.EventRunAborted, p.c, p.run, p.h.now())
	ev.Reason = reason
	p.h.publish(ctx, ev)
	return false, errCanaryAborted
}

func abortPercent(p minipush.Policy) int {
	if p.CanaryAbortPercent > 0 {
		return p.CanaryAbortPercent
	}
	return minipush.DefaultCanaryAbortPercent
}

// wrongCounts are the canary's message-is-wrong failures by reason, for the reason text.
func wrongCounts(c minipush.Counters) map[string]int {
	out := map[string]int{}
	for _, r := range minipush.MessageWrongReasons {
		if n := c.Failed[r]; n > 0 {
			out[r] = n
		}
	}
	return out
}
