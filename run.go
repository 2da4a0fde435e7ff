package minipush

import (
	"context"
	"strconv"
	"time"
)

// RunStatus is where one run of a campaign is. The planner writes planning while it
// streams the audience and sending once every batch is queued, so the planned count is
// final from sending on; a run is done once every planned recipient is final.
type RunStatus string

// Run statuses.
const (
	RunPlanning RunStatus = "planning"
	RunSending  RunStatus = "sending"
	RunDone     RunStatus = "done"
)

// RunRef names one run of a campaign.
type RunRef struct {
	CampaignID string
	Run        int
}

// Run is one run of a campaign as the operator sees it.
type Run struct {
	N        int       `json:"run"`
	Status   RunStatus `json:"status"`
	Counters Counters  `json:"counters"`
	// Occurrence is the due time the planner started the run for (zero for runs
	// started before it was recorded): how late its messages would arrive now.
	Occurrence time.Time `json:"occurrence,omitzero"`
	// Deferred is how many planned recipients wait for the end of quiet hours
	// (DeferredUntil): inside the window every pending recipient of a marketing
	// campaign waits. Set by the progress route, not stored.
	Deferred      int       `json:"deferred,omitempty"`
	DeferredUntil time.Time `json:"deferredUntil,omitzero"`
	// Aborted is why the run's canary aborted it ("" when it did not): nothing
	// beyond the canary was queued.
	Aborted string `json:"aborted,omitempty"`
	// HeldUntil is when the planner, which stopped queueing the run for quiet hours
	// (PlanState.HeldUntil), continues with the part of the audience it has not queued
	// (beyond Counters.Planned). The progress route shows it while it is ahead and the
	// run still planning; a run held from its start has planned nothing yet.
	HeldUntil time.Time `json:"heldUntil,omitzero"`
}

// RunProgress is a run's status, planned count and counters, as a counter update
// reports them back, and the occurrence the run was started for (see Run).
type RunProgress struct {
	Status     RunStatus
	Planned    int
	Counters   Counters
	Occurrence time.Time
}

// PlanningDone reports whether the planner queued every batch of the run.
func (p RunProgress) PlanningDone() bool { return p.Status == RunSending || p.Status == RunDone }

// Complete reports whether every planned recipient reached a final state: the rule that
// ends a run. Before planning is done the planned count may still grow, so nothing is
// complete then.
func (p RunProgress) Complete() bool {
	return p.PlanningDone() && p.Counters.Final() >= p.Planned
}

// DueCampaign is a campaign waiting for a run, and since when it is due.
type DueCampaign struct {
	Campaign
	DueAt time.Time
}

// PlanState is a run as the planner sees it: where it stopped, and how much it queued.
type PlanState struct {
	Status  RunStatus
	Cursor  PlanCursor
	NextSeq int // the sequence number of the next batch
	Planned int // recipients queued so far
	// HeldUntil, when not zero, is the end of the quiet hours the planner stopped
	// queueing for; a save with it zero clears it (the run is being queued again).
	HeldUntil time.Time
}

// PlanCursor is where the planner stopped in each audience segment, and where the
// run's canary is (nil before the planner decided it).
type PlanCursor struct {
	Segments []SegmentCursor `json:"segments"`
	Canary   *CanaryState    `json:"canary,omitempty"`
}

