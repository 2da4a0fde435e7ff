package send_test

import (
	"maps"
	"sync"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// want is a recipient's expected final state.
type want struct {
	outcome minipush.Outcome
	reason  string
}

// audience builds recipients of every grant situation for one campaign and returns
// their openids and expected outcomes, plus checks to run on the grants afterwards.
type audience struct {
	openIDs []string
	want    map[string]want
	after   []func(t *testing.T)
}

func (a *audience) add(openID string, w want) {
	a.openIDs = append(a.openIDs, openID)
	a.want[openID] = w
}

// optOut stores the users as opted out, as the operator API does.
func (f *fixture) optOut(t *testing.T, openIDs ...string) {
	t.Helper()
	users := make([]minipush.UserAttrs, len(openIDs))
	for i, u := range openIDs {
		users[i] = minipush.UserAttrs{OpenID: u, OptOut: true}
	}
	if err := f.db.ImportUserAttrs(t.Context(), appID, users); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) liveGrants(t *testing.T, openID string) []minipush.Grant {
	t.Helper()
	gs, err := f.db.LiveGrants(t.Context(), appID, openID)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// subscribeAudience: n recipients of a subscribe campaign, by i%10: no grant; an
// expired grant (WeChat would still take it); one grant; three grants; a grant of
// another template; a form grant only; opted out; a grant WeChat no longer holds
// (43101); and two more with one grant.
func (f *fixture) subscribeAudience(t *testing.T, n int) *audience {
	t.Helper()
	now := time.Now()
	a := &audience{want: map[string]want{}}
	var grants []minipush.Grant
	var optOuts []string
	for i := range n {
		u := f.sb.NewUser(appID)
		switch i % 10 {
		case 0:
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		case 1:
			// WeChat would take it (subscribe grants do not expire there), so a
			// send paid with it would show up as accepted.
			grants = append(grants, subGrant(u, subTpl, now.Add(-time.Hour)))
			f.sb.AddSubscribeGrant(appID, u, subTpl)
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		case 3:
			for d := 1; d <= 3; d++ {
				grants = append(grants, subGrant(u, subTpl, now.Add(time.Duration(d)*240*time.Hour)))
				f.sb.AddSubscribeGrant(appID, u, subTpl)
			}
			a.add(u, want{minipush.OutcomeSent, ""})
			a.after = append(a.after, func(t *testing.T) {
				gs := f.liveGrants(t, u)
				if len(gs) != 2 {
					t.Errorf("user with 3 grants holds %d after one send, want 2", len(gs))
				}
				for _, g := range gs {
					if g.ExpiresAt.Before(now.Add(300 * time.Hour)) {
						t.Errorf("a later grant was spent before the earliest-expiring one")
					}
				}
			})
		case 4:
			grants = append(grants, subGrant(u, otherTp, now.Add(240*time.Hour)))
			f.sb.AddSubscribeGrant(appID, u, otherTp)
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		case 5:
			grants = append(grants, formGrant(u, "form-"+u, minipush.GrantForm, now.Add(-time.Hour)))
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		case 6:
			grants = append(grants, subGrant(u, subTpl, now.Add(240*time.Hour)))
			f.sb.AddSubscribeGrant(appID, u, subTpl)
			optOuts = append(optOuts, u)
			a.add(u, want{minipush.OutcomeSkipped, "opted_out"})
		case 7:
			// Two accepts from before the send, and one that lands while the call is in
			// flight (collected after it started): 43101 speaks only for the older ones.
			older := []minipush.Grant{subGrant(u, subTpl, now.Add(240*time.Hour)), subGrant(u, subTpl, now.Add(480*time.Hour))}
			for i := range older {
				older[i].CollectedAt = now.Add(-2 * time.Hour)
			}
			newer := subGrant(u, subTpl, now.Add(720*time.Hour))
			newer.CollectedAt = now.Add(time.Hour)
			grants = append(grants, older[0], older[1], newer)
			a.add(u, want{minipush.OutcomeFailed, "user_refused"})
			a.after = append(a.after, func(t *testing.T) {
				if gs := f.liveGrants(t, u); len(gs) != 1 || gs[0].ID != newer.ID {
					t.Errorf("after 43101 the user holds %d grants of the template, want only the accept that came after the call", len(gs))
				}
			})
		default:
			grants = append(grants, subGrant(u, subTpl, now.Add(240*time.Hour)))
			f.sb.AddSubscribeGrant(appID, u, subTpl)
			a.add(u, want{minipush.OutcomeSent, ""})
		}
	}
	f.putGrants(t, grants)
	f.optOut(t, optOuts...)
	return a
}

// templateAudience: n recipients of a template (formId) campaign, by i%10: no grant;
// an expired formId; a formId; a prepay id (3 uses); an expired and a valid formId; a
// formId WeChat does not know (41028) before a valid one; a subscribe grant only; and
// three more with one formId.
func (f *fixture) templateAudience(t *testing.T, n int) *audience {
	t.Helper()
	now := time.Now()
	a := &audience{want: map[string]want{}}
	var grants []minipush.Grant
	for i := range n {
		u := f.sb.NewUser(appID)
		valid := func() minipush.Grant {
			return formGrant(u, f.sb.MintFormID(appID, u, sandbox.KindForm), minipush.GrantForm, now.Add(-time.Hour))
		}
		expired := func() minipush.Grant {
			v := "expired-" + u
			f.sb.AddFormID(appID, u, v, sandbox.KindForm, now.Add(-8*24*time.Hour))
			return formGrant(u, v, minipush.GrantForm, now.Add(-8*24*time.Hour))
		}
		switch i % 10 {
		case 0:
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		case 1:
			// Spending it would be answered 41028 (see the errcode count in checkRun).
			grants = append(grants, expired())
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		case 3:
			g := formGrant(u, f.sb.MintFormID(appID, u, sandbox.KindPrepay), minipush.GrantPrepay, now.Add(-time.Hour))
			grants = append(grants, g)
			a.add(u, want{minipush.OutcomeSent, ""})
			a.after = append(a.after, func(t *testing.T) {
				got, err := f.db.GetGrant(t.Context(), appID, u, g.ID)
				if err != nil || got.Uses != 2 {
					t.Errorf("prepay grant after one send = %+v, %v; want 2 uses", got, err)
				}
			})
		case 4:
			grants = append(grants, expired(), valid())
			a.add(u, want{minipush.OutcomeSent, ""})
		case 5:
			bogus := formGrant(u, "unknown-at-wechat-"+u, minipush.GrantForm, now.Add(-2*24*time.Hour))
			grants = append(grants, bogus, valid())
			a.add(u, want{minipush.OutcomeSent, ""})
			a.after = append(a.after, func(t *testing.T) {
				if _, err := f.db.GetGrant(t.Context(), appID, u, bogus.ID); minipush.ErrorCode(err) != minipush.ENOTFOUND {
					t.Errorf("grant WeChat rejected with 41028: %v, want it dropped", err)
				}
			})
		case 6:
			grants = append(grants, subGrant(u, subTpl, now.Add(240*time.Hour)))
			a.add(u, want{minipush.OutcomeNoGrant, ""})
		default:
			grants = append(grants, valid())
			a.add(u, want{minipush.OutcomeSent, ""})
		}
	}
	f.putGrants(t, grants)
	return a
}

// checkRun asserts every recipient's final state, that WeChat accepted exactly the
// sent ones once each, and that the run is done with the exact summary.
func (f *fixture) checkRun(t *testing.T, campaign, api string, a *audience) {
	t.Helper()
	got := f.outcomes(t, campaign)
	accepted := f.acceptedBy(api)
	wantSum := minipush.Counters{Planned: len(a.openIDs), Failed: map[string]int{}}
	for _, u := range a.openIDs {
		w := a.want[u]
		d, ok := got[u]
		switch {
		case !ok:
			t.Errorf("%s: no delivery item, want %s", u, w.outcome)
		case d.State != "final" || d.Outcome != w.outcome || d.Reason != w.reason:
			t.Errorf("%s: %s %s/%q, want final %s/%q", u, d.State, d.Outcome, d.Reason, w.outcome, w.reason)
		}
		wantAccepted := 0
		switch w.outcome {
		case minipush.OutcomeSent:
			wantSum.Sent++
			wantAccepted = 1
		case minipush.OutcomeNoGrant:
			wantSum.NoGrant++
		case minipush.OutcomeSkipped:
			wantSum.Skipped++
		case minipush.OutcomeFailed:
			wantSum.Failed[w.reason]++
		}
		if accepted[u] != wantAccepted {
			t.Errorf("%s (%s): WeChat accepted %d messages, want %d", u, w.outcome, accepted[u], wantAccepted)
		}
		if ok && (d.ExpiresAt.Before(time.Now().Add(29*24*time.Hour)) || d.ExpiresAt.After(time.Now().Add(31*24*time.Hour))) {
			t.Errorf("%s: delivery expiresAt %v, want about 30 days ahead", u, d.ExpiresAt)
		}
	}
	if len(got) != len(a.openIDs) {
		t.Errorf("%d delivery items, want %d", len(got), len(a.openIDs))
	}
	prog, err := f.db.RunCounters(t.Context(), campaign, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(wantSum.Failed) == 0 {
		wantSum.Failed = nil
	}
	if prog.Status != "done" || !countersEqual(prog.Counters, wantSum) {
		t.Errorf("run = %s %+v, want done %+v", prog.Status, prog.Counters, wantSum)
	}
	c, err := f.db.SendCampaign(t.Context(), campaign)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != minipush.StatusDone {
		t.Errorf("one-off campaign status %s after its run, want done", c.Status)
	}
	for _, check := range a.after {
		check(t)
	}
}

func countersEqual(a, b minipush.Counters) bool {
	clean := func(m map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range m {
			if v != 0 {
				out[k] = v
			}
		}
		return out
	}
	return a.Planned == b.Planned && a.Sent == b.Sent && a.NoGrant == b.NoGrant && a.Skipped == b.Skipped &&
		a.Unknown == b.Unknown && maps.Equal(clean(a.Failed), clean(b.Failed))
}

// TestMixedAudience sends two runs of 2,000 recipients in all (subscribe and formId
// campaigns, every grant situation) through two handler instances at once. Scale is
// make chaos's (20,000 through two runners) and make bench's; here the size only has
// to give every situation many recipients and the two instances real overlap.
func TestMixedAudience(t *testing.T) {
	t.Parallel()
	setup := time.Now()
	f := newFixture(t)
	const nSub, nForm, parallelism = 1200, 800, 16
	sub, form := f.subscribeAudience(t, nSub), f.templateAudience(t, nForm)
	t.Logf("setup in %v", time.Since(setup))
	policy := minipush.Policy{SkipOptedOut: true}
	f.putCampaign(t, "sub", subscribeMessage(), policy, nSub)
	f.putCampaign(t, "form", templateMessage(), policy, nForm)

	evs := events10(t, append(batches("sub", sub.openIDs, 100), batches("form", form.openIDs, 100)...))
	h1, h2 := f.handler(parallelism), f.handler(parallelism)
	start := time.Now()
	var wg sync.WaitGroup
	for i, ev := range evs {
		h := h1
		if i%2 == 1 {
			h = h2
		}
		wg.Go(func() { handle(t, h, ev) })
		if i%2 == 1 {
			wg.Wait()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d recipients in %v (%.0f recipients/s)", nSub+nForm, elapsed, float64(nSub+nForm)/elapsed.Seconds())

	t.Run("Final", func(t *testing.T) {
		f.checkRun(t, "sub", sandbox.PathSubscribeSend, sub)
		f.checkRun(t, "form", sandbox.PathTemplateSend, form)
	})
	t.Run("ExpiredNeverSpent", func(t *testing.T) {
		// Only the formIds unknown to WeChat (one in ten form recipients) may be
		// answered 41028; an expired formId tried would add to it.
		if got, want := f.sb.Stats().Errcodes[41028], nForm/10; got != want {
			t.Errorf("sandbox answered 41028 %d times, want %d", got, want)
		}
	})
	t.Run("PeakInFlight", func(t *testing.T) {
		if p := f.sb.Stats().PeakInFlight; p > 2*parallelism {
			t.Errorf("sandbox peak in-flight %d with 2 handlers of parallelism %d", p, parallelism)
		}
	})
	t.Run("OneTokenFetch", func(t *testing.T) {
		if n := f.sb.Stats().TokensIssued[appID]; n != 1 {
			t.Errorf("sandbox issued %d tokens, want 1", n)
		}
	})
}
