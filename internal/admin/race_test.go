package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/httpapi"
)

// scheduleDuringUpload is the admin storage with an operator's schedule landing while
// an audience page is being written.
type scheduleDuringUpload struct {
	admin.Store
	at time.Time
}

func (s scheduleDuringUpload) AddAudience(ctx context.Context, id string, openIDs []string) (int, error) {
	if _, err := s.ScheduleCampaign(ctx, id, minipush.Schedule{At: s.at}, s.at); err != nil {
		return 0, err
	}
	return s.Store.AddAudience(ctx, id, openIDs)
}

// TestAudienceUploadRacingSchedule: a page whose campaign was scheduled between the
// draft check and the write is answered 409 (the planner may miss some of its ids), not
// 200; a page uploaded without a race still gets 200.
func TestAudienceUploadRacingSchedule(t *testing.T) {
	t.Parallel()
	h, db := MustAdmin(t)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: `{"openIds":["oA"]}`}, http.StatusOK, nil)

	h.Store = scheduleDuringUpload{Store: h.Store, at: now.Add(time.Hour)}
	resp := do(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/audience", body: `{"openIds":["oB"]}`})
	var body httpapi.ErrorBody
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		t.Fatalf("body %q: %v", resp.Body, err)
	}
	if resp.StatusCode != http.StatusConflict || body.Code != minipush.ECONFLICT || !strings.Contains(body.Message, "scheduled while this page was stored") {
		t.Fatalf("%d %+v, want 409 naming the schedule", resp.StatusCode, body)
	}
	if c, err := db.GetCampaign(t.Context(), "c1"); err != nil || c.Status != minipush.StatusScheduled {
		t.Fatalf("campaign %+v %v, want scheduled", c, err)
	}
}
