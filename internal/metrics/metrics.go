// Package metrics emits CloudWatch Embedded Metric Format (EMF) lines: JSON log events
// that CloudWatch Logs turns into metrics without an API call or an IAM permission
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
//
// A handler starts a Recorder per invocation (Emitter.Start), every layer below adds to
// the one in its context (FromContext: counts, latencies, throttles seen by the SDK or
// WeChat), and the handler flushes it once at the end: a few lines per invocation, never
// one per recipient. Lines go to stdout, which Lambda ships to the function's log group.
// The functions run provided.al2023 with LogFormat JSON: for an OS-only runtime Lambda
// formats only its own platform lines as JSON and passes what the function writes
// through unchanged (it does not re-encode a line that is already JSON), so each EMF
// line stays a log event of its own that CloudWatch extracts, in the function's own log
// group, next to the slog lines on stderr.
//
// Every metric carries the dimension Function (the Lambda function's name, unique per
// stack, so the dashboard can name it with ${SendFunction}); a metric recorded with
// more dimensions (AppId, Reason, API, Service, Kind, Type, Status) is also published
// per each of them alone next to Function, never as their cross product, which keeps
// the number of metrics (and their cost) small. No dimension ever holds an openid, a
// campaign id or anything else that grows with traffic.
//
// A nil *Emitter and a nil *Recorder do nothing, so handlers built without one (tests)
// need no setup.
package metrics

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every minipush metric.
const Namespace = "minipush"

// Unit is a CloudWatch unit.
type Unit string

// The units minipush uses.
const (
	Count        Unit = "Count"
	Milliseconds Unit = "Milliseconds"
	Seconds      Unit = "Seconds"
)

// The metrics the functions emit. The dashboard in template.yaml refers to these names,
// and a test checks it refers to nothing else.
const (
	// Sent, Failed, Unknown, NoGrant and Skipped count recipients that reached that final
	// state in send (and deadletter: Failed and Unknown with Reason dead_letter), by
	// AppId and, for Failed, Unknown and Skipped, Reason (wechat.Reason or the policy's).
	Sent    = "Sent"
	Failed  = "Failed"
	Unknown = "Unknown"
	NoGrant = "NoGrant"
	Skipped = "Skipped"
	// DeadLettered counts recipients of dead-lettered send batches that deadletter
	// finished (by Outcome: failed or unknown).
	DeadLettered = "DeadLettered"
	// GrantsHarvested counts grants collect stored (by Kind and AppId), from the client
	// upload or WeChat's push; duplicates are not counted.
	GrantsHarvested = "GrantsHarvested"
	// GrantsExpired counts grants TTL removed unspent, as expire counted them (by Kind).
	GrantsExpired = "GrantsExpired"
	// PushEvents counts WeChat message pushes collect accepted (by Type: the event name).
	PushEvents = "PushEvents"
	// Receipts counts the items of subscribe_msg_sent_event pushes (by Result: recorded,
	// async_failed, early when no delivery has the msgid yet and WeChat is asked to
	// retry, or unmatched when nothing changed).
	Receipts = "Receipts"
	// WeChatLatency is the duration of each WeChat API call, answered or not (by API).
	WeChatLatency = "WeChatLatency"
	// Throttles counts refusals for capacity seen on each attempt (by Service: DynamoDB,
	// SQS, ... from the SDK, which retries them; WeChat for 45009, 45011 and HTTP 429).
	Throttles = "Throttles"
	// PlannerLag is how late the planner started a due run (now - its due time).
	PlannerLag = "PlannerLag"
	// RecipientsPlanned counts recipients the planner queued.
	RecipientsPlanned = "RecipientsPlanned"
	// Requests counts the HTTP answers of collect and admin (by Status class: 2xx, 4xx,
	// 5xx).
	Requests = "Requests"
	// WebhookDeliveries counts the webhook queue's events the webhook function finished:
	// accepted by the app's endpoint, or dropped (the app has no webhook, the event does
	// not decode). WebhookDeliveryFailures counts those it did not (the endpoint answered
	// non-2xx or not at all, or storage failed), which SQS retries after a backoff.
	// WebhookEnqueueFailures counts events their producers (send, plan, admin,
	// deadletter, the digest) could not put on the queue: lost, and logged. By Function
	// only.
	WebhookDeliveries       = "WebhookDeliveries"
	WebhookDeliveryFailures = "WebhookDeliveryFailures"
	WebhookEnqueueFailures  = "WebhookEnqueueFailures"
)

// Units is every metric's unit: the catalogue of what minipush emits.
var Units = map[string]Unit{
	Sent: Count, Failed: Count, Unknown: Count, NoGrant: Count, Skipped: Count,
	DeadLettered: Count, GrantsHarvested: Count, GrantsExpired: Count, PushEvents: Count,
	Receipts: Count, WeChatLatency: Milliseconds, Throttles: Count, PlannerLag: Seconds,
	RecipientsPlanned: Count, Requests: Count,
	WebhookDeliveries: Count, WebhookDeliveryFailures: Count, WebhookEnqueueFailures: Count,
}

// Dimensions lists, per metric, the dimensions besides Function it is recorded with;
// each is published alone next to Function ([Function] and [Function, D] for each D).
var Dimensions = map[string][]string{
	Sent: {"AppId"}, Failed: {"AppId", "Reason"}, Unknown: {"AppId", "Reason"},
	NoGrant: {"AppId"}, Skipped: {"AppId", "Reason"}, DeadLettered: {"AppId", "Outcome"},
	GrantsHarvested: {"AppId", "Kind"}, GrantsExpired: {"AppId", "Kind"}, PushEvents: {"AppId", "Type"},
	Receipts: {"AppId", "Result"}, WeChatLatency: {"API"}, Throttles: {"Service"}, PlannerLag: {"AppId"},
	RecipientsPlanned: {"AppId"}, Requests: {"Status"},
	WebhookDeliveries: nil, WebhookDeliveryFailures: nil, WebhookEnqueueFailures: nil,
}

