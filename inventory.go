package minipush

import "time"

// GrantInventory is one mini-program's grant stock as the operator sees it: what can be
// spent now, what is about to expire, and what expired unspent lately. Live counts obey
// the same rule as Grant.Valid minus the lease (a leased grant is still owned by the
// app): unexpired at At with uses left, whatever DynamoDB TTL has or has not deleted.
type GrantInventory struct {
	AppID string    `json:"appId"`
	At    time.Time `json:"at"` // the instant the counts describe

	Live        int               `json:"live"`
	LiveByKind  map[GrantKind]int `json:"liveByKind"`
	Expiring24h int               `json:"expiring24h"` // live now, expiring within 24 hours
	Expiring7d  int               `json:"expiring7d"`  // live now, expiring within 7 days (includes Expiring24h)
	// ExpiringPerDay has one entry per UTC day from today through ExpiringDays-1 days
	// later, today first: the live grants whose expiry falls on that day (the console's
	// "expiring this week" chart).
	ExpiringPerDay []ExpiryDay `json:"expiringPerDay"`
	// Truncated means the live counts cover only part of the grants: counting them
	// scans the table, and the scan stopped at its bound (see dynamo.DB.GrantInventory).
	Truncated bool `json:"truncated,omitempty"`

	// ExpiredPerDay has one entry per UTC day of the last ExpiryStatsDays days, oldest
	// first, today last, days without expiries included as zeros.
	ExpiredPerDay []ExpiryDay `json:"expiredPerDay"`
}

// ExpiryDay is how many grants expired unspent on one UTC day (the day of their expiry
// time, not the day TTL happened to delete them).
type ExpiryDay struct {
	Day    string            `json:"day"` // YYYY-MM-DD, UTC
	Total  int               `json:"total"`
	ByKind map[GrantKind]int `json:"byKind"`
}

// ExpiringDays is how many days ahead GrantInventory breaks expiring grants down by day.
const ExpiringDays = 7

// ExpiryStatsDays is how many days of expiry statistics GrantInventory reports.
const ExpiryStatsDays = 30

// ExpiryDayOf returns the statistics day of an expiry time: its UTC date.
func ExpiryDayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }
