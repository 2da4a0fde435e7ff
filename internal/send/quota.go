package send

import (
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/wechat"
)

// Pacing to WeChat's daily quota (issue #18; the rules are minipush quota.go).
//
// WeChat counts an app's subscribe sends per Shanghai day and answers 45009 beyond its
// daily_limit. Every send instance shares one budget per app and day, kept in
// minipush.DefaultQuotaShards counters (dynamo/quota.go), each allowed its part of the
// limit. A sender takes tokens in chunks (Pacer.Chunk, 200, or what a counter has left)
// with one conditional write, spends one per call to WeChat, and at the end of its
// invocation gives back what it did not use (Pacer.Flush, one write per chunk left
// over). So the budget costs about 1/200 write per message plus one write per
// invocation (a chunk of 50 cost 0.025 WRU a message, most of what send wrote beyond
// its 3 per recipient), and at 5,000 messages/s the 8 counters see about 3 writes/s
// each. A chunk is at most a few seconds of one instance's sends, so what a dead
// sender holds is a negligible part of the day's quota.
// Tokens a sender dies holding lapse for the day: WeChat's quota is then used a little
// less, never more.
//
// Marketing campaigns may take the limit less the app's reserve
// (minipush.App.QuotaReserve, 5 %), transactional ones the whole limit: on a day
// marketing used its share up, transactional campaigns still send, ahead of the
// marketing ones that wait for the reset.
//
// When a class finds every counter used up, or WeChat answers 45009 (other senders of
// the app, or a limit lowered since the last read), the app's status item of the day
// records a pause until the reset (one write, once: "app paused until <reset>"), so
// every instance stops calling WeChat for that class. The recipients not yet called
// stay pending: their batch is re-queued unchanged with the delay to the reset, at most
// SQS's 15 minutes, so a message hops (one SendMessage and one receive, no DynamoDB
// read of its recipients) about four times an hour until midnight; the planner is not
// involved. A refused send spends nothing: its token goes back, its claim is deleted,
// its grant untouched, its recipient not final. With the next day's key the pause is
// gone and the batches resume by themselves.
//
// WeChat's quota (openapi/quota/get) is read once per Pacer.ReadEvery (5 minutes) per
// instance and app: its daily_limit sizes the budget (App.Quota() until a read
// succeeds) and its rate_limit, when given, paces this instance's sends at its share
// (rate / Pacer.Instances).

// QuotaStore keeps the shared budget (implemented by *dynamo.DB, dynamo/quota.go).
type QuotaStore interface {
	TakeQuota(ctx context.Context, appID, day string, shard, want, capacity int, class string) (int, error)
	ReturnQuota(ctx context.Context, appID, day string, shard, n int, class string) error
	RecordQuotaRead(ctx context.Context, appID, day string, r minipush.QuotaRead) error
	PauseQuota(ctx context.Context, appID, day, class string, until time.Time, reason string) (bool, error)
	QuotaStatus(ctx context.Context, appID, day string) (minipush.QuotaUse, error)
}

// QuotaReader reads an app's quota (implemented by *wechat.Client).
type QuotaReader interface {
	GetQuota(ctx context.Context, token, cgiPath string) (wechat.Quota, error)
}

// Pacer defaults.
const (
	DefaultQuotaChunk       = 200
	DefaultQuotaReadEvery   = 5 * time.Minute
	DefaultQuotaStatusEvery = 10 * time.Second
	DefaultQuotaInstances   = 10 // the template's SendMaxConcurrency default
)

// Pacer paces an instance's subscribe sends to each app's daily budget. Set Store and
// WeChat; the rest have defaults. A nil *Pacer paces nothing, and a 45009 then pauses
// the campaign as before.
type Pacer struct {
	Store  QuotaStore
	WeChat QuotaReader
	Shards int // counters per app and day; default minipush.DefaultQuotaShards
	Chunk  int // tokens per take; default DefaultQuotaChunk
	// ReadEvery is how long WeChat's quota read is trusted; StatusEvery how long the
	// app's status item (its pauses) is. Both on the handler's clock.
	ReadEvery, StatusEvery time.Duration
	// Instances shares WeChat's rate_limit among the senders (SendMaxConcurrency).
	Instances int
	// HoldMax bounds the re-queue delay of a paused app's batches; default MaxDelay.
	HoldMax time.Duration

	mu   sync.Mutex
	apps map[string]*appBudget
}

