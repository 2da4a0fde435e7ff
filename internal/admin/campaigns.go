package admin

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/schedule"
)

// Body limits. An audience page of 5000 openids is about 170 KB as JSON or CSV.
const (
	maxCampaignBody = 64 << 10
	maxAudienceBody = 1 << 20
	maxUsersBody    = 512 << 10
)

// policyIn is a policy as the operator sends it: absent fields take the defaults
// (opted-out users skipped, minipush.DefaultRetryBudget retries, the app's quiet hours,
// no holdout).
type policyIn struct {
	SkipOptedOut   *bool                `json:"skipOptedOut"`
	Transactional  *bool                `json:"transactional"`
	QuietHours     *minipush.QuietHours `json:"quietHours"`
	HoldoutPercent *int                 `json:"holdoutPercent"`
	RetryBudget    *int                 `json:"retryBudget"`
	// CanaryPercent absent is minipush.DefaultCanaryPercent; 0 turns the canary off.
	CanaryPercent      *int `json:"canaryPercent"`
	CanaryAbortPercent *int `json:"canaryAbortPercent"`
	// OnePerDay is refused (refuseRetired): the app's frequency caps replaced it.
	OnePerDay *bool `json:"onePerDay"`
}

// refuseRetired refuses the fields the API no longer takes, so an operator who sends
// one learns what replaced it instead of getting a campaign that ignores it.
func (p *policyIn) refuseRetired() error {
	if p != nil && p.OnePerDay != nil {
		return invalid("policy.onePerDay: replaced by the app's frequency caps (caps: {perDay, perWeek} in the WeChat secret), which every non-transactional campaign of the app counts against; remove the field")
	}
	return nil
}

func (p *policyIn) apply(to *minipush.Policy) {
	if p == nil {
		return
	}
	if p.SkipOptedOut != nil {
		to.SkipOptedOut = *p.SkipOptedOut
	}
	if p.Transactional != nil {
		to.Transactional = *p.Transactional
	}
	if p.QuietHours != nil {
		q := *p.QuietHours
		to.QuietHours = &q
	}
	if p.HoldoutPercent != nil {
		to.HoldoutPercent = *p.HoldoutPercent
	}
	if p.RetryBudget != nil {
		to.RetryBudget = *p.RetryBudget
	}
	if p.CanaryPercent != nil {
		to.CanaryPercent = *p.CanaryPercent
	}
	if p.CanaryAbortPercent != nil {
		to.CanaryAbortPercent = *p.CanaryAbortPercent
	}
}

type campaignIn struct {
	AppID    string            `json:"appId"`
	Name     string            `json:"name"`
	Message  minipush.Message  `json:"message"`
	Audience minipush.Audience `json:"audience"`
	Policy   *policyIn         `json:"policy"`
}

// draft is the campaign a create body describes (the policy's defaults under the
// body's fields), checked as it would be stored: retired policy fields refused, the
// campaign's own rules, an app this deployment serves, then the template registry.
// createCampaign and campaigns:validate (validateDraft) both call it, so the console's
// live validation is create's own check, in its order, up to the store.
func (h *Handler) draft(ctx context.Context, in campaignIn) (minipush.Campaign, error) {
	c := minipush.Campaign{AppID: in.AppID, Name: in.Name, Message: in.Message, Audience: in.Audience,
		Policy: minipush.Policy{SkipOptedOut: true, RetryBudget: minipush.DefaultRetryBudget, CanaryPercent: minipush.DefaultCanaryPercent}}
	if err := in.Policy.refuseRetired(); err != nil {
		return minipush.Campaign{}, err
	}
	in.Policy.apply(&c.Policy)
	if err := validateCampaign(c); err != nil {
		return minipush.Campaign{}, err
	}
	if err := h.servedApp("appId", c.AppID); err != nil {
		return minipush.Campaign{}, err
	}
	// Against the template registry, before anything is stored (templates.go).
	if err := h.checkTemplate(ctx, c.AppID, c.Message); err != nil {
		return minipush.Campaign{}, err
	}
	return c, nil
}

