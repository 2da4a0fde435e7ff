package chaos

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
)

// Environment knobs.
const (
	usersEnv     = "MINIPUSH_CHAOS_USERS"  // recipients; default defaultUsers (make chaos: 20000)
	reportEnv    = "MINIPUSH_CHAOS_REPORT" // write the report as markdown to this path
	logsEnv      = "MINIPUSH_CHAOS_LOGS"   // keep the runners' logs in this directory
	defaultUsers = 1000
)

// Chaos settings passed to every runner. The visibility timeout is the template's
// minimum, just above the send function's 60 s timeout, so a killed runner's batches come
// back within a minute while a live slow invocation never loses its batch to another
// (30 s let batches of invocations that ran near their deadline on a busy machine be
// received 5 times and reach the DLQ); the lease is short so a dead sender's claims
// expire soon, yet longer than a WeChat call (5 s timeout).
//
// Receipts are off, as for most apps: send records its sent messages in sent logs, not
// a final write each (issue #12), so the chaos goes through that path.
var runnerArgs = []string{
	"-receipts", "off",
	"-sqs-duplicate", "0.2",
	"-param", "SendVisibilityTimeout=61",
	"-env", "SEND_LEASE_SECONDS=10",
	"-env", "PLAN_QUIET_SECONDS=5",
}

// faults is the WeChat side of the chaos: latency on many sends; transient errcodes
// (retried, never final); per-recipient errcodes (the recipient fails, or for 41028 the
// next grant is tried); lost answers, hang-ups and gateway 502s either side of
// processing (unknown; a hang-up or 502 before processing sent nothing, which the sender
// cannot tell, so neither is retried); and a flaky token endpoint. Codes that pause or abort the campaign by design (41030, 43107,
// 45009, 40037, ...) are left out: they stop every recipient, not chaos to survive.
var faults = []sandbox.Fault{
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLatency, Latency: 30 * time.Millisecond, Rate: 0.2},
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLatency, Latency: 400 * time.Millisecond, Rate: 0.02},
	{Path: sandbox.PathSubscribeSend, ErrCode: -1, Rate: 0.03},     // system busy: retry
	{Path: sandbox.PathSubscribeSend, ErrCode: 43108, Rate: 0.01},  // concurrent send: retry
	{Path: sandbox.PathSubscribeSend, ErrCode: 45011, Rate: 0.005}, // minute quota: retry
	{Path: sandbox.PathSubscribeSend, ErrCode: 43101, Rate: 0.01},  // user refused: failed
	{Path: sandbox.PathSubscribeSend, ErrCode: 47003, Rate: 0.004}, // data invalid: failed
	{Path: sandbox.PathSubscribeSend, ErrCode: 45168, Rate: 0.004}, // sensitive words: failed
	{Path: sandbox.PathSubscribeSend, ErrCode: 41028, Rate: 0.01},  // grant invalid: next grant
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultLostAnswer, Rate: 0.004},
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultHangUpAfter, Rate: 0.003},
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultHangUpBefore, Rate: 0.003},
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultGatewayAfter, Rate: 0.003},
	{Path: sandbox.PathSubscribeSend, Kind: sandbox.FaultGatewayBefore, Status: 504, Rate: 0.002},
	{Path: sandbox.PathStableToken, ErrCode: -1, Rate: 0.2},
}

// failCodes are the injected errcodes that end a recipient failed, by reason.
var failCodes = map[string]int{"user_refused": 43101, "data_invalid": 47003, "sensitive_words": 45168}

// kills are the SIGKILLs: when the sandbox has accepted this share of the expected
// sends, the runner is killed and started again.
var kills = []struct {
	at     float64
	runner string
}{{0.2, "a"}, {0.5, "b"}}

