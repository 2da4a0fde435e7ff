package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// PathQuotaGet is WeChat's quota query (openapi/quota/get).
const PathQuotaGet = "/cgi-bin/openapi/quota/get"

// DefaultDailyQuota is the subscribe/send quota of an app the test did not set:
// WeChat's 10 million a day without WeChat Pay (WECHAT.md §6).
const DefaultDailyQuota = 10_000_000

// Sandbox's rate limit as quota/get reports it (WeChat tells a rate; the sandbox does
// not enforce it).
const (
	quotaRateCount   = 100_000
	quotaRateSeconds = 1
)

// shanghai is WeChat's day: daily quotas reset at midnight Asia/Shanghai.
var shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return time.FixedZone("CST", 8*3600) // no DST there: the fixed offset is exact
	}
	return loc
}()

func init() {
	endpoints[PathQuotaGet] = endpoint{http.MethodPost, false, (*Sandbox).quotaGet}
	ControlRoutes = append(ControlRoutes,
		`POST   /_sandbox/quota               {"appid","daily_limit"} (subscribe/send calls a day, reset at midnight Asia/Shanghai on the sandbox clock; 45009 beyond)`)
}

// dailyQuota is one app's subscribe/send count of one Shanghai day.
type dailyQuota struct {
	limit int    // 0: DefaultDailyQuota
	day   string // the day used counts
	used  int
}

// quotaLocked returns appID's quota rolled to today.
func (s *Sandbox) quotaLocked(appID string) *dailyQuota {
	if s.quotas == nil {
		s.quotas = map[string]*dailyQuota{}
	}
	q, ok := s.quotas[appID]
	if !ok {
		q = &dailyQuota{}
		s.quotas[appID] = q
	}
	if day := s.now().In(shanghai).Format(time.DateOnly); q.day != day {
		q.day, q.used = day, 0
	}
	if q.limit <= 0 {
		q.limit = DefaultDailyQuota
	}
	return q
}

// takeQuotaLocked counts one subscribe send of the app, or answers 45009 when today's
// quota is used up (the send is refused: nothing goes out, no grant is used).
func (s *Sandbox) takeQuotaLocked(appID string) *wxError {
	q := s.quotaLocked(appID)
	if q.used >= q.limit {
		return errc(45009, "")
	}
	q.used++
	return nil
}

// SetDailyQuota sets the app's subscribe/send calls a day (0: DefaultDailyQuota); what
// was used today stays counted.
func (s *Sandbox) SetDailyQuota(appID string, limit int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.controlAppLocked(appID); err != nil {
		return err
	}
	if limit < 0 {
		return fmt.Errorf("%w: daily_limit %d is negative", errBadRequest, limit)
	}
	s.quotaLocked(appID).limit = limit
	return nil
}

// QuotaUsed returns the app's subscribe sends counted today (sandbox clock, Shanghai day).
func (s *Sandbox) QuotaUsed(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quotaLocked(appID).used
}

// quotaGet serves POST /cgi-bin/openapi/quota/get for subscribe/send; the sandbox
// counts no other API, so another cgi_path is a request error.
func (s *Sandbox) quotaGet(r *http.Request, body []byte) reply {
	a, e := s.authLocked(r)
	if e != nil {
		return failReply(e)
	}
	var b struct {
		CGIPath string `json:"cgi_path"`
	}
	if err := strictDecode(body, &b); err != nil {
		return failReply(errc(47001, "data format error: %v", err))
	}
	if b.CGIPath != PathSubscribeSend {
		return failReply(errc(47001, "data format error: cgi_path %q is not counted by the sandbox", b.CGIPath))
	}
	q := s.quotaLocked(a.id)
	return okReply(map[string]any{
		"errcode": 0, "errmsg": "ok",
		"quota":      map[string]int{"daily_limit": q.limit, "used": q.used, "remain": max(q.limit-q.used, 0)},
		"rate_limit": map[string]int{"call_count": quotaRateCount, "refresh_second": quotaRateSeconds},
	})
}

// quotaControl adds the daily quota's control route.
func (s *Sandbox) quotaControl(handle func(pattern string, f func(r *http.Request) (any, error))) {
	handle("POST /_sandbox/quota", func(r *http.Request) (any, error) {
		var b struct {
			AppID      string          `json:"appid"`
			DailyLimit json.RawMessage `json:"daily_limit"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		var limit int
		if err := json.Unmarshal(b.DailyLimit, &limit); err != nil {
			return nil, fmt.Errorf("%w: daily_limit must be a whole number", errBadRequest)
		}
		return nil, s.SetDailyQuota(b.AppID, limit)
	})
}