// appBudget is one app's budget as this instance sees it.
type appBudget struct {
	mu       sync.Mutex
	day      string
	read     minipush.QuotaRead
	readAt   time.Time // on the handler's clock; zero: not read this day
	status   minipush.QuotaUse
	statusAt time.Time
	pools    map[string]*pool // by class
	limiter  *RateLimiter
	rate     float64
}

// pool is a class's tokens in hand: chunks from counters of one day.
type pool struct {
	chunks []chunk
}

type chunk struct {
	day      string
	shard, n int
}

func (p *Pacer) shards() int {
	if p.Shards > 0 {
		return p.Shards
	}
	return minipush.DefaultQuotaShards
}

func (p *Pacer) budget(appID string) *appBudget {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.apps == nil {
		p.apps = map[string]*appBudget{}
	}
	b, ok := p.apps[appID]
	if !ok {
		b = &appBudget{pools: map[string]*pool{}}
		p.apps[appID] = b
	}
	return b
}

// paced reports whether the campaign's sends are paced: subscribe messages, the
// quota WeChat's quota/get reports (a legacy template message has its own).
func (h *Handler) paced(c minipush.Campaign) bool {
	return h.Quota != nil && c.Message.Kind == minipush.MessageSubscribe
}

// roll moves b to day, dropping what it knew of the day before: the quota reset, so
// yesterday's pauses and tokens mean nothing (tokens in hand lapse with their day).
func (b *appBudget) roll(day string) {
	if b.day == day {
		return
	}
	b.day, b.readAt, b.statusAt = day, time.Time{}, time.Time{}
	b.status = minipush.QuotaUse{}
	b.pools = map[string]*pool{}
}

// pausedLocked reports until when class may not send, reading the app's status item
// when the cached one is older than StatusEvery.
func (p *Pacer) pausedLocked(ctx context.Context, b *appBudget, appID, class string, now time.Time) (time.Time, bool, error) {
	if b.statusAt.IsZero() || now.Sub(b.statusAt) >= orDur(p.StatusEvery, DefaultQuotaStatusEvery) {
		st, err := p.Store.QuotaStatus(ctx, appID, b.day)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("send: quota status: %w", err)
		}
		b.status, b.statusAt = st, now
	}
	until, paused := b.status.PausedFor(class, now)
	return until, paused, nil
}

// paused reports until when the campaign's class may not send at now.
func (p *Pacer) paused(ctx context.Context, h *Handler, c minipush.Campaign) (time.Time, bool, error) {
	b := p.budget(c.AppID)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := h.now()
	b.roll(minipush.QuotaDay(now))
	return p.pausedLocked(ctx, b, c.AppID, minipush.QuotaClass(c.Policy), now)
}

// take takes one token for a send of c. ok false: the class may not send until until
// (its budget is used up or the app is paused).
func (p *Pacer) take(ctx context.Context, h *Handler, c minipush.Campaign) (until time.Time, ok bool, err error) {
	b := p.budget(c.AppID)
	class := minipush.QuotaClass(c.Policy)
	b.mu.Lock()
	now := h.now()
	day := minipush.QuotaDay(now)
	b.roll(day)
	if until, paused, err := p.pausedLocked(ctx, b, c.AppID, class, now); err != nil || paused {
		b.mu.Unlock()
		return until, false, err
	}
	pl := b.pools[class]
	if pl == nil {
		pl = &pool{}
		b.pools[class] = pl
	}
	if !pl.takeOne() {
		if err := p.refillLocked(ctx, h, b, c.AppID, class, now, pl); err != nil {
			b.mu.Unlock()
			return time.Time{}, false, err
		}
		if !pl.takeOne() {
			until := minipush.QuotaReset(now)
			b.mu.Unlock()
			p.pause(ctx, h, c.AppID, day, class, until, "daily budget used up")
			return until, false, nil
		}
	}
	lim := b.limiter
	b.mu.Unlock()
	// WeChat's rate_limit, outside the lock so the app's other sends keep taking tokens.
	if err := lim.Wait(ctx); err != nil {
		p.giveBack(c.AppID, class)
		return time.Time{}, false, nil // the invocation is ending: hold, as its deadline does
	}
	return time.Time{}, true, nil
}