// createCampaign stores a validated draft. POST /v1/admin/campaigns
func (h *Handler) createCampaign(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	var in campaignIn
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	now := h.Now().UTC().Truncate(time.Second)
	seed, keyed := ctx.Value(idempotencySeed{}).(string)
	id := h.NewID
	if keyed && h.KeyedID != nil {
		id = func() string { return h.KeyedID(seed) }
	}
	cid := id() // drawn before the checks, so NewID is called once per create whatever the answer
	c, err := h.draft(ctx, in)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	c.ID, c.Status, c.CreatedAt, c.UpdatedAt = cid, minipush.StatusDraft, now, now
	if err := h.Store.CreateCampaign(ctx, c); err != nil {
		if keyed && minipush.ErrorCode(err) == minipush.ECONFLICT {
			// An earlier run of this same keyed request created it and died before its
			// answer was kept (or the SDK retried a write that had landed): answer it.
			if stored, gerr := h.Store.GetCampaign(ctx, c.ID); gerr == nil {
				return httpapi.JSON(http.StatusCreated, stored), nil
			}
		}
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusCreated, c), nil
}

// listCampaigns pages through campaigns of one status, newest first.
// GET /v1/admin/campaigns?status=draft&limit=50&cursor=...
func (h *Handler) listCampaigns(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	status := minipush.CampaignStatus(r.param("status"))
	switch status {
	case minipush.StatusDraft, minipush.StatusScheduled, minipush.StatusPlanning, minipush.StatusSending,
		minipush.StatusDone, minipush.StatusCancelled, minipush.StatusPaused, minipush.StatusAborted:
	default:
		return events.APIGatewayV2HTTPResponse{}, invalid("status %q: want draft, scheduled, planning, sending, done, cancelled or paused", status)
	}
	limit, err := limitParam(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	cs, next, err := h.Store.ListCampaigns(ctx, status, limit, r.param("cursor"))
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	// A scoped operator token lists its apps' campaigns only (a page may come out short;
	// the cursor still goes on); appId narrows the listing to one app for any token.
	sc, app := scopeOf(ctx), r.param("appId")
	cs = slices.DeleteFunc(cs, func(c minipush.Campaign) bool { return !sc.allows(c.AppID) || (app != "" && c.AppID != app) })
	if cs == nil {
		cs = []minipush.Campaign{}
	}
	return httpapi.JSON(http.StatusOK, struct {
		Campaigns []minipush.Campaign `json:"campaigns"`
		Cursor    string              `json:"cursor,omitempty"`
	}{cs, next}), nil
}

func limitParam(r request) (int, error) {
	v := r.param("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > minipush.MaxListLimit {
		return 0, invalid("limit %q: want 1 to %d", v, minipush.MaxListLimit)
	}
	return n, nil
}

// campaignID returns the {id} path segment, or ENOTFOUND for one this API never issues.
func campaignID(r request) (string, error) {
	id := r.parts[1]
	if !campaignIDRE.MatchString(id) {
		return "", minipush.Errorf(minipush.ENOTFOUND, "no campaign %q", id)
	}
	return id, nil
}

// getCampaign answers one campaign. GET /v1/admin/campaigns/{id}
func (h *Handler) getCampaign(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	return okJSON(h.campaign(ctx, r))
}

// campaign reads the campaign the {id} path segment names.
func (h *Handler) campaign(ctx context.Context, r request) (minipush.Campaign, error) {
	id, err := campaignID(r)
	if err != nil {
		return minipush.Campaign{}, err
	}
	return h.Store.GetCampaign(ctx, id)
}

// okJSON answers v as 200 JSON, or err for handle to map to its status.
func okJSON(v any, err error) (events.APIGatewayV2HTTPResponse, error) {
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusOK, v), nil
}

type campaignPatch struct {
	Name     *string            `json:"name"`
	Message  *minipush.Message  `json:"message"`
	Audience *minipush.Audience `json:"audience"`
	Policy   *policyIn          `json:"policy"`
}

