package send

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"minipush"
	"minipush/internal/wechat"
)

// Test sends (issue #18): an operator previews a campaign on their own test users, at
// once, from the admin function. Each recipient goes through the run's per-recipient
// path (recipient.deliver): the customer-service window when the campaign uses it, the
// earliest spendable grant of the channel, a claim before the call, the same
// classification of WeChat's answer and the same spend. So the at-most-once argument
// of the package doc holds per test key: a retried test request with the same key
// (TestRunKey) finds its recipients final or claimed and never calls WeChat for them
// again.
//
// What a run does and a test send does not: no frequency caps and no quiet hours (the
// message is the operator's preview on their own phone, asked for now; counting it
// would take a real campaign's slot from the test user), no holdout, no counters, no
// progress, no webhook, no receipt index (the key names no run a receipt could count
// into), and an answer that would pause the campaign (40037, 45009, …) is reported for
// the recipient instead: a test changes nothing of the campaign. The opt-out is
// honoured when the campaign's policy asks for it: the user said no to this app.

// TestRunKey is the delivery key of one test send of a campaign: "<campaign>#test-<id>".
// It is not a run key (no run number), so no run's counters, recount, progress or
// deliveries listing ever reads these items; they expire with the retention.
func TestRunKey(campaignID, testID string) string {
	return campaignID + "#test-" + testID
}

// OutcomeNotSent is a test recipient WeChat proved nothing was sent to (a transient
// error, the daily quota, the app's credentials or template refused, no token): the
// grant is kept and the claim removed, so the same test may be sent again.
const OutcomeNotSent minipush.Outcome = "not_sent"

// OutcomeInProgress is a test recipient another request of the same test key holds
// the claim of: its outcome is that request's.
const OutcomeInProgress minipush.Outcome = "in_progress"

// TestResult is one recipient's outcome of a test send.
type TestResult struct {
	OpenID  string           `json:"openId"`
	Outcome minipush.Outcome `json:"outcome"`
	Reason  string           `json:"reason,omitempty"`
	ErrCode int              `json:"errcode,omitempty"`
	MsgID   string           `json:"msgId,omitempty"`
	// Channel is the channel it went (or would have gone) on: the message's kind, or
	// "customer_service" (minipush.ChannelCustomerService).
	Channel string `json:"channel,omitempty"`
}

