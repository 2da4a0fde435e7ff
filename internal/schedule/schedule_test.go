package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"minipush/internal/schedule"
)

func TestScheduleValidate(t *testing.T) {
	t.Parallel()
	now := mustTime(t, "2024-06-01T12:00:00Z")
	tests := []struct {
		name    string
		s       schedule.Schedule
		wantErr string // substring; "" means valid
	}{
		{"AtNow", schedule.Schedule{At: now}, ""},
		{"AtWithinTolerance", schedule.Schedule{At: now.Add(-30 * time.Second)}, ""},
		{"AtExactlyTolerance", schedule.Schedule{At: now.Add(-time.Minute)}, ""},
		{"AtFuture", schedule.Schedule{At: now.Add(24 * time.Hour)}, ""},
		{"AtWithZone", schedule.Schedule{At: now, TimeZone: "Asia/Shanghai"}, ""},
		{"Cron", schedule.Schedule{Cron: "0 10 * * *"}, ""},
		{"CronWithZone", schedule.Schedule{Cron: "0 10 * * mon-fri", TimeZone: "Asia/Shanghai"}, ""},
		{"CronExplicitUTC", schedule.Schedule{Cron: "0 10 * * *", TimeZone: "UTC"}, ""},
		{"CronLeapDay", schedule.Schedule{Cron: "0 0 29 2 *"}, ""},
		{"ErrAtPast", schedule.Schedule{At: now.Add(-time.Minute - time.Second)}, "in the past"},
		{"ErrNeither", schedule.Schedule{}, "neither at nor cron"},
		{"ErrNeitherZoneOnly", schedule.Schedule{TimeZone: "Asia/Shanghai"}, "neither at nor cron"},
		{"ErrBoth", schedule.Schedule{At: now, Cron: "* * * * *"}, "both at and cron"},
		{"ErrBadZone", schedule.Schedule{Cron: "0 10 * * *", TimeZone: "Mars/Olympus"}, `time zone "Mars/Olympus"`},
		{"ErrBadZoneWithAt", schedule.Schedule{At: now, TimeZone: "CST+8"}, `time zone "CST+8"`},
		{"ErrLocalZone", schedule.Schedule{Cron: "0 10 * * *", TimeZone: "Local"}, `"Local" depends on the machine`},
		{"ErrCronParse", schedule.Schedule{Cron: "0 25 * * *"}, `hour field "25"`},
		{"ErrCronNeverFires", schedule.Schedule{Cron: "0 0 30 2 *"}, "never fires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.s.Validate(now)
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
	err := schedule.Schedule{Cron: "0 0 31 4 *"}.Validate(mustTime(t, "2024-06-01T12:00:00Z"))
	if !errors.Is(err, schedule.ErrNeverFires) {
		t.Errorf("Validate = %v; want an error wrapping ErrNeverFires", err)
	}
}

func TestScheduleNext(t *testing.T) {
	t.Parallel()
	at := mustTime(t, "2024-06-01T12:00:00Z")
	tests := []struct {
		name    string
		s       schedule.Schedule
		after   string
		want    string // "" means no run
		wantOK  bool
		wantErr string
	}{
		{"AtAhead", schedule.Schedule{At: at}, "2024-06-01T11:59:59Z", "2024-06-01T12:00:00Z", true, ""},
		{"AtLongOverdueStillReported", schedule.Schedule{At: at}, "2024-05-01T00:00:00Z", "2024-06-01T12:00:00Z", true, ""},
		{"AtReached", schedule.Schedule{At: at}, "2024-06-01T12:00:00Z", "", false, ""},
		{"AtPassed", schedule.Schedule{At: at}, "2024-06-02T00:00:00Z", "", false, ""},
		{"CronUTC", schedule.Schedule{Cron: "0 10 * * *"}, "2024-06-01T12:00:00Z", "2024-06-02T10:00:00Z", true, ""},
		{"CronShanghai", schedule.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}, "2024-06-01T00:00:00Z", "2024-06-01T02:00:00Z", true, ""},
		{"CronNewYorkSummer", schedule.Schedule{Cron: "0 9 * * *", TimeZone: "America/New_York"}, "2024-06-01T00:00:00Z", "2024-06-01T13:00:00Z", true, ""},
		{"ErrCronNeverFires", schedule.Schedule{Cron: "0 0 30 2 *"}, "2024-06-01T00:00:00Z", "", false, "never fires"},
		{"ErrCronParse", schedule.Schedule{Cron: "bad"}, "2024-06-01T00:00:00Z", "", false, "1 fields, want 5"},
		{"ErrBoth", schedule.Schedule{At: at, Cron: "* * * * *"}, "2024-06-01T00:00:00Z", "", false, "both at and cron"},
		{"ErrNeither", schedule.Schedule{}, "2024-06-01T00:00:00Z", "", false, "neither at nor cron"},
		{"ErrBadZone", schedule.Schedule{Cron: "* * * * *", TimeZone: "Nowhere/Else"}, "2024-06-01T00:00:00Z", "", false, `time zone "Nowhere/Else"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok, err := tt.s.Next(mustTime(t, tt.after))
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
			loc, err := schedule.Schedule{TimeZone: tt.zone}.Location()
			if err != nil {
				t.Fatalf("Location: %v", err)
			}
			if loc.String() != tt.want {
				t.Errorf("Location = %s; want %s", loc, tt.want)
			}
		})
	}
}
