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
	MsgID      string // WeChat's msgid of a sent subscribe message, decimal (above 2^53: never a float64); "" if none
	Channel    string // the API the message went (or would go) out through: ChannelCustomerService or the message kind
	CSFallback string // why the customer-service channel was left for a grant (a reason such as "cs_window_closed"), or ""
	// Receipt is what WeChat's subscribe_msg_sent_event said of a sent message ("" until
	// one arrived), with its ErrorCode and ErrorStatus when it reports a failure.
	Receipt       ReceiptState
	ReceiptCode   int
	ReceiptStatus string
	UpdatedAt     time.Time
	ExpiresAt     time.Time // kept until then (the retention period), then deleted
}

// DeliveryShards is how many partition keys a run's deliveries are spread over
// (DeliveryPartition). A recipient cost the deliveries table 2 WCU (the claim, then
// its final update; no index), so one campaign at 5,000 messages/s wrote 10,000 WCU/s:
// over 64 keys about 160 WCU/s on each; a sent one now costs the claim and a share of
// its sender's sent log item in its shard (SentRecord), a little over 1. 32 keys (310 WCU/s, a third of a
// partition's 1,000) still throttled on the scale model (make bench, Scale: 86 and
// 730 refusals for one and three campaigns) because senders arrive in bursts, not
// evenly, and a key can only absorb one second's worth at once; at 64 they were 0 and
// 6. A shard costs nothing per write; the recount and the outcome listing read each
// shard once, and reads are cheap. Reads are lighter: one strongly consistent read per
// recipient.
// Changing it strands the deliveries of runs in flight, so it is a constant.
const DeliveryShards = 64

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

// SentRecord is a sent recipient whose outcome is carried by its sender's sent log
// (dynamo.DB.RecordSent), not by a write of its own: one item per delivery shard and
// flush holds every such recipient of an invocation's second, so a sent message costs
// the deliveries table its claim and a share of a log item instead of a claim and a
// final update. Readers of deliveries see the claim final (sent, with MsgID) once its
// owner's log names it.
type SentRecord struct {
	RunKey    string
	OpenID    string
	MsgID     string // "" if WeChat gave none
	At        time.Time
	ExpiresAt time.Time // the delivery's retention
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

// Skip reasons of the app's limits and the campaign's holdout.
const (
	ReasonFrequencyCap = "frequency_cap" // the app's per-day or per-week cap was reached; the grant is kept
	ReasonHoldout      = "holdout"       // in the campaign's control group (Policy.HoldoutPercent)
)

// ReceiptState is what a subscribe_msg_sent_event reported of a sent message. WeChat
// reports failures only for asynchronous system failures, so delivered is "no failure
// reported", not a read receipt (WECHAT.md §8).
type ReceiptState string

// Receipt states. A sent delivery moves to one of them once; a replayed receipt
// changes nothing.
const (
	ReceiptDelivered   ReceiptState = "delivered"    // ErrorCode 0
	ReceiptAsyncFailed ReceiptState = "async_failed" // with WeChat's ErrorCode and ErrorStatus
)

// Receipt is one List item of a subscribe_msg_sent_event push, validated.
type Receipt struct {
	AppID       string
	OpenID      string // FromUserName of the push
	TemplateID  string
	MsgID       string // decimal, as the delivery keeps it
	ErrorCode   int
	ErrorStatus string
	At          time.Time // the push's CreateTime
}

// ReceiptResult is what recording one receipt did.
type ReceiptResult int

// Receipt results.
const (
	// ReceiptRecorded: the sent delivery moved to the receipt's state and was counted.
	ReceiptRecorded ReceiptResult = iota + 1
	// ReceiptNoChange: a delivery has the msgid, but it is not sent, has its receipt
	// already (a replay, WeChat's retry) or is past its retention: nothing changed.
	ReceiptNoChange
	// ReceiptUnknown: no delivery has the msgid (yet: the sender may not have recorded
	// WeChat's answer when the receipt arrives; or never, for a msgid not ours).
	ReceiptUnknown
	// ReceiptAmbiguous: no delivery has the msgid, and the time window around the
	// receipt holds several of the user's deliveries of the template that it could
	// be for: nothing changed, as crediting the wrong one would be worse.
	ReceiptAmbiguous
)

// ReceiptUser is the key under which a sent subscribe message is indexed for its
// receipt: the app, the recipient and the template, which every sent event names
// (FromUserName, TemplateId) whether or not WeChat's answer carried a msgid.
func ReceiptUser(appID, openID, templateID string) string {
	return appID + "#" + openID + "#" + templateID
}

// State is the receipt state the receipt moves a sent delivery to.
func (r Receipt) State() ReceiptState {
	if r.ErrorCode == 0 {
		return ReceiptDelivered
	}
	return ReceiptAsyncFailed
}
