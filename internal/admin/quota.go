package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

// QuotaStore reads an app's daily quota budget (*dynamo.DB, dynamo/quota.go).
type QuotaStore interface {
	QuotaUse(ctx context.Context, appID, day string, shards int) (minipush.QuotaUse, error)
}

// quotaOut is the operator's view of an app's quota today (README "Quota pacing").
type quotaOut struct {
	AppID string `json:"appId"`
	// Day is WeChat's quota day (Asia/Shanghai) and ResetsAt its end.
	Day      string    `json:"day"`
	ResetsAt time.Time `json:"resetsAt"`
	// Limit is the daily limit the senders pace to: WeChat's last read, else the app's
	// dailyQuota. MarketingLimit is what marketing campaigns may use of it.
	Limit          int `json:"limit"`
	ReservePercent int `json:"reservePercent"`
	MarketingLimit int `json:"marketingLimit"`
	// Used is what our senders took today, by class; tokens a sender holds and has not
	// used yet count until it gives them back at the end of its invocation.
	Used              int `json:"used"`
	UsedTransactional int `json:"usedTransactional"`
	UsedMarketing     int `json:"usedMarketing"`
	// WeChat is WeChat's own count as a sender last read it (absent: no read today).
	WeChat *minipush.QuotaRead `json:"wechat,omitempty"`
	// PausedUntil: every send of the app waits for the reset (45009, or the whole
	// budget used); MarketingPausedUntil: marketing campaigns wait.
	PausedUntil          *time.Time `json:"pausedUntil,omitempty"`
	MarketingPausedUntil *time.Time `json:"marketingPausedUntil,omitempty"`
	PauseReason          string     `json:"pauseReason,omitempty"`
}

// getQuota answers today's quota use of an app: one BatchGetItem of its status item
// and budget counters. GET /v1/admin/apps/{appId}/quota
func (h *Handler) getQuota(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	app := r.parts[1]
	if err := h.servedApp("appId", app); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	qs, ok := h.Store.(QuotaStore)
	if !ok {
		return httpapi.NotImplemented("quota"), nil
	}
	now := h.Now()
	day := minipush.QuotaDay(now)
	u, err := qs.QuotaUse(ctx, app, day, minipush.DefaultQuotaShards)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	cfg := h.Apps[app]
	out := quotaOut{
		AppID: app, Day: day, ResetsAt: minipush.QuotaReset(now).UTC(),
		Limit: cfg.Quota(), ReservePercent: cfg.QuotaReserve(),
		Used: u.Used, UsedTransactional: u.UsedTransactional, UsedMarketing: u.UsedMarketing,
		PauseReason: u.PauseReason,
	}
	if !u.Read.ReadAt.IsZero() {
		out.WeChat = &u.Read
		if u.Read.DailyLimit > 0 {
			out.Limit = u.Read.DailyLimit
		}
	}
	out.MarketingLimit = minipush.QuotaClassLimit(out.Limit, out.ReservePercent, minipush.QuotaMarketing)
	if until, ok := u.PausedFor(minipush.QuotaTransactional, now); ok {
		out.PausedUntil = &until
	}
	if until, ok := u.PausedFor(minipush.QuotaMarketing, now); ok {
		out.MarketingPausedUntil = &until
	}
	return httpapi.JSON(http.StatusOK, out), nil
}
