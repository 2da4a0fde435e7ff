package plan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"minipush"
	"minipush/internal/metrics"
)

// roundTimeout bounds the queueing and cursor save of one round, which run detached from
// the invocation's context: a cancelled planner finishes the round it started, so
// batches it queued are always recorded in the cursor and never queued again.
const roundTimeout = 30 * time.Second

// runPlanner plans one run, round by round: a round reads one page of every unfinished
// audience segment, queues their recipients and saves the cursor.
type runPlanner struct {
	h     *Handler
	c     minipush.Campaign
	run   int
	owner string
	st    minipush.PlanState
	next  time.Time // when the campaign runs after this run (zero: never)
	log   *slog.Logger

	batches []minipush.Batch // reused across rounds
}

// page is one segment's page of recipients.
type page struct {
	ids  []string
	next string
	err  error
}

// plan streams the audience from the saved cursor. It returns true when every
// recipient is queued, false when it stopped early (deadline, cancellation, lost lease)
// with its progress saved.
func (p *runPlanner) plan(ctx context.Context) (bool, error) {
	segments := 1
	if p.c.Audience.Kind != minipush.AudienceList {
		segments = orDefault(p.h.Segments, DefaultSegments)
	}
	if len(p.st.Cursor.Segments) == 0 {
		p.st.Cursor.Segments = make([]minipush.SegmentCursor, segments)
	}
	segments = len(p.st.Cursor.Segments) // a resumed run keeps the split it started with
	pages := make([]page, segments)
	lease := orDefault(p.h.Lease, DefaultLease)
	if err := p.startCanary(ctx); err != nil { // canary.go
		return false, err
	}
	for {
		if p.allDone() {
			return true, nil
		}
		if p.h.stopping(ctx) {
			// Release the lease so the next tick continues at once.
			if err := p.release(ctx); err != nil {
				return false, err
			}
			p.log.InfoContext(ctx, "plan: stopped early, the next tick continues", "planned", p.st.Planned)
			return false, nil
		}
		if stop, err := p.operatorStopped(ctx); stop || err != nil {
			return false, err
		}
		if until, quiet := p.h.quietUntil(p.c, p.h.now()); quiet {
			// Quiet hours: queue nothing more. The run stays planning with its cursor and
			// the lease released, so the first tick after the window continues it; what
			// was queued before is deferred by send. The run records until when it is
			// held, so progress shows the wait of the part not queued (a run held from
			// its start has no queued recipient to show as deferred); the next save after
			// the window clears it.
			p.st.HeldUntil = until
			err := p.release(ctx)
			p.st.HeldUntil = time.Time{}
			if err != nil {
				return false, err
			}
			p.log.InfoContext(ctx, "plan: quiet hours; the rest of the audience is held", "until", until, "planned", p.st.Planned)
			return false, nil
		}
		// The canary's recipients are queued first and the rest held until every one of
		// them is final (canary.go).
		if released, err := p.awaitCanary(ctx, lease); errors.Is(err, errCanaryAborted) {
			return false, nil
		} else if err != nil {
			return false, err
		} else if !released {
			if err := p.release(ctx); err != nil {
				return false, err
			}
			p.log.InfoContext(ctx, "plan: canary still going; the rest of the audience is held", "canary", p.st.Cursor.Canary.Held)
			return false, nil
		}
		if err := p.read(ctx, pages); err != nil {
			if ctx.Err() != nil {
				// Killed mid-read (the deadline, a cancelled invocation): nothing of this
				// round was queued, so release the lease and let the next tick continue
				// now rather than after the lease runs out.
				if rerr := p.release(ctx); rerr != nil {
					return false, rerr
				}
				p.log.InfoContext(ctx, "plan: stopped while reading the audience, the next tick continues", "planned", p.st.Planned)
				return false, nil
			}
			return false, err
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), roundTimeout)
		err := p.queueRound(rctx, pages, lease)
		cancel()
		if minipush.ErrorCode(err) == minipush.ECONFLICT {
			p.log.WarnContext(ctx, "plan: lease lost to another planner; stopping", "planned", p.st.Planned)
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// release saves the cursor and gives up the lease, so the next planner continues at
// once. Losing the lease already is fine: someone else continues.
func (p *runPlanner) release(ctx context.Context) error {
	err := p.h.DB.SavePlanCursor(context.WithoutCancel(ctx), p.c.ID, p.run, p.owner, p.st, time.Time{})
	if err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
		return err
	}
	return nil
}

// operatorStopped re-reads the campaign before each round (one read per round of up to
// PageSize recipients a segment), so an operator's pause or cancel stops planning now
// rather than when the invocation ends. A paused run keeps its cursor and is released:
// resume puts the campaign back in the due index and the next tick continues it. A
// cancelled run is finished with the recipients queued so far (send skips them as
// cancelled), so it can still be reconciled and reported instead of planning forever.
// A run a resume marked stale (minipush.Campaign.RunStale: resumed without catch-up
// past its occurrence) is finished the same way, and the campaign rolled to its next
// occurrence: send skips what was queued as missed_occurrence.
func (p *runPlanner) operatorStopped(ctx context.Context) (bool, error) {
	c, err := p.h.DB.GetCampaign(ctx, p.c.ID)
	if err != nil && ctx.Err() != nil {
		// Cancelled between the stopping check and the read: stop as if it had been seen.
		return true, p.release(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("re-read campaign: %w", err)
	}
	switch {
	case c.Status == minipush.StatusPlanning && c.RunSeq == p.run && c.RunStale(p.run):
		err := p.h.DB.FinishRun(context.WithoutCancel(ctx), p.c.ID, p.run, p.owner, p.st.Planned, p.next, p.h.now())
		if err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
			return true, err
		}
		p.log.WarnContext(ctx, "plan: run resumed past its occurrence; closed with what was queued",
			"planned", p.st.Planned, "next", p.next)
		return true, nil
	case c.Status == minipush.StatusPlanning && c.RunSeq == p.run:
		return false, nil
	case c.Status == minipush.StatusCancelled:
		err := p.h.DB.FinishRun(context.WithoutCancel(ctx), p.c.ID, p.run, p.owner, p.st.Planned, time.Time{}, p.h.now())
		if err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
			return true, err
		}
		p.log.InfoContext(ctx, "plan: campaign cancelled while planning; run closed", "planned", p.st.Planned)
		return true, nil
	default:
		if err := p.release(ctx); err != nil {
			return true, err
		}
		p.log.InfoContext(ctx, "plan: campaign left planning; stopped", "status", string(c.Status), "planned", p.st.Planned)
		return true, nil
	}
}

