package minipush

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// GrantKind is the kind of one-time send permission a user gave.
type GrantKind string

// The grant kinds (DESIGN.md, Grants).
const (
	GrantSubscribe GrantKind = "subscribe" // an accept of wx.requestSubscribeMessage for one template
	GrantForm      GrantKind = "form"      // a formId from <form report-submit>
	GrantPrepay    GrantKind = "prepay"    // a prepay_id of a payment
)

// Valid reports whether k is a known kind.
func (k GrantKind) Valid() bool {
	switch k {
	case GrantSubscribe, GrantForm, GrantPrepay:
		return true
	}
	return false
}

// Uses is how many messages one grant of this kind allows: WeChat allows one send per
// form submit and three per payment, and each subscribe accept allows one.
func (k GrantKind) Uses() int {
	if k == GrantPrepay {
		return 3
	}
	return 1
}

// Grant limits and lifetimes. Template-message grants live 7 days from the user's
// action (WECHAT.md §1); subscribe grants never expire at WeChat, so they get a
// retention TTL instead.
const (
	FormGrantValidity         = 7 * 24 * time.Hour
	DefaultSubscribeRetention = 365 * 24 * time.Hour
	DefaultMaxLiveGrants      = 200
	MaxGrantValueLen          = 128 // formIds and prepay ids are well under this; longer is garbage
	MockFormID                = "the formId is a mock one"
)

// Grant is one stored send permission of one user of one mini-program.
type Grant struct {
	AppID       string
	OpenID      string
	Kind        GrantKind
	ID          string // stable identity: a re-upload of the same grant has the same ID
	Value       string // the formId or prepay_id sent to WeChat as form_id; empty for subscribe
	TemplateID  string // subscribe only: the template this grant may be spent on
	Uses        int    // sends left
	CollectedAt time.Time
	ExpiresAt   time.Time // DynamoDB TTL deletes the item some time after this; reads filter on it
}

// Channel names the pool of grants a message can spend: a subscribe message only its
// own template's grants, a template message any form or prepay grant.
func (g Grant) Channel() string { return GrantChannel(g.Kind, g.TemplateID) }

// GrantChannel returns the channel of grants of kind k (templateID only matters for
// subscribe grants).
func GrantChannel(k GrantKind, templateID string) string {
	if k == GrantSubscribe {
		return "s:" + templateID
	}
	return "t"
}

// ExpiryKey orders a user's grants (the grants table's sort key, after its "g#"):
// channel, then the expiry as fixed-width epoch seconds, then the ID. One Query with
// begins_with/between on it returns a user's grants for a channel earliest-expiring
// first, from the table itself, so no index is written with every grant.
func (g Grant) ExpiryKey() string {
	return ExpiryKeyAt(g.Channel(), g.ExpiresAt) + "#" + g.ID
}

// ExpiryKeyAt is the ExpiryKey prefix for channel at time t: every grant of the
// channel that is still valid at t sorts after it.
func ExpiryKeyAt(channel string, t time.Time) string {
	return fmt.Sprintf("%s#%010d", channel, t.Unix())
}

// Valid reports whether the grant can be spent at now: unexpired, with uses left.
func (g Grant) Valid(now time.Time) bool {
	return now.Before(g.ExpiresAt) && g.Uses > 0
}

// GrantID derives the stable identity of a grant from what makes it unique: the kind
// and WeChat value for formIds and prepay ids, the template and the client's (or
// WeChat event's) idempotency key for subscribe accepts. Hashing keeps keys short and
// keeps raw formIds out of key space and logs.
func GrantID(kind GrantKind, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(kind))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// UserKey is the partition key of a user of a mini-program: every per-user item carries
// the appid so one deployment can serve several mini-programs.
func UserKey(appID, openID string) string { return appID + "#" + openID }

// AddStatus is what happened to one grant of an upload.
type AddStatus string

// Add statuses.
const (
	AddAccepted  AddStatus = "accepted"
	AddDuplicate AddStatus = "duplicate"       // already stored (a client retry): stored once
	AddOverLimit AddStatus = "over_user_limit" // the user holds the maximum of live grants
)

// MaxGrantsPerWrite is the most grants one upload stores at once: they are stored in
// one DynamoDB transaction, which holds 100 actions, and one is the user's inventory
// update.
const MaxGrantsPerWrite = 99
