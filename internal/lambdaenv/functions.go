package lambdaenv

import (
	"context"
	"fmt"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/collect"
	"minipush/internal/dynamo"
	"minipush/internal/expire"
	"minipush/internal/plan"
	"minipush/internal/queue"
	"minipush/internal/send"
	"minipush/internal/session"
	"minipush/internal/token"
	"minipush/internal/webhook"
	"minipush/internal/wechat"
)

// Collect builds the collect function (sessions, grant uploads, WeChat's message push):
// the WeChat secret's apps, the session signing key, the WeChat client and storage.
func Collect(ctx context.Context, env Env) (h *collect.Handler, err error) {
	defer wrap(&err, "collect")
	w, err := env.wire("collect", "GRANTS_TABLE", "USERS_TABLE", "STATE_TABLE", "WECHAT_SECRET_ARN", "SESSION_SECRET_ARN")
	if err != nil {
		return nil, err
	}
	rate, err := w.cfg.positiveInt(CollectRateEnv, collect.DefaultRatePerMinute)
	if err != nil {
		return nil, err
	}
	refusals, err := w.cfg.positiveInt(SessionRefusalsEnv, collect.DefaultSessionRefusalsPerMinute)
	if err != nil {
		return nil, err
	}
	ttl := collect.DefaultSessionTTL
	if v := w.cfg.get(SessionTTLEnv); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl < time.Minute {
			return nil, fmt.Errorf("%s %q: want a duration of at least 1m, e.g. 168h", SessionTTLEnv, v)
		}
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	apps, err := w.secrets.apps(ctx, w.cfg)
	if err != nil {
		return nil, err
	}
	key, err := w.secrets.get(ctx, "SESSION_SECRET_ARN", w.cfg.sessionSecretARN)
	if err != nil {
		return nil, err
	}
	if len(key) < session.MinKeyLen {
		// The key itself is never part of the message.
		return nil, fmt.Errorf("the SESSION_SECRET_ARN secret is %d bytes, want at least %d", len(key), session.MinKeyLen)
	}
	db := w.db()
	h = collect.New(db, db, wechat.New(wechat.Options{BaseURL: w.cfg.weChatBaseURL, Logger: w.log}), apps, []byte(key))
	h.MaxLiveGrants = w.cfg.maxLiveGrants
	h.SubscribeRetention = w.cfg.subscribeRetention
	h.RatePerMinute = rate
	h.SessionRefusalsPerMinute = refusals
	h.SessionTTL = ttl
	h.Now = db.Now
	h.Log = w.log
	h.Metrics = w.metrics(ctx)
	return h, nil
}

