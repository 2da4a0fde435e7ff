package plan_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/plan"
	"minipush/internal/queue"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const appID = "wxplan000000001"

var quiet = slog.New(slog.DiscardHandler)

// clock is a test clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	env   *testenv.Env
	db    *dynamo.DB
	clk   *clock
	queue *queue.Queue
	url   string
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	env := testenv.New(tb)
	clk := &clock{t: time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)}
	db := dynamo.New(env.DynamoDB, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
	db.Now = clk.Now
	url := env.Queue("SendQueue").URL
	return &fixture{env: env, db: db, clk: clk, queue: queue.New(env.SQS, url), url: url}
}

// handler is a planner with its own lease owner name.
func (f *fixture) handler(owner string) *plan.Handler {
	return &plan.Handler{
		DB: f.db, Queue: f.queue, Log: quiet, Now: f.clk.Now,
		Owner: func() string { return owner },
	}
}

func message() minipush.Message {
	return minipush.Message{Kind: minipush.MessageSubscribe, TemplateID: "TPL-1",
		Data: map[string]minipush.DataValue{"thing1": {Value: "hello"}}}
}

// mustCampaign creates a campaign through the operator storage and schedules it due at
// dueAt.
func (f *fixture) mustCampaign(tb testing.TB, id string, aud minipush.Audience, sched minipush.Schedule, dueAt time.Time) {
	tb.Helper()
	ctx := context.Background()
	now := f.clk.Now()
	c := minipush.Campaign{
		ID: id, AppID: appID, Name: id, Message: message(), Audience: aud, Status: minipush.StatusDraft,
		Policy: minipush.Policy{SkipOptedOut: true}, CreatedAt: now, UpdatedAt: now,
	}
	if err := f.db.CreateCampaign(ctx, c); err != nil {
		tb.Fatal(err)
	}
	if _, err := f.db.ScheduleCampaign(ctx, id, sched, dueAt); err != nil {
		tb.Fatal(err)
	}
}

// oneOff is a campaign due now.
func (f *fixture) oneOff(tb testing.TB, id string, aud minipush.Audience) {
	tb.Helper()
	now := f.clk.Now()
	f.mustCampaign(tb, id, aud, minipush.Schedule{At: now}, now)
}

func openID(i int) string { return fmt.Sprintf("o%027d", i) }

// mustAudience uploads n explicit recipients openID(0..n-1), in parallel pages.
func (f *fixture) mustAudience(tb testing.TB, campaignID string, n int) {
	tb.Helper()
	const pageSize, workers = 500, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := atomic.Int64{}
	for range workers {
		wg.Go(func() {
			for {
				start := int(next.Add(pageSize)) - pageSize
				if start >= n {
					return
				}
				ids := make([]string, 0, pageSize)
				for i := start; i < min(start+pageSize, n); i++ {
					ids = append(ids, openID(i))
				}
				if _, err := f.db.AddAudience(context.Background(), campaignID, ids); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// user is a users-table item as the planner's scans see it.
type user struct {
	appID, openID    string
	region, industry string
	tags             []string
	optOut           bool
	liveGrants       int
	latestExpiry     time.Time
}

// mustUsers stores users with the adapter's bulk load (ImportUsers, 25 per
// BatchWriteItem), 8 loads at once.
func (f *fixture) mustUsers(tb testing.TB, users []user) {
	tb.Helper()
	all := make([]minipush.User, len(users))
	for i, u := range users {
		all[i] = minipush.User{AppID: u.appID, OpenID: u.openID, Region: u.region, Industry: u.industry, Tags: u.tags,
			OptOut: u.optOut, LiveGrants: u.liveGrants, LatestExpiry: u.latestExpiry}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var failed atomic.Value
	for start := 0; start < len(all); start += 250 {
		chunk := all[start:min(start+250, len(all))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f.db.ImportUsers(context.Background(), chunk); err != nil {
				failed.Store(err)
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		tb.Fatal(err)
	}
}

// drained is what the send queue held.
type drained struct {
	recipients map[string]int // "run/openid" -> times seen
	batches    []minipush.Batch
}

// drain receives every message of the send queue: it stops after want recipients and
// then checks that nothing more arrives.
func (f *fixture) drain(tb testing.TB, want int) drained {
	tb.Helper()
	ctx := context.Background()
	d := drained{recipients: map[string]int{}}
	total := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		wait := int32(1)
		if total < want {
			wait = 0
		}
		out, err := f.env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(f.url), MaxNumberOfMessages: 10, WaitTimeSeconds: wait, VisibilityTimeout: 600,
		})
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range out.Messages {
			var b minipush.Batch
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &b); err != nil {
				tb.Fatalf("message body: %v", err)
			}
			d.batches = append(d.batches, b)
			for _, id := range b.OpenIDs {
				d.recipients[strconv.Itoa(b.Run)+"/"+id]++
				total++
			}
		}
		if total >= want && len(out.Messages) == 0 {
			return d
		}
		if time.Now().After(deadline) {
			tb.Fatalf("drained %d of %d recipients within the deadline", total, want)
		}
	}
}

// assertExactlyOnce checks that run's recipients are exactly openID(0..n-1), once each,
// in batches with distinct ids of at most 100.
func (d drained) assertExactlyOnce(tb testing.TB, run, n int) {
	tb.Helper()
	for i := range n {
		if c := d.recipients[strconv.Itoa(run)+"/"+openID(i)]; c != 1 {
			tb.Fatalf("recipient %d of run %d queued %d times, want 1", i, run, c)
		}
	}
	if len(d.recipients) != n {
		tb.Fatalf("queue held %d distinct recipients, want %d", len(d.recipients), n)
	}
	d.assertBatches(tb)
}

func (d drained) assertBatches(tb testing.TB) {
	tb.Helper()
	seen := map[string]bool{}
	for _, b := range d.batches {
		if seen[b.ID] {
			tb.Fatalf("batch id %s queued twice", b.ID)
		}
		seen[b.ID] = true
		if len(b.OpenIDs) == 0 || len(b.OpenIDs) > plan.DefaultBatchSize {
			tb.Fatalf("batch %s has %d recipients", b.ID, len(b.OpenIDs))
		}
		if b.AppID != appID || b.CampaignID == "" || b.Run < 1 {
			tb.Fatalf("batch %s: %+v", b.ID, b)
		}
	}
}

// mustRun reads a run's progress.
func (f *fixture) mustRun(tb testing.TB, id string, run int) minipush.RunProgress {
	tb.Helper()
	p, err := f.db.RunCounters(context.Background(), id, run)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func (f *fixture) mustCampaignNow(tb testing.TB, id string) minipush.Campaign {
	tb.Helper()
	c, err := f.db.GetCampaign(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
