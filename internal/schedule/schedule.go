package schedule

import (
	"errors"
	"fmt"
	"time"

	"minipush"
)

// PastTolerance is how far in the past a one-off At may lie and still be valid.
// A "send now" campaign is created with At set to the client's now, which is
// already slightly past when the request arrives; a minute absorbs that and
// modest clock skew without letting a stale schedule through.
const PastTolerance = time.Minute

// LateTolerance is how late a recurring campaign's occurrence may still start. Later
// than that (the planner was down, the campaign was paused over it) the occurrence is
// skipped for the next one unless the operator asks to catch up: a "10:00 check-in
// reminder" must not go out at 03:00. Thirty minutes covers a missed planner tick or
// a few, a deploy, and a queue of big campaigns planned one after another in a tick
// (each may take the 5-minute Lambda), while a message still arrives within the half
// hour its wording was written for.
const LateTolerance = 30 * time.Minute

// Missed reports whether an occurrence due at dueAt is too late to start at now
// (more than LateTolerance ago).
func Missed(dueAt, now time.Time) bool {
	return now.Sub(dueAt) > LateTolerance
}

// DefaultTimeZone is the zone used when minipush.Schedule.TimeZone is empty.
const DefaultTimeZone = "UTC"

// The rules below read the campaign's own record, minipush.Schedule: once at At, or on
// every occurrence of Cron (a 5-field expression, see Parse) read in TimeZone. Exactly
// one of At and Cron is set. They live here, beside the cron parser they need, rather
// than as methods at the root, so the domain package stays free of a parser.

// Location loads s.TimeZone, defaulting to UTC. "Local" is refused: it names
// whatever zone the machine running the code has (UTC on Lambda), so a
// campaign's hour would depend on where it is evaluated.
func Location(s minipush.Schedule) (*time.Location, error) {
	name := s.TimeZone
	if name == "" {
		name = DefaultTimeZone
	}
	if name == "Local" {
		return nil, errors.New(`schedule: time zone "Local" depends on the machine; name a zone such as "Asia/Shanghai"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("schedule: time zone %q: %w", name, err)
	}
	return loc, nil
}

// Validate reports whether s can be stored for a new campaign at now: exactly
// one of At and Cron is set, the time zone loads, At is no more than
// PastTolerance before now, and Cron parses and fires at least once after now.
func Validate(s minipush.Schedule, now time.Time) error {
	c, loc, err := parse(s)
	if err != nil {
		return err
	}
	if c == nil {
		if s.At.Before(now.Add(-PastTolerance)) {
			return fmt.Errorf("schedule: at %s is in the past (now %s)", s.At.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		return nil
	}
	_, err = c.Next(now, loc)
	return err
}

// Next returns the first run strictly after after. For a one-off schedule that
// is At while after is before At; once At has been reached, ok is false: there
// are no more runs. A cron schedule always has a next run unless its expression
// never fires, which is an error wrapping ErrNeverFires.
//
// Next does not apply Validate's past-At check, so a campaign whose run is
// overdue (the planner was down) still reports it.
func Next(s minipush.Schedule, after time.Time) (next time.Time, ok bool, err error) {
	c, loc, err := parse(s)
	if err != nil {
		return time.Time{}, false, err
	}
	if c == nil {
		if after.Before(s.At) {
			return s.At, true, nil
		}
		return time.Time{}, false, nil
	}
	next, err = c.Next(after, loc)
	if err != nil {
		return time.Time{}, false, err
	}
	return next, true, nil
}

// parse checks the shape of s and returns its parsed cron (nil for a one-off
// schedule) and location.
func parse(s minipush.Schedule) (*Cron, *time.Location, error) {
	switch {
	case s.At.IsZero() && s.Cron == "":
		return nil, nil, errors.New("schedule: neither at nor cron is set")
	case !s.At.IsZero() && s.Cron != "":
		return nil, nil, errors.New("schedule: both at and cron are set; want exactly one")
	}
	loc, err := Location(s)
	if err != nil {
		return nil, nil, err
	}
	if s.Cron == "" {
		return nil, loc, nil
	}
	c, err := Parse(s.Cron)
	if err != nil {
		return nil, nil, err
	}
	return c, loc, nil
}
