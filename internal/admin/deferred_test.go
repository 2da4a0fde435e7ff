package admin_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/plan"
	"minipush/internal/queue"
)

// TestProgressDeferred: progress, through the operator API, shows a marketing run's
// recipients that wait for the end of quiet hours as deferred with the window's end:
// none before 22:00 (Asia/Shanghai), every planned recipient not yet final inside the
// window (the two sent before it are not), none again at 08:00. A transactional
// campaign and one whose policy turns quiet hours off, planned at the same time with
// the same recipients pending, show nothing deferred inside the window.
func TestProgressDeferred(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	db := dynamo.New(env.DynamoDB, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.Date(2026, 11, 25, 21, 50, 0, 0, sh)
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	db.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	apps := map[string]minipush.App{"wx1": {AppID: "wx1", TimeZone: "Asia/Shanghai",
		QuietHours: &minipush.QuietHours{Start: "22:00", End: "08:00"}}}
	h := admin.New(db, token, []string{"wx1"})
	h.Now, h.Apps = db.Now, apps
	ids := []string{"mk", "tx", "off"}
	next := 0
	h.NewID = func() string { next++; return ids[next-1] }

	const n = 5
	policies := []string{`{"canaryPercent":0}`, `{"canaryPercent":0,"transactional":true}`, `{"canaryPercent":0,"quietHours":{"off":true}}`}
	for i, id := range ids {
		body := strings.Replace(subscribeCampaign, `"audience":{"kind":"list"}`, `"audience":{"kind":"list"},"policy":`+policies[i], 1)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: body}, 201, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + id + "/audience",
			body: `{"openIds":["oA","oB","oC","oD","oE"]}`}, 200, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + id + "/schedule", body: `{"now":true}`}, 200, nil)
	}
	// The planner queues all three before the window (21:50); two of the marketing
	// campaign's recipients are sent before 22:00, as send would count them.
	p := &plan.Handler{DB: db, Queue: queue.New(env.SQS, env.Queue("SendQueue").URL), Now: db.Now,
		Log: slog.New(slog.DiscardHandler), Apps: apps}
	if err := p.Handle(t.Context(), events.EventBridgeEvent{ID: "tick"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddRunCounters(context.Background(), "mk", 1, minipush.Counters{Sent: 2}); err != nil {
		t.Fatal(err)
	}

	progress := func(id string) minipush.Run {
		t.Helper()
		var out struct {
			Status  minipush.CampaignStatus `json:"status"`
			Current *minipush.Run           `json:"current"`
		}
		mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/" + id + "/progress"}, 200, &out)
		if out.Status != minipush.StatusSending || out.Current == nil || out.Current.Counters.Planned != n {
			t.Fatalf("%s: progress %+v, want sending with %d planned", id, out, n)
		}
		return *out.Current
	}
	notDeferred := func(when, id string) {
		t.Helper()
		if r := progress(id); r.Deferred != 0 || !r.DeferredUntil.IsZero() {
			t.Errorf("%s, %s: %d deferred until %v, want none", when, id, r.Deferred, r.DeferredUntil)
		}
	}

	setClock(time.Date(2026, 11, 25, 21, 59, 59, 0, sh))
	notDeferred("before the window", "mk")

	setClock(time.Date(2026, 11, 25, 23, 0, 0, 0, sh))
	end := time.Date(2026, 11, 26, 8, 0, 0, 0, sh)
	if r := progress("mk"); r.Deferred != n-2 || !r.DeferredUntil.Equal(end) {
		t.Errorf("inside the window: %d deferred until %v, want %d until %v", r.Deferred, r.DeferredUntil, n-2, end)
	}
	notDeferred("inside the window", "tx")
	notDeferred("inside the window", "off")

	setClock(end)
	notDeferred("at the window's end", "mk")
}
