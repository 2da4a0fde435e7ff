package admin

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"golang.org/x/sync/errgroup"

	"minipush"
	"minipush/internal/cost"
	"minipush/internal/dynamo"
	"minipush/internal/httpapi"
)

// forecastStore is what the forecast reads (implemented by *dynamo.DB); it writes
// nothing, so a forecast spends no grant, takes no cap slot and sends nothing.
type forecastStore interface {
	AudiencePage(ctx context.Context, campaignID, startAfter string, limit int) ([]string, string, error)
	ScanAudience(ctx context.Context, q minipush.AudienceScan, segment, segments int, after string, limit int) ([]string, string, error)
	OptedOut(ctx context.Context, appID string, openIDs []string) (map[string]bool, error)
	SpendableAt(ctx context.Context, appID, openID, channel string, at ...time.Time) ([]bool, error)
	CapUses(ctx context.Context, appID string, openIDs []string, week string) (map[string]dynamo.CapUse, error)
}

// Forecast bounds: audiences up to MaxExactForecast are evaluated recipient by
// recipient; larger ones on a uniform sample of ForecastSample.
const (
	MaxExactForecast = 100_000
	ForecastSample   = 20_000
	// DefaultForecastRate is the send rate assumed when the deployment sets none
	// (SEND_RATE_PER_SECOND 0, no per-instance limit): what make bench measured one
	// campaign to reach (BENCHMARKS.md).
	DefaultForecastRate = 5000.0
	forecastParallelism = 16
)

// Forecast is the answer of POST /v1/admin/campaigns/{id}/forecast. Counts are of
// the audience, in the order send applies its rules (holdout, opt-out, grant, cap);
// each recipient is counted under the first rule that removes it.
type Forecast struct {
	At        time.Time `json:"at"`       // the scheduled time forecast for
	Audience  int       `json:"audience"` // recipients the run would plan
	Exact     bool      `json:"exact"`    // every recipient evaluated, not a sample
	Evaluated int       `json:"evaluated"`
	// ErrorBound is the 95 % half-width, in recipients, of each count below when
	// sampled (the widest of them, p = 0.5: 1.96·N·√(p(1−p)/n)·√((N−n)/(N−1))); 0 when exact.
	ErrorBound    int `json:"errorBound"`
	GrantNow      int `json:"grantNow"`      // hold a spendable grant of the channel now
	GrantAtSend   int `json:"grantAtSend"`   // ... still spendable at At
	Holdout       int `json:"holdout"`       // the control group
	OptedOut      int `json:"optedOut"`      // opted out (with skipOptedOut)
	NoGrant       int `json:"noGrant"`       // no grant spendable at At
	FrequencyCap  int `json:"frequencyCap"`  // capped by the app's caps as counted now
	ExpectedSends int `json:"expectedSends"` // what remains: messages WeChat would be asked to deliver
	// QuietHours: At falls inside the campaign's quiet hours, so the sends wait until
	// DeferredUntil (they are deferred, not removed).
	QuietHours    bool      `json:"quietHours"`
	DeferredUntil time.Time `json:"deferredUntil,omitzero"`
	RatePerSecond float64   `json:"ratePerSecond"`
	DurationSec   float64   `json:"durationSeconds"` // ExpectedSends at RatePerSecond
	DailyQuota    int       `json:"dailyQuota"`
	QuotaShare    float64   `json:"quotaShare"` // ExpectedSends / DailyQuota
	CostUSD       float64   `json:"costUsd"`    // make bench's cost model (package cost)
}

// forecast answers what a run of the campaign would do, without writing anything.
// POST /v1/admin/campaigns/{id}/forecast, optional body {"at": RFC 3339}.
func (h *Handler) forecast(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	fs, ok := h.Store.(forecastStore)
	if !ok {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.EINTERNAL, "forecast: the store cannot read audiences")
	}
	var in struct {
		At time.Time `json:"at"`
	}
	if len(r.Body) > 0 {
		if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, 1<<10, &in); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
	}
	c, err := h.campaign(ctx, r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	now := h.Now()
	at := in.At
	if at.IsZero() {
		at = c.NextRunAt
	}
	if at.Before(now) {
		at = now
	}
	app, ok := h.Apps[c.AppID]
	if !ok {
		app = minipush.App{AppID: c.AppID}
	}
	f, err := h.runForecast(ctx, fs, c, app, now, at.UTC().Truncate(time.Second))
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	return httpapi.JSON(http.StatusOK, f), nil
}

