package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/schedule"
)

func TestScheduleValidate(t *testing.T) {
	t.Parallel()
	now := mustTime(t, "2024-06-01T12:00:00Z")
	tests := []struct {
		name    string
		s       minipush.Schedule
		wantErr string // substring; "" means valid
	}{
		{"AtNow", minipush.Schedule{At: now}, ""},
		{"AtWithinTolerance", minipush.Schedule{At: now.Add(-30 * time.Second)}, ""},
		{"AtExactlyTolerance", minipush.Schedule{At: now.Add(-time.Minute)}, ""},
		{"AtFuture", minipush.Schedule{At: now.Add(24 * time.Hour)}, ""},
		{"AtWithZone", minipush.Schedule{At: now, TimeZone: "Asia/Shanghai"}, ""},
		{"Cron", minipush.Schedule{Cron: "0 10 * * *"}, ""},
		{"CronWithZone", minipush.Schedule{Cron: "0 10 * * mon-fri", TimeZone: "Asia/Shanghai"}, ""},
		{"CronExplicitUTC", minipush.Schedule{Cron: "0 10 * * *", TimeZone: "UTC"}, ""},
		{"CronLeapDay", minipush.Schedule{Cron: "0 0 29 2 *"}, ""},
		{"ErrAtPast", minipush.Schedule{At: now.Add(-time.Minute - time.Second)}, "in the past"},
		{"ErrNeither", minipush.Schedule{}, "neither at nor cron"},
		{"ErrNeitherZoneOnly", minipush.Schedule{TimeZone: "Asia/Shanghai"}, "neither at nor cron"},
		{"ErrBoth", minipush.Schedule{At: now, Cron: "* * * * *"}, "both at and cron"},
		{"ErrBadZone", minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Mars/Olympus"}, `time zone "Mars/Olympus"`},
		{"ErrBadZoneWithAt", minipush.Schedule{At: now, TimeZone: "CST+8"}, `time zone "CST+8"`},
		{"ErrLocalZone", minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Local"}, `"Local" depends on the machine`},
		{"ErrCronParse", minipush.Schedule{Cron: "0 25 * * *"}, `hour field "25"`},
		{"ErrCronNeverFires", minipush.Schedule{Cron: "0 0 30 2 *"}, "never fires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := schedule.Validate(tt.s, now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate = %v; want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate = nil; want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate = %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestScheduleValidateNeverFiresIs(t *testing.T) {
	t.Parallel()
	err := schedule.Validate(minipush.Schedule{Cron: "0 0 31 4 *"}, mustTime(t, "2024-06-01T12:00:00Z"))
	if !errors.Is(err, schedule.ErrNeverFires) {
		t.Errorf("Validate = %v; want an error wrapping ErrNeverFires", err)
	}
}

func TestScheduleNext(t *testing.T) {
	t.Parallel()
	at := mustTime(t, "2024-06-01T12:00:00Z")
	tests := []struct {
		name    string
		s       minipush.Schedule
		after   string
		want    string // "" means no run
		wantOK  bool
		wantErr string
	}{
		{"AtAhead", minipush.Schedule{At: at}, "2024-06-01T11:59:59Z", "2024-06-01T12:00:00Z", true, ""},
		{"AtLongOverdueStillReported", minipush.Schedule{At: at}, "2024-05-01T00:00:00Z", "2024-06-01T12:00:00Z", true, ""},
		{"AtReached", minipush.Schedule{At: at}, "2024-06-01T12:00:00Z", "", false, ""},
		{"AtPassed", minipush.Schedule{At: at}, "2024-06-02T00:00:00Z", "", false, ""},
		{"CronUTC", minipush.Schedule{Cron: "0 10 * * *"}, "2024-06-01T12:00:00Z", "2024-06-02T10:00:00Z", true, ""},
		{"CronShanghai", minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}, "2024-06-01T00:00:00Z", "2024-06-01T02:00:00Z", true, ""},
		{"CronNewYorkSummer", minipush.Schedule{Cron: "0 9 * * *", TimeZone: "America/New_York"}, "2024-06-01T00:00:00Z", "2024-06-01T13:00:00Z", true, ""},
		{"ErrCronNeverFires", minipush.Schedule{Cron: "0 0 30 2 *"}, "2024-06-01T00:00:00Z", "", false, "never fires"},
		{"ErrCronParse", minipush.Schedule{Cron: "bad"}, "2024-06-01T00:00:00Z", "", false, "1 fields, want 5"},
		{"ErrBoth", minipush.Schedule{At: at, Cron: "* * * * *"}, "2024-06-01T00:00:00Z", "", false, "both at and cron"},
		{"ErrNeither", minipush.Schedule{}, "2024-06-01T00:00:00Z", "", false, "neither at nor cron"},
		{"ErrBadZone", minipush.Schedule{Cron: "* * * * *", TimeZone: "Nowhere/Else"}, "2024-06-01T00:00:00Z", "", false, `time zone "Nowhere/Else"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok, err := schedule.Next(tt.s, mustTime(t, tt.after))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Next = %v, %v, %v; want an error containing %q", got, ok, err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if ok != tt.wantOK {
				t.Errorf("Next ok = %v; want %v", ok, tt.wantOK)
			}
			var want time.Time
			if tt.want != "" {
				want = mustTime(t, tt.want)
			}
			if !got.Equal(want) {
				t.Errorf("Next = %s; want %s", got.UTC().Format(time.RFC3339), tt.want)
			}
		})
	}
}

func TestScheduleLocation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		zone string
		want string
	}{
		{"DefaultUTC", "", "UTC"},
		{"Shanghai", "Asia/Shanghai", "Asia/Shanghai"},
		{"NewYork", "America/New_York", "America/New_York"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			loc, err := schedule.Location(minipush.Schedule{TimeZone: tt.zone})
			if err != nil {
				t.Fatalf("Location: %v", err)
			}
			if loc.String() != tt.want {
				t.Errorf("Location = %s; want %s", loc, tt.want)
			}
		})
	}
}
