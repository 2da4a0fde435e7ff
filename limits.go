package minipush

import (
	"fmt"
	"time"
)

// Caps are an app's frequency caps: at most PerDay messages per user per day and
// PerWeek per ISO week, across all of the app's campaigns that are not transactional,
// counted on the recipient's calendar in the app's zone (App.Location). 0 is no cap.
type Caps struct {
	PerDay  int `json:"perDay,omitempty"`
	PerWeek int `json:"perWeek,omitempty"`
}

// Any reports whether some cap is set.
func (c Caps) Any() bool { return c.PerDay > 0 || c.PerWeek > 0 }

// CapPeriod is the day and ISO week of at in loc, as the cap counters key them:
// "2026-12-01" and "2026-W49". The week is ISO 8601's (Monday first, the week of the
// year's first Thursday is week 1), so the days around New Year belong to one week.
func CapPeriod(at time.Time, loc *time.Location) (day, week string) {
	t := at.In(loc)
	y, w := t.ISOWeek()
	return t.Format("2006-01-02"), fmt.Sprintf("%04d-W%02d", y, w)
}

// QuietHours is a daily window, in the app's zone, in which nothing marketing is sent:
// from Start to End ("22:00" to "08:00" spans midnight). Off disables it.
type QuietHours struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	Off   bool   `json:"off,omitempty"`
}

// DefaultQuietHours is an app's window when the WeChat secret names none: the night,
// when a marketing push wakes people up.
var DefaultQuietHours = QuietHours{Start: "22:00", End: "08:00"}

// Check reports what is wrong with the window, naming its fields under name.
func (q QuietHours) Check(name string) error {
	if q.Off {
		if q.Start != "" || q.End != "" {
			return fmt.Errorf("%s: off takes no start or end", name)
		}
		return nil
	}
	s, err1 := clockMinutes(q.Start)
	e, err2 := clockMinutes(q.End)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%s: start and end are HH:MM (24 h), e.g. {\"start\":\"22:00\",\"end\":\"08:00\"}, or {\"off\":true}", name)
	}
	if s == e {
		return fmt.Errorf("%s: start and end are both %s; an empty window is {\"off\":true}", name, q.Start)
	}
	return nil
}

// Until reports whether at falls inside the window in loc and, if so, when the window
// ends (the first moment sending may resume). A checked window is assumed; an
// unparsable one is treated as off.
func (q QuietHours) Until(at time.Time, loc *time.Location) (time.Time, bool) {
	if q.Off {
		return time.Time{}, false
	}
	s, err1 := clockMinutes(q.Start)
	e, err2 := clockMinutes(q.End)
	if err1 != nil || err2 != nil || s == e {
		return time.Time{}, false
	}
	t := at.In(loc)
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	m := t.Hour()*60 + t.Minute()
	// wallClock is h:m of the day d days from t's; time.Date normalises across DST.
	wallClock := func(d, minutes int) time.Time {
		return time.Date(midnight.Year(), midnight.Month(), midnight.Day()+d, minutes/60, minutes%60, 0, 0, loc)
	}
	switch {
	case s < e && m >= s && m < e: // e.g. 12:00–14:00
		return wallClock(0, e), true
	case s > e && m >= s: // e.g. 22:00–08:00, before midnight
		return wallClock(1, e), true
	case s > e && m < e: // after midnight
		return wallClock(0, e), true
	}
	return time.Time{}, false
}

func clockMinutes(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("not HH:MM")
	}
	return t.Hour()*60 + t.Minute(), nil
}

// DefaultDailyQuota is WeChat's daily message quota of a mini-program (30 M with
// WeChat Pay, which an app names as App.DailyQuota).
const DefaultDailyQuota = 10_000_000

// Quiet is the quiet-hours window a campaign's messages obey: none for a transactional
// campaign, else the campaign's override, else the app's, else DefaultQuietHours.
func (a App) Quiet(p Policy) QuietHours {
	switch {
	case p.Transactional:
		return QuietHours{Off: true}
	case p.QuietHours != nil:
		return *p.QuietHours
	case a.QuietHours != nil:
		return *a.QuietHours
	}
	return DefaultQuietHours
}

// CapsFor is the frequency caps a campaign's messages count against: none for a
// transactional campaign.
func (a App) CapsFor(p Policy) Caps {
	if p.Transactional {
		return Caps{}
	}
	return a.Caps
}

// Quota is the app's daily message quota.
func (a App) Quota() int {
	if a.DailyQuota > 0 {
		return a.DailyQuota
	}
	return DefaultDailyQuota
}
