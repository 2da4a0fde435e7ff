package admin_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"minipush"
)

// TestResumeCatchUp: resuming a recurring campaign paused over its occurrence skips
// the missed one unless the body asks {"catchUp":true}; a bad body is refused and
// leaves the campaign paused.
func TestResumeCatchUp(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	db.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	h.Now = db.Now

	// Daily 10:00 in Shanghai (02:00 UTC), paused before the 26th's, resumed on the 27th
	// at 00:00 UTC: the 26th's occurrence is 22 hours gone.
	for _, id := range []string{"c1", "c2"} {
		var c minipush.Campaign
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, &c)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + id + "/schedule", body: `{"cron":"0 10 * * *","timeZone":"Asia/Shanghai"}`}, 200, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + id + "/pause"}, 200, nil)
	}
	resumeAt := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	clock.Store(resumeAt.UnixNano())

	for _, body := range []string{`{"catchUp":1}`, `{"catchUp":true,"from":"now"}`, `[true]`} {
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/resume", body: body}, http.StatusBadRequest, nil)
	}
	var got minipush.Campaign
	mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/c1"}, 200, &got)
	if got.Status != minipush.StatusPaused {
		t.Fatalf("after refused resumes: %s, want still paused", got.Status)
	}

	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/resume"}, 200, &got)
	if want := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC); got.Status != minipush.StatusScheduled || !got.NextRunAt.Equal(want) {
		t.Errorf("resume: %s next %s, want scheduled at the next occurrence %s", got.Status, got.NextRunAt, want)
	}
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c2/resume", body: `{"catchUp":true}`}, 200, &got)
	if got.Status != minipush.StatusScheduled || !got.NextRunAt.Equal(resumeAt) {
		t.Errorf("resume with catchUp: %s next %s, want scheduled now (%s)", got.Status, got.NextRunAt, resumeAt)
	}
}
