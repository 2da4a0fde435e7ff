package admin_test

import (
	"strings"
	"testing"
)

// TestOnePerDayRefused: policy.onePerDay, replaced by the app's frequency caps, is
// refused with 422 naming the caps on every route that takes a policy (create, edit,
// and the console's validate), and the refused request stores nothing.
func TestOnePerDayRefused(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	retired := strings.Replace(subscribeCampaign, `"audience":{"kind":"list"}`, `"audience":{"kind":"list"},"policy":{"onePerDay":true}`, 1)
	for _, c := range []call{
		{method: "POST", target: "/v1/admin/campaigns", body: retired},
		{method: "POST", target: "/v1/admin/campaigns:validate", body: retired},
	} {
		resp := do(t, h, c)
		if resp.StatusCode != 422 || !strings.Contains(resp.Body, "onePerDay") || !strings.Contains(resp.Body, "caps") {
			t.Errorf("%s %s with onePerDay: %d %s, want 422 naming the caps", c.method, c.target, resp.StatusCode, resp.Body)
		}
	}
	var list struct {
		Campaigns []struct{ ID string } `json:"campaigns"`
	}
	mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns?status=draft"}, 200, &list)
	if len(list.Campaigns) != 0 {
		t.Fatalf("a refused create stored %+v", list.Campaigns)
	}

	var created struct {
		ID   string `json:"id"`
		Rev  int    `json:"rev"`
		Name string `json:"name"`
	}
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, 201, &created)
	resp := do(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/" + created.ID, body: `{"name":"renamed","policy":{"onePerDay":true}}`})
	if resp.StatusCode != 422 || !strings.Contains(resp.Body, "caps") {
		t.Errorf("PATCH with onePerDay: %d %s, want 422 naming the caps", resp.StatusCode, resp.Body)
	}
	var after struct {
		Name string `json:"name"`
	}
	mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/" + created.ID}, 200, &after)
	if after.Name != created.Name {
		t.Fatalf("a refused edit changed the name to %q", after.Name)
	}
}
