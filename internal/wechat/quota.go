package wechat

import "context"

const pathQuotaGet = "/cgi-bin/openapi/quota/get"

// PathSubscribeSend is the cgi_path whose quota GetQuota reads for subscribe sends.
const PathSubscribeSend = pathSubscribeSend

// Quota is an API's daily quota and its rate limit as WeChat counts them for the app.
type Quota struct {
	DailyLimit int `json:"daily_limit"`
	Used       int `json:"used"`
	Remain     int `json:"remain"`
	// RateLimit: at most CallCount calls every RefreshSecond seconds (zero: none told).
	RateLimit struct {
		CallCount     int `json:"call_count"`
		RefreshSecond int `json:"refresh_second"`
	} `json:"rate_limit"`
}

// GetQuota reads the app's quota of one API (cgiPath, e.g. PathSubscribeSend): today's
// daily limit, use and remainder, and the per-period rate limit. The call has a quota of
// its own, so callers cache the answer (send's quota pacer reads it once a few minutes).
//
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/openapi/getApiQuota.html
func (c *Client) GetQuota(ctx context.Context, token, cgiPath string) (Quota, error) {
	var out struct {
		Quota     Quota `json:"quota"`
		RateLimit struct {
			CallCount     int `json:"call_count"`
			RefreshSecond int `json:"refresh_second"`
		} `json:"rate_limit"`
	}
	body := map[string]string{"cgi_path": cgiPath}
	if err := c.send(ctx, pathQuotaGet, token, body, &out); err != nil {
		return Quota{}, err
	}
	q := out.Quota
	q.RateLimit = out.RateLimit
	return q, nil
}
