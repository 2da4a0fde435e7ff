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
	"minipush/internal/dev/apispec"
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
	ids := []string{"mk", "tx", "off"}
	const n = 5
	db, h, p, sh, setClock := quietHoursCampaigns(t, 21, 50, ids,
		[]string{`{"canaryPercent":0}`, `{"canaryPercent":0,"transactional":true}`, `{"canaryPercent":0,"quietHours":{"off":true}}`})
	// The planner queues all three before the window (21:50); two of the marketing
	// campaign's recipients are sent before 22:00, as send would count them.
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

// TestProgressHeldByPlanner: a marketing run due inside quiet hours is held by the
// planner before it queues anyone, so no recipient is deferred; progress, through the
// operator API, shows the hold as the run's heldUntil (the window's end, 08:00
// Asia/Shanghai), documented in openapi.json, while the transactional campaign due at
// the same moment is sending without one. At 08:00 the hold is no longer shown, and the
// first tick queues the whole audience and clears it.
func TestProgressHeldByPlanner(t *testing.T) {
	t.Parallel()
	doc, err := apispec.Parse(admin.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"mk", "tx"}
	const n = 5
	db, h, p, sh, setClock := quietHoursCampaigns(t, 23, 0, ids, []string{`{"canaryPercent":0}`, `{"canaryPercent":0,"transactional":true}`})
	tick := func() {
		t.Helper()
		if err := p.Handle(t.Context(), events.EventBridgeEvent{ID: "tick"}); err != nil {
			t.Fatal(err)
		}
	}
	type progress struct {
		Status  minipush.CampaignStatus `json:"status"`
		Current *minipush.Run           `json:"current"`
	}
	get := func(id string) progress {
		t.Helper()
		c := call{method: "GET", target: "/v1/admin/campaigns/" + id + "/progress"}
		resp := do(t, h, c)
		if err := doc.Observe(c.method, c.target, resp.StatusCode, resp.Headers["Content-Type"], []byte(resp.Body)); err != nil {
			t.Errorf("progress of %s against openapi.json: %v", id, err)
		}
		var out progress
		mustOK(t, h, c, 200, &out)
		if out.Current == nil {
			t.Fatalf("%s: progress %+v without a current run", id, out)
		}
		return out
	}

	tick() // 23:00: the marketing run is held before queueing anyone
	end := time.Date(2026, 11, 26, 8, 0, 0, 0, sh)
	if pr := get("mk"); pr.Status != minipush.StatusPlanning || pr.Current.Status != minipush.RunPlanning ||
		pr.Current.Counters.Planned != 0 || !pr.Current.HeldUntil.Equal(end) || pr.Current.Deferred != 0 {
		t.Errorf("inside the window: %s, run %+v; want planning, nothing planned or deferred, held until %v", pr.Status, *pr.Current, end)
	}
	if pr := get("tx"); pr.Status != minipush.StatusSending || pr.Current.Counters.Planned != n || !pr.Current.HeldUntil.IsZero() {
		t.Errorf("transactional: %s, run %+v; want sending with %d planned and no hold", pr.Status, *pr.Current, n)
	}

	setClock(end) // the window is over; the planner has not ticked yet
	if pr := get("mk"); !pr.Current.HeldUntil.IsZero() {
		t.Errorf("at the window's end: held until %v, want no hold shown", pr.Current.HeldUntil)
	}
	tick()
	if pr := get("mk"); pr.Status != minipush.StatusSending || pr.Current.Counters.Planned != n || !pr.Current.HeldUntil.IsZero() {
		t.Errorf("after the window's first tick: %s, run %+v; want sending with %d planned and no hold", pr.Status, *pr.Current, n)
	}
	runs, err := db.CampaignRuns(t.Context(), "mk")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || !runs[0].HeldUntil.IsZero() {
		t.Errorf("stored runs %+v, want one without heldUntil", runs)
	}
}

// quietHoursCampaigns sets up one app whose quiet hours are 22:00-08:00 Asia/Shanghai,
// its operator API and planner on a settable clock starting on 2026-11-25 at hour:min
// there, and, through the API, one campaign of five recipients scheduled now per
// policy (ids[i] with policies[i]).
func quietHoursCampaigns(t *testing.T, hour, min int, ids, policies []string) (*dynamo.DB, *admin.Handler, *plan.Handler, *time.Location, func(time.Time)) {
	t.Helper()
	env := testenv.New(t)
	db := envDB(env)
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.Date(2026, 11, 25, hour, min, 0, 0, sh)
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	db.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	apps := map[string]minipush.App{"wx1": {AppID: "wx1", TimeZone: "Asia/Shanghai",
		QuietHours: &minipush.QuietHours{Start: "22:00", End: "08:00"}}}
	h := admin.New(db, token, []string{"wx1"})
	h.Now, h.Apps = db.Now, apps
	next := 0
	h.NewID = func() string { next++; return ids[next-1] }
	for i, id := range ids {
		body := strings.Replace(subscribeCampaign, `"audience":{"kind":"list"}`, `"audience":{"kind":"list"},"policy":`+policies[i], 1)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: body}, 201, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + id + "/audience",
			body: `{"openIds":["oA","oB","oC","oD","oE"]}`}, 200, nil)
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/" + id + "/schedule", body: `{"now":true}`}, 200, nil)
	}
	p := &plan.Handler{DB: db, Queue: queue.New(env.SQS, env.Queue("SendQueue").URL), Now: db.Now,
		Log: slog.New(slog.DiscardHandler), Apps: apps}
	return db, h, p, sh, setClock
}
