package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/plan"
)

// planResult is one measured plan of a list audience.
type planResult struct {
	recipients int
	load       time.Duration // audience upload (not part of the plan)
	wall       time.Duration // one Handle call: audience read, batches queued, cursor saved
	batches    int           // full batches of plan.DefaultBatchSize expected
	messages   int           // SQS messages drained afterwards
	drain      time.Duration
	mem        memUse
}

// TestBenchPlan plans list campaigns of 100k and 1M recipients (smoke: 2k and 5k), after a
// warm-up plan, with the real planner, built by lambdaenv.Plan as in Lambda, on one tick,
// into the real send queue, and measures recipients/s and the planner's peak memory.
// Memory must not grow with the audience: the planner streams it page by page.
// Afterwards the queue is drained and every recipient must have been queued exactly once.
func TestBenchPlan(t *testing.T) {
	// The first size is a warm-up, not reported: the first plans on a fresh stack run
	// several times slower per recipient while DynamoDB Local's JIT warms up.
	sizes := []int{1_000, 2_000, 5_000}
	if full() {
		sizes = []int{20_000, 100_000, 1_000_000}
	}
	ctx := t.Context()
	env := testenv.NewOn(t, stackFor(t), nil)
	fnEnv := functionEnv(t, env, "PlanFunction")
	h, err := lambdaenv.Plan(ctx, lambdaenv.Env{Getenv: func(k string) string { return fnEnv[k] }})
	if err != nil {
		t.Fatal(err)
	}
	h.Log = quietLog
	db := dynamo.New(env.DynamoDB, tablesOf(env))

	var results []planResult
	for _, n := range sizes {
		id := "bench-plan-" + strconv.Itoa(n)
		createListCampaign(t, db, id)
		start := time.Now()
		if err := loadAudience(ctx, db, id, n); err != nil {
			t.Fatal(err)
		}
		r := planResult{recipients: n, load: time.Since(start)}
		t.Logf("%d recipients loaded in %s (%.0f items/s)", n, r.load.Round(time.Millisecond), float64(n)/r.load.Seconds())

		mem := startMemSampler()
		start = time.Now()
		err := h.Handle(ctx, events.EventBridgeEvent{ID: "bench-" + id, Source: "aws.events", DetailType: "Scheduled Event"})
		r.wall = time.Since(start)
		r.mem = mem.stop()
		if err != nil {
			t.Fatal(err)
		}
		p, err := db.RunCounters(ctx, id, 1)
		if err != nil {
			t.Fatal(err)
		}
		if p.Status != minipush.RunSending || p.Planned != n {
			t.Fatalf("run of %s: status %q planned %d, want sending %d", id, p.Status, p.Planned, n)
		}
		r.batches = (n + plan.DefaultBatchSize - 1) / plan.DefaultBatchSize // sizes are whole pages

		start = time.Now()
		r.messages = drainExactlyOnce(t, env.SQS, env.Queue("SendQueue").URL, id, n)
		r.drain = time.Since(start)
		if r.messages != r.batches {
			t.Fatalf("%d messages drained, want %d full batches", r.messages, r.batches)
		}
		t.Logf("%d recipients planned in %s (%.0f/s), %d batches; above a %s heap: peak heap +%s (median 1 s peak +%s), live +%s, mapped +%s, %.0f B allocated/recipient, %d GCs; drained in %s",
			n, r.wall.Round(time.Millisecond), float64(n)/r.wall.Seconds(), r.batches, mib(r.mem.base), mib(r.mem.heap), mib(r.mem.typical),
			mib(r.mem.live), mib(r.mem.total), float64(r.mem.alloc)/float64(n), r.mem.gcs, r.drain.Round(time.Millisecond))
		results = append(results, r)
	}
	results = results[1:]
	if !full() {
		return
	}

	// Judged on the median of the per-second peaks: the maximum of a 2 ms sampled sawtooth
	// creeps up with the number of GC cycles sampled and jumps when the machine starves a
	// mark phase of CPU (3.1 MiB at 100k and 4.7 MiB at 1M once under a load average of 15,
	// while every second of a 500k plan peaked at 3.0-3.2 MiB). Holding the audience would
	// lift every second's peak: 1M openids are over 40 MiB.
	small, large := results[0], results[len(results)-1]
	ratio := float64(large.mem.typical) / float64(max(small.mem.typical, 1))
	maxRatio := float64(large.mem.heap) / float64(max(small.mem.heap, 1))
	if ratio > 1.5 {
		t.Errorf("median per-second peak heap %s at %d recipients is %.2fx the %s at %d: memory grows with the audience",
			mib(large.mem.typical), large.recipients, ratio, mib(small.mem.typical), small.recipients)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Plan\n\n")
	fmt.Fprintf(&b, "One schedule tick of the real planner (`lambdaenv.Plan`, as in Lambda) plans a list campaign:\n"+
		"it reads the audience from DynamoDB Local a page of %d at a time, packs batches of %d\n"+
		"recipients and puts them on the local SQS send queue %d per `SendMessageBatch`, saving its\n"+
		"cursor after every page. Loading the audience (parallel `BatchWriteItem`) is not timed, and a\n"+
		"%d-recipient plan first warms up the stack.\n\n",
		plan.DefaultPageSize, plan.DefaultBatchSize, 10, sizes[0])
	fmt.Fprintf(&b, "| recipients | plan wall time | recipients/s | SQS messages | peak heap | median 1 s peak | peak per recipient | peak live heap | peak mapped | allocated per recipient |\n")
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %d | %.1f s | %.0f | %d | %s | %s | %.2f B | %s | %s | %.0f B |\n", r.recipients, r.wall.Seconds(),
			float64(r.recipients)/r.wall.Seconds(), r.messages, mib(r.mem.heap), mib(r.mem.typical),
			float64(r.mem.heap)/float64(r.recipients), mib(r.mem.live), mib(r.mem.total), float64(r.mem.alloc)/float64(r.recipients))
	}
	fmt.Fprintf(&b, "\nAt %d recipients the peak heap is %.2fx the peak at %d, the median per-second peak %.2fx\n"+
		"(the bench fails above 1.5x): the planner holds a page, never the audience.\n\n",
		large.recipients, maxRatio, small.recipients, ratio)
	fmt.Fprintf(&b, "Memory is the Go runtime's own count (`runtime/metrics`) in the test process, which runs only\n"+
		"the planner during the tick, sampled every 2 ms after a `runtime.GC()`, as growth above that\n"+
		"baseline: *peak heap* is the highest `/memory/classes/heap/objects:bytes` (live objects and\n"+
		"garbage not yet swept, so it follows the GC's sawtooth), *median 1 s peak* the median over the\n"+
		"tick's seconds of each second's highest sample (what the assertion compares: the maximum\n"+
		"also catches the odd GC cycle starved of CPU on this shared machine), *peak live heap* the\n"+
		"highest `/gc/heap/live:bytes` (what a GC found reachable), *peak mapped* the growth of\n"+
		"`/memory/classes/total:bytes` (everything the runtime mapped from the OS), *allocated* the\n"+
		"`/gc/heap/allocs:bytes` of the tick. Afterwards the queue is drained (8 parallel receivers,\n"+
		"`DeleteMessageBatch`): every recipient was queued exactly once, in full batches of %d.\n",
		plan.DefaultBatchSize)
	record(SectionPlan, b.String())
}

