package dynamo_test

import (
	"fmt"
	"slices"
	"testing"
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
