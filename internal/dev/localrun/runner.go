// Package localrun runs the whole system on one machine, wired from template.yaml: the
// local stack (DynamoDB Local, the SQS server), the WeChat sandbox, and the five
// functions in-process behind emulations of what invokes them in AWS — the HTTP API,
// the EventBridge schedule, the SQS event source mapping and the DynamoDB stream mapping
// — plus the TTL reaper standing in for DynamoDB's TTL service. Routes, schedules,
// batch sizes, concurrency, timeouts and filters all come from the template, so what
// runs here is what the template deploys.
package localrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/lambdaenv"
	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// Builder builds a function's handler from its environment, as its main.go does in
// Lambda (lambdaenv.Builders). The result must be a handler func of the type the
// function's events need.
type Builder = lambdaenv.Builder

// Options configure a runner.
type Options struct {
	Root string // repository root (template.yaml, infra/)
	// DataDir keeps DynamoDB data and local secrets between runs; empty keeps nothing.
	DataDir string
	// Addr is where the HTTP API listens (127.0.0.1 only).
	Addr string
	// Stack, when set, is an already running local stack to use instead of starting one.
	Stack *localstack.Endpoints
	// WeChatURL, when set, is a WeChat (sandbox) base URL to use instead of the
	// in-process sandbox the caller provides through the WeChatBaseURL parameter.
	Params map[string]string
	// Secrets are the local: secrets (WeChatSecret, SessionSigningSecret,
	// OperatorTokenSecret); missing signing keys are generated (and kept in DataDir).
	Secrets  map[string]string
	Builders map[string]Builder
	// Env is added to every function's environment (local knobs such as SEND_LEASE_SECONDS).
	Env    map[string]string
	Prefix string        // resource name prefix; default "minipush-"
	Reap   time.Duration // TTL reaper interval; 0 disables it
	// SQSDuplicate is the probability that the SQS mappings deliver a received message a
	// second time (see SQSMapping.Duplicate); 0, the default, never duplicates.
	SQSDuplicate float64
	// Observe, when set, gives each function (by logical id) an observer of its AWS
	// calls and secret reads (lambdaenv.Observer; the IAM coverage test's recorder).
	Observe func(function string) lambdaenv.Observer
	Log     *slog.Logger
}

// Runner is a running local system.
type Runner struct {
	URL       string // the HTTP API
	Stack     localstack.Endpoints
	Resources *localstack.Resources
	Secrets   map[string]string
	Schedules map[string]*Schedule // by function logical id
	// Metrics receives every function's EMF lines (what CloudWatch would extract) and
	// sums them up for the live summary of make run.
	Metrics *Summary

	log     *slog.Logger
	stack   *localstack.Stack
	server  *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	tpl     *samtemplate.Template
	clients localstack.Clients
}

