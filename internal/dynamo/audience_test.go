package dynamo_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"minipush"
)

func TestAudience(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()
	var page1, page2 []string
	for i := range 60 {
		page1 = append(page1, fmt.Sprintf("u%03d", i))
	}
	page1 = append(page1, "u000", "u001") // duplicates inside the page
	for i := 50; i < 80; i++ {
		page2 = append(page2, fmt.Sprintf("u%03d", i)) // 10 overlap page1
	}
	n, err := db.AddAudience(ctx, "camp", page1)
	if err != nil || n != 60 {
		t.Fatalf("page1: %d %v", n, err)
	}
	if n, err = db.AddAudience(ctx, "camp", page2); err != nil || n != 30 {
		t.Fatalf("page2: %d %v", n, err)
	}
	var got []string
	after := ""
	for {
		ids, next, err := db.AudiencePage(ctx, "camp", after, 25)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids...)
		if next == "" {
			break
		}
		after = next
	}
	if len(got) != 80 || !slices.IsSorted(got) || slices.Compact(slices.Clone(got))[79] != "u079" {
		t.Fatalf("audience of %d: %v", len(got), got)
	}
}

// TestScanReachable: a reachable audience is exactly the users of the campaign's app
// holding a spendable grant of the message's channel, each once, however the scan is
// split into segments and pages (small pages cut users holding many grants in two).
func TestScanReachable(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	const app, other = "wxreach", "wxreachother"
	var grants []minipush.Grant
	add := func(g minipush.Grant, n int) {
		for i := range n {
			c := g
			c.ID = fmt.Sprintf("%s-%d", g.ID, i)
			grants = append(grants, c)
		}
	}
	sub := func(app, openID, tpl string) minipush.Grant {
		return minipush.Grant{AppID: app, OpenID: openID, Kind: minipush.GrantSubscribe, ID: "s-" + tpl, TemplateID: tpl,
			Uses: 1, CollectedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	}
	form := func(app, openID string, kind minipush.GrantKind) minipush.Grant {
		return minipush.Grant{AppID: app, OpenID: openID, Kind: kind, ID: "t-" + string(kind), Value: "v",
			Uses: kind.Uses(), CollectedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	wantTPL, wantForm := map[string]bool{}, map[string]bool{}
	for i := range 40 {
		id := fmt.Sprintf("oreach%02d", i)
		switch i % 10 {
		case 0, 1: // the template's grants, 1 to 9 of them
			add(sub(app, id, "TPL-1"), 1+i%9)
			wantTPL[id] = true
		case 2: // another template only, one whose id extends TPL-1's
			add(sub(app, id, "TPL-10"), 3)
		case 3: // form grants only
			add(form(app, id, minipush.GrantForm), 4)
			wantForm[id] = true
		case 4: // a prepay grant and another template
			add(form(app, id, minipush.GrantPrepay), 1)
			add(sub(app, id, "TPL-2"), 2)
			wantForm[id] = true
		case 5: // the template's grant, but in another app
			add(sub(other, id, "TPL-1"), 2)
			add(form(other, id, minipush.GrantForm), 1)
		case 6: // expired (TTL has not deleted them yet)
			g := sub(app, id, "TPL-1")
			g.ExpiresAt = now.Add(-time.Second)
			add(g, 2)
			f := form(app, id, minipush.GrantForm)
			f.ExpiresAt = now
			add(f, 1)
		case 7: // used up
			g := sub(app, id, "TPL-1")
			g.Uses = 0
			add(g, 1)
		case 8: // the template's grants, but opted out
			add(sub(app, id, "TPL-1"), 2)
			if err := db.PutUserAttrs(ctx, app, minipush.UserAttrs{OpenID: id, OptOut: true}); err != nil {
				t.Fatal(err)
			}
		case 9: // the template's grants among others, and attributes that do not opt out
			add(sub(app, id, "TPL-2"), 2)
			add(sub(app, id, "TPL-1"), 3)
			add(form(app, id, minipush.GrantForm), 2)
			wantTPL[id], wantForm[id] = true, true
			if err := db.PutUserAttrs(ctx, app, minipush.UserAttrs{OpenID: id, Region: "sh"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.ImportGrants(ctx, grants); err != nil {
		t.Fatal(err)
	}
	scan := func(t *testing.T, q minipush.AudienceScan, segments, limit int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for seg := range segments {
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(grants) {
					t.Fatalf("segment %d never ends", seg)
				}
				ids, next, err := db.ScanAudience(ctx, q, seg, segments, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, id := range ids {
					got[id]++
				}
				if next == "" {
					break
				}
				after = next
			}
		}
		return got
	}
	check := func(t *testing.T, got map[string]int, want map[string]bool) {
		t.Helper()
		for id, n := range got {
			if !want[id] || n != 1 {
				t.Errorf("%s planned %d times, want %d", id, n, map[bool]int{true: 1}[want[id]])
			}
		}
		for id := range want {
			if got[id] == 0 {
				t.Errorf("%s not planned", id)
			}
		}
	}
	subscribe := minipush.Message{Kind: minipush.MessageSubscribe, TemplateID: "TPL-1"}
	template := minipush.Message{Kind: minipush.MessageTemplate, TemplateID: "T-LEGACY"}
	for _, split := range []struct{ segments, limit int }{{1, 1000}, {1, 2}, {3, 3}, {4, 7}} {
		t.Run(fmt.Sprintf("Subscribe/%dx%d", split.segments, split.limit), func(t *testing.T) {
			q := minipush.AudienceScan{AppID: app, Reachable: true, Channel: subscribe.Channel(), Now: now, SkipOptedOut: true}
			check(t, scan(t, q, split.segments, split.limit), wantTPL)
		})
		t.Run(fmt.Sprintf("Template/%dx%d", split.segments, split.limit), func(t *testing.T) {
			q := minipush.AudienceScan{AppID: app, Reachable: true, Channel: template.Channel(), Now: now, SkipOptedOut: true}
			check(t, scan(t, q, split.segments, split.limit), wantForm)
		})
	}
	t.Run("OptedOutKeptWithoutPolicy", func(t *testing.T) {
		q := minipush.AudienceScan{AppID: app, Reachable: true, Channel: subscribe.Channel(), Now: now}
		want := maps.Clone(wantTPL)
		for i := 8; i < 40; i += 10 {
			want[fmt.Sprintf("oreach%02d", i)] = true
		}
		check(t, scan(t, q, 2, 5), want)
	})
}