// FunctionDimension is the dimension every metric carries.
const FunctionDimension = "Function"

// Dim is one dimension of a metric. An empty Value drops it (CloudWatch refuses
// empty dimension values).
type Dim struct{ Name, Value string }

// Emitter writes the EMF lines of one function. The zero value is not usable; build
// it with New or FromEnv. Safe for concurrent use.
type Emitter struct {
	w        io.Writer
	function string
	now      func() time.Time
	mu       sync.Mutex // one line written at a time
}

// New returns an emitter writing to w for the function named function. now may be nil
// (time.Now).
func New(w io.Writer, function string, now func() time.Time) *Emitter {
	if now == nil {
		now = time.Now
	}
	return &Emitter{w: w, function: function, now: now}
}

// FromEnv is the emitter a function builds at init: the function's name is Lambda's
// AWS_LAMBDA_FUNCTION_NAME (name when unset, as locally), and lines go to stdout unless
// ctx carries another writer (WithWriter: the local runner reads them back).
func FromEnv(ctx context.Context, getenv func(string) string, name string) *Emitter {
	if n := getenv("AWS_LAMBDA_FUNCTION_NAME"); n != "" {
		name = n
	}
	var w io.Writer = os.Stdout
	if cw, ok := ctx.Value(writerKey{}).(io.Writer); ok {
		w = cw
	}
	return New(w, name, nil)
}

type writerKey struct{}

// WithWriter makes FromEnv under ctx write to w instead of stdout. It exists for the
// local runner, which builds every function in one process through the same FromEnv
// Lambda runs and reads their metrics back for its summary.
func WithWriter(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, writerKey{}, w)
}

// Start begins an invocation: it returns ctx carrying a fresh Recorder, and the
// Recorder, which the caller flushes when the invocation ends. On a nil Emitter it
// returns ctx unchanged and a nil Recorder.
func (e *Emitter) Start(ctx context.Context) (context.Context, *Recorder) {
	if e == nil {
		return ctx, nil
	}
	r := &Recorder{e: e, groups: map[string]*group{}}
	return context.WithValue(ctx, recorderKey{}, r), r
}

type recorderKey struct{}

// FromContext is the invocation's Recorder, or nil (which records nothing).
func FromContext(ctx context.Context) *Recorder {
	r, _ := ctx.Value(recorderKey{}).(*Recorder)
	return r
}

// Recorder aggregates one invocation's metrics in memory until Flush. Safe for
// concurrent use; a nil Recorder does nothing.
type Recorder struct {
	e      *Emitter
	mu     sync.Mutex
	groups map[string]*group // by dimension values
}

// group is the metrics sharing one set of dimension values: one EMF line (or a few).
type group struct {
	dims   []Dim
	counts map[string]float64
	values map[string][]float64
	order  []string // metric names in first-use order, for stable lines
}

// Add adds v to the metric name (a count) under dims.
func (r *Recorder) Add(name string, v float64, dims ...Dim) {
	if r == nil || v == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.group(dims)
	firstUse(g, g.counts, name)
	g.counts[name] += v
}

// Observe records one value of the metric name (a distribution, such as a latency)
// under dims; CloudWatch computes percentiles over the values.
func (r *Recorder) Observe(name string, v float64, dims ...Dim) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.group(dims)
	firstUse(g, g.values, name)
	g.values[name] = append(g.values[name], v)
}

// Duration records d in milliseconds as a value of the metric name.
func (r *Recorder) Duration(name string, d time.Duration, dims ...Dim) {
	r.Observe(name, float64(d.Microseconds())/1000, dims...)
}

// firstUse puts name in g's line order the first time it is recorded in m (g's counts
// or values), so lines come out in a stable order.
func firstUse[V any](g *group, m map[string]V, name string) {
	if _, ok := m[name]; !ok {
		g.order = append(g.order, name)
	}
}

func (r *Recorder) group(dims []Dim) *group {
	kept := make([]Dim, 0, len(dims))
	for _, d := range dims {
		if d.Value != "" && d.Name != FunctionDimension {
			kept = append(kept, d)
		}
	}
	slices.SortFunc(kept, func(a, b Dim) int { return strings.Compare(a.Name, b.Name) })
	var key strings.Builder
	for _, d := range kept {
		key.WriteString(d.Name + "\x00" + d.Value + "\x00")
	}
	g, ok := r.groups[key.String()]
	if !ok {
		g = &group{dims: kept, counts: map[string]float64{}, values: map[string][]float64{}}
		r.groups[key.String()] = g
	}
	return g
}

// Flush writes what was recorded as EMF lines and starts afresh. A write error is
// returned for the caller to log; the metrics are dropped either way (a function never
// fails for its metrics).
func (r *Recorder) Flush() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	groups := r.groups
	r.groups = map[string]*group{}
	r.mu.Unlock()
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var lines [][]byte
	ts := r.e.now().UnixMilli()
	for _, k := range keys {
		lines = append(lines, encode(r.e.function, ts, groups[k])...)
	}
	if len(lines) == 0 || r.e.w == nil {
		return nil
	}
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	for _, l := range lines {
		if _, err := r.e.w.Write(l); err != nil {
			return err
		}
	}
	return nil
}

// StatusClass is the Status dimension of an HTTP answer: "2xx", "4xx", "5xx" (a class,
// not the code, keeps the dimension small).
func StatusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return string(rune('0'+code/100)) + "xx"
}