func (pl *pool) takeOne() bool {
	for i := len(pl.chunks) - 1; i >= 0; i-- {
		if pl.chunks[i].n > 0 {
			pl.chunks[i].n--
			return true
		}
	}
	return false
}

// giveBack returns one unused token to the class's pool (a send WeChat refused or
// proved it did not make); Flush returns it to the store.
func (p *Pacer) giveBack(appID, class string) {
	b := p.budget(appID)
	b.mu.Lock()
	defer b.mu.Unlock()
	if pl := b.pools[class]; pl != nil && len(pl.chunks) > 0 {
		pl.chunks[len(pl.chunks)-1].n++
	}
}

// refillLocked reads WeChat's quota when the last read is stale, then takes a chunk
// from the first counter, starting at a random one, that has tokens left for the class.
// Nothing added: every counter is used up for the class.
func (p *Pacer) refillLocked(ctx context.Context, h *Handler, b *appBudget, appID, class string, now time.Time, pl *pool) error {
	p.readLocked(ctx, h, b, appID, now)
	app, _ := h.app(appID)
	limit := b.read.DailyLimit
	if limit <= 0 {
		limit = app.Quota()
	}
	total := minipush.QuotaClassLimit(limit, app.QuotaReserve(), class)
	n := p.shards()
	start := mrand.IntN(n)
	for i := range n {
		k := (start + i) % n
		capacity := minipush.QuotaShardLimit(total, n, k)
		if capacity <= 0 {
			continue
		}
		got, err := p.Store.TakeQuota(ctx, appID, b.day, k, cmpOr(p.Chunk, DefaultQuotaChunk), capacity, class)
		if err != nil {
			return fmt.Errorf("send: take quota: %w", err)
		}
		if got > 0 {
			pl.chunks = append(pl.chunks, chunk{day: b.day, shard: k, n: got})
			return nil
		}
	}
	return nil
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// readLocked reads WeChat's quota for the app when the last read is older than
// ReadEvery. A failed read is logged and the last one (or App.Quota()) stands: the
// budget is a pace, and WeChat's 45009 stays the backstop.
func (p *Pacer) readLocked(ctx context.Context, h *Handler, b *appBudget, appID string, now time.Time) {
	if !b.readAt.IsZero() && now.Sub(b.readAt) < orDur(p.ReadEvery, DefaultQuotaReadEvery) {
		return
	}
	b.readAt = now // failed or not: not again before ReadEvery
	tok, err := h.Tokens.Get(ctx, appID)
	var q wechat.Quota
	if err == nil {
		q, err = p.WeChat.GetQuota(ctx, tok, wechat.PathSubscribeSend)
	}
	if err != nil {
		h.log().LogAttrs(ctx, slog.LevelWarn, "send: quota read failed; the last read stands",
			slog.String("app", appID), slog.String("err", err.Error()))
		return
	}
	b.read = minipush.QuotaRead{DailyLimit: q.DailyLimit, Used: q.Used, Remain: q.Remain,
		RateCount: q.RateLimit.CallCount, RateSecond: q.RateLimit.RefreshSecond, ReadAt: now}
	if err := p.Store.RecordQuotaRead(ctx, appID, b.day, b.read); err != nil {
		h.log().LogAttrs(ctx, slog.LevelWarn, "send: quota read not recorded", slog.String("app", appID), slog.String("err", err.Error()))
	}
	rate := 0.0
	if q.RateLimit.CallCount > 0 && q.RateLimit.RefreshSecond > 0 {
		rate = float64(q.RateLimit.CallCount) / float64(q.RateLimit.RefreshSecond) / float64(cmpOr(p.Instances, DefaultQuotaInstances))
	}
	if rate != b.rate {
		b.rate, b.limiter = rate, NewRateLimiter(rate)
	}
}

// pause records that class (or, for "", every send) of the app waits until until, in
// this instance at once and for the others in the app's status item; the sender whose
// write set it logs it.
func (p *Pacer) pause(ctx context.Context, h *Handler, appID, day, class string, until time.Time, reason string) {
	b := p.budget(appID)
	b.mu.Lock()
	if b.day == day {
		if class == minipush.QuotaMarketing {
			b.status.MarketingPausedUntil = until
		} else {
			b.status.PausedUntil = until
		}
	}
	b.mu.Unlock()
	set, err := p.Store.PauseQuota(ctx, appID, day, class, until, reason)
	if err != nil {
		// This instance holds the pause; the others find the budget empty or get 45009.
		h.log().LogAttrs(ctx, slog.LevelWarn, "send: quota pause not recorded", slog.String("app", appID), slog.String("err", err.Error()))
		return
	}
	if set {
		who := "every campaign"
		if class == minipush.QuotaMarketing {
			who = "marketing campaigns"
		}
		h.log().LogAttrs(ctx, slog.LevelWarn, "send: app paused until the quota resets",
			slog.String("app", appID), slog.String("for", who), slog.Time("until", until), slog.String("reason", reason))
	}
}

// Flush gives back the tokens this instance holds and did not use, one write per
// chunk left over, at the end of an invocation: Lambda may freeze the instance for
// minutes or drop it, and tokens held meanwhile would be lost to every other sender.
// Tokens of a past day are dropped (that budget is gone). Errors are logged: the
// tokens then lapse, and the day sends a little less.
func (p *Pacer) Flush(ctx context.Context, log *slog.Logger) {
	if p == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	p.mu.Lock()
	apps := make(map[string]*appBudget, len(p.apps))
	for id, b := range p.apps {
		apps[id] = b
	}
	p.mu.Unlock()
	for appID, b := range apps {
		b.mu.Lock()
		type ret struct {
			chunk
			class string
		}
		var rets []ret
		for class, pl := range b.pools {
			for _, c := range pl.chunks {
				if c.n > 0 && c.day == b.day {
					rets = append(rets, ret{c, class})
				}
			}
			pl.chunks = nil
		}
		b.mu.Unlock()
		for _, r := range rets {
			if err := p.Store.ReturnQuota(ctx, appID, r.day, r.shard, r.n, r.class); err != nil {
				logs.Or(log).LogAttrs(ctx, slog.LevelWarn, "send: unused quota not given back; it lapses",
					slog.String("app", appID), slog.Int("tokens", r.n), slog.String("err", err.Error()))
			}
		}
	}
}

// holdDelay is the re-queue delay of a batch held until until: to the reset, at least
// a second, at most HoldMax (SQS's 15 minutes; the next hop looks again).
func (p *Pacer) holdDelay(now, until time.Time) time.Duration {
	return min(max(until.Sub(now), time.Second), orDur(p.HoldMax, MaxDelay), MaxDelay)
}

// holdForQuota re-queues the whole batch unchanged, before any read of its
// recipients, when its campaign's class may not send now (the app is paused until the
// quota resets). held false: go on.
func (inv *invocation) holdForQuota(ctx context.Context, b minipush.Batch, st *campaignState) (held bool, err error) {
	h := inv.h
	if !h.paced(st.c) || st.c.Status == minipush.StatusCancelled {
		return false, nil
	}
	until, paused, err := h.Quota.paused(ctx, h, st.c)
	if err != nil {
		return false, fmt.Errorf("send: batch %s: %w", b.ID, err)
	}
	if !paused {
		return false, nil
	}
	if err := h.Queue.Enqueue(ctx, b, h.Quota.holdDelay(h.now(), until)); err != nil {
		return false, fmt.Errorf("send: hold batch %s until the quota resets: %w", b.ID, err)
	}
	h.log().LogAttrs(ctx, slog.LevelInfo, "send: app's quota used up; batch held until the reset",
		slog.String("campaign", b.CampaignID), slog.Int("run", b.Run), slog.String("request_id", inv.reqID),
		slog.String("batch", b.ID), slog.Time("until", until))
	return true, nil
}

// quotaHeld reports, from this instance's cache alone, whether the campaign's class is
// paused now: recipients after the budget ran out in the middle of a batch are held
// without a grant lookup.
func (inv *invocation) quotaHeld(st *campaignState) bool {
	h := inv.h
	if !h.paced(st.c) {
		return false
	}
	b := h.Quota.budget(st.c.AppID)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := h.now()
	if b.day != minipush.QuotaDay(now) {
		return false
	}
	_, paused := b.status.PausedFor(minipush.QuotaClass(st.c.Policy), now)
	return paused
}

// quotaDelay is the re-queue delay of the campaign's recipients held for the quota.
func (inv *invocation) quotaDelay(st *campaignState) time.Duration {
	h := inv.h
	now := h.now()
	until := minipush.QuotaReset(now)
	if h.Quota == nil {
		return 0
	}
	b := h.Quota.budget(st.c.AppID)
	b.mu.Lock()
	if u, ok := b.status.PausedFor(minipush.QuotaClass(st.c.Policy), now); ok {
		until = u
	}
	b.mu.Unlock()
	return h.Quota.holdDelay(now, until)
}

// takeQuota takes the recipient's token before its claim. stop: deliverGrant returns
// res, err — the class's budget is used up (the recipient is held, its cap slot and any
// claim of the customer-service step given back) or the store failed.
func (r recipient) takeQuota(ctx context.Context, claimed bool) (res result, stop bool, err error) {
	h := r.inv.h
	if !h.paced(r.st.c) {
		return result{}, false, nil
	}
	_, ok, err := h.Quota.take(ctx, h, r.st.c)
	if err != nil {
		res, err = r.abandon(ctx, claimed, err)
		return res, true, err
	}
	if ok {
		return result{}, false, nil
	}
	return r.holdForQuota(ctx, claimed)
}

// holdForQuota leaves the recipient pending until the quota resets: nothing was sent,
// so the cap slot and the claim (if held) go back and the grant was never touched.
func (r recipient) holdForQuota(ctx context.Context, claimed bool) (result, bool, error) {
	r.returnCap(ctx)
	if claimed {
		if err := r.store().DeleteClaim(ctx, r.runKey, r.openID, r.inv.owner); err != nil {
			if minipush.ErrorCode(err) == minipush.ECONFLICT {
				return result{openID: r.openID, fate: fateDone}, true, nil // taken over: final elsewhere
			}
			return result{}, true, fmt.Errorf("send: release claim held for the quota: %w", err)
		}
	}
	return result{openID: r.openID, fate: fateQuota}, true, nil
}

// quotaRefused acts on WeChat's 45009 to a paced send (ok false otherwise): WeChat
// refused it, so nothing was sent and nothing is spent. Its token goes back, the app is
// paused for every class until the reset, and the recipient is held with its grant.
func (r recipient) quotaRefused(ctx context.Context, reason string, errcode int) (result, bool, error) {
	h := r.inv.h
	if errcode != 45009 || !h.paced(r.st.c) {
		return result{}, false, nil
	}
	h.Quota.giveBack(r.st.c.AppID, minipush.QuotaClass(r.st.c.Policy))
	now := h.now()
	h.Quota.pause(ctx, h, r.st.c.AppID, minipush.QuotaDay(now), "", minipush.QuotaReset(now), fmt.Sprintf("%s (errcode %d)", reason, errcode))
	return r.holdForQuota(ctx, true)
}

// giveQuota returns the token of a paced send WeChat proved it did not make (a retry).
func (r recipient) giveQuota() {
	if h := r.inv.h; h.paced(r.st.c) {
		h.Quota.giveBack(r.st.c.AppID, minipush.QuotaClass(r.st.c.Policy))
	}
}
