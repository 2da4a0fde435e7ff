package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/collect"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/scalemodel"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/metrics"
	"minipush/internal/send"
	"minipush/internal/wechat"
)

// The scale section runs the real functions on the scale model of DynamoDB's partition
// limits (internal/dev/scalemodel) at the targets divided by a factor k, so
// that what AWS would throttle at the target is throttled here, and sets the send
// function next to the seeds' naive loop.
//
// Latency is not scaled. Scaling divides rates by k; a request's latency (WeChat's
// answer, a DynamoDB call) is a property of one request and stays what it is. By
// Little's law the messages in flight are rate × latency, so a run at target/k with
// AWS's latencies needs 1/k of AWS's concurrency: each recipient in flight here stands
// for k in AWS. The sandbox answers in scaleWeChatLatency, WeChat's order of magnitude,
// so the send function's concurrency is what carries the rate, as in AWS; the send
// function is paced to the target by its own SEND_RATE_PER_SECOND, so the keys see the
// target's load and not whatever the machine can do.

// AWS's targets (issue #12): per second, in AWS terms.
const (
	scaleSendTarget    = 5000.0 // messages/s of one campaign: 1 M recipients in 200 s
	scaleCollectTarget = 2000.0 // uploads/s
	scaleExpireTarget  = 3000.0 // expired grants/s (a day's grants)
	scaleWeChatLatency = 100 * time.Millisecond
)

// scaleSizes are one run's sizes: the full run's (make bench) or the smoke run's.
type scaleSizes struct {
	sendK, send3K, collectK, expireK float64
	sendN, send3N, collectN, expireN int // recipients per campaign, uploads, grants
	instances, parallelism           int // send: pollers (Lambda instances) × recipients in flight
	scaleInstances                   int // one campaign on the model: pollers, each paced to its share of the target
	naiveN, dupN, twoN               int
	slack                            time.Duration // a paced run's bound beyond its planned time
	twoBound                         time.Duration // the two-campaign case's bound
}

func scaleSizesFor() scaleSizes {
	if full() {
		// k = 100 keeps a key's limit (10 WCU/s) well above one user's own writes; the
		// three campaigns at once use k = 200 so their 75 messages/s fit the machine
		// next to DynamoDB Local and the proxy.
		return scaleSizes{sendK: 100, send3K: 200, collectK: 100, expireK: 100,
			sendN: 1500, send3N: 700, collectN: 500, expireN: 900,
			instances: 2, parallelism: 32, scaleInstances: 1, naiveN: 1500, dupN: 300, twoN: 1000,
			slack: 15 * time.Second, twoBound: 150 * time.Second}
	}
	// Smoke: every path once, bounded to a few seconds each; nothing about speed.
	return scaleSizes{sendK: 100, send3K: 200, collectK: 100, expireK: 100,
		sendN: 40, send3N: 15, collectN: 12, expireN: 30,
		instances: 2, parallelism: 8, scaleInstances: 1, naiveN: 40, dupN: 20, twoN: 20,
		slack: 3 * time.Second, twoBound: 4 * time.Second}
}

// scaleRow is one scenario of the table.
type scaleRow struct {
	name     string
	k        float64
	target   float64 // per second, AWS terms
	unit     string
	total    int // planned work
	done     int // work done (WeChat accepted, uploads answered 200, removals processed)
	failed   int // failed SQS messages, 5xx answers, stream records given up on
	elapsed  time.Duration
	finished bool
	inFlight int // local concurrency (0: not concurrency-bound)
	stats    scalemodel.Stats
	kinds    []kindStats
}

func (r scaleRow) achieved() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.done) / r.elapsed.Seconds() * r.k
}

// meets is the bar: the target reached (5% for the pacing's rounding), nothing
// throttled and the hottest shared key's sustained load (the model's Window, not its
// noisiest second: see scalemodel's package doc) at most half its limit.
func (r scaleRow) meets() bool {
	return r.finished && r.achieved() >= 0.95*r.target && r.stats.Throttled() == 0 && hottestSustained(r.kinds, false).sustained <= 0.5
}