// createListCampaign creates a one-off list campaign due now, as the operator API does.
func createListCampaign(t *testing.T, db *dynamo.DB, id string) {
	t.Helper()
	now := time.Now().UTC()
	c := minipush.Campaign{
		ID: id, AppID: benchAppID, Name: id, Status: minipush.StatusDraft,
		Message: minipush.Message{Kind: minipush.MessageSubscribe, TemplateID: "BENCH_TPL",
			Data: map[string]minipush.DataValue{"thing1": {Value: "bench"}}},
		Audience: minipush.Audience{Kind: minipush.AudienceList}, Policy: minipush.Policy{SkipOptedOut: true},
		CreatedAt: now, UpdatedAt: now,
	}
	if err := db.CreateCampaign(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ScheduleCampaign(t.Context(), id, minipush.Schedule{At: now}, now); err != nil {
		t.Fatal(err)
	}
}

const benchAppID = "wx00000000bench"

// benchOpenID is recipient i's openid (28 characters, like WeChat's).
func benchOpenID(i int) string { return fmt.Sprintf("o%027d", i) }

// loadAudience stores recipients benchOpenID(0..n-1) as campaign id's list audience in
// pages of 5,000, as the operator API takes them: 6 pages at a time, each written 8
// BatchWriteItems at a time by dynamo.AddAudience.
func loadAudience(ctx context.Context, db *dynamo.DB, id string, n int) error {
	const pageSize, workers = 5000, 6
	return parallel(ctx, workers, (n+pageSize-1)/pageSize, func(ctx context.Context, p int) error {
		page := make([]string, 0, pageSize)
		for i := p * pageSize; i < min((p+1)*pageSize, n); i++ {
			page = append(page, benchOpenID(i))
		}
		if _, err := db.AddAudience(ctx, id, page); err != nil {
			return fmt.Errorf("load audience of %s: %w", id, err)
		}
		return nil
	})
}

// memSampler records the peaks of the Go runtime's memory above a post-GC baseline.
type memSampler struct {
	done   chan struct{}
	wg     sync.WaitGroup
	sample []metrics.Sample
	base   [len(memMetrics)]uint64
	peak   [len(memMetrics)]uint64
	// windows are the peaks of heap objects above the baseline in each second.
	windows []uint64
}

// memUse is what one plan cost in memory, above the baseline.
type memUse struct {
	heap  uint64 // peak of heap objects: live and not yet swept
	live  uint64 // peak of the live heap as the last GC marked it
	total uint64 // peak of all memory the runtime mapped from the OS
	alloc uint64 // bytes allocated (cumulative)
	gcs   uint64 // GC cycles
	base  uint64 // the baseline heap objects (after runtime.GC)
	// typical is the median of the per-second peaks of heap objects: the top of the GC's
	// sawtooth without the odd spike (a mark phase starved of CPU lets the heap run on).
	typical uint64
}

var memMetrics = [...]string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes", "/memory/classes/total:bytes",
	"/gc/heap/allocs:bytes", "/gc/cycles/total:gc-cycles"}

