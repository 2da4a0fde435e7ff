package dynamo_test

import (
	"fmt"
	"testing"
	"time"

	"minipush"
)

// TestImportGrants loads more than one batch of grants and reads each back as the
// sender finds it, with the fields AddGrants would have stored.
func TestImportGrants(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	var grants []minipush.Grant
	for i := range 30 {
		grants = append(grants, formGrant("wximport", fmt.Sprintf("o%d", i), fmt.Sprintf("form-%d", i), clk.Now()))
	}
	if err := db.ImportGrants(t.Context(), grants); err != nil {
		t.Fatal(err)
	}
	for _, want := range grants {
		got, err := db.SpendableGrant(t.Context(), want.AppID, want.OpenID, minipush.GrantChannel(minipush.GrantForm, ""))
		if err != nil {
			t.Fatalf("%s: %v", want.OpenID, err)
		}
		if got.ID != want.ID || got.Value != want.Value || got.Uses != want.Uses || !got.ExpiresAt.Equal(want.ExpiresAt.Truncate(time.Second)) {
			t.Errorf("%s: got %+v, want %+v", want.OpenID, got, want)
		}
	}
}