// patchCampaign edits a draft: present fields replace the stored ones (policy fields one
// by one), and the result is validated as a whole before it is stored.
// PATCH /v1/admin/campaigns/{id}
func (h *Handler) patchCampaign(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	id, err := campaignID(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	var p campaignPatch
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &p); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if err := p.Policy.refuseRetired(); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	c, err := h.Store.UpdateDraft(ctx, id, func(c *minipush.Campaign) error {
		if p.Name != nil {
			c.Name = *p.Name
		}
		if p.Message != nil {
			c.Message = *p.Message
		}
		if p.Audience != nil {
			c.Audience = *p.Audience
		}
		p.Policy.apply(&c.Policy)
		if err := validateCampaign(*c); err != nil {
			return err
		}
		// The app cannot be edited, but the deployment may have stopped serving it.
		if err := h.servedApp("appId", c.AppID); err != nil {
			return err
		}
		return h.checkTemplate(ctx, c.AppID, c.Message)
	})
	return okJSON(c, err)
}

// uploadAudience adds one page of openids to a draft list campaign, as JSON
// {"openIds": [...]} or as text/csv with the openid in the first column (an "openid"
// header line is skipped). A page is refused whole — nothing stored — when it is over
// MaxAudiencePage entries or holds an invalid openid. POST /v1/admin/campaigns/{id}/audience
func (h *Handler) uploadAudience(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	id, err := campaignID(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	ids, err := audiencePage(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	c, err := h.Store.GetCampaign(ctx, id)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if c.Audience.Kind != minipush.AudienceList {
		return events.APIGatewayV2HTTPResponse{}, invalid("campaign %s has a %s audience; only list audiences take uploads", id, c.Audience.Kind)
	}
	if c.Status != minipush.StatusDraft {
		// The planner streams the list in openid order; an upload after planning began
		// would be silently missed for ids below its cursor.
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ECONFLICT, "campaign %s is %s; audiences are uploaded while it is a draft", id, c.Status)
	}
	n, err := h.Store.AddAudience(ctx, id, ids)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	// The status check above and the write are not one transaction (a page spans up to
	// 200 BatchWriteItems): a schedule that landed in between may let the planner pass
	// some of these ids. One read tells the operator instead of answering 200.
	if after, err := h.Store.GetCampaign(ctx, id); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	} else if after.Status != minipush.StatusDraft {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ECONFLICT,
			"campaign %s became %s while this page was stored; its openids were written but the planner may miss some - check progress", id, after.Status)
	}
	return httpapi.JSON(http.StatusOK, struct {
		Received int `json:"received"`
		Distinct int `json:"distinct"`
	}{len(ids), n}), nil
}

