package admin_test

import (
	"net/http"
	"testing"
	"time"

	"minipush"
)

// TestQuotaRoute: GET apps/{appId}/quota answers today's Shanghai day, what the
// senders took by class from the budget's counters, WeChat's last read and the
// marketing pause until the reset; an app the deployment does not serve is refused.
func TestQuotaRoute(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	ctx := t.Context()
	reserve := 10
	h.Apps = map[string]minipush.App{"wx1": {AppID: "wx1", QuotaReservePercent: &reserve}}
	day := minipush.QuotaDay(now) // 18:00 in Shanghai
	type quota struct {
		Day, PauseReason                       string
		ResetsAt                               time.Time
		Limit, ReservePercent, MarketingLimit  int
		Used, UsedTransactional, UsedMarketing int
		WeChat                                 *minipush.QuotaRead
		PausedUntil, MarketingPausedUntil      *time.Time
	}

	var empty quota
	mustOK(t, h, call{method: "GET", target: "/v1/admin/apps/wx1/quota"}, http.StatusOK, &empty)
	if empty.Day != day || empty.Limit != minipush.DefaultDailyQuota || empty.Used != 0 || empty.WeChat != nil || empty.PausedUntil != nil {
		t.Fatalf("an untouched day answered %+v, want day %s, the default limit, nothing used, no read, no pause", empty, day)
	}

	for shard, take := range []int{4, 3} {
		if _, err := db.TakeQuota(ctx, "wx1", day, shard, take, 4, minipush.QuotaMarketing); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.TakeQuota(ctx, "wx1", day, 5, 2, 4, minipush.QuotaTransactional); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordQuotaRead(ctx, "wx1", day, minipush.QuotaRead{DailyLimit: 30, Used: 9, Remain: 21, ReadAt: now}); err != nil {
		t.Fatal(err)
	}
	reset := minipush.QuotaReset(now)
	if _, err := db.PauseQuota(ctx, "wx1", day, minipush.QuotaMarketing, reset, "daily budget used up"); err != nil {
		t.Fatal(err)
	}
	var got quota
	mustOK(t, h, call{method: "GET", target: "/v1/admin/apps/wx1/quota"}, http.StatusOK, &got)
	if got.Limit != 30 || got.ReservePercent != 10 || got.MarketingLimit != 27 || got.Used != 9 || got.UsedMarketing != 7 ||
		got.UsedTransactional != 2 || got.WeChat == nil || got.WeChat.Remain != 21 || got.PausedUntil != nil ||
		got.MarketingPausedUntil == nil || !got.MarketingPausedUntil.Equal(reset) || !got.ResetsAt.Equal(reset) ||
		got.PauseReason != "daily budget used up" {
		t.Fatalf("answered %+v, want limit 30 (27 marketing), 9 used (7 marketing, 2 transactional), WeChat's read, marketing paused until %v", got, reset)
	}

	if resp := do(t, h, call{method: "GET", target: "/v1/admin/apps/wxother/quota"}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("an app not served: %d %s, want 422", resp.StatusCode, resp.Body)
	}
	if resp := do(t, h, call{method: "POST", target: "/v1/admin/apps/wx1/quota"}); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d %s, want 405", resp.StatusCode, resp.Body)
	}
}
