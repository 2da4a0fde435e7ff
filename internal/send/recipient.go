package send

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"minipush"
	"minipush/internal/wechat"
)

// recipient is one recipient of one batch being delivered.
type recipient struct {
	inv    *invocation
	st     *campaignState
	b      minipush.Batch
	runKey string
	openID string
	cap    *capSlot // the frequency-cap slot (caps.go); nil for a recipient never delivered
	// turn is the index of the recipient's SQS message in the invocation, start when
	// the recipient began (before its claim): a sent log must land well inside the
	// claim's lease (sentlog.go). A zero start never goes into a log.
	turn  int
	start time.Time
}

func (r recipient) store() Store { return r.inv.h.Store }

// deliver runs steps 2–5 for the recipient. An error is an infrastructure failure
// (storage, queue); the caller fails the message so SQS redelivers it. Before
// returning one, deliver deletes its claim when no call was made under it, so the
// redelivery does not have to wait for the claim to expire.
func (r recipient) deliver(ctx context.Context) (result, error) {
	if r.st.c.Message.CustomerService != nil {
		return r.deliverCS(ctx) // cs.go: the customer-service channel first
	}
	return r.deliverGrant(ctx, false)
}

// deliverGrant is deliver on the grant channel; claimed says this invocation holds the
// recipient's claim already (the customer-service step's, after WeChat refused it).
func (r recipient) deliverGrant(ctx context.Context, claimed bool) (result, error) {
	h, c := r.inv.h, r.st.c
	lookups := 0
	// anyGrant: our claim names the campaign's channel, not one grant (claimAndLook), so
	// a grant found after a rejected one needs no SetDeliveryGrant.
	var first *minipush.Grant
	anyGrant := false
	if !claimed && r.claimWhileLooking() {
		g, res, stop, err := r.claimAndLook(ctx)
		if stop {
			return res, err
		}
		first, claimed, anyGrant = &g, true, true
	}
	for {
		var g minipush.Grant
		var err error
		prepared := first != nil // claimAndLook took the quota and claimed already
		if first != nil {
			g, first = *first, nil
		} else {
			g, err = r.store().SpendableGrant(ctx, c.AppID, r.openID, c.Message.Channel())
		}
		switch {
		case minipush.ErrorCode(err) == minipush.ENOTFOUND:
			if claimed {
				return r.finishOwn(ctx, minipush.OutcomeNoGrant, "", 0)
			}
			return r.finalizeUnclaimed(ctx, minipush.OutcomeNoGrant, "", 0)
		case err != nil:
			return r.abandon(ctx, claimed, err)
		}
		if !prepared {
			if res, stop, err := r.beforeCall(ctx, g, &claimed, anyGrant); stop {
				return res, err
			}
		}

		callStart := h.now()
		action, reason, errcode, msgID := r.call(ctx, g)
		switch action {
		case wechat.OK:
			return r.spendAndFinish(ctx, g, minipush.OutcomeSent, "", 0, msgID)
		case wechat.NextGrant:
			if err := r.store().DiscardGrant(ctx, g); err != nil {
				return r.abandon(ctx, true, err)
			}
			if lookups++; lookups >= grantLookups {
				return r.finishOwn(ctx, minipush.OutcomeFailed, reason, errcode)
			}
		case wechat.FailRecipient:
			if errcode == 43101 && c.Message.Kind == minipush.MessageSubscribe {
				// WeChat held no grant of this template for the user when it answered: ours
				// from before the call are stale; an accept that landed since is not.
				if _, err := r.store().DeleteGrantsAcceptedBefore(ctx, c.AppID, r.openID, c.Message.TemplateID, callStart); err != nil {
					return r.abandon(ctx, true, err)
				}
			}
			return r.finishOwn(ctx, minipush.OutcomeFailed, reason, errcode)
		case wechat.Abort:
			if res, ok, err := r.quotaRefused(ctx, reason, errcode); ok {
				return res, err // 45009: the app waits for the reset, not the campaign (quota.go)
			}
			r.returnCap(ctx) // nothing was sent; still under our claim
			if err := r.store().DeleteClaim(ctx, r.runKey, r.openID, r.inv.owner); err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
				return result{}, fmt.Errorf("send: abort: %w", err)
			}
			if err := r.pause(ctx, reason, errcode); err != nil {
				return result{}, err
			}
			return result{openID: r.openID, fate: fateHold}, nil
		case wechat.Unknown:
			// WeChat may have delivered it: never resend, and count the grant as used.
			return r.spendAndFinish(ctx, g, minipush.OutcomeUnknown, reason, errcode, "")
		default: // Retry, or a token that stayed stale after one refresh
			r.giveQuota() // nothing was sent
			return r.retryLater(ctx)
		}
	}
}