func audiencePage(r request) ([]string, error) {
	body, err := httpapi.Body(r.APIGatewayV2HTTPRequest, maxAudienceBody)
	if err != nil {
		return nil, err
	}
	var ids []string
	ct, _, _ := mime.ParseMediaType(httpapi.Header(r.APIGatewayV2HTTPRequest, "Content-Type"))
	switch ct {
	case "text/csv":
		rd := csv.NewReader(bytes.NewReader(body))
		rd.FieldsPerRecord = -1
		rd.ReuseRecord = true
		for line := 0; ; line++ {
			rec, err := rd.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, minipush.Errorf(minipush.EMALFORMED, "CSV: %s", strings.TrimPrefix(err.Error(), "record on "))
			}
			v := strings.TrimSpace(rec[0])
			if line == 0 && strings.EqualFold(v, "openid") || v == "" {
				continue
			}
			if len(ids) == MaxAudiencePage {
				return nil, minipush.Errorf(minipush.ETOOLARGE, "more than %d openids in one page; split the upload", MaxAudiencePage)
			}
			ids = append(ids, v)
		}
	case "application/json", "":
		var in struct {
			OpenIDs []string `json:"openIds"`
		}
		if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxAudienceBody, &in); err != nil {
			return nil, err
		}
		ids = in.OpenIDs
	default:
		return nil, minipush.Errorf(minipush.EMALFORMED, "Content-Type %q: want application/json or text/csv", ct)
	}
	if len(ids) > MaxAudiencePage {
		return nil, minipush.Errorf(minipush.ETOOLARGE, "%d openids in one page, at most %d; split the upload", len(ids), MaxAudiencePage)
	}
	if len(ids) == 0 {
		return nil, invalid("no openids in the page")
	}
	for i, id := range ids {
		if err := validateOpenID("openIds["+strconv.Itoa(i)+"]", id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

type scheduleIn struct {
	At       *atTime `json:"at"`
	Cron     string  `json:"cron"`
	TimeZone string  `json:"timeZone"`
	Now      bool    `json:"now"`
}

// atTime is a schedule's at: time.Time's own decoding error names neither the field
// nor the format wanted, and the JSON decoder adds nothing to an Unmarshaler's error.
type atTime time.Time

func (a *atTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("at: want an RFC 3339 time as a string, such as \"2026-12-01T02:00:00Z\"")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return errors.New("at: want an RFC 3339 time, such as \"2026-12-01T02:00:00Z\"")
	}
	*a = atTime(t)
	return nil
}

// scheduleCampaign sets when a draft (or a campaign still waiting for its first run)
// runs: {"now": true}, {"at": RFC 3339}, or {"cron": "0 10 * * *", "timeZone":
// "Asia/Shanghai"}. A cron that never fires or an at in the past is refused.
// POST /v1/admin/campaigns/{id}/schedule
func (h *Handler) scheduleCampaign(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	id, err := campaignID(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	var in scheduleIn
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, maxCampaignBody, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	now := h.Now().UTC().Truncate(time.Second)
	var s minipush.Schedule
	switch {
	case in.Now && in.At == nil && in.Cron == "":
		s = minipush.Schedule{At: now}
	case !in.Now && in.At != nil && in.Cron == "":
		s = minipush.Schedule{At: time.Time(*in.At).UTC(), TimeZone: in.TimeZone}
	case !in.Now && in.At == nil && in.Cron != "":
		s = minipush.Schedule{Cron: in.Cron, TimeZone: in.TimeZone}
	default:
		return events.APIGatewayV2HTTPResponse{}, invalid("schedule: give exactly one of now, at, or cron (with timeZone)")
	}
	if err := schedule.Validate(s, now); err != nil {
		return events.APIGatewayV2HTTPResponse{}, invalid("%s", err)
	}
	next := s.At
	if s.Cron != "" {
		n, ok, err := schedule.Next(s, now)
		if err != nil || !ok {
			return events.APIGatewayV2HTTPResponse{}, invalid("schedule: cron %q has no next run", s.Cron)
		}
		next = n
	}
	return okJSON(h.Store.ScheduleCampaign(ctx, id, s, next))
}

// resumeIn is resume's optional body.
type resumeIn struct {
	// CatchUp runs a recurring campaign's missed occurrence once, now, instead of
	// skipping to the next one (dynamo.DB.ResumeCampaign).
	CatchUp bool `json:"catchUp"`
}

// decodeResume reads resume's body: none, or {"catchUp": true|false}.
func decodeResume(r request) (resumeIn, error) {
	var in resumeIn
	b, err := httpapi.Body(r.APIGatewayV2HTTPRequest, maxCampaignBody)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return in, err
	}
	return in, httpapi.Unmarshal(b, &in)
}

// transition cancels, pauses or resumes a campaign.
// POST /v1/admin/campaigns/{id}/cancel|pause|resume; resume takes an optional
// {"catchUp": true}.
func (h *Handler) transition(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	id, err := campaignID(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	var c minipush.Campaign
	switch r.parts[2] {
	case "cancel":
		c, err = h.Store.CancelCampaign(ctx, id)
	case "pause":
		c, err = h.Store.OperatorPause(ctx, id)
	default:
		var in resumeIn
		if in, err = decodeResume(r); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		c, err = h.Store.ResumeCampaign(ctx, id, in.CatchUp)
	}
	if err == nil && c.RunSeq > 0 && r.parts[2] != "resume" {
		// The operator's pause or cancel reaches the app's webhook (enqueued only).
		ev := minipush.RunEvent(minipush.EventRunAborted, c, c.RunSeq, h.Now())
		if r.parts[2] == "pause" {
			ev = minipush.RunEvent(minipush.EventRunPaused, c, c.RunSeq, h.Now())
			ev.Reason = "operator"
		}
		h.publish(ctx, ev)
	}
	return okJSON(c, err)
}

// progress answers a campaign's status and every run's counters, the current run
// (the last started) separately. GET /v1/admin/campaigns/{id}/progress
func (h *Handler) progress(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	c, err := h.campaign(ctx, r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	runs, err := h.Store.CampaignRuns(ctx, c.ID)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if runs == nil {
		runs = []minipush.Run{}
	}
	for i := range runs {
		// The planner's quiet-hours hold is shown while it lasts: once the window
		// ended, the next tick queues the rest (and clears it).
		if r := &runs[i]; r.Status != minipush.RunPlanning || !r.HeldUntil.After(h.Now()) {
			r.HeldUntil = time.Time{}
		}
	}
	out := struct {
		ID        string                  `json:"id"`
		Status    minipush.CampaignStatus `json:"status"`
		NextRunAt time.Time               `json:"nextRunAt,omitzero"`
		Current   *minipush.Run           `json:"current,omitempty"`
		Runs      []minipush.Run          `json:"runs"`
	}{ID: c.ID, Status: c.Status, NextRunAt: c.NextRunAt, Runs: runs}
	if len(runs) > 0 {
		out.Current = &runs[len(runs)-1]
		h.markDeferred(c, out.Current)
	}
	return httpapi.JSON(http.StatusOK, out), nil
}

type deliveryOut struct {
	OpenID  string                 `json:"openId"`
	State   minipush.DeliveryState `json:"state"`
	Outcome minipush.Outcome       `json:"outcome,omitempty"`
	Reason  string                 `json:"reason,omitempty"`
	ErrCode int                    `json:"errcode,omitempty"`
	MsgID   string                 `json:"msgId,omitempty"` // a string: above 2^53, a JSON number would lose digits
	// Channel is the API the message went out through (customer_service, subscribe,
	// template); CSFallback why the customer-service channel was refused before it.
	Channel    string `json:"channel,omitempty"`
	CSFallback string `json:"csFallback,omitempty"`
	// Receipt is what WeChat's subscribe_msg_sent_event said of a sent message, with
	// its ErrorCode and ErrorStatus when it reports an asynchronous failure.
	Receipt       minipush.ReceiptState `json:"receipt,omitempty"`
	ReceiptCode   int                   `json:"receiptCode,omitempty"`
	ReceiptStatus string                `json:"receiptStatus,omitempty"`
	UpdatedAt     time.Time             `json:"updatedAt,omitzero"`
}

// deliveries pages through one run's deliveries, optionally of one outcome.
// GET /v1/admin/campaigns/{id}/runs/{n}/deliveries?outcome=failed&limit=&cursor=
func (h *Handler) deliveries(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	id, err := campaignID(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	run, err := strconv.Atoi(r.parts[3])
	if err != nil || run < 1 {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ENOTFOUND, "no run %q", r.parts[3])
	}
	outcome := minipush.Outcome(r.param("outcome"))
	switch outcome {
	case "", minipush.OutcomeSent, minipush.OutcomeFailed, minipush.OutcomeNoGrant, minipush.OutcomeSkipped, minipush.OutcomeUnknown:
	default:
		return events.APIGatewayV2HTTPResponse{}, invalid("outcome %q: want sent, failed, no_grant, skipped or unknown", outcome)
	}
	limit, err := limitParam(r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	dls, next, err := h.Store.ListDeliveries(ctx, id, run, outcome, limit, r.param("cursor"))
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	out := make([]deliveryOut, len(dls))
	for i, d := range dls {
		out[i] = deliveryOut{OpenID: d.OpenID, State: d.State, Outcome: d.Outcome, Reason: d.Reason, ErrCode: d.ErrCode, MsgID: d.MsgID, Channel: d.Channel, CSFallback: d.CSFallback,
			Receipt: d.Receipt, ReceiptCode: d.ReceiptCode, ReceiptStatus: d.ReceiptStatus, UpdatedAt: d.UpdatedAt}
	}
	return httpapi.JSON(http.StatusOK, struct {
		Deliveries []deliveryOut `json:"deliveries"`
		Cursor     string        `json:"cursor,omitempty"`
	}{out, next}), nil
}
