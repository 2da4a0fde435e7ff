package minipush_test

import (
	"strings"
	"testing"
	"time"

	"minipush"
)

// TestQuotaRules: the budget's day is Shanghai's whatever the clock's zone, marketing's
// share keeps the reserve (at least one message when there is one), the shards' parts
// add up to the class's limit exactly, and the reserve is refused outside 0–100.
func TestQuotaRules(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 16, 30, 0, 0, time.UTC) // 00:30 on Dec 2 in Shanghai
	if d := minipush.QuotaDay(at); d != "2026-12-02" {
		t.Errorf("QuotaDay(%v) = %s, want 2026-12-02", at, d)
	}
	if r := minipush.QuotaReset(at); !r.Equal(time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("QuotaReset(%v) = %v, want 2026-12-02T16:00:00Z", at, r.UTC())
	}
	for _, tc := range []struct {
		limit, reserve int
		class          string
		want           int
	}{
		{30, 10, minipush.QuotaMarketing, 27},
		{30, 10, minipush.QuotaTransactional, 30},
		{30, 5, minipush.QuotaMarketing, 28}, // 1.5 reserved rounds up to 2
		{10, 1, minipush.QuotaMarketing, 9},  // 0.1 still keeps one
		{30, 0, minipush.QuotaMarketing, 30},
		{10_000_000, 5, minipush.QuotaMarketing, 9_500_000},
	} {
		if got := minipush.QuotaClassLimit(tc.limit, tc.reserve, tc.class); got != tc.want {
			t.Errorf("QuotaClassLimit(%d, %d%%, %s) = %d, want %d", tc.limit, tc.reserve, tc.class, got, tc.want)
		}
	}
	for _, total := range []int{0, 3, 27, 30, 9_500_001} {
		sum := 0
		for k := range minipush.DefaultQuotaShards {
			sum += minipush.QuotaShardLimit(total, minipush.DefaultQuotaShards, k)
		}
		if sum != total {
			t.Errorf("shards of %d add up to %d", total, sum)
		}
	}
	for _, bad := range []string{"-1", "101"} {
		_, err := minipush.ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s","quotaReservePercent":` + bad + `}]}`)
		if err == nil || !strings.Contains(err.Error(), "quotaReservePercent") {
			t.Errorf("quotaReservePercent %s: %v, want refused naming the field", bad, err)
		}
	}
	a, err := minipush.ParseApps(`{"apps":[{"appId":"wx1","appSecret":"s","quotaReservePercent":0},{"appId":"wx2","appSecret":"s"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if a.Apps[0].QuotaReserve() != 0 || a.Apps[1].QuotaReserve() != minipush.DefaultQuotaReservePercent {
		t.Errorf("reserves %d and %d, want 0 (named) and the default %d", a.Apps[0].QuotaReserve(), a.Apps[1].QuotaReserve(), minipush.DefaultQuotaReservePercent)
	}
}
