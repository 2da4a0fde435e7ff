package send

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush/internal/awsenv"
	"minipush/internal/config"
	"minipush/internal/dynamo"
	"minipush/internal/token"
	"minipush/internal/wechat"
)

// ParallelismEnv optionally sets Handler.Parallelism (recipients in flight per
// instance); unset means DefaultParallelism.
const ParallelismEnv = "SEND_PARALLELISM"

// NewHTTPClient returns an HTTP client for WeChat that keeps up to conns idle
// connections to it: net/http's default keeps 2 per host, so a sender with more calls
// in flight would open (and TLS-handshake) a new connection for most of them.
func NewHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(conns, 2)
	tr.MaxIdleConns = max(conns, tr.MaxIdleConns)
	return &http.Client{Transport: tr}
}

// widePool returns client with room for parallelism idle connections more than the
// SDK's 10 per host: each recipient in flight has one DynamoDB call in flight, so a
// sender with more would close a connection after most calls and open (and
// TLS-handshake) a new one for the next. The SDK's HTTP client is kept (with its TLS
// settings), only its pool widened.
func widePool(client *dynamodb.Client, parallelism int) *dynamodb.Client {
	return dynamodb.New(client.Options(), func(o *dynamodb.Options) {
		if bc, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
			o.HTTPClient = bc.WithTransportOptions(func(tr *http.Transport) {
				tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, parallelism+10)
				tr.MaxIdleConns = max(tr.MaxIdleConns, parallelism+10)
			})
		}
	})
}

// LeaseEnv optionally overrides DefaultLease, in seconds: how long a claim or grant lease of
// a crashed sender blocks its recipient. Tests that kill the local runner shorten it; in
// the cloud it must outlast an invocation.
const LeaseEnv = "SEND_LEASE_SECONDS"

// FromEnv builds the production Handler from a function's environment, read only
// through getenv: Lambda passes os.Getenv, the local runner each function's resolved
// environment. AWS clients, the WeChat client and the token cache are built once here
// and reused by warm invocations.
func FromEnv(ctx context.Context, getenv func(string) string) (*Handler, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	if err := cfg.Require("GRANTS_TABLE", "USERS_TABLE", "CAMPAIGNS_TABLE", "DELIVERIES_TABLE", "STATE_TABLE",
		"SEND_QUEUE_URL", "WECHAT_SECRET_ARN"); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	parallelism := DefaultParallelism
	if v := getenv(ParallelismEnv); v != "" {
		if parallelism, err = strconv.Atoi(v); err != nil || parallelism <= 0 {
			return nil, fmt.Errorf("send: %s %q: want a positive integer", ParallelismEnv, v)
		}
	}
	lease := DefaultLease
	if v := getenv(LeaseEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("send: %s %q: want a positive number of seconds", LeaseEnv, v)
		}
		lease = time.Duration(n) * time.Second
	}
	clients, err := awsenv.Load(ctx, getenv)
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	local, err := config.ParseLocalSecrets(getenv(config.LocalSecretsEnv))
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	raw, err := config.Secrets{Client: clients.SecretsManager, Local: local}.Get(ctx, cfg.WeChatSecretARN)
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	apps, err := config.ParseApps(raw)
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	wc := wechat.New(wechat.Options{BaseURL: cfg.WeChatBaseURL, HTTPClient: NewHTTPClient(parallelism)})
	db := dynamo.New(widePool(clients.DynamoDB, parallelism), cfg.Tables)
	db.Retention = cfg.Retention
	legacy := cfg.TokenEndpoint == "legacy"
	fetch := func(ctx context.Context, appID string) (string, time.Time, error) {
		app, ok := apps.Find(appID)
		if !ok {
			return "", time.Time{}, fmt.Errorf("no credentials for app %s in the wechat secret", appID)
		}
		var tok wechat.Token
		if legacy {
			tok, err = wc.Token(ctx, app.AppID, app.AppSecret)
		} else {
			// Normal mode only: force_refresh is 20 a day and invalidates other instances.
			tok, err = wc.StableToken(ctx, app.AppID, app.AppSecret, false)
		}
		return tok.AccessToken, tok.ExpiresAt, err
	}
	zones := make(map[string]*time.Location, len(apps.Apps))
	for _, app := range apps.Apps {
		zones[app.AppID] = app.Location()
	}
	return &Handler{
		Store:       db,
		Queue:       SQSQueue{Client: clients.SQS, URL: cfg.SendQueueURL},
		WeChat:      wc,
		Tokens:      token.New(db, fetch),
		Limiter:     NewRateLimiter(cfg.SendRatePerSecond),
		Zones:       zones,
		Now:         db.Now,
		Parallelism: parallelism,
		Retention:   cfg.Retention,
		Lease:       lease,
	}, nil
}
