package send

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"minipush"
	"minipush/internal/wechat"
)

// The customer-service step (a campaign with Message.CustomerService). A recipient
// whose window (minipush.CSWindowState, learnt from WeChat's pushes by collect) is open
// at send time gets the campaign on that channel, and their grant stays unspent; on
// 45015 (window closed) or 45047 (count used up) they get the grant message in the
// same attempt, under the same claim. Everything else is the grant path's rules: one
// claim before the call, at most one message per recipient per run, and an answer
// that does not prove nothing was sent ends the recipient unknown, never resent.
//
// The window's count is taken (a conditional decrement, csLeft > 0 in a window still
// open) before the claim and the call, so concurrent campaigns never send a user more
// than the window allows; a count taken for a call WeChat proved it never acted on
// (a retryable answer, an abort, a claim someone else holds) is given back, bound to
// the same window.
//
// Writes: a message sent on the channel costs 3 (take the count, claim, final; no
// grant spent), the same as a grant message. A recipient whose window our copy shows
// closed costs one eventually consistent read and then exactly the grant path. A
// fallback on 45015/45047 costs 7: take, claim, mark the claim fallen back, close our
// copy of the window (so later campaigns do not try it), then the grant path's claim
// update naming the grant, the spend and the final write.

// csStore is the storage the customer-service step needs (implemented by *dynamo.DB).
type csStore interface {
	CSWindow(ctx context.Context, appID, openID string) (minipush.CSWindowState, error)
	TakeCSMessage(ctx context.Context, appID, openID string, now time.Time) (minipush.CSWindowState, error)
	ReturnCSMessage(ctx context.Context, appID, openID string, until time.Time) error
	CloseCSWindow(ctx context.Context, appID, openID string, until time.Time) error
	FallBackDelivery(ctx context.Context, runKey, openID, owner, channel, reason string) error
}

// customSender is the customer-service API (implemented by *wechat.Client).
type customSender interface {
	SendCustom(ctx context.Context, token string, m wechat.CustomMessage) error
}

// deliverCS tries the customer-service channel first, and the grant path when the
// user has no open window or WeChat refuses the channel.
func (r recipient) deliverCS(ctx context.Context) (result, error) {
	h, c := r.inv.h, r.st.c
	w, err := r.store().CSWindow(ctx, c.AppID, r.openID)
	if err != nil {
		return result{}, fmt.Errorf("send: recipient: %w", err)
	}
	if !w.Open(h.now()) {
		return r.deliverGrant(ctx, false)
	}
	// The app's caps count a message on this channel like any other (caps.go); the
	// slot, once held, carries over to a fallback.
	if capped, err := r.takeCap(ctx); err != nil {
		return r.abandon(ctx, false, err)
	} else if capped {
		return r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, minipush.ReasonFrequencyCap, 0)
	}
	if err := h.Limiter.Wait(ctx); err != nil {
		// Held with the slot, as the grant path holds at its wait: the retry finds the
		// run's key and is not counted twice. Returning it here, without the claim,
		// could race a duplicate sender of the run (see fallBackUnclaimed).
		return result{openID: r.openID, fate: fateHold}, nil
	}
	w, err = r.store().TakeCSMessage(ctx, c.AppID, r.openID, h.now())
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		// Closed or used up since the read (another campaign took the last message):
		// nothing was claimed or called, so this is simply a grant recipient.
		return r.fallBackUnclaimed(ctx)
	case err != nil:
		return r.abandon(ctx, false, err)
	}
	existing, err := r.store().CreateDelivery(ctx, minipush.Delivery{
		RunKey: r.runKey, OpenID: r.openID, State: minipush.DeliverySending, Owner: r.inv.owner,
		LeaseUntil: h.now().Add(h.lease()), Channel: minipush.ChannelCustomerService,
		ExpiresAt: h.now().Add(r.retention()),
	})
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		// Not ours to send: the slot belongs to the run and stays with whoever holds
		// the claim; the window's count goes back.
		r.giveBack(ctx, w)
		return r.resolve(ctx, existing)
	case err != nil:
		r.giveBack(ctx, w)
		return r.abandon(ctx, false, err)
	}

	action, reason, errcode, refused := r.callCS(ctx)
	switch {
	case refused:
		r.closeWindow(ctx, w)
		return r.fallBack(ctx, reason)
	case action == wechat.OK:
		res, err := r.finishOwn(ctx, minipush.OutcomeSent, "", 0)
		res.channel = minipush.ChannelCustomerService
		return res, err
	case action == wechat.Unknown:
		// WeChat may have delivered it: never resend; no grant was involved.
		res, err := r.finishOwn(ctx, minipush.OutcomeUnknown, reason, errcode)
		res.channel = minipush.ChannelCustomerService
		return res, err
	case action == wechat.Abort:
		// Every recipient would fail the same way (the app may not use the API):
		// pause as the grant path does; nothing was sent, so the count goes back.
		r.giveBack(ctx, w)
		r.returnCap(ctx)
		if err := r.store().DeleteClaim(ctx, r.runKey, r.openID, r.inv.owner); err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
			return result{}, fmt.Errorf("send: abort: %w", err)
		}
		if err := r.pause(ctx, reason, errcode); err != nil {
			return result{}, err
		}
		return result{openID: r.openID, fate: fateHold}, nil
	case action == wechat.FailRecipient || action == wechat.NextGrant:
		r.returnCap(ctx)
		return r.finishOwn(ctx, minipush.OutcomeFailed, reason, errcode)
	default: // Retry, or a token that stayed stale after one refresh: nothing was sent
		r.giveBack(ctx, w)
		r.returnCap(ctx)
		return r.retryLater(ctx)
	}
}