// startMemSampler collects garbage, takes the baseline and samples every 2 ms.
func startMemSampler() *memSampler {
	s := &memSampler{done: make(chan struct{}), sample: make([]metrics.Sample, len(memMetrics))}
	for i, name := range memMetrics {
		s.sample[i].Name = name
	}
	runtime.GC()
	metrics.Read(s.sample)
	for i := range s.sample {
		s.base[i] = s.sample[i].Value.Uint64()
		s.peak[i] = s.base[i]
	}
	s.wg.Go(func() {
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		var window uint64
		windowStart := time.Now()
		for {
			metrics.Read(s.sample)
			for i := range s.sample {
				s.peak[i] = max(s.peak[i], s.sample[i].Value.Uint64())
			}
			window = max(window, s.sample[0].Value.Uint64()-min(s.base[0], s.sample[0].Value.Uint64()))
			if time.Since(windowStart) >= time.Second {
				s.windows, window, windowStart = append(s.windows, window), 0, time.Now()
			}
			select {
			case <-s.done:
				s.windows = append(s.windows, window)
				return
			case <-tk.C:
			}
		}
	})
	return s
}

// stop ends sampling and returns the peaks above the baseline.
func (s *memSampler) stop() memUse {
	close(s.done)
	s.wg.Wait()
	metrics.Read(s.sample) // the last allocations
	d := func(i int) uint64 { return max(s.peak[i], s.sample[i].Value.Uint64()) - s.base[i] }
	slices.Sort(s.windows)
	return memUse{heap: d(0), live: d(1), total: d(2), alloc: d(3), gcs: d(4), base: s.base[0], typical: s.windows[len(s.windows)/2]}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// drainExactlyOnce receives and deletes every message of the send queue with parallel
// receivers and checks that they carry campaign id's run 1 recipients
// benchOpenID(0..n-1) exactly once each, in batches of at most plan.DefaultBatchSize
// with distinct ids. It returns the number of messages. The local SQS server counts
// in-flight messages in ApproximateNumberOfMessages, so emptiness is checked after the
// deletes, not while receiving.
func drainExactlyOnce(t *testing.T, client *sqs.Client, url, id string, n int) int {
	t.Helper()
	const receivers = 8
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	seen := make([]atomic.Uint32, n)
	var recipients, messages atomic.Int64
	var batchIDs sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, receivers)
	for range receivers {
		wg.Go(func() {
			for recipients.Load() < int64(n) && ctx.Err() == nil {
				out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 600,
				})
				if err != nil {
					errs <- fmt.Errorf("receive: %w", err)
					return
				}
				del := make([]sqstypes.DeleteMessageBatchRequestEntry, 0, len(out.Messages))
				for i, m := range out.Messages {
					var b minipush.Batch
					if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &b); err != nil {
						errs <- fmt.Errorf("message body: %w", err)
						return
					}
					if b.CampaignID != id || b.Run != 1 || b.AppID != benchAppID || len(b.OpenIDs) == 0 || len(b.OpenIDs) > plan.DefaultBatchSize {
						errs <- fmt.Errorf("batch %s: campaign %s run %d app %s, %d recipients", b.ID, b.CampaignID, b.Run, b.AppID, len(b.OpenIDs))
						return
					}
					if _, dup := batchIDs.LoadOrStore(b.ID, true); dup {
						errs <- fmt.Errorf("batch %s queued twice", b.ID)
						return
					}
					for _, oid := range b.OpenIDs {
						i, err := strconv.Atoi(strings.TrimPrefix(oid, "o"))
						if err != nil || i < 0 || i >= n || oid != benchOpenID(i) {
							errs <- fmt.Errorf("batch %s: unknown recipient %q", b.ID, oid)
							return
						}
						seen[i].Add(1)
					}
					recipients.Add(int64(len(b.OpenIDs)))
					messages.Add(1)
					del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if len(del) == 0 {
					continue
				}
				dout, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del})
				if err != nil {
					errs <- fmt.Errorf("delete: %w", err)
					return
				}
				if len(dout.Failed) > 0 {
					errs <- fmt.Errorf("delete: %d entries failed: %s", len(dout.Failed), aws.ToString(dout.Failed[0].Message))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := recipients.Load(); got != int64(n) {
		t.Fatalf("drained %d of %d recipients: %v", got, n, ctx.Err())
	}
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("recipient %s queued %d times, want 1", benchOpenID(i), c)
		}
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range attrs.Attributes {
		if v != "0" {
			t.Fatalf("after the drain the queue has %s %s: more than the planned recipients were queued", k, v)
		}
	}
	return int(messages.Load())
}
