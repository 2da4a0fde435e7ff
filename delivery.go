package minipush

import (
	"time"
)

// DeliveryState is where one recipient of one run is. A delivery is claimed (sending)
// just before the WeChat call and becomes final exactly once; a final delivery never
// changes again.
type DeliveryState string

// Delivery states.
const (
	DeliverySending DeliveryState = "sending"
	DeliveryFinal   DeliveryState = "final"
)

// Delivery is one recipient of one run: the claim that makes a second message to them
// impossible, then their outcome. Outcome is set on final deliveries only.
type Delivery struct {
	RunKey     string // RunKey(campaign, run)
	OpenID     string
	State      DeliveryState
	Owner      string    // the sender invocation that holds the claim
	LeaseUntil time.Time // a claim older than this belongs to a crashed sender
	GrantID    string    // the grant the claim is spending
	Outcome    Outcome
	Reason     string
	ErrCode    int
	UpdatedAt  time.Time
	ExpiresAt  time.Time // kept until then (the retention period), then deleted
}

// Final reports whether the delivery reached its final state.
func (d Delivery) Final() bool { return d.State == DeliveryFinal }

// MaxListLimit bounds one page of any operator listing (campaigns, deliveries).
const MaxListLimit = 100

// Outcome is the final state of one recipient in one run.
type Outcome string

// Outcomes. Every planned recipient ends in exactly one of them.
const (
	OutcomeSent    Outcome = "sent"
	OutcomeFailed  Outcome = "failed"   // with errcode and reason
	OutcomeNoGrant Outcome = "no_grant" // the user held no spendable grant for the message
	OutcomeSkipped Outcome = "skipped"  // by policy: opted out, already pushed today
	OutcomeUnknown Outcome = "unknown"  // the request left but its answer was lost; never resent
)