// Start brings the system up and returns once it is ready.
func Start(ctx context.Context, opts Options) (_ *Runner, err error) {
	log := opts.Log
	log = logs.Or(log)
	if opts.Prefix == "" {
		opts.Prefix = "minipush-"
	}
	tpl, err := samtemplate.ReadFile(filepath.Join(opts.Root, "template.yaml"))
	if err != nil {
		return nil, err
	}
	r := &Runner{log: log, tpl: tpl, Schedules: map[string]*Schedule{}, Metrics: NewSummary()}
	defer func() {
		if err != nil {
			r.Stop(context.WithoutCancel(ctx))
		}
	}()
	if opts.Stack != nil {
		r.Stack = *opts.Stack
	} else {
		dataDir := ""
		if opts.DataDir != "" {
			dataDir = filepath.Join(opts.DataDir, "dynamodb")
		}
		r.stack, err = localstack.Start(ctx, localstack.Options{Root: opts.Root, DataDir: dataDir, Logger: log})
		if err != nil {
			return nil, err
		}
		r.Stack = r.stack.Endpoints
	}
	r.clients = r.Stack.NewClients()
	// Every user the demo, the chaos suite or a benchmark simulates logs in from this
	// machine, one source address to the emulated gateway; the per-source login limit
	// counts only codes WeChat refuses, so their valid logins pass at the template's
	// default and local runs keep the deployed limit.
	params := map[string]string{"WeChatSecretArn": localstack.LocalSecretArn}
	for k, v := range opts.Params {
		params[k] = v
	}
	r.Resources, err = localstack.Provision(ctx, r.clients, tpl, opts.Prefix, params)
	if err != nil {
		return nil, err
	}
	r.Secrets, err = localSecrets(opts.DataDir, opts.Secrets)
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	var routes []Route
	var mappings []*SQSMapping
	for _, id := range tpl.FunctionIDs() {
		f := tpl.Functions[id]
		build, ok := opts.Builders[id]
		if !ok {
			return nil, fmt.Errorf("localrun: no builder for %s", id)
		}
		getenv, err := r.functionEnv(id, opts.Env)
		if err != nil {
			return nil, err
		}
		bctx := metrics.WithWriter(ctx, r.Metrics)
		if opts.Observe != nil {
			bctx = lambdaenv.WithObserver(bctx, opts.Observe(id))
		}
		h, err := build(bctx, getenv)
		if err != nil {
			return nil, fmt.Errorf("localrun: build %s: %w", id, err)
		}
		timeout, err := r.seconds(f.Timeout, 3)
		if err != nil {
			return nil, fmt.Errorf("localrun: %s timeout: %w", id, err)
		}
		for _, name := range slices.Sorted(maps.Keys(f.Events)) {
			ev := f.Events[name]
			switch {
			case ev.HTTPAPI != nil:
				hh, ok := asHTTP(h)
				if !ok {
					return nil, fmt.Errorf("localrun: %s has an HttpApi event but its handler is %T", id, h)
				}
				routes = append(routes, Route{Method: ev.HTTPAPI.Method, Path: ev.HTTPAPI.Path, Function: id, Timeout: min(timeout, 30*time.Second), Handler: hh})
			case ev.Schedule != nil:
				sh, ok := asSchedule(h)
				if !ok {
					return nil, fmt.Errorf("localrun: %s has a schedule but its handler is %T", id, h)
				}
				every, err := ParseRate(ev.Schedule.Expression())
				if err != nil {
					return nil, err
				}
				s := &Schedule{Function: id, Name: id + "-" + name, Every: every, Timeout: timeout, Handler: sh, Log: log}
				s.init()
				r.Schedules[id] = s
				r.goRun(runCtx, s.Run)
			case ev.SQS != nil:
				if on, err := samtemplate.MappingEnabled(ev.SQS.Enabled, r.Resources); err != nil || !on {
					if err != nil {
						return nil, fmt.Errorf("localrun: %s event %s: %w", id, name, err)
					}
					log.Info("event source mapping disabled by the template", "target", id, "event", name)
					continue
				}
				qh, ok := asSQS(h)
				if !ok {
					return nil, fmt.Errorf("localrun: %s has an SQS event but its handler is %T", id, h)
				}
				m, err := r.sqsMapping(id, ev.SQS, qh, timeout)
				if err != nil {
					return nil, err
				}
				if opts.SQSDuplicate < 0 || opts.SQSDuplicate > 1 {
					return nil, fmt.Errorf("localrun: SQS duplicate probability %v is not in [0,1]", opts.SQSDuplicate)
				}
				m.Duplicate = opts.SQSDuplicate
				mappings = append(mappings, m)
			case ev.DynamoDB != nil:
				dh, ok := asStream(h)
				if !ok {
					return nil, fmt.Errorf("localrun: %s has a DynamoDB event but its handler is %T", id, h)
				}
				opts, on, err := TemplateStreamMapping(r.Resources, r.clients, id, ev.DynamoDB, dh, timeout, log)
				if err != nil {
					return nil, err
				}
				if !on {
					log.Info("event source mapping disabled by the template", "target", id, "event", name)
					continue
				}
				m, err := NewStreamMapping(opts)
				if err != nil {
					return nil, err
				}
				r.goRun(runCtx, m.Run)
			default:
				return nil, fmt.Errorf("localrun: %s event %s: type %s has no local emulation", id, name, ev.Type)
			}
		}
	}
	for _, m := range mappings {
		r.goRun(runCtx, m.Run)
	}
	if opts.Reap > 0 {
		reaper := localstack.NewReaper(r.clients.DynamoDB, tpl, r.Resources, time.Now)
		r.goRun(runCtx, func(ctx context.Context) { reaper.Run(ctx, opts.Reap, log) })
	}

	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:3000"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		return nil, fmt.Errorf("localrun: listen address %q: only 127.0.0.1 is allowed", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("localrun: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", &Gateway{Routes: routes, Log: log})
	mux.HandleFunc("POST /_local/tick", r.serveTick)
	r.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.URL = "http://" + ln.Addr().String()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http api stopped", "err", err)
		}
	}()
	return r, nil
}

func (r *Runner) goRun(ctx context.Context, f func(context.Context)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f(ctx)
	}()
}

