package collect_test

import (
	"fmt"
	"net/http"
	"testing"

	"minipush"
	"minipush/internal/collect"
)

// TestSubscribeSource: an app that names one source of subscribe accepts stores them from
// that source only, so one accept reported by both the client and WeChat's push is one
// grant, not two. The other source's reports are answered without error and change
// nothing; form and prepay uploads are not affected.
func TestSubscribeSource(t *testing.T) {
	t.Parallel()
	const subscribeOnly = `{"grants":[{"type":"subscribe","key":"tap-9","results":{"TPL-B":"accept"}}]}`

	t.Run("Push", func(t *testing.T) {
		t.Parallel()
		f := newFixtureSource(t, nil, minipush.SourcePush)
		openID, token := f.login(t)
		before := f.snapshot(t)
		code, ans := f.upload(t, token, subscribeOnly)
		if code != http.StatusOK || ans.Ignored != 1 || ans.Accepted != 0 || statuses(ans) != "ignored:"+collect.ReasonFromPush {
			t.Fatalf("client accept: %d %+v, want 200 with the item ignored", code, ans)
		}
		f.mustUnchanged(t, before)

		// Mixed with a form grant: the form grant is stored, the accept ignored.
		code, ans = f.upload(t, token, `{"grants":[{"type":"form","formId":"form-9"},{"type":"subscribe","key":"tap-9","results":{"TPL-B":"accept"}}]}`)
		if code != http.StatusOK || statuses(ans) != "accepted,ignored:"+collect.ReasonFromPush {
			t.Fatalf("mixed upload: %d %s", code, statuses(ans))
		}
		// An invalid item is still refused as invalid, not ignored.
		code, ans = f.upload(t, token, `{"grants":[{"type":"subscribe","results":{"TPL-B":"accept"}}]}`)
		if code != http.StatusUnprocessableEntity || statuses(ans) != "rejected:"+collect.ReasonMissingKey {
			t.Fatalf("invalid accept: %d %s", code, statuses(ans))
		}

		resp := f.do(t, f.push("POST", fmt.Sprintf(popupJSON, openID), nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		if got := countKinds(f, t, openID); got["subscribe"] != 1 || got["form"] != 1 {
			t.Fatalf("grants by kind %v, want the pushed accept and the form grant", got)
		}
	})

	t.Run("Client", func(t *testing.T) {
		t.Parallel()
		f := newFixtureSource(t, nil, minipush.SourceClient)
		openID, token := f.login(t)
		before := f.snapshot(t)
		resp := f.do(t, f.push("POST", fmt.Sprintf(popupJSON, openID), nil))
		if resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		f.mustUnchanged(t, before, "push#") // only the push's URL is remembered
		code, ans := f.upload(t, token, subscribeOnly)
		if code != http.StatusOK || ans.Accepted != 1 {
			t.Fatalf("client accept: %d %+v", code, ans)
		}
		if got := countKinds(f, t, openID); got["subscribe"] != 1 {
			t.Fatalf("grants by kind %v, want the client's accept only", got)
		}
	})
}

func countKinds(f *fixture, t *testing.T, openID string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, g := range f.grantItems(t, openID) {
		m[string(g.Kind)]++
	}
	return m
}
