// Package plan turns due campaigns into SQS send batches. Each tick it finds the due
// campaigns with one Query of the ByDue index, claims each run with a lease, streams
// the audience page by page into batches of about a hundred recipients, and saves a
// cursor after every page's batches are queued, so a planner that stops (deadline,
// crash) is continued by the next tick without planning anyone twice.
package plan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/metrics"
	"minipush/internal/queue"
	"minipush/internal/schedule"
)

// Store is the storage the planner uses (implemented by *dynamo.DB). Conflicts are
// minipush.ECONFLICT, missing items minipush.ENOTFOUND.
type Store interface {
	// RunStore reads runs and campaigns and finishes runs (minipush.Reconcile).
	minipush.RunStore
	DueCampaigns(ctx context.Context, now time.Time, limit int) ([]minipush.DueCampaign, error)
	BeginRun(ctx context.Context, id string, now time.Time) (int, error)
	ClaimRun(ctx context.Context, campaignID string, run int, appID, owner string, occurrence, now, leaseUntil time.Time) (minipush.PlanState, error)
	SavePlanCursor(ctx context.Context, campaignID string, run int, owner string, st minipush.PlanState, leaseUntil time.Time) error
	FinishRun(ctx context.Context, campaignID string, run int, owner string, planned int, next, now time.Time) error
	RollCampaign(ctx context.Context, id string, run int, next, now time.Time) error
	SkipOccurrence(ctx context.Context, id string, dueAt, next, now time.Time) error
	AudiencePage(ctx context.Context, campaignID, startAfter string, limit int) ([]string, string, error)
	ScanAudience(ctx context.Context, q minipush.AudienceScan, segment, segments int, after string, limit int) ([]string, string, error)
	StalledRuns(ctx context.Context, quietSince time.Time, limit int) ([]minipush.RunRef, error)
}

// Queue takes send batches (implemented by *queue.Queue).
type Queue interface {
	SendBatches(ctx context.Context, batches []minipush.Batch) error
}

// Defaults of the Handler's tunables.
const (
	DefaultBatchSize    = 100
	DefaultSegments     = 4
	DefaultPageSize     = 1000
	DefaultLease        = 2 * time.Minute
	DefaultMargin       = 20 * time.Second
	DefaultDueLimit     = 100
	DefaultQuiet        = 3 * time.Minute
	DefaultStalledLimit = 25
	maxBatchBodyOpenIDs = queue.MaxBytes - 1024 // room for the batch's other fields
)

// Handler plans due campaigns on each schedule tick. Zero tunables take their defaults.
type Handler struct {
	DB      Store
	Queue   Queue
	Log     *slog.Logger
	Metrics *metrics.Emitter // one EMF flush per tick; nil emits nothing
	// Now is the clock of due times and leases.
	Now func() time.Time
	// Owner names one invocation as a lease holder; the default is random per call.
	Owner func() string

	BatchSize int           // recipients per SQS message
	Segments  int           // parallel scan segments of segment and reachable audiences
	PageSize  int           // items read per page (per segment)
	Lease     time.Duration // how long a claim lasts without renewal
	Margin    time.Duration // stop this long before the invocation's deadline
	DueLimit  int           // campaigns planned per tick at most
	// Quiet is how long a sending run may show no progress before the planner recounts
	// it from its deliveries (minipush.Reconcile); StalledLimit bounds those recounts
	// per tick.
	Quiet        time.Duration
	StalledLimit int
	// CanaryWait bounds one tick's wait for a run's canary to be final, CanaryPoll is
	// how often it looks (canary.go); defaults DefaultCanaryWait, DefaultCanaryPoll.
	CanaryWait time.Duration
	CanaryPoll time.Duration
	// Apps are the served apps by appId (the WeChat secret): their quiet hours, in
	// which the planner queues nothing of a marketing campaign. An app missing here has
	// none.
	Apps map[string]minipush.App
	// Events enqueues the app's webhook events (a run started, or done here); nil sends
	// none. It never fails or blocks the planner (webhook.Publisher.Publish).
	Events Publisher
}

// Publisher enqueues a webhook event without failing (*webhook.Publisher).
type Publisher interface {
	Publish(ctx context.Context, ev minipush.WebhookEvent)
}

// publish enqueues ev if a publisher is set.
func (h *Handler) publish(ctx context.Context, ev minipush.WebhookEvent) {
	if h.Events != nil {
		h.Events.Publish(ctx, ev)
	}
}