// Tick runs every schedule once now (what POST /_local/tick does).
func (r *Runner) Tick(ctx context.Context) error {
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(r.Schedules)) {
		if err := r.Schedules[id].Trigger(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) serveTick(w http.ResponseWriter, req *http.Request) {
	if err := r.Tick(req.Context()); err != nil {
		http.Error(w, fmt.Sprintf(`{"error":%q}`, err.Error()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
}

// Stop shuts everything down: the HTTP API, pollers (in-flight invocations finish), and
// the local stack if this runner started it.
func (r *Runner) Stop(ctx context.Context) {
	if r.server != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = r.server.Shutdown(sctx)
		cancel()
	}
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	if r.stack != nil {
		r.stack.Stop(ctx)
	}
}

// functionEnv resolves a function's environment from the template and adds what the
// local stack needs: endpoints, dummy credentials and the local secrets.
func (r *Runner) functionEnv(id string, extra map[string]string) (func(string) string, error) {
	env, err := r.Resources.FunctionEnv(id)
	if err != nil {
		return nil, err
	}
	for k, v := range extra {
		env[k] = v
	}
	for _, kv := range r.Stack.Environ() {
		k, v, _ := cutEq(kv)
		env[k] = v
	}
	b, _ := json.Marshal(r.Secrets)
	env[lambdaenv.LocalSecretsEnv] = string(b)
	env["AWS_LAMBDA_FUNCTION_NAME"] = r.Resources.Prefix + id
	return func(k string) string { return env[k] }, nil
}

func cutEq(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func (r *Runner) seconds(v samtemplate.Value, def int) (time.Duration, error) {
	n, err := r.intValue(v, def)
	return time.Duration(n) * time.Second, err
}

func (r *Runner) intValue(v samtemplate.Value, def int) (int, error) {
	return intValue(r.Resources, v, def)
}

// intValue resolves an integer property; absent (or AWS::NoValue) is def.
func intValue(res *localstack.Resources, v samtemplate.Value, def int) (int, error) {
	if !v.IsSet() {
		return def, nil
	}
	s, err := v.Resolve(res)
	if err != nil || s == "" {
		return def, err
	}
	return strconv.Atoi(s)
}

func (r *Runner) sqsMapping(id string, ev *samtemplate.SQSEvent, h SQSHandler, timeout time.Duration) (*SQSMapping, error) {
	arn, err := ev.Queue.Resolve(r.Resources)
	if err != nil {
		return nil, err
	}
	var q *localstack.Queue
	for _, cand := range r.Resources.Queues {
		if cand.ARN == arn {
			q = &cand
			break
		}
	}
	if q == nil {
		return nil, fmt.Errorf("localrun: %s: queue %s is not in the template", id, arn)
	}
	batch, err := r.intValue(ev.BatchSize, 10)
	if err != nil {
		return nil, err
	}
	conc := 1000 // Lambda's default scale-out is unbounded; locally a thousand pollers is plenty
	if ev.ScalingConfig != nil {
		if conc, err = r.intValue(ev.ScalingConfig.MaximumConcurrency, conc); err != nil {
			return nil, err
		}
	}
	return &SQSMapping{
		Function: id, QueueURL: q.URL, QueueARN: q.ARN, BatchSize: batch, MaxConcurrency: conc,
		ReportFailures: ev.ReportsBatchItemFailures(), Timeout: timeout, Handler: h, Client: r.clients.SQS, Log: r.log,
	}, nil
}

// TemplateStreamMapping returns the options of the stream mapping a function's DynamoDB
// event declares, on the local resources: batch size, retries, filters, partial batch
// responses and the on-failure destination (an SQS queue of the template). It reports
// false when the event's Enabled resolves to false: the mapping must not run.
func TemplateStreamMapping(res *localstack.Resources, clients localstack.Clients, id string, ev *samtemplate.DynamoDBEvent, h StreamHandler, timeout time.Duration, log *slog.Logger) (StreamMappingOptions, bool, error) {
	var opts StreamMappingOptions
	on, err := samtemplate.MappingEnabled(ev.Enabled, res)
	if err != nil || !on {
		return opts, false, err
	}
	arn, err := ev.Stream.Resolve(res)
	if err != nil {
		return opts, false, err
	}
	batch, err := intValue(res, ev.BatchSize, 100)
	if err != nil {
		return opts, false, err
	}
	retries, err := intValue(res, ev.MaximumRetryAttempts, -1)
	if err != nil {
		return opts, false, err
	}
	var patterns []string
	if ev.FilterCriteria != nil {
		for _, f := range ev.FilterCriteria.Filters {
			patterns = append(patterns, f.Pattern)
		}
	}
	opts = StreamMappingOptions{
		Function: id, FunctionARN: fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s%s", localstack.Region, localstack.AccountID, res.Prefix, id),
		StreamARN: arn, BatchSize: batch, MaxRetries: retries, Patterns: patterns,
		ReportFailures: ev.ReportsBatchItemFailures(), StartingPosition: ev.StartingPosition,
		Timeout: timeout, Handler: h, Client: clients.Streams, Log: log,
	}
	if dc := ev.DestinationConfig; dc != nil {
		dest, err := dc.OnFailure.Destination.Resolve(res)
		if err != nil {
			return opts, false, fmt.Errorf("localrun: %s: on-failure destination: %w", id, err)
		}
		var q *localstack.Queue
		for _, cand := range res.Queues {
			if cand.ARN == dest {
				q = &cand
				break
			}
		}
		if q == nil {
			// An SNS topic (or anything else) has no local stand-in to receive the record.
			return opts, false, fmt.Errorf("localrun: %s: on-failure destination %s is not a queue of the template", id, dest)
		}
		opts.OnFailureQueueURL, opts.OnFailureSQS = q.URL, clients.SQS
	}
	return opts, true, nil
}

func asHTTP(h any) (HTTPHandler, bool) {
	switch f := h.(type) {
	case HTTPHandler:
		return f, true
	case func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error):
		return f, true
	case func(context.Context, json.RawMessage) (any, error):
		// A function that serves more than one event source (admin: the HTTP API and a
		// schedule) decodes its event itself, as in Lambda.
		return func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			var resp events.APIGatewayV2HTTPResponse
			err := invokeRaw(ctx, f, req, &resp)
			return resp, err
		}, true
	}
	return nil, false
}

func asSchedule(h any) (ScheduleHandler, bool) {
	switch f := h.(type) {
	case ScheduleHandler:
		return f, true
	case func(context.Context, events.EventBridgeEvent) error:
		return f, true
	case func(context.Context, json.RawMessage) (any, error):
		return func(ctx context.Context, ev events.EventBridgeEvent) error {
			var ignored any
			return invokeRaw(ctx, f, ev, &ignored)
		}, true
	}
	return nil, false
}

func asSQS(h any) (SQSHandler, bool) {
	switch f := h.(type) {
	case SQSHandler:
		return f, true
	case func(context.Context, events.SQSEvent) (events.SQSEventResponse, error):
		return f, true
	case func(context.Context, json.RawMessage) (any, error):
		return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			var resp events.SQSEventResponse
			err := invokeRaw(ctx, f, ev, &resp)
			return resp, err
		}, true
	}
	return nil, false
}

func asStream(h any) (StreamHandler, bool) {
	switch f := h.(type) {
	case StreamHandler:
		return f, true
	case func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error):
		return f, true
	case func(context.Context, json.RawMessage) (any, error):
		return func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
			var resp events.DynamoDBEventResponse
			err := invokeRaw(ctx, f, ev, &resp)
			return resp, err
		}, true
	}
	return nil, false
}

