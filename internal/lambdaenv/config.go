package lambdaenv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"minipush"
	"minipush/internal/dynamo"
)

// Variables that tune one function beyond what template.yaml's Globals set. Each is
// optional; unset means the handler's default.
const (
	// CollectRateEnv bounds grant uploads per user per minute (collect.DefaultRatePerMinute).
	CollectRateEnv = "COLLECT_RATE_PER_MINUTE"
	// SessionRefusalsEnv bounds the login codes WeChat may refuse per source address
	// per minute (collect.DefaultSessionRefusalsPerMinute).
	SessionRefusalsEnv = "SESSION_REFUSALS_PER_MINUTE"
	// SessionTTLEnv overrides collect.DefaultSessionTTL, as a Go duration ("72h").
	SessionTTLEnv = "SESSION_TTL"
	// SendParallelismEnv sets send.Handler.Parallelism, recipients in flight per instance.
	SendParallelismEnv = "SEND_PARALLELISM"
)

// Emulation knobs: the local runner and the tests that kill it shorten these so a dead
// sender's leases and a quiet run come back in seconds; in the cloud they stay unset.
const (
	// SendLeaseEnv overrides send.DefaultLease, in seconds: how long a crashed sender's
	// claim or grant lease blocks its recipient. In the cloud it must outlast an
	// invocation.
	SendLeaseEnv = "SEND_LEASE_SECONDS"
	// PlanQuietEnv overrides plan.DefaultQuiet, in seconds.
	PlanQuietEnv = "PLAN_QUIET_SECONDS"
)

// config is everything the functions read from their environment. Fields a function
// does not use may be empty; each function checks what it needs with require.
type config struct {
	tables             dynamo.Tables
	sendQueueURL       string
	webhookQueueURL    string // optional for producers: unset publishes no webhook events
	weChatBaseURL      string
	tokenEndpoint      string // stable or legacy
	weChatSecretARN    string
	sessionSecretARN   string
	operatorSecretARN  string
	retention          time.Duration // deliveries and finished runs
	subscribeRetention time.Duration
	maxLiveGrants      int
	sendRatePerSecond  float64

	getenv func(string) string
	read   map[string]string
}

// readConfig reads the variables every function may share through getenv.
func readConfig(getenv func(string) string) (*config, error) {
	c := &config{getenv: getenv, read: map[string]string{}}
	get := c.get
	c.tables = dynamo.Tables{
		Grants: get("GRANTS_TABLE"), Users: get("USERS_TABLE"), Campaigns: get("CAMPAIGNS_TABLE"),
		Audience: get("AUDIENCE_TABLE"), Deliveries: get("DELIVERIES_TABLE"), State: get("STATE_TABLE"),
	}
	c.sendQueueURL = get("SEND_QUEUE_URL")
	c.webhookQueueURL = get("WEBHOOK_QUEUE_URL")
	c.weChatBaseURL = orDefault(get("WECHAT_BASE_URL"), "https://api.weixin.qq.com")
	c.tokenEndpoint = orDefault(get("TOKEN_ENDPOINT"), "stable")
	var errs []error
	if c.tokenEndpoint != "stable" && c.tokenEndpoint != "legacy" {
		errs = append(errs, fmt.Errorf("TOKEN_ENDPOINT %q: want stable or legacy", c.tokenEndpoint))
	}
	c.weChatSecretARN = get("WECHAT_SECRET_ARN")
	c.sessionSecretARN = get("SESSION_SECRET_ARN")
	c.operatorSecretARN = get("OPERATOR_SECRET_ARN")
	positive := func(k string, def int) int {
		n, err := c.positiveInt(k, def)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	day := 24 * time.Hour
	c.retention = time.Duration(positive("RETENTION_DAYS", 30)) * day
	c.subscribeRetention = time.Duration(positive("SUBSCRIBE_RETENTION_DAYS", int(minipush.DefaultSubscribeRetention/day))) * day
	c.maxLiveGrants = positive("MAX_LIVE_GRANTS", minipush.DefaultMaxLiveGrants)
	if v := get("SEND_RATE_PER_SECOND"); v != "" {
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || f < 0 {
			errs = append(errs, fmt.Errorf("SEND_RATE_PER_SECOND %q: want a number >= 0", v))
		}
		c.sendRatePerSecond = f
	}
	return c, errors.Join(errs...)
}

// get reads k and remembers it for require.
func (c *config) get(k string) string {
	v := c.getenv(k)
	c.read[k] = v
	return v
}

// require fails naming every listed variable that is empty, so a miswired function
// stops at init with a clear message instead of failing on its first request.
func (c *config) require(keys ...string) error {
	var missing []string
	for _, k := range keys {
		v, ok := c.read[k]
		if !ok {
			v = c.get(k)
		}
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing environment: %s", strings.Join(missing, ", "))
	}
	return nil
}

// positiveInt reads k as a positive integer, def when unset.
func (c *config) positiveInt(k string, def int) (int, error) {
	v := c.get(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return def, fmt.Errorf("%s %q: want a positive integer", k, v)
	}
	return n, nil
}

// seconds reads k as a positive number of seconds, def when unset.
func (c *config) seconds(k string, def time.Duration) (time.Duration, error) {
	n, err := c.positiveInt(k, int(def/time.Second))
	if err != nil {
		return def, fmt.Errorf("%w of seconds", err)
	}
	return time.Duration(n) * time.Second, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
