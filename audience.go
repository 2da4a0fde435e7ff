package minipush

import "time"

// AudienceScan selects the users of an app a segment or reachable campaign sends to.
type AudienceScan struct {
	AppID string
	// Segment filters on region, industry and tags; nil matches every user of the app.
	Segment *Segment
	// Reachable selects, instead of Segment, the users holding a grant of Channel that
	// is spendable at Now.
	Reachable bool
	// Channel is the grant channel of the campaign's message (Message.Channel).
	Channel string
	Now     time.Time
	// SkipOptedOut drops users who opted out (send re-checks; this saves the message).
	SkipOptedOut bool
}
