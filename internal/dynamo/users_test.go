package dynamo_test

import (
	"fmt"
	"slices"
	"testing"

	"minipush"
)

func TestDailySlot(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()
	take := func(day, run string) error { return db.TakeDailySlot(ctx, "wxday", "u1", day, run) }
	if err := take("2026-11-25", "a#1"); err != nil {
		t.Fatal(err)
	}
	if err := take("2026-11-25", "a#1"); err != nil {
		t.Errorf("the same run again (a retried recipient): %v", err)
	}
	if err := take("2026-11-25", "b#1"); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("another run the same day: %v, want ECONFLICT", err)
	}
	if err := take("2026-11-26", "b#1"); err != nil {
		t.Errorf("another run the next day: %v", err)
	}
}

func TestUserAttrs(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()

	t.Run("PutKeepsLoginAndInventory", func(t *testing.T) {
		if err := db.UpsertUser(ctx, "wx1", "u1", "union1"); err != nil {
			t.Fatal(err)
		}
		if err := db.PutUserAttrs(ctx, "wx1", minipush.UserAttrs{OpenID: "u1", Region: "sh", Industry: "retail", Tags: []string{"vip", "b", "vip"}, OptOut: true}); err != nil {
			t.Fatal(err)
		}
		u, err := db.GetUser(ctx, "wx1", "u1")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(u.Tags)
		if u.Region != "sh" || u.Industry != "retail" || !slices.Equal(u.Tags, []string{"b", "vip"}) || !u.OptOut || u.UnionID != "union1" {
			t.Fatalf("user %+v", u)
		}
		if err := db.PutUserAttrs(ctx, "wx1", minipush.UserAttrs{OpenID: "u1", Region: "bj"}); err != nil {
			t.Fatal(err)
		}
		u, _ = db.GetUser(ctx, "wx1", "u1")
		if u.Region != "bj" || u.Industry != "" || len(u.Tags) != 0 || u.OptOut || u.UnionID != "union1" {
			t.Fatalf("replaced user %+v", u)
		}
		out, _ := db.OptedOut(ctx, "wx1", []string{"u1"})
		if out["u1"] {
			t.Fatal("opt-out not cleared")
		}
	})
	t.Run("Import", func(t *testing.T) {
		var us []minipush.UserAttrs
		for i := range 40 {
			us = append(us, minipush.UserAttrs{OpenID: fmt.Sprintf("i%d", i), Region: "gz", OptOut: i%4 == 0})
		}
		if err := db.ImportUserAttrs(ctx, "wx1", us); err != nil {
			t.Fatal(err)
		}
		ids := make([]string, 40)
		for i := range ids {
			ids[i] = fmt.Sprintf("i%d", i)
		}
		out, err := db.OptedOut(ctx, "wx1", ids)
		if err != nil || len(out) != 10 || !out["i4"] || out["i5"] {
			t.Fatalf("opted out %v %v", out, err)
		}
	})
}
