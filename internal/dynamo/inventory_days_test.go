package dynamo_test

import (
	"testing"
	"time"

	"minipush"
)

// TestGrantInventoryExpiringPerDay checks the console's "expiring this week" data: live
// grants counted on the UTC day of their expiry, today through ExpiringDays-1 days on,
// zero days included; spent, expired and later grants left out.
func TestGrantInventoryExpiringPerDay(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	now := clk.Now()
	expiringAt := func(id string, at time.Time) minipush.Grant {
		return formGrant("wxdays", "u1", id, at.Add(-minipush.FormGrantValidity))
	}
	day2 := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 2).Add(3 * time.Hour)
	used := expiringAt("used", day2)
	used.Uses = 0
	gs := []minipush.Grant{
		expiringAt("a", day2), expiringAt("b", day2.Add(time.Hour)), used,
		expiringAt("late", now.UTC().Truncate(24*time.Hour).AddDate(0, 0, minipush.ExpiringDays).Add(time.Minute)),
		expiringAt("gone", now.Add(-time.Minute)),
	}
	if _, err := db.AddGrants(t.Context(), "wxdays", "u1", gs, minipush.DefaultMaxLiveGrants); err != nil {
		t.Fatal(err)
	}
	inv := mustInventory(t, db, "wxdays")
	if len(inv.ExpiringPerDay) != minipush.ExpiringDays {
		t.Fatalf("%d days, want %d", len(inv.ExpiringPerDay), minipush.ExpiringDays)
	}
	for i, d := range inv.ExpiringPerDay {
		want := 0
		if i == 2 {
			want = 2
		}
		if d.Day != minipush.ExpiryDayOf(now.AddDate(0, 0, i)) || d.Total != want || d.ByKind[minipush.GrantForm] != want {
			t.Errorf("day %d: %+v, want %s with %d", i, d, minipush.ExpiryDayOf(now.AddDate(0, 0, i)), want)
		}
	}
}