// claimWhileLooking says the recipient's claim goes out together with its grant
// lookup (claimAndLook) instead of after it: one DynamoDB round trip less before the
// call, on the path every recipient takes (issue #12, send next to the seeds' naive
// loop). Only for subscribe messages, whose grants are interchangeable counts of the
// user's accepts of the template at WeChat, so a claim can name the channel instead of
// one grant (anyGrantPrefix); and only without frequency caps, whose slot is taken
// after the lookup so that a user without a grant keeps it.
func (r recipient) claimWhileLooking() bool {
	return r.st.c.Message.Kind == minipush.MessageSubscribe && !r.st.lim.caps.Any()
}

// anyGrantPrefix marks a claim's GrantID that names a grant channel, not a grant: the
// claim was written before its grant was known (claimAndLook). A crashed sender's
// claim then counts as having spent any one of the user's grants of that channel
// (spendLostClaim), as spend does after losing a race for its own: WeChat counts
// accepts, not particular ones. Grant IDs are hex (minipush.GrantID): no collision.
const anyGrantPrefix = "any:"

// claimAndLook writes the claim and looks the grant up at once. The two are
// independent: a claim that fails drops the lookup's answer (nothing is called, the
// claim is resolved as before); a lookup that finds nothing ends the claimed recipient
// no_grant. Then, as beforeCall does after a lookup, the quota token and the
// limiter's wait, so a recipient without a grant takes neither. The call waits for
// all of it, so the claim precedes it as ever. stop says the recipient is done with
// res and err; else g is the grant to call with under this invocation's claim.
func (r recipient) claimAndLook(ctx context.Context) (g minipush.Grant, res result, stop bool, err error) {
	h, c := r.inv.h, r.st.c
	var (
		wg      sync.WaitGroup
		lookErr error
	)
	wg.Go(func() { g, lookErr = r.store().SpendableGrant(ctx, c.AppID, r.openID, c.Message.Channel()) })
	existing, err := r.store().CreateDelivery(ctx, minipush.Delivery{
		RunKey: r.runKey, OpenID: r.openID, State: minipush.DeliverySending, Owner: r.inv.owner,
		LeaseUntil: h.now().Add(h.lease()), GrantID: anyGrantPrefix + c.Message.Channel(), Channel: string(c.Message.Kind),
		ExpiresAt: h.now().Add(r.retention()),
	})
	wg.Wait()
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		res, err = r.resolve(ctx, existing) // not ours: the lookup's answer is dropped
		return g, res, true, err
	case err != nil:
		res, err = r.abandon(ctx, false, err)
		return g, res, true, err
	}
	switch {
	case minipush.ErrorCode(lookErr) == minipush.ENOTFOUND:
		res, err = r.finishOwn(ctx, minipush.OutcomeNoGrant, "", 0)
		return g, res, true, err
	case lookErr != nil:
		res, err = r.abandon(ctx, true, lookErr)
		return g, res, true, err
	}
	if res, stop, err := r.takeQuota(ctx, true); stop {
		return g, res, true, err // quota.go: the app's daily budget is used up; the claim went back
	}
	if err := h.Limiter.Wait(ctx); err != nil {
		// The invocation is ending: held, as beforeCall holds at its wait, without the
		// claim (nothing was called under it), so the retry need not wait for its lease.
		r.giveQuota()
		if err := r.store().DeleteClaim(context.WithoutCancel(ctx), r.runKey, r.openID, r.inv.owner); err != nil {
			if minipush.ErrorCode(err) == minipush.ECONFLICT {
				return g, result{openID: r.openID, fate: fateDone}, true, nil // taken over: final elsewhere
			}
			return g, result{}, true, fmt.Errorf("send: release claim held at the limiter: %w", err)
		}
		return g, result{openID: r.openID, fate: fateHold}, true, nil
	}
	return g, result{}, false, nil
}

