package plan_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"minipush"
	"minipush/internal/plan"
)

// TestPlanReachable: a reachable audience plans exactly the users of the campaign's app
// who hold a spendable grant of the message's channel (here subscribe TPL-1) when it is
// planned. Grants are stored through AddGrants, so each user's inventory (liveGrants,
// latestExpiry) is what collect would leave: users whose inventory counts only other
// grants must not be planned (they could only end no_grant). The planner is killed
// between queueing and saving its cursor once, with pages small enough to cut users'
// grants in two, and the planner that takes over must still plan each user once.
func TestPlanReachable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	now := f.clk.Now()
	const otherApp = "wxplanother0001"
	sub := func(app, openID, tpl string, i int, ttl time.Duration) minipush.Grant {
		return minipush.Grant{AppID: app, OpenID: openID, Kind: minipush.GrantSubscribe, ID: fmt.Sprintf("s-%s-%d", tpl, i),
			TemplateID: tpl, Uses: 1, CollectedAt: now, ExpiresAt: now.Add(ttl)}
	}
	form := func(app, openID string, i int) minipush.Grant {
		return minipush.Grant{AppID: app, OpenID: openID, Kind: minipush.GrantForm, ID: fmt.Sprintf("f-%d", i), Value: fmt.Sprintf("form-%d", i),
			Uses: 1, CollectedAt: now, ExpiresAt: now.Add(minipush.FormGrantValidity)}
	}
	want := map[string]bool{}
	const users = 60
	for i := range users {
		id := openID(i)
		app := appID
		var gs []minipush.Grant
		switch i % 6 {
		case 0, 1: // the message's template: 1 to 5 grants, and sometimes others
			for j := range 1 + i%5 {
				gs = append(gs, sub(app, id, "TPL-1", j, 30*24*time.Hour))
			}
			if i%4 == 0 {
				gs = append(gs, sub(app, id, "TPL-2", 0, 30*24*time.Hour), form(app, id, 0))
			}
			want[id] = true
		case 2: // another template only
			gs = []minipush.Grant{sub(app, id, "TPL-2", 0, 30*24*time.Hour), sub(app, id, "TPL-2", 1, 30*24*time.Hour)}
		case 3: // another channel only: form grants
			gs = []minipush.Grant{form(app, id, 0), form(app, id, 1)}
		case 4: // the message's template, in another app
			app = otherApp
			gs = []minipush.Grant{sub(app, id, "TPL-1", 0, 30*24*time.Hour)}
		case 5: // the template's grant expires before the campaign plans; another lives on
			gs = []minipush.Grant{sub(app, id, "TPL-1", 0, time.Hour), form(app, id, 0)}
		}
		if _, err := f.db.AddGrants(ctx, app, id, gs, minipush.DefaultMaxLiveGrants); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Add(2 * time.Hour) // case 5's TPL-1 grant has expired; TTL has not removed it
	f.oneOff(t, "creach", minipush.Audience{Kind: minipush.AudienceReachable})

	const page = 4 // grants per scan page and segment: users' grants straddle pages
	h := f.handler("crashing")
	h.PageSize = page
	h.Queue = &crashAfterQueue{Queue: f.queue, crashOn: 3}
	if err := h.Handle(ctx, tick); !errors.Is(err, errCrashed) {
		t.Fatalf("crashing planner: %v, want %v", err, errCrashed)
	}
	f.clk.Add(plan.DefaultLease + time.Second)
	h2 := f.handler("takeover")
	h2.PageSize = page
	if err := h2.Handle(ctx, tick); err != nil {
		t.Fatal(err)
	}
	p := f.mustRun(t, "creach", 1)
	if p.Status != minipush.RunSending && p.Status != minipush.RunDone {
		t.Fatalf("run status %q, want planned", p.Status)
	}

	d := f.drain(t, len(want))
	copies := map[string][][]string{}
	for _, b := range d.batches {
		copies[b.ID] = append(copies[b.ID], b.OpenIDs)
	}
	got := map[string]int{}
	for id, cs := range copies {
		for _, c := range cs[1:] {
			if !slices.Equal(c, cs[0]) {
				t.Fatalf("batch %s queued again with other recipients", id)
			}
		}
		for _, r := range cs[0] {
			got[r]++
		}
	}
	for id, n := range got {
		if !want[id] {
			t.Errorf("%s planned but holds no spendable TPL-1 grant of %s", id, appID)
		} else if n != 1 {
			t.Errorf("%s in %d batches, want 1", id, n)
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("%s holds a TPL-1 grant but was not planned", id)
		}
	}
	if p.Planned != len(want) {
		t.Errorf("planned %d, want %d", p.Planned, len(want))
	}
}
