// Package lambdaenv is the production wiring of every minipush function, in one place:
// it reads a function's environment and secrets, builds the AWS clients once, the
// adapters on them and the handler, exactly as the function runs in Lambda. Each
// functions/<fn>/main.go is one call to Init; the local runner and the end-to-end tests
// build the same functions through Builders, so what they exercise is what ships.
//
// Emulation knobs enter here and nowhere else: local: secrets (LocalSecretsEnv), the
// shortened leases of the local runner's crash tests (SendLeaseEnv, PlanQuietEnv), and
// the expire function's choice of removal witness when DynamoDB is a local stand-in.
// So do dev observers (WithObserver), which see a function's AWS calls for the IAM
// coverage test without changing them.
package lambdaenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/collect"
	"minipush/internal/dynamo"
	"minipush/internal/expire"
	"minipush/internal/logs"
	"minipush/internal/metrics"
	"minipush/internal/plan"
	"minipush/internal/send"
	"minipush/internal/webhook"
)

// Env is what a function is built from.
type Env struct {
	// Getenv reads the function's environment: os.Getenv in Lambda, the template's
	// resolved environment for the function in the local runner and tests.
	Getenv func(string) string
	// Log receives the function's logs; nil means JSON lines on stderr (logs.New).
	Log *slog.Logger
}

// Init builds a function from the process environment with build, as its main.go
// does. A function that cannot be built logs why and exits, so Lambda reports the init
// failure instead of failing every invocation.
func Init[H any](function string, build func(context.Context, Env) (H, error)) H {
	log := logs.New(os.Stderr, function)
	h, err := build(context.Background(), Env{Getenv: os.Getenv, Log: log})
	if err != nil {
		log.Error("init failed", logs.KeyErr, err)
		os.Exit(1)
	}
	return h
}

// Builder builds one function's handler (the method Lambda starts) from its
// environment.
type Builder = func(ctx context.Context, getenv func(string) string) (any, error)

// Builders returns the function builders keyed by their template logical ids, for the
// local runner: each builds its function exactly as its main.go does in Lambda.
func Builders() map[string]Builder {
	return map[string]Builder{
		"CollectFunction": handler(Collect, func(h *collect.Handler) any { return h.Handle }),
		"AdminFunction":   handler(Admin, func(h *admin.Handler) any { return h.Invoke }), // the HTTP API and the daily template sync
		"PlanFunction":    handler(Plan, func(h *plan.Handler) any { return h.Handle }),
		"SendFunction":    handler(Send, func(h *send.Handler) any { return h.Handle }),
		// The stream and the failure queue's replay.
		"ExpireFunction":     handler(Expire, func(h *expire.Handler) any { return h.Invoke }),
		"DeadLetterFunction": handler(DeadLetter, func(h *send.DeadLetter) any { return h.Handle }),
		// The webhook queue and the digest schedule, both through Invoke.
		"WebhookFunction": handler(Webhook, func(h *webhook.Handler) any { return h.Invoke }),
	}
}

func handler[H any](build func(context.Context, Env) (H, error), method func(H) any) Builder {
	return func(ctx context.Context, getenv func(string) string) (any, error) {
		h, err := build(ctx, Env{Getenv: getenv})
		if err != nil {
			return nil, err
		}
		return method(h), nil
	}
}

// wiring is what every builder starts from.
type wiring struct {
	function string
	cfg      *config
	log      *slog.Logger
	aws      *clients
	secrets  secrets
}

// wire reads the shared configuration and checks that every required variable is
// set; it talks to nothing yet, so a miswired function fails fast.
func (env Env) wire(function string, required ...string) (*wiring, error) {
	cfg, err := readConfig(env.Getenv)
	if err == nil {
		err = cfg.require(required...)
	}
	if err != nil {
		return nil, err
	}
	log := env.Log
	if log == nil {
		log = logs.New(os.Stderr, function)
	}
	return &wiring{function: function, cfg: cfg, log: log}, nil
}

// connect builds the AWS clients and the secrets loader, observed by the Observer ctx
// carries, if any (WithObserver).
func (w *wiring) connect(ctx context.Context) error {
	obs := observerOf(ctx)
	c, err := loadClients(ctx, w.cfg.getenv, obs)
	if err != nil {
		return err
	}
	w.aws = c
	w.secrets, err = newSecrets(c.secretsManager, w.cfg.getenv)
	w.secrets.observe = obs.Secret
	return err
}

// db is the storage adapter on the function's tables.
func (w *wiring) db() *dynamo.DB {
	db := dynamo.New(w.aws.dynamoDB, w.cfg.tables)
	db.Retention = w.cfg.retention
	return db
}

// metrics is the function's EMF emitter.
func (w *wiring) metrics(ctx context.Context) *metrics.Emitter {
	return metrics.FromEnv(ctx, w.cfg.getenv, w.function)
}

// publisher is what producers of webhook events hold (plan, send, admin each declare
// the same one-method interface).
type publisher interface {
	Publish(ctx context.Context, ev minipush.WebhookEvent)
}

// webhooks is the publisher of the function's webhook events: a nil interface (no
// events) when WEBHOOK_QUEUE_URL is unset, never a nil pointer in a non-nil interface.
func (w *wiring) webhooks() publisher {
	if w.cfg.webhookQueueURL == "" {
		return nil
	}
	return &webhook.Publisher{Client: w.aws.sqs, URL: w.cfg.webhookQueueURL, Log: w.log}
}

// wrap prefixes a builder's error with its function.
func wrap(err *error, function string) {
	if *err != nil {
		*err = fmt.Errorf("%s: %w", function, *err)
	}
}