// Admin builds the operator API: the operator tokens and their app scopes
// (OPERATOR_SECRET_ARN) and the served appIds from the WeChat secret, whose app secrets
// are not kept.
func Admin(ctx context.Context, env Env) (h *admin.Handler, err error) {
	defer wrap(&err, "admin")
	w, err := env.wire("admin", "GRANTS_TABLE", "USERS_TABLE", "CAMPAIGNS_TABLE", "AUDIENCE_TABLE", "DELIVERIES_TABLE",
		"STATE_TABLE", "OPERATOR_SECRET_ARN", "WECHAT_SECRET_ARN")
	if err != nil {
		return nil, err
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	raw, err := w.secrets.get(ctx, "OPERATOR_SECRET_ARN", w.cfg.operatorSecretARN)
	if err != nil {
		return nil, err
	}
	apps, err := w.secrets.apps(ctx, w.cfg)
	if err != nil {
		return nil, err
	}
	// A plain string is one all-apps token; JSON lists tokens scoped to apps.
	tokens, err := admin.ParseOperatorTokens(raw, apps.IDs())
	if err != nil {
		return nil, fmt.Errorf("OPERATOR_SECRET_ARN: %w", err)
	}
	db := w.db()
	h = admin.New(db, "", apps.IDs())
	h.Tokens = tokens
	h.Events = w.webhooks()
	h.Apps = appsByID(apps, w.aws.emulated())
	h.Log = w.log
	h.Metrics = w.metrics(ctx)
	h.Registry = db
	if w.cfg.tokenEndpoint == "stable" {
		// The template sync and test sends take their own token (stableTokens): the
		// legacy endpoint would invalidate send's token on every call, so with it there
		// is neither (501).
		wc := wechat.New(wechat.Options{BaseURL: w.cfg.weChatBaseURL, Logger: w.log})
		own := newStableTokens(wc, apps, time.Now)
		h.TemplateSource = admin.WeChatTemplates{Client: wc, Token: func(ctx context.Context, appID string, fresh bool) (string, error) {
			if fresh {
				if tok, err := own.Get(ctx, appID); err == nil {
					return own.Invalidate(ctx, appID, tok)
				}
			}
			return own.Get(ctx, appID)
		}}
		// A test send is one recipient of a run, minus the run (send.SendTest): the
		// sender's per-recipient path on the same tables, with this token.
		h.TestSender = &send.Handler{
			Store: db, WeChat: wc, Tokens: own, Apps: h.Apps, Now: db.Now, Log: w.log,
			Retention: w.cfg.retention, Parallelism: admin.MaxTestRecipients,
		}
	}
	return h, nil
}

// Plan builds the planner: storage and the send queue.
func Plan(ctx context.Context, env Env) (h *plan.Handler, err error) {
	defer wrap(&err, "plan")
	w, err := env.wire("plan", "CAMPAIGNS_TABLE", "AUDIENCE_TABLE", "USERS_TABLE", "GRANTS_TABLE", "DELIVERIES_TABLE", "SEND_QUEUE_URL",
		"WECHAT_SECRET_ARN")
	if err != nil {
		return nil, err
	}
	quiet, err := w.cfg.seconds(PlanQuietEnv, plan.DefaultQuiet)
	if err != nil {
		return nil, err
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	// The apps' quiet hours and zones; the planner never calls WeChat.
	apps, err := w.secrets.apps(ctx, w.cfg)
	if err != nil {
		return nil, err
	}
	return &plan.Handler{
		DB:      w.db(),
		Queue:   queue.New(w.aws.sqs, w.cfg.sendQueueURL),
		Log:     w.log,
		Metrics: w.metrics(ctx),
		Quiet:   quiet,
		Apps:    appsByID(apps, w.aws.emulated()),
		Events:  w.webhooks(),
	}, nil
}

// Send builds the sender: storage and the WeChat client with connection pools sized
// for its parallelism, the shared token cache, the send queue for re-queues, and each
// app's zone for the per-day cap.
func Send(ctx context.Context, env Env) (h *send.Handler, err error) {
	defer wrap(&err, "send")
	w, err := env.wire("send", "GRANTS_TABLE", "USERS_TABLE", "CAMPAIGNS_TABLE", "DELIVERIES_TABLE", "STATE_TABLE",
		"SEND_QUEUE_URL", "WECHAT_SECRET_ARN")
	if err != nil {
		return nil, err
	}
	parallelism, err := w.cfg.positiveInt(SendParallelismEnv, send.DefaultParallelism)
	if err != nil {
		return nil, err
	}
	lease, err := w.cfg.seconds(SendLeaseEnv, send.DefaultLease)
	if err != nil {
		return nil, err
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	apps, err := w.secrets.apps(ctx, w.cfg)
	if err != nil {
		return nil, err
	}
	wc := wechat.New(wechat.Options{BaseURL: w.cfg.weChatBaseURL, HTTPClient: wechat.NewHTTPClient(parallelism), Logger: w.log})
	db := dynamo.New(widePool(w.aws.dynamoDB, parallelism), w.cfg.tables)
	db.Retention = w.cfg.retention
	legacy := w.cfg.tokenEndpoint == "legacy"
	fetch := func(ctx context.Context, appID string) (string, time.Time, error) {
		app, ok := apps.Find(appID)
		if !ok {
			return "", time.Time{}, fmt.Errorf("no credentials for app %s in the wechat secret", appID)
		}
		var (
			tok wechat.Token
			err error
		)
		if legacy {
			tok, err = wc.Token(ctx, app.AppID, app.AppSecret)
		} else {
			// Normal mode only: force_refresh is 20 a day and invalidates other instances.
			tok, err = wc.StableToken(ctx, app.AppID, app.AppSecret, false)
		}
		return tok.AccessToken, tok.ExpiresAt, err
	}
	return &send.Handler{
		Store:       db,
		Queue:       queue.New(w.aws.sqs, w.cfg.sendQueueURL),
		WeChat:      wc,
		Tokens:      token.New(db, fetch),
		Limiter:     send.NewRateLimiter(w.cfg.sendRatePerSecond),
		Quota:       &send.Pacer{Store: db, WeChat: wc},
		Apps:        appsByID(apps, w.aws.emulated()),
		Now:         db.Now,
		Log:         w.log,
		Metrics:     w.metrics(ctx),
		Parallelism: parallelism,
		Retention:   w.cfg.retention,
		Lease:       lease,
		Events:      w.webhooks(),
	}, nil
}

// appsByID indexes the WeChat secret's apps by appId, for the handlers that apply their
// zone, frequency caps and quiet hours. On an emulated stack (make run, the test
// suites) an app whose secret names no quietHours has none instead of the default
// night window: local runs go by the wall clock, and a default window would make every
// local campaign wait for the morning in Shanghai when run in the afternoon UTC. Tests
// of quiet hours name their window.
func appsByID(apps minipush.Apps, emulated bool) map[string]minipush.App {
	out := make(map[string]minipush.App, len(apps.Apps))
	for _, a := range apps.Apps {
		if emulated && a.QuietHours == nil {
			a.QuietHours = &minipush.QuietHours{Off: true}
		}
		out[a.AppID] = a
	}
	return out
}

// Webhook builds the webhook function: storage (webhooks, digests), the HTTP client
// that posts events, and the webhook queue, to back off failed deliveries and to
// enqueue digests. It reads no secret: each app's signing secret is on its webhook.
func Webhook(ctx context.Context, env Env) (h *webhook.Handler, err error) {
	defer wrap(&err, "webhook")
	w, err := env.wire("webhook", "STATE_TABLE", "WEBHOOK_QUEUE_URL")
	if err != nil {
		return nil, err
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	db := w.db()
	return &webhook.Handler{
		Store: db, HTTP: webhook.NewHTTPClient(), Queue: w.aws.sqs, QueueURL: w.cfg.webhookQueueURL,
		Publisher: &webhook.Publisher{Client: w.aws.sqs, URL: w.cfg.webhookQueueURL, Log: w.log}, Now: db.Now, Log: w.log, Metrics: w.metrics(ctx),
	}, nil
}

// DeadLetter builds the consumer of the send dead-letter queue. It needs only the
// tables: it calls neither WeChat nor SQS.
func DeadLetter(ctx context.Context, env Env) (h *send.DeadLetter, err error) {
	defer wrap(&err, "deadletter")
	w, err := env.wire("deadletter", "GRANTS_TABLE", "CAMPAIGNS_TABLE", "DELIVERIES_TABLE")
	if err != nil {
		return nil, err
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	db := w.db()
	return &send.DeadLetter{Store: db, Now: db.Now, Log: w.log, Retention: w.cfg.retention, Metrics: w.metrics(ctx), Events: w.webhooks()}, nil
}

// Expire builds the consumer of the grants table's removals and its replay.
func Expire(ctx context.Context, env Env) (h *expire.Handler, err error) {
	defer wrap(&err, "expire")
	w, err := env.wire("expire", "GRANTS_TABLE", "USERS_TABLE", "STATE_TABLE")
	if err != nil {
		return nil, err
	}
	if err := w.connect(ctx); err != nil {
		return nil, err
	}
	db := w.db()
	h = expire.New(db, w.log)
	h.Now = db.Now
	// Real DynamoDB stamps a stream record with the time of the change; DynamoDB Local
	// stamps the wall clock while tests drive a clock of their own (see the field).
	h.RecordTimeOnly = !w.aws.emulated()
	h.Streams = w.aws.streams()
	h.Metrics = w.metrics(ctx)
	return h, nil
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