// startModel puts a scale model of factor k in front of the DynamoDB at upstream.
func startModel(t *testing.T, upstream string, k float64) *scalemodel.Server {
	t.Helper()
	m, err := scalemodel.Start(t.Context(), upstream, scalemodel.Options{K: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// keyNamer turns a partition key value into its kind, e.g. "{app}#{openid}" or
// "{campaign}#{n}": the values the bench made (apps, users, campaigns) and numbers,
// days and hashes are replaced, so the table names no openid and a redesigned key
// (a shard suffix, a new prefix) shows as a kind of its own.
type keyNamer struct {
	apps, users, campaigns map[string]bool
}

func newKeyNamer(apps ...string) *keyNamer {
	n := &keyNamer{apps: map[string]bool{}, users: map[string]bool{}, campaigns: map[string]bool{}}
	for _, a := range apps {
		n.apps[a] = true
	}
	return n
}

func (n *keyNamer) kind(key string) string {
	if typ, v, ok := strings.Cut(key, ":"); ok && len(typ) == 1 {
		key = v
	}
	segs := strings.Split(key, "#")
	for i, s := range segs {
		switch {
		case s == "":
		case n.apps[s]:
			segs[i] = "{app}"
		case n.users[s]:
			segs[i] = "{openid}"
		case n.campaigns[s]:
			segs[i] = "{campaign}"
		case isDigits(s):
			segs[i] = "{n}"
		case isDay(s):
			segs[i] = "{day}"
		case len(s) >= 16 && isHex(s):
			segs[i] = "{hash}"
		case len(s) > 24:
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "#")
}

func isDigits(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}

func isHex(s string) bool { return strings.Trim(s, "0123456789abcdef") == "" }

func isDay(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

// kindStats are the keys of one kind of one table or index.
type kindStats struct {
	table, index, kind  string
	keys                int
	requests, throttled int64
	readUnits, writes   float64 // capacity units consumed, AWS terms
	peak                float64 // the highest peak 1-second share of any of its keys
	sustained           float64 // the highest sustained share (the model's Window) of any of its keys
	perUser             bool    // one user's or recipient's own key
}

// kindsOf groups the model's keys by table, index and kind, most throttled first.
func kindsOf(st scalemodel.Stats, prefix string, n *keyNamer) []kindStats {
	byKind := map[[3]string]*kindStats{}
	var out []*kindStats
	for _, k := range st.Keys {
		kind := n.kind(k.Key)
		id := [3]string{strings.TrimPrefix(k.Table, prefix), k.Index, kind}
		ks := byKind[id]
		if ks == nil {
			ks = &kindStats{table: id[0], index: id[1], kind: kind, perUser: strings.Contains(kind, "{openid}")}
			byKind[id] = ks
			out = append(out, ks)
		}
		ks.keys++
		ks.requests += k.Requests
		ks.throttled += k.Throttled
		ks.readUnits += k.ReadUnits
		ks.writes += k.WriteUnits
		ks.peak = max(ks.peak, k.PeakShare())
		ks.sustained = max(ks.sustained, k.SustainedShare())
	}
	slices.SortFunc(out, func(a, b *kindStats) int {
		if a.throttled != b.throttled {
			return int(b.throttled - a.throttled)
		}
		if a.peak != b.peak {
			if a.peak > b.peak {
				return -1
			}
			return 1
		}
		return strings.Compare(a.table+a.index+a.kind, b.table+b.index+b.kind)
	})
	res := make([]kindStats, len(out))
	for i, k := range out {
		res[i] = *k
	}
	return res
}

// hottest is the kind with the highest peak share among shared keys (perUser false) or
// per-user keys (true).
func hottest(kinds []kindStats, perUser bool) kindStats {
	var h kindStats
	for _, k := range kinds {
		if k.perUser == perUser && k.peak > h.peak {
			h = k
		}
	}
	return h
}

// hottestSustained is the kind with the highest sustained share among shared keys
// (perUser false) or per-user keys (true).
func hottestSustained(kinds []kindStats, perUser bool) kindStats {
	var h kindStats
	for _, k := range kinds {
		if k.perUser == perUser && k.sustained > h.sustained {
			h = k
		}
	}
	return h
}

func (k kindStats) name() string {
	if k.kind == "" && k.table == "" {
		return "none"
	}
	s := k.table
	if k.index != "" {
		s += "/" + k.index
	}
	return fmt.Sprintf("%s `%s`", s, k.kind)
}

// label is a kind's peak second's share of its limit.
func (k kindStats) label() string {
	if k.kind == "" && k.table == "" {
		return "none"
	}
	return fmt.Sprintf("%s %.0f%%", k.name(), 100*k.peak)
}

// withLatency makes the sandbox answer every subscribe send after d.
func withLatency(t *testing.T, sb *sandbox.Sandbox, d time.Duration) {
	t.Helper()
	sb.ResetFaults()
	if err := sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLatency, Latency: d}); err != nil {
		t.Fatal(err)
	}
}

// recipientsWith makes n new users each holding grants subscribe grants in storage (the
// earliest expiring first in a week, then a day later each) and as many at WeChat.
func (w *sendWorld) recipientsWith(t *testing.T, n, grants int) []string {
	t.Helper()
	now := time.Now()
	ids := make([]string, n)
	var all []minipush.Grant
	for i := range ids {
		ids[i] = w.sb.NewUser(sendAppID)
		for j := range grants {
			w.sb.AddSubscribeGrant(sendAppID, ids[i], sendTemplate)
			all = append(all, minipush.Grant{AppID: sendAppID, OpenID: ids[i], Kind: minipush.GrantSubscribe, TemplateID: sendTemplate,
				ID: minipush.GrantID(minipush.GrantSubscribe, sendTemplate, ids[i], "k"+strconv.Itoa(j)), Uses: 1,
				CollectedAt: now, ExpiresAt: now.Add(time.Duration(7+j) * 24 * time.Hour)})
		}
	}
	err := parallel(t.Context(), 8, (len(all)+99)/100, func(ctx context.Context, i int) error {
		return w.db.ImportGrants(ctx, all[i*100:min(i*100+100, len(all))])
	})
	if err != nil {
		t.Fatalf("seed grants: %v", err)
	}
	return ids
}

// accepted counts the messages WeChat accepted per recipient.
func (w *sendWorld) accepted() map[string]int {
	got := map[string]int{}
	for _, m := range w.sb.Accepted() {
		got[m.ToUser]++
	}
	return got
}

// twice counts the recipients of ids whom WeChat accepted more than once.
func twice(got map[string]int, ids []string) int {
	n := 0
	for _, u := range ids {
		if got[u] > 1 {
			n++
		}
	}
	return n
}

// queueBatches moves the batches the planner left on each source queue onto one new
// queue: round robin over the sources (SQS's standard queues hand out messages from
// across their servers, not campaign by campaign) and each message copies times in a
// row (copies 2: every batch delivered twice, the second copy while the first is in
// flight, as SQS's at-least-once delivery may).
func (w *sendWorld) queueBatches(t *testing.T, name string, sources []localstack.Queue, copies int) localstack.Queue {
	t.Helper()
	ctx := t.Context()
	lists := make([][]sqstypes.Message, len(sources))
	for i, q := range sources {
		// The planner has finished: every batch is on the queue, so a long poll that
		// finds none means the queue is drained.
		deadline := time.Now().Add(time.Minute)
		for {
			out, err := w.env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10,
				MessageAttributeNames: []string{"All"}, VisibilityTimeout: 600, WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) == 0 {
				break
			}
			lists[i] = append(lists[i], out.Messages...)
			if time.Now().After(deadline) {
				t.Fatalf("queue %s not drained in a minute", q.Name)
			}
		}
		if len(lists[i]) == 0 {
			t.Fatalf("queue %s holds no batch", q.Name)
		}
	}
	w.useFreshQueue(t, name)
	var order []sqstypes.Message
	for i := 0; ; i++ {
		added := false
		for _, l := range lists {
			if i < len(l) {
				for range copies {
					order = append(order, l[i])
				}
				added = true
			}
		}
		if !added {
			break
		}
	}
	for start := 0; start < len(order); start += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j, m := range order[start:min(start+10, len(order))] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String("m" + strconv.Itoa(j)),
				MessageBody: m.Body, MessageAttributes: m.MessageAttributes})
		}
		out, err := w.env.SQS.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(w.queue.URL), Entries: entries})
		if err != nil || len(out.Failed) > 0 {
			t.Fatalf("queue batches: %v %v", err, out)
		}
	}
	return w.queue
}