func (h *Handler) runForecast(ctx context.Context, fs forecastStore, c minipush.Campaign, app minipush.App, now, at time.Time) (Forecast, error) {
	ids, n, err := forecastAudience(ctx, fs, c, now)
	if err != nil {
		return Forecast{}, err
	}
	f := Forecast{At: at, Audience: n, Exact: len(ids) == n, Evaluated: len(ids)}
	caps := app.CapsFor(c.Policy)
	day, week := minipush.CapPeriod(at, app.Location())
	type tally struct{ grantNow, grantAt, holdout, opted, noGrant, capped, sends int }
	chunks := (len(ids) + 99) / 100
	tallies := make([]tally, chunks)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(forecastParallelism)
	for i := range chunks {
		chunk := ids[i*100 : min((i+1)*100, len(ids))]
		g.Go(func() error {
			t := &tallies[i]
			var opted map[string]bool
			if c.Policy.SkipOptedOut {
				var err error
				if opted, err = fs.OptedOut(gctx, c.AppID, chunk); err != nil {
					return err
				}
			}
			var withGrant []string
			for _, id := range chunk {
				has, err := fs.SpendableAt(gctx, c.AppID, id, c.Message.Channel(), now, at)
				if err != nil {
					return err
				}
				if has[0] {
					t.grantNow++
				}
				if has[1] {
					t.grantAt++
				}
				switch {
				case minipush.HeldOut(c.ID, id, c.Policy.HoldoutPercent):
					t.holdout++
				case opted[id]:
					t.opted++
				case !has[1]:
					t.noGrant++
				default:
					withGrant = append(withGrant, id)
				}
			}
			if !caps.Any() {
				t.sends += len(withGrant)
				return nil
			}
			uses, err := fs.CapUses(gctx, c.AppID, withGrant, week)
			if err != nil {
				return err
			}
			for _, id := range withGrant {
				if uses[id].Capped(caps, day) {
					t.capped++
				} else {
					t.sends++
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Forecast{}, err
	}
	var sum tally
	for _, t := range tallies {
		sum.grantNow += t.grantNow
		sum.grantAt += t.grantAt
		sum.holdout += t.holdout
		sum.opted += t.opted
		sum.noGrant += t.noGrant
		sum.capped += t.capped
		sum.sends += t.sends
	}
	scale := func(k int) int {
		if f.Exact || len(ids) == 0 {
			return k
		}
		return int(math.Round(float64(k) * float64(n) / float64(len(ids))))
	}
	f.GrantNow, f.GrantAtSend, f.Holdout, f.OptedOut = scale(sum.grantNow), scale(sum.grantAt), scale(sum.holdout), scale(sum.opted)
	f.NoGrant, f.FrequencyCap, f.ExpectedSends = scale(sum.noGrant), scale(sum.capped), scale(sum.sends)
	if !f.Exact && n > 1 {
		m := float64(len(ids))
		f.ErrorBound = int(math.Ceil(1.96 * float64(n) * math.Sqrt(0.25/m) * math.Sqrt((float64(n)-m)/float64(n-1))))
	}
	if until, quiet := app.Quiet(c.Policy).Until(at, app.Location()); quiet {
		f.QuietHours, f.DeferredUntil = true, until
	}
	f.RatePerSecond = h.ForecastRate
	if f.RatePerSecond <= 0 {
		f.RatePerSecond = DefaultForecastRate
	}
	f.DurationSec = math.Round(float64(f.ExpectedSends)/f.RatePerSecond*10) / 10
	f.DailyQuota = app.Quota()
	f.QuotaShare = float64(f.ExpectedSends) / float64(f.DailyQuota)
	sent := cost.Sent
	if caps.Any() {
		sent.WRU += cost.CapWrite
	}
	f.CostUSD = math.Round((float64(f.ExpectedSends)*sent.Dollars()+float64(n-f.ExpectedSends)*cost.Skipped.Dollars())*1e4) / 1e4
	return f, nil
}

// forecastAudience streams the audience the planner would plan (opted-out users
// included: the forecast counts them) and returns every recipient when there are at
// most MaxExactForecast, else a uniform sample of ForecastSample (reservoir sampling,
// seeded by the campaign id so a forecast repeats), with the audience size.
func forecastAudience(ctx context.Context, fs forecastStore, c minipush.Campaign, now time.Time) ([]string, int, error) {
	var ids []string
	n := 0
	var rng *rand.Rand
	seed := func() uint64 {
		var s uint64
		for _, b := range []byte(c.ID) {
			s = s*131 + uint64(b)
		}
		return s
	}
	add := func(page []string) {
		for _, id := range page {
			n++
			switch {
			case n <= MaxExactForecast:
				ids = append(ids, id)
			case rng == nil:
				// Past the exact bound: keep a uniform sample of what was seen, then
				// continue the reservoir with this recipient.
				rng = rand.New(rand.NewPCG(seed(), 1))
				rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				ids = ids[:ForecastSample:ForecastSample]
				fallthrough
			default:
				if j := rng.IntN(n); j < ForecastSample {
					ids[j] = id
				}
			}
		}
	}
	read := func(after string) ([]string, string, error) { return fs.AudiencePage(ctx, c.ID, after, 1000) }
	if c.Audience.Kind != minipush.AudienceList {
		q := minipush.AudienceScan{AppID: c.AppID, Segment: c.Audience.Segment,
			Reachable: c.Audience.Kind == minipush.AudienceReachable, Channel: c.Message.Channel(), Now: now}
		read = func(after string) ([]string, string, error) { return fs.ScanAudience(ctx, q, 0, 1, after, 1000) }
	}
	for after := ""; ; {
		page, next, err := read(after)
		if err != nil {
			return nil, 0, err
		}
		add(page)
		if next == "" {
			return ids, n, nil
		}
		after = next
	}
}

// markDeferred sets the run's deferred count while the campaign's quiet hours hold:
// then no pending recipient of it is sent, so every planned one not yet final waits
// for the window's end (send re-queues them to it; the planner holds the rest).
func (h *Handler) markDeferred(c minipush.Campaign, run *minipush.Run) {
	app, ok := h.Apps[c.AppID]
	if !ok || run.Status == minipush.RunDone || c.Status == minipush.StatusCancelled {
		return
	}
	until, quiet := app.Quiet(c.Policy).Until(h.Now(), app.Location())
	if pending := run.Counters.Planned - run.Counters.Final(); quiet && pending > 0 {
		run.Deferred, run.DeferredUntil = pending, until
	}
}
