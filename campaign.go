package minipush

import (
	"hash/fnv"
	"time"
)

// MessageKind says which WeChat API a campaign sends through.
type MessageKind string

// Message kinds.
const (
	MessageSubscribe MessageKind = "subscribe" // cgi-bin/message/subscribe/send, spends subscribe grants of its template
	MessageTemplate  MessageKind = "template"  // cgi-bin/message/wxopen/template/send, spends form or prepay grants
)

// Channel is the grant channel a message of this kind spends (see GrantChannel).
func (m Message) Channel() string {
	if m.Kind == MessageSubscribe {
		return GrantChannel(GrantSubscribe, m.TemplateID)
	}
	return GrantChannel(GrantForm, "")
}

// Message is what a campaign sends to every recipient.
type Message struct {
	Kind             MessageKind          `json:"kind"`
	TemplateID       string               `json:"templateId"`
	Page             string               `json:"page,omitempty"`
	Data             map[string]DataValue `json:"data"`
	EmphasisKeyword  string               `json:"emphasisKeyword,omitempty"`  // template messages only
	MiniprogramState string               `json:"miniprogramState,omitempty"` // subscribe only: developer|trial|formal
	Lang             string               `json:"lang,omitempty"`             // subscribe only
	// CustomerService, when set, is sent instead to users inside their customer-service
	// window, without spending a grant (see ChannelCustomerService).
	CustomerService *CustomerService `json:"customerService,omitempty"`
}

// DataValue is one data field of a message. Color is for template messages only.
type DataValue struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// AudienceKind says how a campaign's recipients are chosen.
type AudienceKind string

// Audience kinds.
const (
	AudienceList      AudienceKind = "list"      // explicit openids uploaded in pages
	AudienceSegment   AudienceKind = "segment"   // users whose attributes match a filter
	AudienceReachable AudienceKind = "reachable" // every user holding a valid grant for the message
)

// Audience selects recipients.
type Audience struct {
	Kind    AudienceKind `json:"kind"`
	Segment *Segment     `json:"segment,omitempty"`
}

// Segment filters users by attributes; empty fields match everyone, Tags match users
// holding all of them.
type Segment struct {
	Regions    []string `json:"regions,omitempty"`
	Industries []string `json:"industries,omitempty"`
	Tags       []string `json:"tags,omitempty"`
}

// Schedule says when a campaign runs: once At a time, or on a Cron in a TimeZone.
type Schedule struct {
	At       time.Time `json:"at,omitzero"`
	Cron     string    `json:"cron,omitempty"`
	TimeZone string    `json:"timeZone,omitempty"`
}

// Policy limits what a campaign may do to a user. The per-user frequency caps are the
// app's (App.Caps), shared by all its campaigns; the onePerDay flag they replaced is
// no longer read (a stored campaign that has it is capped by its app like any other).
type Policy struct {
	SkipOptedOut bool `json:"skipOptedOut"` // on by default: opted-out users are skipped
	// Transactional marks messages a user is owed (an order shipped, a booking
	// reminder): they skip the app's frequency caps and quiet hours.
	Transactional bool `json:"transactional,omitempty"`
	// QuietHours overrides the app's quiet hours for this campaign ({off:true} for none).
	QuietHours *QuietHours `json:"quietHours,omitempty"`
	// HoldoutPercent (0 to MaxHoldoutPercent) of the audience, picked by HeldOut, ends
	// skipped/holdout: the control group that measures the campaign's lift.
	HoldoutPercent int `json:"holdoutPercent,omitempty"`
	RetryBudget    int `json:"retryBudget"` // transient retries per recipient before giving up; 0 means DefaultRetryBudget
	// CanaryPercent of the audience (at least MinCanary recipients) is sent first and the
	// rest held until every one of them is final (run.go, CanaryState); 0 is no canary.
	// The operator API stores DefaultCanaryPercent when the field is absent, as it does
	// the retry budget, so a campaign stored before the canary existed runs without one.
	CanaryPercent int `json:"canaryPercent,omitempty"`
	// CanaryAbortPercent: the run aborts by itself when more than this share of the
	// canary's final recipients failed with a message-is-wrong errcode
	// (MessageWrongReasons); 0 means DefaultCanaryAbortPercent.
	CanaryAbortPercent int `json:"canaryAbortPercent,omitempty"`
}