// spendLostClaim retires the grant of a claim whose sender was lost after claiming
// (its message may have gone out): the grant it names, or, for a claim naming only a
// channel (anyGrantPrefix), the user's next spendable grant of that channel. ENOTFOUND
// and ECONFLICT (no such grant left, or spent meanwhile) are not failures.
func spendLostClaim(ctx context.Context, s grantSpender, appID, openID, grantID string) error {
	var (
		g   minipush.Grant
		err error
	)
	if ch, ok := strings.CutPrefix(grantID, anyGrantPrefix); ok {
		g, err = s.SpendableGrant(ctx, appID, openID, ch)
	} else {
		g, err = s.GetGrant(ctx, appID, openID, grantID)
	}
	if err == nil {
		err = s.SpendGrant(ctx, g)
	}
	if c := minipush.ErrorCode(err); c == minipush.ENOTFOUND || c == minipush.ECONFLICT {
		return nil
	}
	return err
}

// grantSpender is the part of the stores spendLostClaim needs.
type grantSpender interface {
	SpendableGrant(ctx context.Context, appID, openID, channel string) (minipush.Grant, error)
	GetGrant(ctx context.Context, appID, openID, grantID string) (minipush.Grant, error)
	SpendGrant(ctx context.Context, g minipush.Grant) error
}

// beforeCall takes the steps between a grant lookup and the call: the frequency-cap
// slot (after the lookup, so a user without a grant keeps their slot), the quota token,
// then the claim naming g, or, on a claim this invocation holds already, g recorded on
// it (not needed when the claim covers any grant of the channel: anyGrant). stop says
// the recipient is done with res and err.
func (r recipient) beforeCall(ctx context.Context, g minipush.Grant, claimed *bool, anyGrant bool) (res result, stop bool, err error) {
	h, c := r.inv.h, r.st.c
	if capped, err := r.takeCap(ctx); err != nil {
		res, err = r.abandon(ctx, *claimed, err)
		return res, true, err
	} else if capped {
		res, err = r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, minipush.ReasonFrequencyCap, 0)
		return res, true, err
	}
	if res, stop, err := r.takeQuota(ctx, *claimed); stop {
		return res, true, err // quota.go: the app's daily budget is used up
	}
	if !*claimed {
		if err := h.Limiter.Wait(ctx); err != nil {
			return result{openID: r.openID, fate: fateHold}, true, nil
		}
		existing, err := r.store().CreateDelivery(ctx, minipush.Delivery{
			RunKey: r.runKey, OpenID: r.openID, State: minipush.DeliverySending, Owner: r.inv.owner,
			LeaseUntil: h.now().Add(h.lease()), GrantID: g.ID, Channel: string(c.Message.Kind), ExpiresAt: h.now().Add(r.retention()),
		})
		switch {
		case minipush.ErrorCode(err) == minipush.ECONFLICT:
			res, err = r.resolve(ctx, existing)
			return res, true, err
		case err != nil:
			res, err = r.abandon(ctx, false, err)
			return res, true, err
		}
		*claimed = true
		return result{}, false, nil
	}
	if anyGrant {
		return result{}, false, nil
	}
	err = r.store().SetDeliveryGrant(ctx, r.runKey, r.openID, r.inv.owner, g.ID)
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		// Our claim outlived its lease and was taken over: it is final elsewhere.
		return result{openID: r.openID, fate: fateDone}, true, nil
	case err != nil:
		res, err = r.abandon(ctx, true, err)
		return res, true, err
	}
	return result{}, false, nil
}