// sendRun is one bounded run of the send function over a queue of planned batches.
type sendRun struct {
	queue       localstack.Queue
	campaigns   []string
	recipients  []string
	instances   int     // Lambda instances (SQS pollers), each its own handler
	parallelism int     // SEND_PARALLELISM
	rate        float64 // messages/s over all instances (SEND_RATE_PER_SECOND); 0 unpaced
	dynamoDB    string  // the functions' DynamoDB endpoint ("" DynamoDB Local)
	bound       time.Duration
}

type sendOutcome struct {
	elapsed  time.Duration
	lastSent time.Duration // until WeChat accepted the run's last message
	sent     int           // WeChat accepted, recipients of the run
	finished bool
	failed   int // SQS messages the function reported failed
}

// runSend runs the send function as Lambda would (an emulated SQS event source with
// instances pollers, BatchSize 10, partial batch responses) until every campaign's run
// is done or the bound passes; then the invocations still running are cancelled.
func (w *sendWorld) runSend(t *testing.T, r sendRun) sendOutcome {
	t.Helper()
	fnEnv := maps.Clone(w.fnEnv)
	fnEnv[lambdaenv.SendParallelismEnv] = strconv.Itoa(r.parallelism)
	fnEnv["SEND_QUEUE_URL"] = r.queue.URL // re-queued recipients stay on this run's queue
	if r.rate > 0 {
		fnEnv["SEND_RATE_PER_SECOND"] = strconv.FormatFloat(r.rate/float64(r.instances), 'f', 3, 64)
	}
	if r.dynamoDB != "" {
		fnEnv["AWS_ENDPOINT_URL_DYNAMODB"] = r.dynamoDB
	}
	pool := make(chan *send.Handler, r.instances)
	for range r.instances {
		h, err := lambdaenv.Send(metrics.WithWriter(t.Context(), io.Discard), lambdaenv.Env{Getenv: func(k string) string { return fnEnv[k] }, Log: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		pool <- h
	}
	runCtx, stop := context.WithCancel(t.Context())
	defer stop()
	var failed atomic.Int64
	invoke := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		h := <-pool // one instance handles one batch at a time
		defer func() { pool <- h }()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(runCtx, cancel)() // the bound ends the invocations in flight too
		resp, err := h.Handle(ctx, ev)
		if runCtx.Err() == nil {
			failed.Add(int64(len(resp.BatchItemFailures)))
		}
		return resp, err
	}
	m := &localrun.SQSMapping{
		Function: "SendFunction", QueueURL: r.queue.URL, QueueARN: r.queue.ARN, BatchSize: 10, MaxConcurrency: r.instances,
		ReportFailures: true, Timeout: time.Minute, Handler: invoke, Client: w.env.SQS, Log: quietLog, PollWait: time.Second,
	}
	want := map[string]bool{}
	for _, u := range r.recipients {
		want[u] = true
	}
	var start time.Time
	sentOf := func() (n int, last time.Duration) {
		for _, msg := range w.sb.Accepted() {
			if want[msg.ToUser] {
				n++
				last = max(last, msg.At.Sub(start))
			}
		}
		return n, last
	}
	start = time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(runCtx) })
	out := sendOutcome{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !out.finished && time.Since(start) < r.bound {
		<-tick.C
		done := true
		for _, id := range r.campaigns {
			p, err := w.db.RunCounters(t.Context(), id, 1)
			if err != nil || p.Status != minipush.RunDone {
				done = false
				break
			}
		}
		out.finished = done
	}
	out.elapsed = time.Since(start)
	out.sent, out.lastSent = sentOf()
	stop()
	wg.Wait()
	out.failed = int(failed.Load())
	return out
}

