package minipush

import (
	"hash/fnv"
	"strconv"
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

// DeliveryShards is how many partition keys a run's deliveries are spread over
// (DeliveryPartition). A recipient costs the deliveries table 2 WCU (the claim, then
// its final update; no index), so one campaign at 5,000 messages/s writes 10,000 WCU/s:
// over 32 keys that is about 310 WCU/s on each, under a third of a partition's 1,000,
// leaving room for hash imbalance, duplicates and retries (20 keys would be the
// least for 50 %). Reads are lighter: one strongly consistent read per recipient.
// Changing it strands the deliveries of runs in flight, so it is a constant.
const DeliveryShards = 32

// DeliveryShard is the shard of a run's deliveries that holds openID: a hash, so one
// SQS batch's recipients spread over every shard.
func DeliveryShard(openID string) int {
	h := fnv.New32a()
	h.Write([]byte(openID))
	return int(h.Sum32() % DeliveryShards)
}

// DeliveryPartition is the partition key of shard of a run's deliveries.
func DeliveryPartition(runKey string, shard int) string {
	return runKey + "#" + strconv.Itoa(shard)
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