// MaxHoldoutPercent bounds Policy.HoldoutPercent: a control group larger than the
// treated group measures nothing better and costs the campaign its reach.
const MaxHoldoutPercent = 50

// HeldOut reports whether openID falls in campaign's holdout of percent: a hash of
// both, so every run and rerun of the campaign (and the forecast) agrees, while each
// campaign draws its own control group. Basis points, so the share is exact to 0.01 %.
func HeldOut(campaignID, openID string, percent int) bool {
	if percent <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(campaignID))
	h.Write([]byte{0})
	h.Write([]byte(openID))
	return h.Sum64()%10000 < uint64(percent)*100
}

// DefaultRetryBudget is the retry budget of a policy that names none. The operator API
// stores it explicitly and refuses 0, so a stored budget is always the one send applies.
const DefaultRetryBudget = 5

// CampaignStatus is where a campaign is in its life.
type CampaignStatus string

// Campaign statuses.
const (
	StatusDraft     CampaignStatus = "draft"
	StatusScheduled CampaignStatus = "scheduled"
	StatusPlanning  CampaignStatus = "planning"
	StatusSending   CampaignStatus = "sending"
	StatusDone      CampaignStatus = "done"
	StatusCancelled CampaignStatus = "cancelled"
	StatusPaused    CampaignStatus = "paused"
	// StatusAborted: its canary showed the message itself is wrong (Canary); nothing
	// beyond the canary was queued. It can be edited and scheduled again.
	StatusAborted CampaignStatus = "aborted"
)

// Campaign is a message, an audience, a schedule and a policy, sent in runs.
type Campaign struct {
	ID        string         `json:"id"`
	AppID     string         `json:"appId"`
	Name      string         `json:"name"`
	Message   Message        `json:"message"`
	Audience  Audience       `json:"audience"`
	Schedule  Schedule       `json:"schedule"`
	Policy    Policy         `json:"policy"`
	Status    CampaignStatus `json:"status"`
	CreatedAt time.Time      `json:"createdAt"`
	UpdatedAt time.Time      `json:"updatedAt"`
	NextRunAt time.Time      `json:"nextRunAt,omitzero"` // when the planner should start the next run
	RunSeq    int            `json:"runSeq"`             // runs started so far; the next run's id is derived from it
	// StaleThrough marks runs 1..StaleThrough of a recurring campaign stale: a resume
	// without catch-up found its current run interrupted past its occurrence's
	// tolerance, so send ends that run's still-pending recipients skipped/
	// "missed_occurrence" instead of delivering yesterday's reminder in the night.
	StaleThrough int `json:"staleThrough,omitempty"`
	// AbortedReason is why the campaign's canary aborted its last run (status aborted;
	// the run carries it too as Run.Aborted). Scheduling the campaign again clears it.
	AbortedReason string `json:"abortedReason,omitempty"`
	// PausedReason is why send paused the campaign, with WeChat's errcode (for example
	// "template_invalid (errcode 40037)"); shown only while the campaign is paused, and
	// resume clears it. An operator's pause has none.
	PausedReason string `json:"pausedReason,omitempty"`
}

// ReasonMissedOccurrence is the skip reason of a recipient of a stale run (see
// Campaign.StaleThrough).
const ReasonMissedOccurrence = "missed_occurrence"

// RunStale reports whether run belongs to an occurrence the operator let pass: send
// sends nothing more for it and the planner queues nothing more. A one-off campaign's
// only occurrence is never stale.
func (c Campaign) RunStale(run int) bool {
	return c.Schedule.Cron != "" && run <= c.StaleThrough
}