// scaleSend is one or more campaigns at once at the send target each, on the model.
func scaleSend(t *testing.T, name string, campaigns int, k float64, n int, sz scaleSizes) scaleRow {
	t.Helper()
	w := newSendWorld(t)
	withLatency(t, w.sb, scaleWeChatLatency)
	namer := newKeyNamer(sendAppID)
	var (
		queues []localstack.Queue
		ids    []string
		all    []string
	)
	for c := range campaigns {
		id := fmt.Sprintf("scale%d", c+1)
		users := w.recipients(t, n)
		for _, u := range users {
			namer.users[u] = true
		}
		namer.campaigns[id] = true
		w.useFreshQueue(t, id)
		w.planCampaign(t, id, users)
		queues, ids, all = append(queues, w.queue), append(ids, id), append(all, users...)
	}
	run := w.queueBatches(t, "run", queues, 1)
	model := startModel(t, w.env.Endpoints.DynamoDB, k)
	rate := scaleSendTarget / k * float64(campaigns)
	// One campaign: one instance paced to the whole rate. The SQS event source hands an
	// instance up to ten messages (1,000 recipients) at once, so with a run of 15
	// messages two instances each paced to half the rate got 10 and 5 and the run took
	// the busier one's time (75 % of the target). In AWS a 1 M run is 10,000 messages and
	// the instances' shares even out. Three campaigns (21 messages) keep two: one
	// instance at k = 200 (5 WCU/s a key) had 28 writes refused on delivery shards, each
	// invocation's start spending its limiter's one-second burst at once.
	instances := sz.instances
	if campaigns == 1 {
		instances = sz.scaleInstances
	}
	out := w.runSend(t, sendRun{queue: run, campaigns: ids, recipients: all, instances: instances, parallelism: sz.parallelism,
		rate: rate, dynamoDB: model.URL, bound: time.Duration(float64(len(all))/rate*float64(time.Second)) + sz.slack})
	if d := twice(w.accepted(), all); d > 0 {
		t.Errorf("%s: %d recipients messaged twice", name, d)
	}
	st := model.Stats()
	for _, key := range st.Keys[:min(3, len(st.Keys))] {
		// Which of a hot key's limits it neared, for the log (the table has the larger).
		t.Logf("%s: hot key %s %s (%s): read peak %.0f%%, write peak %.0f%%, sustained (%s) read %.0f%%, write %.0f%%, %.1f RCU, %.1f WCU", name,
			strings.TrimPrefix(key.Table, w.env.Prefix), key.Index, namer.kind(key.Key), 100*key.PeakReadShare, 100*key.PeakWriteShare,
			st.Window, 100*key.SustainedReadShare, 100*key.SustainedWriteShare, key.ReadUnits, key.WriteUnits)
	}
	return scaleRow{name: name, k: k, target: scaleSendTarget * float64(campaigns), unit: "messages", total: len(all), done: out.sent,
		failed: out.failed, elapsed: out.elapsed, finished: out.finished, inFlight: instances * sz.parallelism,
		stats: st, kinds: kindsOf(st, w.env.Prefix, namer)}
}