// spendAndFinish makes the claim final, then spends g off the recipient's critical
// path: the spend runs in the background (the invocation waits for it before it
// returns, inv.spends) while the recipient's pool slot goes to the next recipient, so a
// recipient waits for one round trip after the call, not two. A sent message of an app
// without receipts is made final by the invocation's sent log instead (sentlog.go),
// which spends g once the log is written: the recipient waits for no write at all.
//
// The spend follows the final write, and only a final write of ours (not one that
// found the claim taken over): a claim naming a channel, not a grant (claimAndLook),
// is resolved after a crash by spending any one grant of that channel, which would be
// one too many had our spend landed without our final write. In this order a lost
// sender spent nothing, or its recipient is final and never resolved. A spend lost
// after the final write leaves a grant that WeChat answers 41029 or 43101 when next
// used (and it is dropped then), the same as a spend that fails.
func (r recipient) spendAndFinish(ctx context.Context, g minipush.Grant, o minipush.Outcome, reason string, errcode int, msgID string) (result, error) {
	rcptUser := r.receiptUser(o)
	if o == minipush.OutcomeSent && rcptUser == "" {
		if p := r.inv.logSent(r, g, msgID); p != nil {
			res := final(r.openID, o, reason) // its final write is a share of a sent log
			res.logged = p
			return res, nil
		}
	}
	res, err := r.finishOwnMsg(ctx, o, reason, errcode, msgID, rcptUser)
	if err == nil && res.fate == fateFinal {
		r.inv.spends.Go(func() { r.spend(ctx, g) })
	}
	return res, err
}

// spendTries bounds how many grants one message's spend may retire: g, and after a
// lost race for it, the user's next grants of the template.
const spendTries = 3

// spend retires the grant a message went out (or may have gone out) under. Without a
// lease another run may have called WeChat with the same grant meanwhile and spent it
// first (ECONFLICT). For a subscribe message that means WeChat counted two of the
// user's accepts of the template, so this sender spends the next one of ours: our
// inventory keeps matching WeChat's count. A formId or prepay id is one value at
// WeChat, which answers a second use 41029 (dropped, never a second message), so a
// lost race leaves nothing to do. Failures are logged: the message went out and its
// outcome must still be recorded; a grant left behind is answered 41028/41029 or
// 43101 when next used, and dropped then.
func (r recipient) spend(ctx context.Context, g minipush.Grant) {
	ctx = context.WithoutCancel(ctx)
	for range spendTries {
		err := r.store().SpendGrant(ctx, g)
		if err == nil {
			return
		}
		if minipush.ErrorCode(err) != minipush.ECONFLICT {
			r.inv.h.log().LogAttrs(ctx, slog.LevelWarn, "send: spend grant failed after a call", attrs(r, err)...)
			return
		}
		if g.Kind != minipush.GrantSubscribe {
			return
		}
		next, err := r.store().SpendableGrant(ctx, g.AppID, g.OpenID, g.Channel())
		if err != nil {
			if minipush.ErrorCode(err) != minipush.ENOTFOUND {
				r.inv.h.log().LogAttrs(ctx, slog.LevelWarn, "send: spend the next grant failed", attrs(r, err)...)
			}
			return
		}
		g = next
	}
}

func (r recipient) retention() time.Duration {
	return orDur(r.inv.h.Retention, 30*24*time.Hour)
}

// attrs are the log attributes of the recipient's campaign and run (never the openid:
// it is personal data), with err when not nil.
func attrs(r recipient, err error) []slog.Attr {
	a := []slog.Attr{
		slog.String("campaign", r.b.CampaignID), slog.Int("run", r.b.Run), slog.String("request_id", r.inv.reqID),
	}
	if err != nil {
		a = append(a, slog.String("err", err.Error()))
	}
	return a
}

// pause stops the campaign for every sender: this invocation at once (no new
// recipient starts), other instances when they next load it.
func (r recipient) pause(ctx context.Context, reason string, errcode int) error {
	if r.st.paused.Swap(true) {
		return nil
	}
	err := r.store().PauseCampaign(ctx, r.st.c.ID, fmt.Sprintf("%s (errcode %d)", reason, errcode))
	if err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
		return fmt.Errorf("send: pause campaign: %w", err)
	}
	if ev := r.inv.h.Events; ev != nil && err == nil {
		// Only the sender whose pause landed reports it (ECONFLICT: another did).
		e := minipush.RunEvent(minipush.EventRunPaused, r.st.c, r.b.Run, r.inv.h.now())
		e.Reason = fmt.Sprintf("%s (errcode %d)", reason, errcode)
		ev.Publish(ctx, e)
	}
	r.inv.h.log().LogAttrs(ctx, slog.LevelWarn, "send: campaign paused: WeChat would fail every recipient",
		append(attrs(r, nil), slog.String("reason", reason), slog.Int("errcode", errcode))...)
	return nil
}

