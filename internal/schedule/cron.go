// Package schedule computes when a campaign runs: once at a fixed instant, or on
// a recurring 5-field cron schedule evaluated in the campaign's time zone.
//
// Everything here is pure; the caller passes the current time in, so tests and
// the planner control the clock.
package schedule

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	// Embedded zone data: the Lambda base image (provided.al2023) may ship
	// without /usr/share/zoneinfo, and then time.LoadLocation fails for every
	// zone but UTC. Embedding costs about 450 KB of binary and makes campaign
	// time zones work the same everywhere.
	_ "time/tzdata"
)

// ErrNeverFires is returned (wrapped) for a cron expression that matches no
// minute within the search horizon, like "0 0 30 2 *".
var ErrNeverFires = errors.New("never fires")

// horizonYears bounds the search for the next run. The longest gap between two
// runs of any valid expression is Feb 29 across a non-leap century year (2096
// to 2104), so 9 years finds every expression that fires at all.
const horizonYears = 9

// Cron is a parsed 5-field cron expression: minute, hour, day of month, month,
// day of week. The zero value matches nothing; use Parse.
type Cron struct {
	expr              string
	minute, hour, dom uint64 // bit i set: value i matches
	month, dow        uint64 // month bits 1-12; dow bits 0-6, Sunday 0
	dayOr             bool   // both day fields restricted: either may match
}

type field struct {
	name     string
	min, max int
	names    []string // names[i] is the name of value min+i, if the field has names
}

var (
	fieldMinute = field{name: "minute", min: 0, max: 59}
	fieldHour   = field{name: "hour", min: 0, max: 23}
	fieldDom    = field{name: "day-of-month", min: 1, max: 31}
	fieldMonth  = field{name: "month", min: 1, max: 12, names: []string{
		"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
	}}
	// Day of week accepts 7 as well as 0 for Sunday, as Vixie cron does.
	fieldDow = field{name: "day-of-week", min: 0, max: 7, names: []string{
		"sun", "mon", "tue", "wed", "thu", "fri", "sat",
	}}
)

// Parse parses a standard 5-field cron expression ("minute hour day-of-month
// month day-of-week", separated by spaces or tabs). Each field is "*" or a
// comma-separated list of values "a", ranges "a-b" and steps "*/n" or "a-b/n";
// months accept jan-dec and days of week sun-sat (case-insensitive), and both
// 0 and 7 mean Sunday.
//
// As in classic cron, when both day-of-month and day-of-week are restricted a
// day matches if either does ("0 0 1 * mon": the 1st and every Monday). A field
// counts as unrestricted only when it is a bare "*": unlike Vixie cron, which
// looks only at the first character, "*/2" is a restriction, because that is
// what it means to a reader.
//
// Not supported, and refused with an error rather than guessed at: seconds or
// year fields, macros like @daily, "?", "L", "W", "#", and "a/n" (Vixie cron
// reads it as a-max/n, others refuse it; write "a-max/n").
func Parse(expr string) (*Cron, error) {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return nil, fmt.Errorf("schedule: cron %q: %d fields, want 5 (minute hour day-of-month month day-of-week)", expr, len(fields))
	}
	c := &Cron{expr: strings.Join(fields, " ")}
	specs := []struct {
		f   field
		dst *uint64
	}{
		{fieldMinute, &c.minute}, {fieldHour, &c.hour}, {fieldDom, &c.dom},
		{fieldMonth, &c.month}, {fieldDow, &c.dow},
	}
	for i, s := range specs {
		set, err := parseField(fields[i], s.f)
		if err != nil {
			return nil, fmt.Errorf("schedule: cron %q: %s field %q: %w", expr, s.f.name, fields[i], err)
		}
		*s.dst = set
	}
	if c.dow&(1<<7) != 0 {
		c.dow = c.dow&^(1<<7) | 1 // fold 7 onto Sunday
	}
	c.dayOr = fields[2] != "*" && fields[4] != "*"
	return c, nil
}

// String returns the expression c was parsed from, with its fields separated by
// single spaces.
func (c *Cron) String() string { return c.expr }

func parseField(s string, f field) (uint64, error) {
	var set uint64
	for item := range strings.SplitSeq(s, ",") {
		bits, err := parseItem(item, f)
		if err != nil {
			return 0, err
		}
		set |= bits
	}
	return set, nil
}