// quietUntil reports whether c's quiet hours hold at now, and until when.
func (h *Handler) quietUntil(c minipush.Campaign, now time.Time) (time.Time, bool) {
	a, ok := h.Apps[c.AppID]
	if !ok {
		return time.Time{}, false
	}
	return a.Quiet(c.Policy).Until(now, a.Location())
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) owner() string {
	if h.Owner != nil {
		return h.Owner()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Handler) log() *slog.Logger { return logs.Or(h.Log) }

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Handle runs one tick: it plans every due campaign until they are all planned or the
// deadline nears. A campaign that fails is logged and the others still planned; the
// returned error joins the failures.
func (h *Handler) Handle(ctx context.Context, ev events.EventBridgeEvent) error {
	owner := h.owner()
	log := h.log().With("event", ev.ID, "owner", owner)
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	ctx, rec := h.Metrics.Start(ctx)
	defer func() {
		if err := rec.Flush(); err != nil {
			log.WarnContext(ctx, "plan: metrics lost", "err", err.Error())
		}
	}()
	due, err := h.DB.DueCampaigns(ctx, h.now(), orDefault(h.DueLimit, DefaultDueLimit))
	if err != nil {
		log.ErrorContext(ctx, "plan: due campaigns", "err", err.Error())
		return fmt.Errorf("plan: %w", err)
	}
	var errs []error
	for _, c := range due {
		if h.stopping(ctx) {
			log.InfoContext(ctx, "plan: deadline near, the next tick continues", "campaign", c.ID)
			break
		}
		if err := h.planCampaign(ctx, c, owner, log); err != nil {
			log.ErrorContext(ctx, "plan: campaign", "campaign", c.ID, "run", c.RunSeq, "err", err.Error())
			errs = append(errs, err)
		}
	}
	if err := h.reconcileStalled(ctx, log); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reconcileStalled recounts the sending runs that went quiet and finishes those whose
// recipients are all final. Send finishes a run when its counters say so; this catches
// the runs whose last counter update was lost (a sender died between its writes) or
// whose sends all ended before the planner marked the run sending.
func (h *Handler) reconcileStalled(ctx context.Context, log *slog.Logger) error {
	if h.stopping(ctx) {
		return nil
	}
	runs, err := h.DB.StalledRuns(ctx, h.now().Add(-orDefault(h.Quiet, DefaultQuiet)), orDefault(h.StalledLimit, DefaultStalledLimit))
	if err != nil {
		log.ErrorContext(ctx, "plan: stalled runs", "err", err.Error())
		return fmt.Errorf("plan: %w", err)
	}
	var errs []error
	for _, r := range runs {
		if h.stopping(ctx) {
			break
		}
		c, done, err := minipush.Reconcile(ctx, h.DB, r.CampaignID, r.Run)
		if err != nil {
			log.ErrorContext(ctx, "plan: reconcile quiet run", "campaign", r.CampaignID, "run", r.Run, "err", err.Error())
			errs = append(errs, fmt.Errorf("plan: reconcile %s run %d: %w", r.CampaignID, r.Run, err))
			continue
		}
		if done && h.Events != nil {
			// The event names the app; a quiet run is rare, so one more read.
			if camp, gerr := h.DB.GetCampaign(ctx, r.CampaignID); gerr == nil {
				ev := minipush.RunEvent(minipush.EventRunDone, camp, r.Run, h.now())
				ev.Counters = &c
				h.publish(ctx, ev)
			}
		}
		log.InfoContext(ctx, "plan: reconciled quiet run", "campaign", r.CampaignID, "run", r.Run, "done", done,
			"planned", c.Planned, "final", c.Final())
	}
	return errors.Join(errs...)
}

// stopping reports whether the invocation should stop starting work: its context ended
// or its deadline is within the margin.
func (h *Handler) stopping(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < orDefault(h.Margin, DefaultMargin)
}

// planCampaign plans (or continues planning) the current run of one due campaign.
func (h *Handler) planCampaign(ctx context.Context, c minipush.DueCampaign, owner string, log *slog.Logger) error {
	now := h.now()
	var run int
	switch c.Status {
	case minipush.StatusScheduled:
		if c.Schedule.Cron != "" && schedule.Missed(c.DueAt, now) {
			return h.skipMissed(ctx, c, now, log)
		}
		n, err := h.DB.BeginRun(ctx, c.ID, now)
		switch {
		case err == nil:
			run = n
			// Only the planner whose BeginRun landed reports the start.
			h.publish(ctx, minipush.RunEvent(minipush.EventRunStarted, minipush.Campaign{ID: c.ID, AppID: c.AppID}, run, now))
			// How late the run began after it was due: a planner that is down, busy or
			// throttled shows here before operators notice late messages.
			metrics.FromContext(ctx).Observe(metrics.PlannerLag, max(now.Sub(c.DueAt), 0).Seconds(),
				metrics.Dim{Name: "AppId", Value: c.AppID})
		case minipush.ErrorCode(err) == minipush.ECONFLICT:
			// Another planner began it first (or an operator moved it): look again.
			cur, gerr := h.DB.GetCampaign(ctx, c.ID)
			if gerr != nil {
				return fmt.Errorf("plan: campaign %s: %w", c.ID, gerr)
			}
			if cur.Status != minipush.StatusPlanning {
				return nil
			}
			run = cur.RunSeq
		default:
			return fmt.Errorf("plan: campaign %s: %w", c.ID, err)
		}
	case minipush.StatusPlanning:
		run = c.RunSeq
		if run < 1 {
			return fmt.Errorf("plan: campaign %s is planning with no run started (runSeq %d)", c.ID, run)
		}
	default:
		// Paused, cancelled and done campaigns leave the index; anything else is not ours.
		return nil
	}
	log = log.With("campaign", c.ID, "run", run)
	lease := orDefault(h.Lease, DefaultLease)
	// c.DueAt is the occurrence the run is for: a planning campaign keeps it until the
	// run is rolled.
	st, err := h.DB.ClaimRun(ctx, c.ID, run, c.AppID, owner, c.DueAt, now, now.Add(lease))
	if minipush.ErrorCode(err) == minipush.ECONFLICT {
		log.InfoContext(ctx, "plan: run held by another planner")
		return nil
	}
	if err != nil {
		return fmt.Errorf("plan: campaign %s run %d: %w", c.ID, run, err)
	}
	next, err := nextRun(c.Campaign, c.DueAt, now)
	if err != nil {
		return fmt.Errorf("plan: campaign %s run %d: %w", c.ID, run, err)
	}
	if st.Status != minipush.RunPlanning {
		// Planned already; its planner stopped before rolling the campaign.
		return h.DB.RollCampaign(ctx, c.ID, run, next, now)
	}
	p := &runPlanner{h: h, c: c.Campaign, run: run, owner: owner, st: st, next: next, log: log}
	done, err := p.plan(ctx)
	if err != nil {
		return fmt.Errorf("plan: campaign %s run %d: %w", c.ID, run, err)
	}
	if !done {
		return nil
	}
	if err := h.DB.FinishRun(ctx, c.ID, run, owner, p.st.Planned, next, h.now()); err != nil {
		if minipush.ErrorCode(err) == minipush.ECONFLICT {
			log.WarnContext(ctx, "plan: lease lost before finishing; the new holder finishes")
			return nil
		}
		return fmt.Errorf("plan: campaign %s run %d: %w", c.ID, run, err)
	}
	log.InfoContext(ctx, "plan: run planned", "planned", p.st.Planned, "batches", p.st.NextSeq, "next", next)
	// Senders that finished every recipient while the run was still planning could not
	// complete it (planned was not final yet); their counters say so, and one read
	// finishes it now rather than after the quiet period.
	prog, err := h.DB.RunCounters(ctx, c.ID, run)
	if err != nil {
		return fmt.Errorf("plan: campaign %s run %d: %w", c.ID, run, err)
	}
	if prog.Complete() && prog.Status == minipush.RunSending {
		sum, done, err := minipush.Reconcile(ctx, h.DB, c.ID, run)
		if err != nil {
			return fmt.Errorf("plan: campaign %s run %d: %w", c.ID, run, err)
		}
		if done {
			ev := minipush.RunEvent(minipush.EventRunDone, minipush.Campaign{ID: c.ID, AppID: c.AppID}, run, h.now())
			ev.Counters = &sum
			h.publish(ctx, ev)
		}
	}
	return nil
}

// skipMissed moves a recurring campaign whose occurrence is more than
// schedule.LateTolerance overdue (the planner was down or throttled) to its next
// occurrence, so a daily 10:00 reminder is not sent in the small hours; the operator
// can still run it at once with resume's catchUp or a new schedule. A one-off is
// never skipped: its occurrence is the only one.
func (h *Handler) skipMissed(ctx context.Context, c minipush.DueCampaign, now time.Time, log *slog.Logger) error {
	next, err := nextRun(c.Campaign, c.DueAt, now)
	if err != nil {
		return fmt.Errorf("plan: campaign %s: %w", c.ID, err)
	}
	if next.IsZero() {
		return fmt.Errorf("plan: campaign %s: cron %q has no next occurrence", c.ID, c.Schedule.Cron)
	}
	err = h.DB.SkipOccurrence(ctx, c.ID, c.DueAt, next, now)
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		return nil // another planner or the operator moved it first
	case err != nil:
		return fmt.Errorf("plan: campaign %s: %w", c.ID, err)
	}
	log.WarnContext(ctx, "plan: occurrence missed by more than the tolerance; skipped to the next",
		"campaign", c.ID, "due", c.DueAt, "late", now.Sub(c.DueAt).Round(time.Second), "next", next)
	return nil
}

// nextRun is when a campaign runs after the run due at dueAt: zero for a one-off or a
// schedule that never fires again. A recurring campaign that fell behind (the planner was
// down) skips the occurrences already past rather than sending them in a burst.
func nextRun(c minipush.Campaign, dueAt, now time.Time) (time.Time, error) {
	if c.Schedule.Cron == "" {
		return time.Time{}, nil
	}
	after := now
	if dueAt.After(now) {
		after = dueAt
	}
	next, ok, err := schedule.Next(c.Schedule, after)
	if err != nil || !ok {
		return time.Time{}, err
	}
	return next, nil
}