// call sends the message paying with g, refreshing a stale token once, and returns
// the classified answer with its reason and errcode, and WeChat's msgid of a sent
// subscribe message ("" when none).
func (r recipient) call(ctx context.Context, g minipush.Grant) (wechat.Action, string, int, string) {
	h, c := r.inv.h, r.st.c
	tok, err := h.Tokens.Get(ctx, c.AppID)
	if err != nil {
		a, reason, code := tokenFailure(err)
		return a, reason, code, ""
	}
	msgID, err := r.send(ctx, tok, g)
	if wechat.Classify(err) == wechat.Refresh {
		fresh, terr := h.Tokens.Invalidate(ctx, c.AppID, tok)
		if terr != nil {
			a, reason, code := tokenFailure(terr)
			return a, reason, code, ""
		}
		msgID, err = r.send(ctx, fresh, g)
		if wechat.Classify(err) == wechat.Refresh {
			return wechat.Retry, wechat.Reason(err), errcodeOf(err), ""
		}
	}
	return wechat.Classify(err), wechat.Reason(err), errcodeOf(err), msgID
}

// tokenFailure classifies a failure to get a token: no message was sent, so it is a
// retry even when the token call's own outcome is unknown (a gateway 5xx, a timeout:
// at worst WeChat minted a token the cache will fetch again), unless WeChat says the
// app's credentials are wrong (then every send would fail).
func tokenFailure(err error) (wechat.Action, string, int) {
	var we *wechat.Error
	if errors.As(err, &we) && wechat.Classify(err) == wechat.Abort {
		return wechat.Abort, wechat.Reason(err), we.Code
	}
	return wechat.Retry, "token_unavailable", 0
}

func errcodeOf(err error) int {
	var we *wechat.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

func (r recipient) send(ctx context.Context, tok string, g minipush.Grant) (msgID string, err error) {
	m := r.st.c.Message
	if m.Kind == minipush.MessageSubscribe {
		data := make(map[string]wechat.Value, len(m.Data))
		for k, v := range m.Data {
			data[k] = wechat.Value{Value: v.Value}
		}
		return r.inv.h.WeChat.SendSubscribe(ctx, tok, wechat.SubscribeMessage{
			ToUser: r.openID, TemplateID: m.TemplateID, Page: m.Page, Data: data,
			MiniprogramState: m.MiniprogramState, Lang: m.Lang,
		})
	}
	data := make(map[string]wechat.TemplateValue, len(m.Data))
	for k, v := range m.Data {
		data[k] = wechat.TemplateValue{Value: v.Value, Color: v.Color}
	}
	return "", r.inv.h.WeChat.SendTemplate(ctx, tok, wechat.TemplateMessage{
		ToUser: r.openID, TemplateID: m.TemplateID, Page: m.Page, FormID: g.Value, Data: data,
		EmphasisKeyword: m.EmphasisKeyword,
	})
}

// receiptUser is the receipt index key of a grant-channel message ending in o: only a
// sent subscribe message of an app with receipts on (minipush.App.Receipts) is
// indexed, with or without a msgid in WeChat's answer (the receipt then finds it by
// its time), as only subscribe messages have sent events; the index entry is a write
// unit more per message, so other apps' sends have none.
func (r recipient) receiptUser(o minipush.Outcome) string {
	m := r.st.c.Message
	if o != minipush.OutcomeSent || m.Kind != minipush.MessageSubscribe || !r.inv.h.Apps[r.st.c.AppID].Receipts {
		return ""
	}
	return minipush.ReceiptUser(r.st.c.AppID, r.openID, m.TemplateID)
}

// finishOwn makes this invocation's claim final. If the claim was taken over (its
// lease ran out, so another sender recorded it as unknown) that record stands.
func (r recipient) finishOwn(ctx context.Context, o minipush.Outcome, reason string, errcode int) (result, error) {
	return r.finishOwnMsg(ctx, o, reason, errcode, "", "")
}

// finishOwnMsg is finishOwn keeping WeChat's msgid of a sent message in the same
// final write, indexed for receipts under rcptUser ("" for none; receiptUser).
func (r recipient) finishOwnMsg(ctx context.Context, o minipush.Outcome, reason string, errcode int, msgID, rcptUser string) (result, error) {
	err := r.store().FinishDelivery(ctx, r.runKey, r.openID, r.inv.owner, time.Time{}, o, reason, errcode, msgID, rcptUser)
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		return result{openID: r.openID, fate: fateDone}, nil
	case err != nil:
		return result{}, fmt.Errorf("send: record %s: %w", o, err)
	}
	if o == minipush.OutcomeFailed || o == minipush.OutcomeNoGrant {
		r.returnCap(ctx) // WeChat took nothing from the user: the slot is theirs again
	}
	return final(r.openID, o, reason), nil
}