// SegmentCursor is one segment's position: the key to continue after, or Done.
type SegmentCursor struct {
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// RunStore is the storage Reconcile reads and writes (implemented by *dynamo.DB).
// RunCounters and GetCampaign return ENOTFOUND for a missing item; MarkRunDone,
// TouchRun and MarkCampaignDone treat a write someone else already made (a concurrent
// Reconcile, an operator's cancel) as done, not as an error.
type RunStore interface {
	// RunCounters reads the run's progress, strongly consistent.
	RunCounters(ctx context.Context, campaignID string, run int) (RunProgress, error)
	// CountOutcomes recounts the run's final deliveries: the exact summary, whatever
	// counter update was lost.
	CountOutcomes(ctx context.Context, campaignID string, run int) (Counters, error)
	// TouchRun records activity on a sending run, so a run that stays short is
	// recounted once per quiet period rather than on every planner tick.
	TouchRun(ctx context.Context, campaignID string, run int) error
	// MarkRunDone sets the run done with the recount as its counters, once; counted is
	// what the counters said before, so a failure reason the recount no longer finds
	// goes to zero.
	MarkRunDone(ctx context.Context, campaignID string, run int, counted, recount Counters) error
	GetCampaign(ctx context.Context, id string) (Campaign, error)
	// MarkCampaignDone finishes a one-off campaign whose run is done, unless an
	// operator cancelled it meanwhile.
	MarkCampaignDone(ctx context.Context, id string) error
}

// Reconcile recounts a run from its delivery records and, when planning has finished
// and every planned recipient is final, marks the run done with that exact summary, and
// a one-off campaign with it. It is idempotent and safe to call concurrently: send calls
// it when its counters say the run is complete, the dead-letter handler likewise, and
// the planner for runs that went quiet (a lost counter update) or that finished while
// still being planned. It returns the recount and whether the run is done.
func Reconcile(ctx context.Context, s RunStore, campaignID string, run int) (Counters, bool, error) {
	prog, err := s.RunCounters(ctx, campaignID, run)
	if err != nil {
		return Counters{}, false, err
	}
	// Decide what can be decided without the recount (a Query over the whole run): a
	// done run holds its recount already, and a run still being planned cannot finish.
	if prog.Status == RunDone {
		return prog.Counters, true, nil
	}
	if !prog.PlanningDone() {
		return prog.Counters, false, nil
	}
	c, err := s.CountOutcomes(ctx, campaignID, run)
	if err != nil {
		return Counters{}, false, err
	}
	c.Planned = prog.Planned
	if !(RunProgress{Status: prog.Status, Planned: prog.Planned, Counters: c}).Complete() {
		// Still short (pending recipients wait for a retry, a campaign is paused): the
		// recount counts as activity, so a quiet run is recounted once per idle period,
		// not on every planner tick.
		return c, false, s.TouchRun(ctx, campaignID, run)
	}
	if err := s.MarkRunDone(ctx, campaignID, run, prog.Counters, c); err != nil {
		return c, false, err
	}
	camp, err := s.GetCampaign(ctx, campaignID)
	if err != nil {
		return c, true, err
	}
	if camp.Schedule.Cron == "" {
		if err := s.MarkCampaignDone(ctx, campaignID); err != nil {
			return c, true, err
		}
	}
	return c, true, nil
}

// Counters summarise a run. Failed is broken down by reason.
type Counters struct {
	Planned int            `json:"planned"`
	Sent    int            `json:"sent"`
	Failed  map[string]int `json:"failed,omitempty"`
	NoGrant int            `json:"noGrant"`
	Skipped int            `json:"skipped"`
	Unknown int            `json:"unknown"`
	// GrantsSaved counts recipients sent on the customer-service channel (no grant
	// spent), CSFallbacks those whose customer-service attempt was refused (window
	// closed, count used up) and who went on to the grant channel. Both are also among
	// the outcomes, so Final leaves them out.
	GrantsSaved int `json:"grantsSaved"`
	CSFallbacks int `json:"csFallbacks"`
	// Delivered and AsyncFailed count the run's sent messages whose receipt
	// (subscribe_msg_sent_event) arrived, by what it said. They are sub-states of Sent,
	// not final outcomes (Final leaves them out), and are kept apart from the run item
	// (dynamo: receipt counters) since receipts arrive at the send rate, after the run.
	Delivered   int `json:"delivered"`
	AsyncFailed int `json:"asyncFailed"`
	// Holdout is how many of Skipped were the campaign's control group
	// (ReasonHoldout), apart so operators can measure lift against them.
	Holdout int `json:"holdout"`
}

// Final returns how many recipients reached a final state.
func (c Counters) Final() int {
	n := c.Sent + c.NoGrant + c.Skipped + c.Unknown
	for _, v := range c.Failed {
		n += v
	}
	return n
}

// Add adds o's final counts to c (not Planned): a recount summed over shards.
func (c *Counters) Add(o Counters) {
	c.Sent += o.Sent
	c.NoGrant += o.NoGrant
	c.Skipped += o.Skipped
	c.Unknown += o.Unknown
	c.GrantsSaved += o.GrantsSaved
	c.CSFallbacks += o.CSFallbacks
	c.Holdout += o.Holdout
	for reason, n := range o.Failed {
		if c.Failed == nil {
			c.Failed = map[string]int{}
		}
		c.Failed[reason] += n
	}
}

// Count adds one recipient that ended with outcome (and, when failed, reason).
func (c *Counters) Count(outcome Outcome, reason string) {
	switch outcome {
	case OutcomeSent:
		c.Sent++
	case OutcomeNoGrant:
		c.NoGrant++
	case OutcomeSkipped:
		c.Skipped++
		if reason == ReasonHoldout {
			c.Holdout++
		}
	case OutcomeUnknown:
		c.Unknown++
	case OutcomeFailed:
		if c.Failed == nil {
			c.Failed = map[string]int{}
		}
		c.Failed[reason]++
	}
}

// Canary defaults (Policy.CanaryPercent, Policy.CanaryAbortPercent).
const (
	DefaultCanaryPercent      = 1
	DefaultCanaryAbortPercent = 10
	// MinCanary is the smallest canary: fewer recipients say little about an errcode
	// rate. An audience no larger is its own canary (nothing is held).
	MinCanary = 20
)

// MessageWrongReasons are the failure reasons (wechat.Classify) of errcodes that mean
// the message itself is wrong, not the recipient: 47003 data_invalid, 43107
// template_banned, 45168 sensitive_words, 40037 template_invalid, 41030 page_invalid.
// Their share among the canary's final recipients decides whether a run aborts.
var MessageWrongReasons = []string{"data_invalid", "template_banned", "sensitive_words", "template_invalid", "page_invalid"}

// ReasonCanaryAborted prefixes the reason of a campaign (and run) its canary aborted.
const ReasonCanaryAborted = "canary_aborted"

// CanaryState is a run's canary as the planner records it in the plan cursor.
type CanaryState struct {
	Size     int  `json:"size"`               // recipients wanted in the canary
	Held     int  `json:"held,omitempty"`     // recipients queued in it, once the rest is held
	Released bool `json:"released,omitempty"` // the rest may be queued (canary healthy, off, or the whole audience)
}

// CanarySize is how many of an audience of n a policy sends first: percent of n rounded
// up, at least MinCanary; 0 when the canary is off. n itself when the canary would
// cover everyone.
func (p Policy) CanarySize(n int) int {
	pct := min(p.CanaryPercent, 100)
	if pct <= 0 || n <= 0 {
		return 0
	}
	return min(n, max(MinCanary, (n*pct+99)/100))
}

// CanaryVerdict decides a canary whose held recipients are all final: abort when the
// message-is-wrong failures exceed the policy's share of them. bad is that count.
func (p Policy) CanaryVerdict(c Counters) (abort bool, bad int) {
	for _, r := range MessageWrongReasons {
		bad += c.Failed[r]
	}
	limit := p.CanaryAbortPercent
	if limit <= 0 {
		limit = DefaultCanaryAbortPercent
	}
	return c.Final() > 0 && bad*100 > limit*c.Final(), bad
}

// RunKey identifies one run of a campaign; deliveries are keyed by it and the openid.
func RunKey(campaignID string, run int) string {
	return campaignID + "#" + strconv.Itoa(run)
}
