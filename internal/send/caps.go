package send

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"minipush"
)

// The app's limits on marketing messages (minipush.App.Caps, minipush.App.Quiet), and
// the campaign's holdout, as send applies them.
//
// Frequency caps: after the grant lookup (a user without a grant keeps their slot) and
// before the claim, one conditional write (dynamo.DB.TakeCapSlot) checks the user's
// day and week counts and counts this message; a capped user ends
// skipped/frequency_cap and keeps the grant. The slot belongs to the run: a duplicate
// or redelivery of the recipient finds the run's key in the counter and is let through
// without counting twice. When the call then proves nothing was sent (failed, no grant
// after a rejected grant, retry later, abort), or the customer-service step's slot
// finds no grant (cs.go, fallBackUnclaimed), the slot is given back
// (dynamo.DB.ReturnCapSlot), only by the sender holding the recipient's claim or whose
// own write just made it final: no other sender of the run can be sending to that user
// then. A sender that dies between the
// slot and the final write leaves the slot taken: the user gets one message fewer that
// day, never one more.
//
// Quiet hours: a recipient reached inside the window is deferred, not attempted: it is
// re-queued unchanged with the delay to the window's end (at most SQS's 15 minutes, so
// a night's window is a few dozen hops of one message per batch), and is attempted
// after the window. The planner holds the part of the audience it has not queued.
//
// Holdout: minipush.HeldOut picks the control group from the campaign id and the
// openid, so every run, rerun and the forecast agree; held-out recipients end
// skipped/holdout at once, before the opt-out, so the control group is drawn from the
// same audience as the treated one.

// app is appID's configuration; an app missing from Apps has no caps and no quiet
// hours (lambdaenv lists every app of the secret, so this is for tests that do not
// exercise them) and the default zone.
func (h *Handler) app(appID string) (minipush.App, bool) {
	a, ok := h.Apps[appID]
	return a, ok
}

// defaultZone is minipush.DefaultAppTimeZone, loaded once.
var defaultZone = sync.OnceValue(func() *time.Location {
	return minipush.App{}.Location()
})

// limits are an app's rules for one campaign, resolved once per invocation.
type limits struct {
	// loc is the zone of the app's users: the cap's day and week are the recipient's,
	// computed in this one zone for every campaign of the app, whatever zone a
	// campaign's schedule names (else two campaigns would disagree on "today").
	loc   *time.Location
	caps  minipush.Caps
	quiet minipush.QuietHours
}

func (h *Handler) limits(c minipush.Campaign) limits {
	a, ok := h.app(c.AppID)
	if !ok {
		return limits{loc: defaultZone(), quiet: minipush.QuietHours{Off: true}}
	}
	return limits{loc: a.Location(), caps: a.CapsFor(c.Policy), quiet: a.Quiet(c.Policy)}
}

// capSlot is a recipient's frequency-cap slot while it is being delivered.
type capSlot struct {
	day, week string
	held      bool
}

// takeCap takes the recipient's slot unless it holds one already; capped reports that
// a cap refused it.
func (r recipient) takeCap(ctx context.Context) (capped bool, err error) {
	lim := r.st.lim
	if !lim.caps.Any() {
		return false, nil
	}
	if r.cap == nil {
		// A programming error: without a slot record the cap could not be honoured.
		return false, errors.New("send: recipient built without its cap slot")
	}
	if r.cap.held {
		return false, nil
	}
	r.cap.day, r.cap.week = minipush.CapPeriod(r.inv.h.now(), lim.loc)
	err = r.store().TakeCapSlot(ctx, r.st.c.AppID, r.openID, r.cap.day, r.cap.week, r.runKey, lim.caps)
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		return true, nil
	case err != nil:
		return false, err
	}
	r.cap.held = true
	return false, nil
}

// returnCap gives the slot back after a send that proved nothing was sent. Called only
// while this sender holds (or just finalized) the recipient's claim. A failure is
// logged: the user then gets one message fewer in the period, never one more.
func (r recipient) returnCap(ctx context.Context) {
	if r.cap == nil || !r.cap.held {
		return
	}
	r.cap.held = false
	err := r.store().ReturnCapSlot(context.WithoutCancel(ctx), r.st.c.AppID, r.openID, r.cap.day, r.cap.week, r.runKey)
	if err != nil {
		r.inv.h.log().LogAttrs(ctx, slog.LevelWarn, "send: frequency-cap slot not given back", attrs(r, err)...)
	}
}

// quietUntil reports whether the campaign's quiet hours hold at now, and until when.
func (st *campaignState) quietUntil(now time.Time) (time.Time, bool) {
	return st.lim.quiet.Until(now, st.lim.loc)
}

// deferDelay is the re-queue delay of recipients deferred by quiet hours at now: to
// the window's end, at least a second, at most SQS's limit (the next hop re-checks).
func (st *campaignState) deferDelay(now time.Time) time.Duration {
	until, ok := st.quietUntil(now)
	if !ok {
		return 0
	}
	return min(max(until.Sub(now), time.Second), MaxDelay)
}
