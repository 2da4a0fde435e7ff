package minipush

import "time"

// User is a mini-program user as minipush knows them. The openid always comes from
// WeChat (jscode2session or a signed push), never from the client.
type User struct {
	AppID       string
	OpenID      string
	UnionID     string
	CreatedAt   time.Time
	LastLoginAt time.Time

	// Attributes operators segment audiences on.
	Region   string
	Industry string
	Tags     []string
	OptOut   bool // the user asked for no campaign pushes; send skips them

	// Inventory is derived from the grants table; whoever changes a user's grants
	// recomputes it (one Query of at most MaxLiveGrants items), which keeps it idempotent
	// under replays instead of drifting with increments.
	LiveGrants   int
	LatestExpiry time.Time
}

// UserAttrs are the attributes operators segment audiences on, and the user's opt-out:
// what the operator API sets on a user, leaving login data and inventory alone.
type UserAttrs struct {
	OpenID   string   `json:"openId"`
	Region   string   `json:"region,omitempty"`
	Industry string   `json:"industry,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	OptOut   bool     `json:"optOut"`
}
