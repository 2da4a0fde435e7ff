package send_test

import (
	"sync/atomic"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// zoned is a recurring schedule in zone, the zone the cap's day was once (wrongly)
// computed in.
func zoned(zone string) minipush.Schedule {
	return minipush.Schedule{Cron: "30 0 * * *", TimeZone: zone}
}

// TestDailyCapUsesAppZone: the app's per-day frequency cap counts the recipient's day in the
// app's zone (Asia/Shanghai here), not in each campaign's schedule zone. Two campaigns
// of one app, one scheduled in Asia/Shanghai and one in UTC, once compared day strings
// of different zones:
//
//   - LateBlock: a Shanghai push at 16:30 UTC (00:30 the next day in Shanghai) stored
//     Shanghai's date, and a UTC campaign the following day at 16:10 UTC (00:10 two days
//     later in Shanghai) still saw "today" and skipped the user, 23 h 40 min later;
//   - TwoInOneDay: a UTC push at 16:00 UTC stored the UTC date, and a Shanghai
//     campaign at 17:30 UTC saw a later date and pushed again, 1.5 h later, both on the
//     same Shanghai day.
func TestDailyCapUsesAppZone(t *testing.T) {
	t.Parallel()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		first, second  string // the campaigns' schedule zones, in send order
		at1, at2       time.Time
		secondOutcome  minipush.Outcome
		secondReason   string
		secondAccepted int
	}{
		{"LateBlock", "Asia/Shanghai", "UTC", day.Add(16*time.Hour + 30*time.Minute), day.Add(40*time.Hour + 10*time.Minute),
			minipush.OutcomeSent, "", 1},
		{"TwoInOneDay", "UTC", "Asia/Shanghai", day.Add(16 * time.Hour), day.Add(17*time.Hour + 30*time.Minute),
			minipush.OutcomeSkipped, minipush.ReasonFrequencyCap, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var now atomic.Int64
			clock := func() time.Time { return time.Unix(0, now.Load()) }
			f.db.Now = clock
			ids := f.grantedUsers(t, 3)
			h := f.handler(4)
			h.Now = clock
			h.Apps = cappedApp(minipush.Caps{PerDay: 1}) // Asia/Shanghai by default

			now.Store(tc.at1.UnixNano())
			f.putCampaignWith(t, minipush.Campaign{ID: "first", Message: subscribeMessage(), Schedule: zoned(tc.first)}, len(ids))
			handle(t, h, events10(t, batches("first", ids, 10))[0])

			now.Store(tc.at2.UnixNano())
			f.putCampaignWith(t, minipush.Campaign{ID: "second", Message: subscribeMessage(), Schedule: zoned(tc.second)}, len(ids))
			handle(t, h, events10(t, batches("second", ids, 10))[0])

			first, second := f.outcomes(t, "first"), f.outcomes(t, "second")
			acc := f.acceptedBy(sandbox.PathSubscribeSend)
			for _, u := range ids {
				if first[u].Outcome != minipush.OutcomeSent {
					t.Errorf("first push at %s: %s/%s, want sent", tc.at1.Format(time.RFC3339), first[u].Outcome, first[u].Reason)
				}
				if d := second[u]; d.Outcome != tc.secondOutcome || d.Reason != tc.secondReason {
					t.Errorf("second push at %s (%s in Shanghai): %s/%s, want %s/%s", tc.at2.Format(time.RFC3339),
						tc.at2.In(shanghai).Format("2006-01-02 15:04"), d.Outcome, d.Reason, tc.secondOutcome, tc.secondReason)
				}
				if acc[u] != 1+tc.secondAccepted {
					t.Errorf("WeChat accepted %d messages for a user, want %d", acc[u], 1+tc.secondAccepted)
				}
			}
		})
	}
}
