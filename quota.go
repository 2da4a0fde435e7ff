package minipush

import (
	"math"
	"time"
)

// Pacing to WeChat's daily quota (issue #18). WeChat counts an app's subscribe sends
// per day, resets the count at midnight Asia/Shanghai, and answers 45009 beyond it. The
// day's budget is shared by every send instance: QuotaShards counters of the app and day
// (dynamo/quota.go), each allowed its share of the limit, from which senders take tokens
// in chunks. The rules deciding on the budget live here; the store and the senders only
// apply them.

// QuotaZone is WeChat's day: quotas reset at midnight Asia/Shanghai, whatever the app's
// own zone (App.TimeZone is its users' day, for caps and quiet hours).
var QuotaZone = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return time.FixedZone("CST", 8*3600) // no DST there: the fixed offset is exact
	}
	return loc
}()

// QuotaDay is the quota day t falls in ("2006-01-02", Shanghai).
func QuotaDay(t time.Time) string { return t.In(QuotaZone).Format(time.DateOnly) }

// QuotaReset is when the quota day of t ends: the next midnight in Shanghai.
func QuotaReset(t time.Time) time.Time {
	y, m, d := t.In(QuotaZone).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, QuotaZone)
}

// Quota classes: a transactional campaign (Policy.Transactional) may use the whole
// budget, a marketing one only the budget less the app's reserve, so the messages a
// user is owed still go out on a day marketing used up.
const (
	QuotaTransactional = "transactional"
	QuotaMarketing     = "marketing"
)

// QuotaClass is the class a campaign's messages are budgeted in.
func QuotaClass(p Policy) string {
	if p.Transactional {
		return QuotaTransactional
	}
	return QuotaMarketing
}

// DefaultQuotaShards is how many counters an app's daily budget is spread over. A
// sender takes a chunk of tokens (send.DefaultQuotaChunk, 200) per conditional write, so
// at 5,000 messages/s the app's counters see 25 writes/s, about 3 per counter: far under a
// partition's 1,000, with room for many apps' worth of growth.
const DefaultQuotaShards = 8

// DefaultQuotaReservePercent is the share of the daily limit kept for transactional
// campaigns when the app names none (App.QuotaReservePercent).
const DefaultQuotaReservePercent = 5

// QuotaReserve is the app's reserve for transactional campaigns, in percent.
func (a App) QuotaReserve() int {
	if a.QuotaReservePercent != nil {
		return *a.QuotaReservePercent
	}
	return DefaultQuotaReservePercent
}

// QuotaClassLimit is how much of a day's limit a class may use in all: the whole limit
// for transactional messages, the limit less the reserve (rounded up, so a reserve
// above zero keeps at least one message) for marketing.
func QuotaClassLimit(limit, reservePercent int, class string) int {
	if class == QuotaTransactional || reservePercent <= 0 {
		return limit
	}
	reserve := int(math.Ceil(float64(limit) * float64(reservePercent) / 100))
	return max(limit-reserve, 0)
}

// QuotaShardLimit is shard's part of total spread over shards counters: total/shards,
// the first total%shards counters one more, so the parts add up to total exactly.
func QuotaShardLimit(total, shards, shard int) int {
	if shards <= 0 {
		return total
	}
	n := total / shards
	if shard < total%shards {
		n++
	}
	return n
}

// QuotaRead is WeChat's account of an app's daily quota as last read
// (openapi/quota/get): the limit, WeChat's own count of the day and the rate limit.
type QuotaRead struct {
	DailyLimit int       `json:"dailyLimit"`
	Used       int       `json:"used"`
	Remain     int       `json:"remain"`
	RateCount  int       `json:"rateCallCount,omitempty"`     // at most RateCount calls ...
	RateSecond int       `json:"rateRefreshSecond,omitempty"` // ... every RateSecond seconds
	ReadAt     time.Time `json:"readAt"`
}

// QuotaUse is an app's budget of one quota day as the store keeps it.
type QuotaUse struct {
	AppID string
	Day   string
	// Used is what our senders took from the day's budget, by class; tokens a sender
	// holds in its chunk and has not used yet count, until it gives them back at the end
	// of its invocation.
	Used, UsedTransactional, UsedMarketing int
	// Read is the last read of WeChat's quota by a sender (zero: none today).
	Read QuotaRead
	// PausedUntil: every send of the app waits until then (WeChat answered 45009, or
	// the whole budget is taken); MarketingPausedUntil: marketing campaigns wait (their
	// share is taken). Zero: not paused. PauseReason says why.
	PausedUntil, MarketingPausedUntil time.Time
	PauseReason                       string
}

// PausedFor reports until when class may not send at now (zero time and false: it may).
func (u QuotaUse) PausedFor(class string, now time.Time) (time.Time, bool) {
	until := u.PausedUntil
	if class == QuotaMarketing && u.MarketingPausedUntil.After(until) {
		until = u.MarketingPausedUntil
	}
	if now.Before(until) {
		return until, true
	}
	return time.Time{}, false
}
