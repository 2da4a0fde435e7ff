package minipush

import (
	"strconv"
	"time"
)

// Webhook is an app's event endpoint, as the operator set it
// (PUT /v1/admin/apps/{appId}/webhook), and the health of its deliveries, which the
// operator reads back (GET) to see a failing endpoint.
type Webhook struct {
	AppID string `json:"appId"`
	URL   string `json:"url"`
	// Secret is the HMAC-SHA256 key events are signed with: generated when the URL is
	// set and shown once, in that answer; never in a GET or a log.
	Secret    string    `json:"-"`
	UpdatedAt time.Time `json:"updatedAt"`
	// LastStatus is the HTTP status of the last delivery attempt (0: none, or the
	// request failed before an answer), LastError why it failed, Failures how many
	// attempts in a row failed (0 once one succeeds).
	LastStatus    int       `json:"lastStatus,omitempty"`
	LastAttemptAt time.Time `json:"lastAttemptAt,omitzero"`
	LastSuccessAt time.Time `json:"lastSuccessAt,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	Failures      int       `json:"consecutiveFailures"`
}

// String hides the secret so a Webhook can never be logged by accident.
func (w Webhook) String() string { return "Webhook{" + w.AppID + "}" }

// Webhook event types.
const (
	EventRunStarted = "run.started"
	EventRunPaused  = "run.paused"  // with Reason: quota (45009), token, operator...
	EventRunAborted = "run.aborted" // cancelled by the operator
	EventRunDone    = "run.done"    // with the run's summary counters
	EventDigest     = "digest.daily"
)

// WebhookEvent is the JSON body of one webhook delivery. ID is the same for every
// delivery of one event (a retry, or the event produced twice under at-least-once), so
// receivers dedupe on it.
type WebhookEvent struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	AppID      string    `json:"appId"`
	At         time.Time `json:"at"`
	CampaignID string    `json:"campaignId,omitempty"`
	Run        int       `json:"run,omitempty"`
	// Reason says why a run paused.
	Reason   string    `json:"reason,omitempty"`
	Counters *Counters `json:"counters,omitempty"`
	// Day and Failures are the digest's: the UTC day it covers and the failed
	// recipients of the runs finished that day by reason (WeChat's errcode as
	// internal/wechat names it, errcode_N for one it does not name).
	Day      string         `json:"day,omitempty"`
	Runs     int            `json:"runs,omitempty"`
	Failures map[string]int `json:"failures,omitempty"`
}

// RunEvent returns the event of a run's transition; its ID is the same each time the
// same transition is reported.
// A run starts, ends and is aborted once, but may pause several times, so a pause's ID
// also carries its second.
func RunEvent(typ string, c Campaign, run int, at time.Time) WebhookEvent {
	id := typ + ":" + RunKey(c.ID, run)
	if typ == EventRunPaused {
		id += ":" + strconv.FormatInt(at.Unix(), 10)
	}
	return WebhookEvent{ID: id, Type: typ, AppID: c.AppID, At: at.UTC(), CampaignID: c.ID, Run: run}
}