func parseItem(item string, f field) (uint64, error) {
	if item == "" {
		return 0, errors.New("empty list item")
	}
	rng, stepText, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepText)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("step %q: want a positive number", stepText)
		}
		step = n
	}
	var lo, hi int
	switch {
	case rng == "*":
		lo, hi = f.min, f.max
		if f.name == fieldDow.name {
			hi = 6 // 7 is only an alias of Sunday, already covered by 0
		}
	case strings.Contains(rng, "-"):
		a, b, _ := strings.Cut(rng, "-")
		var err error
		if lo, err = parseValue(a, f); err != nil {
			return 0, err
		}
		if hi, err = parseValue(b, f); err != nil {
			return 0, err
		}
		if lo > hi {
			return 0, fmt.Errorf("range %q: start after end", rng)
		}
	default:
		if hasStep {
			return 0, fmt.Errorf("step %q: needs * or a range before it, like */%d or %s-%d/%d", item, step, rng, f.max, step)
		}
		v, err := parseValue(rng, f)
		if err != nil {
			return 0, err
		}
		lo, hi = v, v
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << v
	}
	return set, nil
}

func parseValue(s string, f field) (int, error) {
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' {
		if f.names != nil {
			return 0, fmt.Errorf("value %q: want a number from %d to %d or a name like %s", s, f.min, f.max, f.names[0])
		}
		return 0, fmt.Errorf("value %q: want a number from %d to %d", s, f.min, f.max)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("value %d: out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}

// Next returns the first minute matching c that is strictly after after, with
// the fields read as wall-clock time in loc (nil means UTC): "0 10 * * *" in
// Asia/Shanghai is 02:00 UTC.
//
// Daylight-saving transitions follow the wall clock: a matching time that does
// not exist (inside a spring-forward gap) is skipped, not moved, because a run
// at an unexpected hour surprises more than a missed one; a matching time that
// occurs twice (in a fall-back overlap) fires once, at its first occurrence,
// because firing twice would send the campaign twice.
//
// The error wraps ErrNeverFires when nothing matches within 9 years of after.
func (c *Cron) Next(after time.Time, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	start := after.In(loc)
	y, m, d := start.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC) // calendar arithmetic only
	end := day.AddDate(horizonYears, 0, 0)
	for ; day.Before(end); day = day.AddDate(0, 0, 1) {
		if !c.matchDay(day) {
			continue
		}
		for h := range bitsOf(c.hour) {
			for mi := range bitsOf(c.minute) {
				t, ok := wallTime(day, h, mi, loc)
				if ok && t.After(after) {
					return t, nil
				}
			}
		}
	}
	return time.Time{}, fmt.Errorf("schedule: cron %q: %w within %d years after %s", c.expr, ErrNeverFires, horizonYears, after.Format(time.RFC3339))
}

func (c *Cron) matchDay(day time.Time) bool {
	if c.month&(1<<uint(day.Month())) == 0 {
		return false
	}
	domOK := c.dom&(1<<uint(day.Day())) != 0
	dowOK := c.dow&(1<<uint(day.Weekday())) != 0
	if c.dayOr {
		return domOK || dowOK
	}
	return domOK && dowOK
}

// wallTime returns the earliest instant at which the clock in loc reads day's
// date at h:mi, and false when that reading never happens (a DST gap).
func wallTime(day time.Time, h, mi int, loc *time.Location) (time.Time, bool) {
	y, m, d := day.Date()
	t := time.Date(y, m, d, h, mi, 0, 0, loc)
	if !sameWall(t, y, m, d, h, mi) {
		return time.Time{}, false
	}
	// time.Date does not promise which of two readings of an ambiguous wall
	// time it returns, so look for an earlier one under the offset in force a
	// day either side.
	_, off := t.Zone()
	for _, probe := range []time.Time{t.Add(-24 * time.Hour), t.Add(24 * time.Hour)} {
		_, o := probe.Zone()
		if o == off {
			continue
		}
		alt := t.Add(time.Duration(off-o) * time.Second)
		if alt.Before(t) && sameWall(alt, y, m, d, h, mi) {
			t = alt
		}
	}
	return t, true
}

func sameWall(t time.Time, y int, m time.Month, d, h, mi int) bool {
	ty, tm, td := t.Date()
	return ty == y && tm == m && td == d && t.Hour() == h && t.Minute() == mi
}

// bitsOf yields the set bits of set in ascending order.
func bitsOf(set uint64) func(yield func(int) bool) {
	return func(yield func(int) bool) {
		for set != 0 {
			i := bits.TrailingZeros64(set)
			if !yield(i) {
				return
			}
			set &^= 1 << i
		}
	}
}