func (p *runPlanner) allDone() bool {
	for _, s := range p.st.Cursor.Segments {
		if !s.Done {
			return false
		}
	}
	return true
}

// read fetches the next page of every unfinished segment, in parallel.
func (p *runPlanner) read(ctx context.Context, pages []page) error {
	size := orDefault(p.h.PageSize, DefaultPageSize)
	if l := p.canaryLimit(); l > 0 {
		size = min(size, l) // a canary round reads no more than the canary still wants
	}
	var wg sync.WaitGroup
	for i, s := range p.st.Cursor.Segments {
		pages[i] = page{}
		if s.Done {
			continue
		}
		wg.Go(func() {
			var pg page
			if p.c.Audience.Kind == minipush.AudienceList {
				pg.ids, pg.next, pg.err = p.h.DB.AudiencePage(ctx, p.c.ID, s.After, size)
			} else {
				q := minipush.AudienceScan{
					AppID: p.c.AppID, Segment: p.c.Audience.Segment, SkipOptedOut: p.c.Policy.SkipOptedOut,
					Reachable: p.c.Audience.Kind == minipush.AudienceReachable, Channel: p.c.Message.Channel(), Now: p.h.now(),
				}
				pg.ids, pg.next, pg.err = p.h.DB.ScanAudience(ctx, q, i, len(pages), s.After, size)
			}
			pages[i] = pg
		})
	}
	wg.Wait()
	for i, pg := range pages {
		if pg.err != nil {
			return fmt.Errorf("read audience segment %d: %w", i, pg.err)
		}
	}
	return nil
}

// queueRound packs the round's recipients into batches, queues them and then saves the
// cursor past them, renewing the lease. Re-running a round after a crash between the two
// re-reads the same pages into the same batch ids.
func (p *runPlanner) queueRound(ctx context.Context, pages []page, lease time.Duration) error {
	p.batches = p.batches[:0]
	size := orDefault(p.h.BatchSize, DefaultBatchSize)
	planned := 0
	for _, pg := range pages {
		ids := pg.ids
		for len(ids) > 0 {
			n, bytes := 0, 0
			for n < len(ids) && n < size && bytes+len(ids[n])+3 <= maxBatchBodyOpenIDs {
				bytes += len(ids[n]) + 3
				n++
			}
			n = max(n, 1)
			seq := p.st.NextSeq + len(p.batches)
			p.batches = append(p.batches, minipush.Batch{
				ID: minipush.RunKey(p.c.ID, p.run) + "-b" + strconv.Itoa(seq), CampaignID: p.c.ID, Run: p.run,
				AppID: p.c.AppID, OpenIDs: ids[:n:n],
			})
			planned += n
			ids = ids[n:]
		}
	}
	if len(p.batches) > 0 {
		if err := p.h.Queue.SendBatches(ctx, p.batches); err != nil {
			return fmt.Errorf("queue %d batches: %w", len(p.batches), err)
		}
	}
	for i := range pages {
		if p.st.Cursor.Segments[i].Done {
			continue
		}
		p.st.Cursor.Segments[i] = minipush.SegmentCursor{After: pages[i].next, Done: pages[i].next == ""}
	}
	p.st.NextSeq += len(p.batches)
	p.st.Planned += planned
	p.canaryQueued()
	metrics.FromContext(ctx).Add(metrics.RecipientsPlanned, float64(planned), metrics.Dim{Name: "AppId", Value: p.c.AppID})
	clear(p.batches) // drop references to the round's pages
	return p.h.DB.SavePlanCursor(ctx, p.c.ID, p.run, p.owner, p.st, p.h.now().Add(lease))
}