// fallBack moves this invocation's customer-service claim to the grant channel and
// delivers the grant message under it. The claim stays: WeChat's 45015/45047 proved
// nothing was sent, and the recipient is still this sender's.
func (r recipient) fallBack(ctx context.Context, reason string) (result, error) {
	err := r.store().FallBackDelivery(ctx, r.runKey, r.openID, r.inv.owner, string(r.st.c.Message.Kind), reason)
	switch {
	case minipush.ErrorCode(err) == minipush.ECONFLICT:
		return result{openID: r.openID, fate: fateDone}, nil // taken over: final elsewhere
	case err != nil:
		return r.abandon(ctx, true, err)
	}
	res, err := r.deliverGrant(ctx, true)
	res.csFallback = reason
	return res, err
}

// fallBackUnclaimed delivers on the grant path a recipient whose window count could
// not be taken, holding the frequency-cap slot the customer-service step took but no
// claim. The grant path takes its slot only after finding a grant, so a recipient
// without one would end no_grant still holding ours: one message fewer that day.
//
// The slot is given back only once this sender's own write made the recipient final
// (no_grant reported as fateFinal comes from finalizeUnclaimed's create or finishOwn,
// never from resolve, which reports another sender's record), not before: the slot
// belongs to the run, and a duplicate sender of the same run that found the run's key
// in the counter was let through uncounted. Given back while nobody held the claim,
// that duplicate could still claim and send under a slot no longer counted, and a
// later campaign take it again: one message more than the cap. Once our final item is
// written, the duplicate's claim fails (it resolves to our record) and nothing can be
// sent for the recipient in this run, so the slot is the user's again.
func (r recipient) fallBackUnclaimed(ctx context.Context) (result, error) {
	res, err := r.deliverGrant(ctx, false)
	if err == nil && res.fate == fateFinal && res.outcome == minipush.OutcomeNoGrant {
		r.returnCap(ctx) // a no-op when finishOwn gave it back already
	}
	return res, err
}

// giveBack returns a taken count after WeChat proved nothing was sent under it. A
// failure only leaves our copy one message short, which errs on the safe side.
func (r recipient) giveBack(ctx context.Context, w minipush.CSWindowState) {
	err := r.store().ReturnCSMessage(context.WithoutCancel(ctx), r.st.c.AppID, r.openID, w.Until)
	if err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
		r.inv.h.log().LogAttrs(ctx, slog.LevelWarn, "send: give back a customer-service message failed", attrs(r, err)...)
	}
}

// closeWindow empties our copy of a window WeChat refused, so later campaigns go
// straight to the grant channel; a window a newer push opened is left alone.
func (r recipient) closeWindow(ctx context.Context, w minipush.CSWindowState) {
	err := r.store().CloseCSWindow(context.WithoutCancel(ctx), r.st.c.AppID, r.openID, w.Until)
	if err != nil && minipush.ErrorCode(err) != minipush.ECONFLICT {
		r.inv.h.log().LogAttrs(ctx, slog.LevelWarn, "send: close a customer-service window failed", attrs(r, err)...)
	}
}

// callCS sends the campaign's customer-service message, refreshing a stale token once,
// and returns the classified answer, its reason and errcode, and whether WeChat
// refused the channel for this user (45015, 45047).
func (r recipient) callCS(ctx context.Context) (action wechat.Action, reason string, errcode int, refused bool) {
	h, c := r.inv.h, r.st.c
	m := customMessage(r.openID, c.Message.CustomerService)
	tok, err := h.Tokens.Get(ctx, c.AppID)
	if err != nil {
		a, reason, code := tokenFailure(err)
		return a, reason, code, false
	}
	err = h.WeChat.SendCustom(ctx, tok, m)
	if wechat.Classify(err) == wechat.Refresh {
		fresh, terr := h.Tokens.Invalidate(ctx, c.AppID, tok)
		if terr != nil {
			a, reason, code := tokenFailure(terr)
			return a, reason, code, false
		}
		if err = h.WeChat.SendCustom(ctx, fresh, m); wechat.Classify(err) == wechat.Refresh {
			return wechat.Retry, wechat.Reason(err), errcodeOf(err), false
		}
	}
	return wechat.Classify(err), wechat.Reason(err), errcodeOf(err), wechat.CSRefused(err)
}

// customMessage is the API body of a campaign's customer-service message.
func customMessage(openID string, cs *minipush.CustomerService) wechat.CustomMessage {
	m := wechat.CustomMessage{ToUser: openID}
	switch {
	case cs.Text != nil:
		m.MsgType, m.Text = wechat.CustomText, &wechat.CustomTextBody{Content: cs.Text.Content}
	case cs.Link != nil:
		m.MsgType, m.Link = wechat.CustomLink, &wechat.CustomLinkBody{
			Title: cs.Link.Title, Description: cs.Link.Description, URL: cs.Link.URL, ThumbURL: cs.Link.ThumbURL,
		}
	case cs.MiniprogramPage != nil:
		m.MsgType, m.MiniprogramPage = wechat.CustomMiniprogramPage, &wechat.CustomPageBody{
			Title: cs.MiniprogramPage.Title, PagePath: cs.MiniprogramPage.PagePath, ThumbMediaID: cs.MiniprogramPage.ThumbMediaID,
		}
	}
	return m
}