// TestChaos runs one campaign to every seeded user through two runner processes under
// every fault at once and checks the report: 0 duplicates, 0 lost, and outcomes that
// match the faults injected.
func TestChaos(t *testing.T) {
	n := defaultUsers
	if v := os.Getenv(usersEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			t.Fatalf("%s=%q: want a number of users, at least 100", usersEnv, v)
		}
	}
	began := time.Now()
	ep := testenv.Endpoints(t)
	app := localrun.DemoApp()
	sb := sandbox.New(sandbox.Options{Seed: uint64(time.Now().UnixNano())})
	if err := sb.Apply(app.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)

	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxIdleConns: 256}}
	args := runnerArgs
	if n < 5000 {
		// A short run plans only about n/100 SQS messages: ten to an invocation (the
		// default) would leave most pollers idle and the run slow. One each is a valid
		// deployment too (SendBatchSize's minimum).
		args = append(args, "-param", "SendBatchSize=1")
	}
	logDir := os.Getenv(logsEnv)
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fleet{
		t: t, bin: buildRunner(t), data: t.TempDir(), ep: ep, wechat: srv.URL, args: args,
		prefix:  "chaos" + strconv.FormatInt(time.Now().UnixNano()%1e8, 36) + "-",
		logDir:  logDir,
		runners: map[string]*runner{},
	}
	// The second runner starts once the first has made the tables and queues.
	f.start("a")
	f.start("b")
	t.Logf("runners up on prefix %s; logs in %s", f.prefix, f.logDir)

	// Deadlines scale with the audience: seeding and sending manage a few dozen users a
	// second even on a machine shared with other test runs; the rest is fixed waits
	// (visibility timeout, leases, retry backoff).
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute+time.Duration(n)*60*time.Millisecond)
	defer cancel()

	rep := &report{Users: n, Start: began}
	seedStart := time.Now()
	users, err := seed(ctx, client, sb, f.live(), app, localrun.DemoSubscribeTemplate, n, 64)
	if err != nil {
		t.Fatal(err)
	}
	rep.SeedTime = time.Since(seedStart)
	ids := make([]string, len(users))
	var optOuts []map[string]any
	expectSends := 0
	for i, u := range users {
		ids[i] = u.openID
		switch {
		case u.optOut:
			optOuts = append(optOuts, map[string]any{"openId": u.openID, "optOut": true})
		case u.grants > 0:
			expectSends++
		}
	}
	for i := 0; i < len(optOuts); i += 1000 {
		body := map[string]any{"appId": app.AppID, "users": optOuts[i:min(i+1000, len(optOuts))]}
		if err := f.api(ctx, client, http.MethodPost, "/v1/admin/users:import", "", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seeded %d users in %s (%.0f/s)", n, rep.SeedTime.Round(time.Millisecond), float64(n)/rep.SeedTime.Seconds())

	for _, flt := range faults {
		if err := sb.AddFault(flt); err != nil {
			t.Fatal(err)
		}
	}
	sendStart := time.Now()
	campaign, err := startCampaign(ctx, f, client, app.AppID, localrun.DemoSubscribeTemplate, ids)
	if err != nil {
		t.Fatal(err)
	}
	rep.Campaign = campaign
	stopTicks := f.ticker(ctx, time.Second, client)
	stopInvalidating := invalidateTokens(ctx, sb, app.AppID, 2*time.Second)

	// SIGKILL runners mid-send, once the run is fully planned (a planner killed mid-plan
	// holds its lease for two minutes, which only makes the test slow).
	for _, k := range kills {
		target := int(k.at * float64(expectSends))
		for sb.Stats().Accepted < target {
			if ctx.Err() != nil {
				t.Fatalf("waiting for %d sends before killing runner %s: %v (accepted %d)", target, k.runner, ctx.Err(), sb.Stats().Accepted)
			}
			time.Sleep(20 * time.Millisecond) // polling the sandbox with a deadline
		}
		for {
			p, err := progress(ctx, f, client, campaign)
			if err != nil {
				t.Fatal(err)
			}
			if p.Current != nil && p.Current.Status == "done" {
				t.Fatalf("the run finished before runner %s was killed: the test proves nothing", k.runner)
			}
			if p.Current != nil && p.Current.Status != "planning" {
				break
			}
			time.Sleep(50 * time.Millisecond) // polling progress with the ctx deadline
		}
		rep.KilledAt = append(rep.KilledAt, sb.Stats().Accepted)
		f.killAndRestart(k.runner)
		t.Logf("killed runner %s at %d accepted sends and started it again", k.runner, rep.KilledAt[len(rep.KilledAt)-1])
	}

	var final progressOut
	for {
		p, err := progress(ctx, f, client, campaign)
		if err != nil {
			rep.Incomplete = err.Error()
			break
		}
		final = p
		if p.Current != nil && p.Current.Status == "done" {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	rep.SendTime = time.Since(sendStart)
	rep.TokenInvalidations = stopInvalidating()
	// Late duplicates and re-queued copies still arrive after the run is done: let the
	// queue drain before judging, so a message sent by one of them is counted too.
	drained := drain(ctx, t, ep, f.prefix)
	rep.Ticks = stopTicks()
	rep.QueueLeft = drained

	readBack(ctx, t, f, client, campaign, final, rep)
	st := sb.Stats()
	rep.fromSandbox(st, sb.Accepted(), users)
	rep.Kills, rep.Starts = f.kills, f.starts
	rep.SQSDuplicates = f.countLog("sqs message duplicated")
	rep.Total = time.Since(began)
	rep.check()

	md := rep.markdown()
	t.Log("\n" + md)
	if path := os.Getenv(reportEnv); path != "" {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, p := range rep.Problems {
		t.Error(p)
	}
	if rep.SQSDuplicates == 0 {
		t.Error("no SQS message was duplicated: the test proves nothing about at-least-once delivery")
	}
	if rep.Injected[43101] == 0 || rep.AnswerLost == 0 || rep.TokenInvalidations == 0 {
		t.Errorf("faults did not fire (43101 %d, lost answers %d, token invalidations %d): the test proves too little",
			rep.Injected[43101], rep.AnswerLost, rep.TokenInvalidations)
	}
}

// startCampaign creates a subscribe campaign to ids through the operator API (the demo's
// message and default policy: opted-out users skipped, 5 retries), uploads the audience
// in pages and schedules it now.
func startCampaign(ctx context.Context, f *fleet, client *http.Client, appID, template string, ids []string) (string, error) {
	var camp struct{ ID string }
	err := f.api(ctx, client, http.MethodPost, "/v1/admin/campaigns", "", map[string]any{
		"appId": appID, "name": "chaos",
		"message": map[string]any{"kind": "subscribe", "templateId": template, "page": "pages/index/index?from=chaos",
			"data": map[string]any{"thing1": map[string]string{"value": "今日签到提醒"}, "time2": map[string]string{"value": "2026-11-25 10:00"}}},
		"audience": map[string]any{"kind": "list"},
	}, &camp)
	if err != nil {
		return "", fmt.Errorf("create campaign: %w", err)
	}
	// Pages of 1000 keep each request well inside the admin function's timeout on a busy
	// machine; a page retried after a 5xx writes the same items again.
	for i := 0; i < len(ids); i += 1000 {
		page := ids[i:min(i+1000, len(ids))]
		if err := f.api(ctx, client, http.MethodPost, "/v1/admin/campaigns/"+camp.ID+"/audience", "", map[string]any{"openIds": page}, nil); err != nil {
			return "", fmt.Errorf("audience: %w", err)
		}
	}
	if err := f.api(ctx, client, http.MethodPost, "/v1/admin/campaigns/"+camp.ID+"/schedule", "", map[string]any{"now": true}, nil); err != nil {
		return "", fmt.Errorf("schedule: %w", err)
	}
	return camp.ID, nil
}

// invalidateTokens makes every access token of the app stale every interval, as another
// process refreshing it or WeChat revoking it would. stop returns how many times.
func invalidateTokens(ctx context.Context, sb *sandbox.Sandbox, appID string, every time.Duration) (stop func() int) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	n := 0
	wg.Go(func() {
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				sb.InvalidateTokens(appID)
				n++
			}
		}
	})
	return func() int { cancel(); wg.Wait(); return n }
}

type progressOut struct {
	Status  string
	Current *struct {
		N        int `json:"run"`
		Status   string
		Counters minipush.Counters
	}
}

func progress(ctx context.Context, f *fleet, client *http.Client, campaign string) (progressOut, error) {
	var p progressOut
	err := f.api(ctx, client, http.MethodGet, "/v1/admin/campaigns/"+campaign+"/progress", "", nil, &p)
	return p, err
}

// drain waits until the send queue holds no message (visible, in flight or delayed)
// and returns what is left in it and in the dead-letter queue.
func drain(ctx context.Context, t *testing.T, ep localstack.Endpoints, prefix string) queueLeft {
	t.Helper()
	c := ep.NewClients().SQS
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var left queueLeft
	for {
		n, err := queueDepth(ctx, c, prefix, "SendQueue")
		if err == nil {
			left.Send = n
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Logf("send queue not drained: %d messages (%v)", left.Send, err)
			return left
		case <-time.After(500 * time.Millisecond):
		}
	}
	n, err := queueDepth(context.WithoutCancel(ctx), c, prefix, "SendDeadLetterQueue")
	if err != nil {
		t.Errorf("dead-letter queue: %v", err)
	}
	left.DLQ = n
	return left
}

// queueLeft is what the queues held at the end.
type queueLeft struct {
	Send, DLQ int
}

func queueDepth(ctx context.Context, c *sqs.Client, prefix, logicalID string) (int, error) {
	u, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(prefix + logicalID)})
	if err != nil {
		return 0, err
	}
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}})
	if err != nil {
		return 0, err
	}
	total := 0
	for _, v := range out.Attributes {
		k, _ := strconv.Atoi(v)
		total += k
	}
	return total, nil
}