// finalizeUnclaimed records an outcome reached without calling WeChat (no grant,
// skipped, retries exhausted) unless the recipient already has a delivery item.
func (r recipient) finalizeUnclaimed(ctx context.Context, o minipush.Outcome, reason string, errcode int) (result, error) {
	h := r.inv.h
	existing, err := r.store().CreateDelivery(ctx, minipush.Delivery{
		RunKey: r.runKey, OpenID: r.openID, State: minipush.DeliveryFinal, Outcome: o, Reason: reason, ErrCode: errcode,
		ExpiresAt: h.now().Add(r.retention()),
	})
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		return r.resolve(ctx, existing)
	case err != nil:
		return result{}, fmt.Errorf("send: record %s: %w", o, err)
	}
	return final(r.openID, o, reason), nil
}

// resolve decides about a recipient whose delivery item someone else wrote: final
// stands; a live claim is another sender's to finish (look again after its lease); an
// expired claim is a sender that crashed after claiming, so its message may have gone
// out: it becomes unknown, its grant counts as used, and it is never resent.
func (r recipient) resolve(ctx context.Context, d minipush.Delivery) (result, error) {
	h := r.inv.h
	switch {
	case d.Final() || d.Owner == r.inv.owner:
		return result{openID: r.openID, fate: fateDone}, nil
	case h.now().Before(d.LeaseUntil):
		return result{openID: r.openID, fate: fateBusy}, nil
	}
	switch done, err := finalNow(ctx, r.store(), r.runKey, r.openID); {
	case err != nil:
		return result{}, err
	case done:
		return result{openID: r.openID, fate: fateDone}, nil
	}
	err := r.store().FinishDelivery(ctx, r.runKey, r.openID, d.Owner, d.LeaseUntil, minipush.OutcomeUnknown, "sender_lost", 0, "", "")
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		return result{openID: r.openID, fate: fateDone}, nil
	case err != nil:
		return result{}, fmt.Errorf("send: take over lost claim: %w", err)
	}
	if d.GrantID != "" {
		if err := spendLostClaim(ctx, r.store(), r.st.c.AppID, r.openID, d.GrantID); err != nil {
			h.log().LogAttrs(ctx, slog.LevelWarn, "send: spend grant of a lost claim failed", attrs(r, err)...)
		}
	}
	return final(r.openID, minipush.OutcomeUnknown, "sender_lost"), nil
}

// retryLater deletes the claim (WeChat proved nothing was sent) and leaves the
// recipient pending for a new attempt.
func (r recipient) retryLater(ctx context.Context) (result, error) {
	r.returnCap(ctx) // before the claim goes: no other sender of the run sends meanwhile
	if err := r.store().DeleteClaim(ctx, r.runKey, r.openID, r.inv.owner); err != nil {
		if minipush.ErrorCode(err) == minipush.ECONFLICT {
			return result{openID: r.openID, fate: fateDone}, nil
		}
		return result{}, fmt.Errorf("send: delete claim: %w", err)
	}
	return result{openID: r.openID, fate: fateRetry}, nil
}

// abandon deletes this invocation's claim after an infrastructure error before WeChat
// was called under it, and returns the error.
func (r recipient) abandon(ctx context.Context, claimed bool, cause error) (result, error) {
	if claimed {
		r.returnCap(ctx)
		_ = r.store().DeleteClaim(context.WithoutCancel(ctx), r.runKey, r.openID, r.inv.owner)
	}
	return result{}, fmt.Errorf("send: recipient: %w", cause)
}