// invokeRaw calls a handler that takes Lambda's raw event JSON (a function with several
// event sources routes on it), the way the Lambda runtime does: the event marshalled in,
// the answer marshalled out and decoded as the event source reads it.
func invokeRaw(ctx context.Context, f func(context.Context, json.RawMessage) (any, error), ev, resp any) error {
	in, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("localrun: marshal event: %w", err)
	}
	out, err := f(ctx, in)
	if err != nil {
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("localrun: marshal answer: %w", err)
	}
	if err := json.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("localrun: answer %s: %w", b, err)
	}
	return nil
}

// localSecrets returns the local: secrets: the given ones, plus signing keys generated
// once and kept in dataDir so sessions and the operator token survive a restart.
func localSecrets(dataDir string, given map[string]string) (map[string]string, error) {
	out := map[string]string{}
	path := ""
	if dataDir != "" {
		path = filepath.Join(dataDir, "secrets.json")
		if b, err := os.ReadFile(path); err == nil {
			if err := json.Unmarshal(b, &out); err != nil {
				return nil, fmt.Errorf("localrun: %s: %w", path, err)
			}
		}
	}
	for k, v := range given {
		out[k] = v
	}
	changed := false
	for _, k := range []string{"SessionSigningSecret", "OperatorTokenSecret"} {
		if out[k] == "" {
			b := make([]byte, 24)
			_, _ = rand.Read(b)
			out[k] = hex.EncodeToString(b)
			changed = true
		}
	}
	if path != "" && changed {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("localrun: %w", err)
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("localrun: %w", err)
		}
	}
	return out, nil
}