// SendTest sends c's message now to openIDs (deduplicated, in order; the caller bounds
// and validates them) under runKey (TestRunKey), each through the run's per-recipient
// path, and returns each outcome. An error is an infrastructure failure (storage): the
// recipients finished before it stay final under runKey, so retrying with the same key
// sends only to the others.
func (h *Handler) SendTest(ctx context.Context, c minipush.Campaign, runKey string, openIDs []string) ([]TestResult, error) {
	openIDs = dedupe(openIDs)
	th := *h
	th.Events = nil  // no run, no webhook event
	th.Metrics = nil // a test is counted in no run's metrics
	th.Limiter = nil // a handful of messages, asked for now
	// Receipts: a test key names no run, so its msgid is not indexed for receipts.
	th.Apps = maps.Clone(h.Apps)
	if a, ok := th.Apps[c.AppID]; ok {
		a.Receipts = false
		th.Apps[c.AppID] = a
	}
	rec := &answers{Sender: h.WeChat, Tokens: h.Tokens, last: map[string]error{}}
	th.WeChat, th.Tokens = rec, rec

	reqID := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		reqID = lc.AwsRequestID
	}
	inv := &invocation{h: &th, owner: th.newOwner(), reqID: reqID,
		sem: make(chan struct{}, th.parallelism()), campaigns: map[string]*campaignState{}}
	// No caps and no quiet hours (see above); the zone is the app's.
	st := &campaignState{c: c, lim: limits{loc: th.limits(c).loc, quiet: minipush.QuietHours{Off: true}}}
	// Marked paused so that recipient.pause, on an answer that fails every recipient,
	// writes nothing: the test reports that answer and leaves the campaign as it is.
	st.paused.Store(true)

	var optedOut map[string]bool
	if c.Policy.SkipOptedOut {
		var err error
		if optedOut, err = th.Store.OptedOut(ctx, c.AppID, openIDs); err != nil {
			return nil, fmt.Errorf("send: test of %s: %w", c.ID, err)
		}
	}
	b := minipush.Batch{ID: runKey, CampaignID: c.ID, AppID: c.AppID}
	errs := make([]error, len(openIDs))
	var wg sync.WaitGroup
	for i, openID := range openIDs {
		if !inv.acquire(ctx) {
			break // ctx ended: the rest are not attempted (not_sent)
		}
		wg.Go(func() {
			defer func() { <-inv.sem }()
			r := recipient{inv: inv, st: st, b: b, runKey: runKey, openID: openID, cap: &capSlot{}}
			if optedOut[openID] {
				_, errs[i] = r.finalizeUnclaimed(ctx, minipush.OutcomeSkipped, "opted_out", 0)
				return
			}
			_, errs[i] = r.deliver(ctx)
		})
	}
	wg.Wait()
	inv.spends.Wait() // the grants are spent when the answer says sent
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("send: test of %s: %w", c.ID, err)
	}
	stored, err := th.Store.Deliveries(ctx, runKey, openIDs)
	if err != nil {
		return nil, fmt.Errorf("send: test of %s: read outcomes: %w", c.ID, err)
	}
	out := make([]TestResult, len(openIDs))
	for i, id := range openIDs {
		out[i] = TestResult{OpenID: id, Channel: string(c.Message.Kind)}
		d, ok := stored[id]
		switch {
		case ok && d.Final():
			out[i].Outcome, out[i].Reason, out[i].ErrCode, out[i].MsgID = d.Outcome, d.Reason, d.ErrCode, d.MsgID
			if d.Channel != "" {
				out[i].Channel = d.Channel
			}
		case ok:
			out[i].Outcome = OutcomeInProgress
		default:
			// Retry or hold: the claim is gone and nothing was sent.
			out[i].Outcome, out[i].Reason, out[i].ErrCode = OutcomeNotSent, "not_attempted", 0
			if err := rec.last[id]; err != nil {
				out[i].Reason, out[i].ErrCode = wechat.Reason(err), errcodeOf(err)
			} else if rec.tokenErr != nil {
				_, out[i].Reason, out[i].ErrCode = tokenFailure(rec.tokenErr)
			}
		}
	}
	return out, nil
}

// answers wraps a test send's WeChat client and token source to remember the last
// failed answer per recipient (and the last token failure), which the run's path acts
// on without keeping: a test reports it.
type answers struct {
	Sender
	Tokens

	mu       sync.Mutex       // guards both while the test runs; read after it
	last     map[string]error // by openid
	tokenErr error
}

func (a *answers) note(openID string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last[openID] = err
}

func (a *answers) SendSubscribe(ctx context.Context, token string, m wechat.SubscribeMessage) (string, error) {
	id, err := a.Sender.SendSubscribe(ctx, token, m)
	a.note(m.ToUser, err)
	return id, err
}

func (a *answers) SendTemplate(ctx context.Context, token string, m wechat.TemplateMessage) error {
	err := a.Sender.SendTemplate(ctx, token, m)
	a.note(m.ToUser, err)
	return err
}

func (a *answers) SendCustom(ctx context.Context, token string, m wechat.CustomMessage) error {
	err := a.Sender.SendCustom(ctx, token, m)
	a.note(m.ToUser, err)
	return err
}

func (a *answers) Get(ctx context.Context, appID string) (string, error) {
	tok, err := a.Tokens.Get(ctx, appID)
	if err != nil {
		a.mu.Lock()
		a.tokenErr = err
		a.mu.Unlock()
	}
	return tok, err
}

func (a *answers) Invalidate(ctx context.Context, appID, stale string) (string, error) {
	tok, err := a.Tokens.Invalidate(ctx, appID, stale)
	if err != nil {
		a.mu.Lock()
		a.tokenErr = err
		a.mu.Unlock()
	}
	return tok, err
}