// scaleCollect uploads grants through the emulated API Gateway to the collect function
// at the collect target, each user once (a login first, not measured).
func scaleCollect(t *testing.T, k float64, n int, sz scaleSizes) scaleRow {
	t.Helper()
	ep := stackFor(t)
	model := startModel(t, ep.DynamoDB, k)
	through := ep
	through.DynamoDB = model.URL
	sys := startSystemOn(t, through)
	ctx := t.Context()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	namer := newKeyNamer(sys.app.AppID)
	// Logins are not measured, and here all come from one address, so each one's read of
	// that address's refused-code counter would land on one key: a collect function of
	// the same namespace and secrets on DynamoDB Local directly signs the sessions
	// instead, outside the model's throttles.
	fnEnv, err := sys.Resources.FunctionEnv("CollectFunction")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range ep.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		fnEnv[k] = v
	}
	secrets, err := json.Marshal(sys.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	fnEnv[lambdaenv.LocalSecretsEnv] = string(secrets)
	login, err := lambdaenv.Collect(metrics.WithWriter(ctx, io.Discard), lambdaenv.Env{Getenv: func(k string) string { return fnEnv[k] }, Log: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	openIDs, tokens := make([]string, n), make([]string, n)
	err = parallel(ctx, 8, n, func(ctx context.Context, i int) error {
		openID, code := sys.sandbox.NewLogin(sys.app.AppID)
		body, err := json.Marshal(map[string]string{"code": code, "appId": sys.app.AppID})
		if err != nil {
			return err
		}
		lctx, cancel := lambdaContext(ctx, 10*time.Second)
		defer cancel()
		resp, err := login.Handle(lctx, apiRequest("/v1/session", string(body), ""))
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("session: %d %s (%v)", resp.StatusCode, resp.Body, err)
		}
		var sess struct{ Token string }
		if err := json.Unmarshal([]byte(resp.Body), &sess); err != nil {
			return fmt.Errorf("session: %w", err)
		}
		openIDs[i], tokens[i] = openID, sess.Token
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range openIDs {
		namer.users[u] = true
	}
	collectedAt := time.Now().UTC().Format(time.RFC3339)
	bodies := make([][]byte, n)
	for i := range bodies {
		// A small upload, as a page view leaves: one formId and one subscribe accept.
		bodies[i], err = json.Marshal(map[string]any{"grants": []map[string]any{
			{"type": "form", "formId": fmt.Sprintf("%032x", i+1), "collectedAt": collectedAt},
			{"type": "subscribe", "key": fmt.Sprintf("scale-%d", i), "results": map[string]string{localrun.DemoSubscribeTemplate: "accept"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	model.Reset()
	rate := scaleCollectTarget / k
	var (
		ok, failed atomic.Int64
		wg         sync.WaitGroup
		mu         sync.Mutex
		last       time.Time
	)
	bound := time.Duration(float64(n)/rate*float64(time.Second)) + sz.slack
	rctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	sem := make(chan struct{}, 64)
	start := time.Now()
	for i := range n {
		// Paced: upload i starts at i/rate, whatever the answers before it took.
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			select {
			case <-time.After(d):
			case <-rctx.Done():
			}
		}
		if rctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var ans collect.UploadAnswer
			_, err := postJSON(rctx, client, sys.URL+"/v1/grants", tokens[i], bodies[i], &ans)
			if err != nil || ans.Accepted != 2 {
				failed.Add(1)
				return
			}
			ok.Add(1)
			mu.Lock()
			if now := time.Now(); now.After(last) {
				last = now
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := last.Sub(start)
	st := model.Stats()
	return scaleRow{name: "collect", k: k, target: scaleCollectTarget, unit: "uploads", total: n, done: int(ok.Load()),
		failed: int(failed.Load()), elapsed: elapsed, finished: int(ok.Load()) == n, stats: st,
		kinds: kindsOf(st, sys.Resources.Prefix, namer)}
}

// scaleExpire removes a day's expired grants at the expire target, as DynamoDB's TTL
// does (deleted on DynamoDB Local directly: TTL's deletes cost no capacity), and lets
// the expire function consume the grants stream's REMOVE records through the template's
// stream mapping, on the model.
func scaleExpire(t *testing.T, k float64, n int, sz scaleSizes) scaleRow {
	t.Helper()
	ctx := t.Context()
	env := testenv.NewOn(t, stackFor(t), nil)
	db := dynamo.New(env.DynamoDB, tablesOf(env))
	namer := newKeyNamer(sendAppID)
	now := time.Now()
	grants := make([]minipush.Grant, n)
	for i := range grants {
		u := fmt.Sprintf("oscale%022d", i)
		namer.users[u] = true
		// Expired an hour ago: local stream records carry the wall clock, so the expire
		// function tells an expiry by the grant's expiry (expire.Handler.RecordTimeOnly).
		grants[i] = minipush.Grant{AppID: sendAppID, OpenID: u, Kind: minipush.GrantSubscribe, TemplateID: sendTemplate,
			ID: minipush.GrantID(minipush.GrantSubscribe, sendTemplate, u, "k"), Uses: 1,
			CollectedAt: now.Add(-30 * 24 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	}
	if err := parallel(ctx, 8, (n+99)/100, func(ctx context.Context, i int) error {
		return db.ImportGrants(ctx, grants[i*100:min(i*100+100, n)])
	}); err != nil {
		t.Fatalf("seed grants: %v", err)
	}
	// The items' keys, whatever the grants table's key layout is.
	var keys []map[string]ddbtypes.AttributeValue
	p := dynamodb.NewScanPaginator(env.DynamoDB, &dynamodb.ScanInput{TableName: aws.String(env.Table("GrantsTable"))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			keys = append(keys, map[string]ddbtypes.AttributeValue{"pk": item["pk"], "sk": item["sk"]})
		}
	}
	if len(keys) != n {
		t.Fatalf("grants table holds %d items, %d were seeded", len(keys), n)
	}

	model := startModel(t, env.Endpoints.DynamoDB, k)
	fnEnv := functionEnv(t, env, "ExpireFunction")
	fnEnv["AWS_ENDPOINT_URL_DYNAMODB"] = model.URL
	h, err := lambdaenv.Expire(metrics.WithWriter(ctx, io.Discard), lambdaenv.Env{Getenv: func(k string) string { return fnEnv[k] }, Log: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		ok   = map[string]bool{} // sequence numbers processed without failure
		last time.Time
	)
	handle := func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		resp, err := h.Handle(ctx, ev)
		if err != nil {
			return resp, err
		}
		failed := map[string]bool{}
		for _, f := range resp.BatchItemFailures {
			failed[f.ItemIdentifier] = true
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rec := range ev.Records {
			if !failed[rec.Change.SequenceNumber] && !ok[rec.Change.SequenceNumber] {
				ok[rec.Change.SequenceNumber] = true
				last = time.Now()
			}
		}
		return resp, nil
	}
	ev := testenv.Template(t).Functions["ExpireFunction"].Events["Removals"].DynamoDB
	opts, on, err := localrun.TemplateStreamMapping(env.Resources, env.Clients, "ExpireFunction", ev, handle, time.Minute, quietLog)
	if err != nil || !on {
		t.Fatalf("expire stream mapping: on %v, %v", on, err)
	}
	opts.OnFailureQueueURL, opts.OnFailureSQS = "", nil // given up on is counted below, not replayed
	sm, err := localrun.NewStreamMapping(opts)
	if err != nil {
		t.Fatal(err)
	}
	// The seeding's INSERT records are filtered out by the mapping; drain them first so
	// the run starts on the removals.
	if err := sm.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	model.Reset()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { sm.Run(runCtx) })
	rate := scaleExpireTarget / k
	bound := time.Duration(float64(n)/rate*float64(time.Second)) + sz.slack
	start := time.Now()
	wg.Go(func() {
		for i, key := range keys {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				select {
				case <-time.After(d):
				case <-runCtx.Done():
					return
				}
			}
			if _, err := env.DynamoDB.DeleteItem(runCtx, &dynamodb.DeleteItemInput{TableName: aws.String(env.Table("GrantsTable")), Key: key}); err != nil {
				if runCtx.Err() == nil {
					t.Errorf("delete grant: %v", err)
				}
				return
			}
		}
	})
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	done := 0
	for time.Since(start) < bound {
		<-tick.C
		mu.Lock()
		done = len(ok)
		mu.Unlock()
		if done == n {
			break
		}
	}
	mu.Lock()
	elapsed := last.Sub(start)
	mu.Unlock()
	st := model.Stats()
	return scaleRow{name: "expire", k: k, target: scaleExpireTarget, unit: "grants", total: n, done: done, failed: n - done,
		elapsed: elapsed, finished: done == n, stats: st, kinds: kindsOf(st, env.Prefix, namer)}
}

// runNaive is the seeds' send loop ported to this stack: for each recipient, Query
// their grants and take the earliest expiring spendable one, call WeChat, delete the
// grant. No claim, no lease, no delivery record. It returns the time taken and how many
// recipients it messaged.
func (w *sendWorld) runNaive(t *testing.T, ids []string, workers int) (time.Duration, time.Duration, int) {
	t.Helper()
	ctx := t.Context()
	tok, msg, data := w.loopMessage(t)
	table := w.db.Tables.Grants
	var sent atomic.Int64
	start := time.Now()
	err := parallel(ctx, workers, len(ids), func(ctx context.Context, i int) error {
		u := ids[i]
		out, err := w.db.Client.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(table),
			KeyConditionExpression:    aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":pk": &ddbtypes.AttributeValueMemberS{Value: minipush.UserKey(sendAppID, u)}}})
		if err != nil {
			return err
		}
		var (
			best    map[string]ddbtypes.AttributeValue
			bestExp time.Time
		)
		for _, item := range out.Items {
			g, err := dynamo.UnmarshalGrant(item)
			if err != nil || g.Kind != minipush.GrantSubscribe || g.TemplateID != msg.TemplateID || g.Uses <= 0 || !g.ExpiresAt.After(time.Now()) {
				continue
			}
			if best == nil || g.ExpiresAt.Before(bestExp) {
				best, bestExp = item, g.ExpiresAt
			}
		}
		if best == nil {
			return nil // nothing to spend
		}
		if _, err := w.wc.SendSubscribe(ctx, tok, wechat.SubscribeMessage{ToUser: u, TemplateID: msg.TemplateID,
			Page: msg.Page, Data: data}); err != nil {
			return err
		}
		sent.Add(1)
		_, err = w.db.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table),
			Key: map[string]ddbtypes.AttributeValue{"pk": best["pk"], "sk": best["sk"]}})
		return err
	})
	if err != nil {
		t.Fatalf("naive loop: %v", err)
	}
	elapsed := time.Since(start)
	want := map[string]bool{}
	for _, u := range ids {
		want[u] = true
	}
	var last time.Duration
	for _, m := range w.sb.Accepted() {
		if want[m.ToUser] {
			last = max(last, m.At.Sub(start))
		}
	}
	return elapsed, last, int(sent.Load())
}

// naiveResult is the side-by-side part of the section.
type naiveResult struct {
	n, inFlight          int
	ours, naive          float64 // messages/s, until the run is done (send) or the loop ended
	oursSent, naiveSent  float64 // messages/s, until WeChat accepted the last message
	naiveDup, oursDup    int     // recipients messaged twice when started twice
	dupN                 int
	single, two          time.Duration
	twoFinished          bool
	twoN, twoSent, twoOf int
}

// compareNaive runs send and the naive loop on the same stack (DynamoDB Local without
// the model: this compares the algorithms' own cost), same sandbox latency and the same
// recipients in flight.
func compareNaive(t *testing.T, sz scaleSizes) naiveResult {
	t.Helper()
	w := newSendWorld(t)
	withLatency(t, w.sb, scaleWeChatLatency)
	res := naiveResult{n: sz.naiveN, inFlight: sz.parallelism, dupN: sz.dupN, twoN: sz.twoN}
	bound := time.Duration(sz.naiveN)*50*time.Millisecond + time.Minute

	// One campaign through send, one instance of SEND_PARALLELISM in flight.
	plan := func(id string, users []string, copies int) localstack.Queue {
		w.useFreshQueue(t, id+"-plan")
		w.planCampaign(t, id, users)
		return w.queueBatches(t, id, []localstack.Queue{w.queue}, copies)
	}
	users := w.recipients(t, sz.naiveN)
	q := plan("ours", users, 1)
	out := w.runSend(t, sendRun{queue: q, campaigns: []string{"ours"}, recipients: users, instances: 1,
		parallelism: sz.parallelism, bound: bound})
	if !out.finished {
		t.Errorf("send did not finish %d recipients within %s", sz.naiveN, bound)
	}
	res.ours = float64(out.sent) / out.elapsed.Seconds()
	res.oursSent = float64(out.sent) / out.lastSent.Seconds()
	users = w.recipients(t, sz.naiveN)
	d, last, n := w.runNaive(t, users, sz.parallelism)
	res.naive, res.naiveSent = float64(n)/d.Seconds(), float64(n)/last.Seconds()

	// Started twice over users holding two grants: the naive loop twice at once, and
	// send with every batch delivered twice.
	users = w.recipientsWith(t, sz.dupN, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _, _ = w.runNaive(t, users, sz.parallelism) })
	}
	wg.Wait()
	res.naiveDup = twice(w.accepted(), users)
	users = w.recipientsWith(t, sz.dupN, 2)
	q = plan("dup", users, 2)
	out = w.runSend(t, sendRun{queue: q, campaigns: []string{"dup"}, recipients: users, instances: 2,
		parallelism: sz.parallelism, bound: bound})
	res.oursDup = twice(w.accepted(), users)
	if res.oursDup > 0 || !out.finished {
		t.Errorf("send with every batch delivered twice: %d recipients messaged twice, finished %v", res.oursDup, out.finished)
	}

	// Two campaigns over one audience (two grants each), every batch delivered twice,
	// against one campaign over an audience of the same size.
	users = w.recipientsWith(t, sz.twoN, 2)
	q = plan("single", users, 1)
	out = w.runSend(t, sendRun{queue: q, campaigns: []string{"single"}, recipients: users, instances: 2,
		parallelism: sz.parallelism, bound: bound})
	if !out.finished {
		t.Errorf("single campaign of %d did not finish within %s", sz.twoN, bound)
	}
	res.single = out.elapsed
	users = w.recipientsWith(t, sz.twoN, 2)
	var srcs []localstack.Queue
	for _, id := range []string{"twoA", "twoB"} {
		w.useFreshQueue(t, id+"-plan")
		w.planCampaign(t, id, users)
		srcs = append(srcs, w.queue)
	}
	q = w.queueBatches(t, "two", srcs, 2)
	out = w.runSend(t, sendRun{queue: q, campaigns: []string{"twoA", "twoB"}, recipients: users, instances: 2,
		parallelism: sz.parallelism, bound: max(sz.twoBound, 3*res.single)})
	res.two, res.twoFinished, res.twoSent, res.twoOf = out.elapsed, out.finished, out.sent, 2*len(users)
	if got := w.accepted(); slices.ContainsFunc(users, func(u string) bool { return got[u] > 2 }) {
		t.Errorf("two campaigns over one audience: a recipient was messaged more than once per campaign")
	}
	return res
}

func TestBenchScale(t *testing.T) {
	sz := scaleSizesFor()
	var rows []scaleRow
	step := func(name string, fn func(t *testing.T) scaleRow) {
		// A subtest each, so each scenario's stack and model stop before the next starts.
		t.Run(name, func(t *testing.T) {
			r := fn(t)
			t.Logf("%s: %d of %d %s in %s (%.0f/s, %.0f/s in AWS terms against %.0f), %d failed, %d throttled",
				r.name, r.done, r.total, r.unit, r.elapsed.Round(time.Millisecond), float64(r.done)/max(r.elapsed.Seconds(), 1e-9),
				r.achieved(), r.target, r.failed, r.stats.Throttled())
			if r.stats.Throttled() == 0 && len(r.stats.Resources) == 0 {
				t.Errorf("%s: the model saw no request", r.name)
			}
			rows = append(rows, r)
		})
	}
	step("one campaign", func(t *testing.T) scaleRow { return scaleSend(t, "one campaign", 1, sz.sendK, sz.sendN, sz) })
	step("three campaigns", func(t *testing.T) scaleRow {
		return scaleSend(t, "three campaigns at once", 3, sz.send3K, sz.send3N, sz)
	})
	step("collect", func(t *testing.T) scaleRow { return scaleCollect(t, sz.collectK, sz.collectN, sz) })
	step("expire", func(t *testing.T) scaleRow { return scaleExpire(t, sz.expireK, sz.expireN, sz) })
	var naive naiveResult
	t.Run("naive loop", func(t *testing.T) {
		naive = compareNaive(t, sz)
		t.Logf("send %.0f/s (%.0f/s to its last message), naive %.0f/s (%.0f/s) (%.2fx, %.2fx); started twice: naive %d, send %d of %d messaged twice; two campaigns duplicated %s (finished %v) against one %s",
			naive.ours, naive.oursSent, naive.naive, naive.naiveSent, naive.ours/naive.naive, naive.oursSent/naive.naiveSent, naive.naiveDup, naive.oursDup, naive.dupN,
			naive.two.Round(time.Millisecond), naive.twoFinished, naive.single.Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}
	report := scaleReport(t, rows, naive, sz)
	t.Log("\n" + report)
	if full() {
		record(SectionScale, report)
	}
}

// templateSendBound is the template's default send concurrency and the messages/s it
// allows at WeChat's latency: every recipient in flight waits at least that long.
func templateSendBound(t *testing.T) (instances, parallelism int, perSecond float64) {
	t.Helper()
	tpl := testenv.Template(t)
	p, ok := tpl.Parameters["SendMaxConcurrency"]
	if !ok || p.Default == nil {
		t.Fatal("template.yaml has no default SendMaxConcurrency")
	}
	instances, err := strconv.Atoi(*p.Default)
	if err != nil {
		t.Fatalf("SendMaxConcurrency default %q: %v", *p.Default, err)
	}
	parallelism = send.DefaultParallelism
	if v, ok := tpl.Functions["SendFunction"].Environment.Variables[lambdaenv.SendParallelismEnv]; ok {
		lit := v.Literal
		if pp, ok := tpl.Parameters[v.Ref]; ok && v.Ref != "" && pp.Default != nil {
			lit = *pp.Default // a parameter's default
		}
		if n, err := strconv.Atoi(lit); err == nil {
			parallelism = n
		}
	}
	return instances, parallelism, float64(instances*parallelism) / scaleWeChatLatency.Seconds()
}

func scaleReport(t *testing.T, rows []scaleRow, naive naiveResult, sz scaleSizes) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Scale: AWS's partition limits on the scale model\n\n")
	fmt.Fprintf(&b, "The real functions (`lambdaenv` builds them as in Lambda; send behind an emulated SQS event source,\n"+
		"collect behind the local runner's API Gateway, expire behind the template's stream mapping) on the\n"+
		"scale model (`internal/dev/scalemodel`): DynamoDB Local behind a proxy that enforces AWS's\n"+
		"per-partition-key limits (1,000 WCU/s, 3,000 RCU/s per key of a table or GSI) divided by **k** and\n"+
		"answers AWS's throttling errors, so a load of target/k here meets what the target meets in AWS. Rates\n"+
		"are in AWS terms (measured × k). The send function is paced to the target by its own\n"+
		"`SEND_RATE_PER_SECOND` (one campaign: %d instance, three: %d, × `SEND_PARALLELISM` %d, WeChat sandbox answering in %s); collect\n"+
		"uploads start on a fixed schedule at the target (one formId and one subscribe accept each, every user\n"+
		"once, logged in beforehand); the expire function gets the grants stream's REMOVE records of expired\n"+
		"grants deleted at the target. Each run ends when its work is done or %s after its planned time, and a\n"+
		"throttled write retried by the SDK counts once per refusal.\n\n",
		sz.scaleInstances, sz.instances, sz.parallelism, scaleWeChatLatency, sz.slack)
	fmt.Fprintf(&b, "*Latency is not scaled*: k divides rates, while a request's latency (WeChat's answer, a DynamoDB\n"+
		"call) belongs to one request. By Little's law in flight = rate × latency, so at target/k with AWS's\n"+
		"latencies a run needs 1/k of AWS's concurrency: each recipient in flight here stands for k in AWS\n"+
		"(the %d here for %d at k = %g). Nor does k divide one user's own writes (a grant's lease and spend,\n"+
		"an upload's transaction): a per-user key's share here is about k times its share in AWS, so per-user\n"+
		"keys are listed apart from the keys many users share.\n\n",
		sz.scaleInstances*sz.parallelism, int(float64(sz.scaleInstances*sz.parallelism)*sz.sendK), sz.sendK)
	fmt.Fprintf(&b, "| scenario | k | target (AWS) | achieved (AWS) | of target | done | wall | failed | throttled | hottest shared key: sustained share of its limit (window) | its busiest 1-s peak | hottest per-user key (1-s peak) | meets the bar |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|\n")
	for _, r := range rows {
		hs, hp, hu := hottestSustained(r.kinds, false), hottest(r.kinds, false), hottest(r.kinds, true)
		verdict := "no"
		if r.meets() {
			verdict = "yes"
		}
		fmt.Fprintf(&b, "| %s | %g | %.0f %s/s | %.0f %s/s | %.0f%% | %d / %d | %.1f s | %d | %d | %s %.0f%% (%s) | %s | %s | %s |\n",
			r.name, r.k, r.target, r.unit, r.achieved(), r.unit, 100*r.achieved()/r.target, r.done, r.total,
			r.elapsed.Seconds(), r.failed, r.stats.Throttled(), hs.name(), 100*hs.sustained, r.stats.Window, hp.label(), hu.label(), verdict)
	}
	fmt.Fprintf(&b, "\n*failed*: SQS messages send reported failed (redelivered later), uploads not answered 200 with both\n"+
		"grants accepted, stream records not processed by the end. *sustained share*: the most units a key consumed\n"+
		"in any window of k/10 seconds over its limit for that window. *peak*: the most in one second (a key may\n"+
		"read up to 2× in its first second, when its bucket starts full). Throttling is per second either way.\n"+
		"The bar (issue #12): the target reached, 0 throttled, the hottest shared key's sustained load at most 50%%.\n"+
		"Why sustained and not the peak second: k divides rates but not time, so a key sees k times fewer requests\n"+
		"per second than in AWS and its busiest second is a Poisson tail √k times noisier (at k = 100 a delivery\n"+
		"shard averaging ~12%% of its limit peaks at 80-160%% in some second; the same traffic in AWS, ~78\n"+
		"recipients a second per shard, peaks near 20-30%%). A k-second window would hold what one second holds\n"+
		"in AWS; k/10 seconds holds a tenth, still √10 times noisier than AWS's 1-second figure, so it errs high.\n\n")
	fmt.Fprintf(&b, "Throttled requests and hot keys by table, index and key kind (kinds with a refusal or a peak of\n"+
		"25%% or more; `{campaign}#{n}` is a run's key, `{app}#{openid}` a user's):\n\n")
	fmt.Fprintf(&b, "| scenario | table | index | key kind | keys | requests | throttled | RCU | WCU | peak share (1 s) | sustained share |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		shown := 0
		for _, k := range r.kinds {
			if (k.throttled == 0 && k.peak < 0.25) || shown == 8 {
				continue
			}
			shown++
			fmt.Fprintf(&b, "| %s | %s | %s | `%s` | %d | %d | %d | %.0f | %.0f | %.0f%% | %.0f%% |\n", r.name, k.table, orDash(k.index), k.kind, k.keys,
				k.requests, k.throttled, k.readUnits, k.writes, 100*k.peak, 100*k.sustained)
		}
		if shown == 0 {
			fmt.Fprintf(&b, "| %s | – | – | – | | | 0 | | | under 25%% | |\n", r.name)
		}
	}
	inst, par, bound := templateSendBound(t)
	fmt.Fprintf(&b, "\n**The template's defaults in AWS terms**: `SendMaxConcurrency` %d × `SEND_PARALLELISM` %d = %d\n"+
		"recipients in flight; each waits at least WeChat's ~%s, so send delivers at most %.0f messages/s\n"+
		"(%.0f%% of the %.0f target) before any DynamoDB time, whatever the keys allow. Reaching the target needs\n"+
		"at least %.0f in flight plus DynamoDB's share of each recipient's time.\n\n",
		inst, par, inst*par, scaleWeChatLatency, bound, 100*bound/scaleSendTarget, scaleSendTarget,
		math.Ceil(scaleSendTarget*scaleWeChatLatency.Seconds()))
	fmt.Fprintf(&b, "### Next to the seeds' naive loop\n\n")
	fmt.Fprintf(&b, "The seeds' algorithm ported to this stack: for each recipient, Query their grants and take the\n"+
		"earliest expiring, call WeChat, delete the grant; no claim, no lease, no delivery record. Both on\n"+
		"DynamoDB Local without the model (this compares what each algorithm costs, not the hot keys), %d\n"+
		"recipients in flight, WeChat answering in %s, %d new recipients each.\n\n", naive.inFlight, scaleWeChatLatency, naive.n)
	ratio := naive.ours / naive.naive
	twoRatio := naive.two.Seconds() / naive.single.Seconds()
	twoText := fmt.Sprintf("%.1f s", naive.two.Seconds())
	if !naive.twoFinished {
		twoText = fmt.Sprintf("not done after %.0f s (%d of %d messages)", naive.two.Seconds(), naive.twoSent, naive.twoOf)
	}
	fmt.Fprintf(&b, "| measure | minipush send | naive loop | target |\n|---|---:|---:|---|\n")
	fmt.Fprintf(&b, "| messages/s, until the run is done / the loop returned | %.0f | %.0f | send ≥ 0.6× the loop: **%.2f×** |\n", naive.ours, naive.naive, ratio)
	fmt.Fprintf(&b, "| messages/s, until WeChat accepted the last message | %.0f | %.0f | %.2f× |\n", naive.oursSent, naive.naiveSent, naive.oursSent/naive.naiveSent)
	fmt.Fprintf(&b, "| started twice over %d users holding two grants: users messaged twice | %d | %d | 0 |\n",
		naive.dupN, naive.oursDup, naive.naiveDup)
	fmt.Fprintf(&b, "| two campaigns over one audience of %d, every SQS batch delivered twice | %s | | within 2× of one campaign's %.1f s: **%.1f×** |\n\n",
		naive.twoN, twoText, naive.single.Seconds(), twoRatio)
	fmt.Fprintf(&b, "Send started twice is every batch delivered twice, the copies back to back so both are in flight at\n"+
		"once (2 instances); the naive loop started twice is two loops over the same recipients at once.\n")
	return b.String()
}

// httptestServer serves h on 127.0.0.1 until the test ends and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
