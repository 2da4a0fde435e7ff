package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"minipush/internal/schedule"
)

// mustLoad loads a zone or stops the test; time/tzdata makes this work even
// where the host has no zoneinfo.
func mustLoad(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

func mustTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		tb.Fatalf("parse %q: %v", s, err)
	}
	return t
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		expr string
		want string // substring of the error
	}{
		{"Empty", "", "0 fields, want 5"},
		{"FourFields", "* * * *", "4 fields, want 5"},
		{"SixFields", "0 * * * * *", "6 fields, want 5"},
		{"Macro", "@daily", "1 fields, want 5"},
		{"MinuteRange", "60 * * * *", `minute field "60": value 60: out of range 0-59`},
		{"HourRange", "0 24 * * *", `hour field "24": value 24: out of range 0-23`},
		{"DomZero", "0 0 0 * *", `day-of-month field "0": value 0: out of range 1-31`},
		{"Dom32", "0 0 32 * *", `day-of-month field "32"`},
		{"Month13", "0 0 1 13 *", `month field "13": value 13: out of range 1-12`},
		{"MonthZero", "0 0 1 0 *", `month field "0"`},
		{"Dow8", "0 0 * * 8", `day-of-week field "8": value 8: out of range 0-7`},
		{"BadMonthName", "0 0 1 janu *", `month field "janu": value "janu": want a number from 1 to 12 or a name like jan`},
		{"BadDowName", "0 0 * * monday", `day-of-week field "monday"`},
		{"MonthNameInDow", "0 0 * * jan", `day-of-week field "jan"`},
		{"DowNameInMonth", "0 0 1 mon *", `month field "mon"`},
		{"NameInMinute", "jan * * * *", `minute field "jan": value "jan": want a number from 0 to 59`},
		{"ReversedRange", "0 0 * * fri-mon", `day-of-week field "fri-mon": range "fri-mon": start after end`},
		{"ReversedHours", "0 22-2 * * *", `hour field "22-2"`},
		{"StepZero", "*/0 * * * *", `minute field "*/0": step "0": want a positive number`},
		{"StepNegative", "*/-1 * * * *", `step "-1"`},
		{"StepText", "*/x * * * *", `step "x"`},
		{"StepEmpty", "*/ * * * *", `step ""`},
		{"StepOnValue", "5/15 * * * *", `minute field "5/15": step "5/15": needs * or a range before it, like */15 or 5-59/15`},
		{"EmptyListItem", "1,,2 * * * *", `minute field "1,,2": empty list item`},
		{"TrailingComma", "0 0 * * 1,", `day-of-week field "1,": empty list item`},
		{"Question", "0 0 ? * *", `day-of-month field "?"`},
		{"Last", "0 0 L * *", `day-of-month field "L"`},
		{"Hash", "0 0 * * 1#2", `day-of-week field "1#2"`},
		{"Signed", "+5 * * * *", `minute field "+5"`},
		{"OpenRange", "1- * * * *", `minute field "1-"`},
		{"DoubleRange", "1-2-3 * * * *", `minute field "1-2-3"`},
		{"StarRange", "*-5 * * * *", `minute field "*-5"`},
		{"TwoSteps", "*/2/3 * * * *", `minute field "*/2/3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := schedule.Parse(tt.expr)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, nil; want an error containing %q", tt.expr, c, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %q; want it to contain %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestParseString(t *testing.T) {
	t.Parallel()
	c, err := schedule.Parse("  0\t9 *  * mon-fri ")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := c.String(), "0 9 * * mon-fri"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		expr  string
		zone  string // "" passes a nil location
		after string
		want  []string // successive runs, each after the previous
	}{
		{"EveryMinute", "* * * * *", "UTC", "2024-01-01T00:00:30Z",
			[]string{"2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"}},
		{"StrictlyAfter", "0 10 * * *", "UTC", "2024-01-01T10:00:00Z",
			[]string{"2024-01-02T10:00:00Z"}},
		{"JustBefore", "0 10 * * *", "UTC", "2024-01-01T09:59:59.999Z",
			[]string{"2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z"}},
		{"SecondsPastMatch", "0 10 * * *", "UTC", "2024-01-01T10:00:01Z",
			[]string{"2024-01-02T10:00:00Z"}},
		{"NilLocationIsUTC", "0 10 * * *", "", "2024-01-01T00:00:00Z",
			[]string{"2024-01-01T10:00:00Z"}},
		{"Shanghai", "0 10 * * *", "Asia/Shanghai", "2024-01-01T00:00:00Z",
			[]string{"2024-01-01T02:00:00Z", "2024-01-02T02:00:00Z"}},
		{"ShanghaiNextDay", "0 10 * * *", "Asia/Shanghai", "2024-01-01T02:00:00Z",
			[]string{"2024-01-02T02:00:00Z"}},
		{"ShanghaiDayBoundary", "0 0 1 * *", "Asia/Shanghai", "2024-01-31T12:00:00Z",
			[]string{"2024-01-31T16:00:00Z", "2024-02-29T16:00:00Z"}},
		{"Step", "*/15 * * * *", "UTC", "2024-01-01T00:05:00Z",
			[]string{"2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:45:00Z", "2024-01-01T01:00:00Z"}},
		{"RangeStep", "10-30/10 * * * *", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-01T00:10:00Z", "2024-01-01T00:20:00Z", "2024-01-01T00:30:00Z", "2024-01-01T01:10:00Z"}},
		{"List", "0 9,17 * * *", "UTC", "2024-01-01T10:00:00Z",
			[]string{"2024-01-01T17:00:00Z", "2024-01-02T09:00:00Z"}},
		{"ListOfRanges", "0,30 8-9,18 * * *", "UTC", "2024-01-01T08:00:00Z",
			[]string{"2024-01-01T08:30:00Z", "2024-01-01T09:00:00Z", "2024-01-01T09:30:00Z", "2024-01-01T18:00:00Z", "2024-01-01T18:30:00Z", "2024-01-02T08:00:00Z"}},
		{"MonthNames", "0 0 1 jan,jul *", "UTC", "2024-02-01T00:00:00Z",
			[]string{"2024-07-01T00:00:00Z", "2025-01-01T00:00:00Z"}},
		{"NamesIgnoreCase", "0 0 * JAN Mon", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z"}},
		{"Weekdays", "0 9 * * mon-fri", "UTC", "2024-01-05T10:00:00Z", // a Friday
			[]string{"2024-01-08T09:00:00Z", "2024-01-09T09:00:00Z"}},
		{"SundayAsZero", "0 0 * * 0", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"}},
		{"SundayAsSeven", "0 0 * * 7", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"}},
		{"RangeToSeven", "0 0 * * 5-7", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-12T00:00:00Z"}},
		{"DowStarStep", "0 0 * * */3", "UTC", "2024-01-01T00:00:00Z", // Sun, Wed, Sat
			[]string{"2024-01-03T00:00:00Z", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z"}},
		{"DomOrDow", "0 0 13 * fri", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z", "2024-01-19T00:00:00Z"}},
		{"DomStepIsRestriction", "0 0 */10 * mon", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-01-08T00:00:00Z", "2024-01-11T00:00:00Z", "2024-01-15T00:00:00Z", "2024-01-21T00:00:00Z", "2024-01-22T00:00:00Z"}},
		{"DomOnly", "0 0 1 * *", "UTC", "2024-01-15T00:00:00Z",
			[]string{"2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"}},
		{"Dom31SkipsShortMonths", "0 0 31 * *", "UTC", "2024-01-31T00:00:00Z",
			[]string{"2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z"}},
		{"LeapDay", "0 0 29 2 *", "UTC", "2024-03-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z"}},
		{"LeapDayAcross2100", "0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z",
			[]string{"2104-02-29T00:00:00Z"}},
		{"Feb31OrMonday", "0 0 31 2 mon", "UTC", "2024-01-01T00:00:00Z",
			[]string{"2024-02-05T00:00:00Z"}},
		{"YearEnd", "59 23 31 12 *", "UTC", "2024-12-31T23:59:00Z",
			[]string{"2025-12-31T23:59:00Z"}},

		// America/New_York springs forward 2024-03-10 02:00 EST → 03:00 EDT and
		// falls back 2024-11-03 02:00 EDT → 01:00 EST.
		{"SpringGapSkipped", "30 2 * * *", "America/New_York", "2024-03-09T17:00:00Z",
			[]string{"2024-03-11T06:30:00Z", "2024-03-12T06:30:00Z"}},
		{"SpringEveryHalfHour", "*/30 * * * *", "America/New_York", "2024-03-10T06:45:00Z", // 01:45 EST
			[]string{"2024-03-10T07:00:00Z", "2024-03-10T07:30:00Z"}}, // 03:00, 03:30 EDT
		{"SpringDailyAfterGap", "0 9 * * *", "America/New_York", "2024-03-09T15:00:00Z",
			[]string{"2024-03-10T13:00:00Z", "2024-03-11T13:00:00Z"}}, // 09:00 EDT
		{"FallRepeatFiresOnce", "30 1 * * *", "America/New_York", "2024-11-03T04:00:00Z", // 00:00 EDT
			[]string{"2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"}}, // 01:30 EDT, then the next day
		{"FallAfterInSecondPass", "30 1 * * *", "America/New_York", "2024-11-03T06:10:00Z", // 01:10 EST
			[]string{"2024-11-04T06:30:00Z"}},
		{"FallEveryHalfHour", "*/30 * * * *", "America/New_York", "2024-11-03T05:15:00Z", // 01:15 EDT
			[]string{"2024-11-03T05:30:00Z", "2024-11-03T07:00:00Z", "2024-11-03T07:30:00Z"}}, // 01:30 EDT, 02:00 EST
		{"FallDailyAfterOverlap", "0 9 * * *", "America/New_York", "2024-11-02T14:00:00Z",
			[]string{"2024-11-03T14:00:00Z"}}, // 09:00 EST
		// Lord Howe Island shifts by 30 minutes: 2024-04-07 02:00 +11:00 → 01:30 +10:30.
		{"HalfHourFallBack", "45 1 * * *", "Australia/Lord_Howe", "2024-04-06T12:00:00Z",
			[]string{"2024-04-06T14:45:00Z", "2024-04-07T15:15:00Z"}},
		// São Paulo sprang forward at midnight (2018-11-04 00:00 → 01:00), so
		// that day had no midnight at all.
		{"MidnightGap", "0 0 * * *", "America/Sao_Paulo", "2018-11-03T12:00:00Z",
			[]string{"2018-11-05T02:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := schedule.Parse(tt.expr)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.expr, err)
			}
			var loc *time.Location
			if tt.zone != "" {
				loc = mustLoad(t, tt.zone)
			}
			after := mustTime(t, tt.after)
			for i, w := range tt.want {
				got, err := c.Next(after, loc)
				if err != nil {
					t.Fatalf("run %d: Next(%s): %v", i, after.Format(time.RFC3339), err)
				}
				if want := mustTime(t, w); !got.Equal(want) {
					t.Fatalf("run %d: Next(%s) = %s; want %s", i, after.Format(time.RFC3339), got.UTC().Format(time.RFC3339), w)
				}
				if loc != nil && got.Location() != loc {
					t.Errorf("run %d: Next returned a time in %v; want it in %v", i, got.Location(), loc)
				}
				after = got
			}
		})
	}
}

func TestNextNeverFires(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		expr string
	}{
		{"Feb30", "0 0 30 2 *"},
		{"Feb31", "0 0 31 2 *"},
		{"Apr31", "0 0 31 4 *"},
		{"ShortMonths31", "0 0 31 2,4,6,9,11 *"},
	}
	after := mustTime(t, "2024-01-01T00:00:00Z")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := schedule.Parse(tt.expr)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.expr, err)
			}
			got, err := c.Next(after, time.UTC)
			if !errors.Is(err, schedule.ErrNeverFires) {
				t.Fatalf("Next = %v, %v; want an error wrapping ErrNeverFires", got, err)
			}
			if !strings.Contains(err.Error(), tt.expr) {
				t.Errorf("error %q does not name the expression %q", err, tt.expr)
			}
			if !got.IsZero() {
				t.Errorf("Next time = %v; want zero with the error", got)
			}
		})
	}
}
