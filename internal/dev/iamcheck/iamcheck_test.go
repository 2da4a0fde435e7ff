package iamcheck_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/demo"
	"minipush/internal/dev/iamcheck"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/lambdaenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestIAMCoverage runs a campaign's whole life through the real functions on the local
// stack with every function's AWS calls recorded — users log in and grant (collect),
// the operator creates, schedules and follows a campaign and pages its deliveries and
// the inventory (admin), the planner packs it (plan), send delivers it and finishes the
// run, the spent grants' removals reach expire through the stream and one is replayed
// from the failure queue, and one of the run's batches lands in the dead-letter queue
// (deadletter) — and checks every recorded call
// against the function's policy in template.yaml, as IAM would. DynamoDB Local and the
// SQS server check no IAM, so without this a missing permission shows only in AWS.
// What the policies allow and nothing used is logged for a human to trim.
func TestIAMCoverage(t *testing.T) {
	t.Parallel()
	sys := startSystem(t)
	calls := sys.run(t)

	// The recorder names a queue by the ARN the stack gave it.
	for id, q := range sys.r.Resources.Queues {
		if got := iamcheck.QueueARN(q.URL); got != q.ARN {
			t.Errorf("queue %s: recorded as %s, provisioned as %s", id, got, q.ARN)
		}
	}
	policies, err := iamcheck.Policies(sys.tpl, sys.r.Resources)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range iamcheck.Check(policies, calls) {
		t.Errorf("AccessDenied in AWS: %s", v)
	}
	// Every function the template declares ran and was checked.
	for _, fn := range sys.tpl.FunctionIDs() {
		if !slices.ContainsFunc(calls, func(c iamcheck.Call) bool { return c.Function == fn }) {
			t.Errorf("the workload made no AWS call from %s, so its policy went unchecked", fn)
		}
	}
	for _, u := range iamcheck.Unused(policies, calls) {
		t.Logf("allowed, not used by this workload: %s", u)
	}

	// The check depends on every statement a call needs: with any Allow statement that
	// alone allows some recorded call removed (in memory), the check fails.
	t.Run("EachNeededStatementRemoved", func(t *testing.T) {
		needed := 0
		for _, fn := range slices.Sorted(func(yield func(string) bool) {
			for fn := range policies {
				if !yield(fn) {
					return
				}
			}
		}) {
			for _, s := range policies[fn] {
				if s.Effect != "Allow" {
					continue
				}
				alone := slices.ContainsFunc(calls, func(c iamcheck.Call) bool {
					d := iamcheck.Evaluate(policies[c.Function], c)
					return c.Function == fn && d.Allowed && len(d.AllowedBy) == 1 && d.AllowedBy[0] == s.Index
				})
				used := slices.ContainsFunc(calls, func(c iamcheck.Call) bool {
					return c.Function == fn && slices.Contains(iamcheck.Evaluate(policies[fn], c).AllowedBy, s.Index)
				})
				switch {
				case alone:
					needed++
					if len(iamcheck.Check(iamcheck.Without(policies, fn, s.Index), calls)) == 0 {
						t.Errorf("without %s the check still passes", s)
					}
				case used:
					t.Logf("covered by other statements too (a candidate to merge): %s", s)
				}
			}
		}
		if needed == 0 {
			t.Fatal("no statement is needed by any call: the recording is empty")
		}
		t.Logf("%d statements needed; removing any one fails the check", needed)
	})
}

type system struct {
	r       *localrun.Runner
	tpl     *samtemplate.Template
	rec     *iamcheck.Recorder
	sandbox string
}

// startSystem starts the local runner on the shared local stack with the production
// builders, each function observed by one recorder, against an in-process sandbox.
func startSystem(t *testing.T) *system {
	t.Helper()
	app := localrun.DemoApp()
	// Receipts off, as most apps run: send records its sent messages in sent logs
	// (BatchWriteItem), a call the receipts' final writes never make. The workload pushes
	// no receipts, so nothing of collect's is lost.
	app.NoReceipts = true
	sb := sandbox.New(sandbox.Options{Seed: 13})
	if err := sb.Apply(app.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	wx := httptest.NewServer(sb) // 127.0.0.1
	t.Cleanup(wx.Close)
	tpl, err := samtemplate.ReadFile(filepath.Join(testenv.Root(), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("iam%d-", time.Now().UnixNano()%1e9)
	rec := iamcheck.NewRecorder(tpl, prefix)
	ep := testenv.Endpoints(t)
	r, err := localrun.Start(t.Context(), localrun.Options{
		Root: testenv.Root(), Stack: &ep, Addr: "127.0.0.1:0", Prefix: prefix,
		Builders: lambdaenv.Builders(),
		Observe:  rec.Observer,
		// The failure queue's replay is off as deployed; on here, so its stream reads are
		// recorded too.
		Params:  map[string]string{"WeChatBaseURL": wx.URL, "ExpireReplayEnabled": "true"},
		Secrets: map[string]string{"WeChatSecret": app.SecretJSON()},
		Log:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop(context.Background())
		if err := r.Resources.Teardown(context.Background(), r.Stack.NewClients()); err != nil {
			t.Logf("teardown: %v", err)
		}
	})
	return &system{r: r, tpl: tpl, rec: rec, sandbox: wx.URL}
}

// run drives the workload and returns the calls recorded.
func (s *system) run(t *testing.T) []iamcheck.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	app := localrun.DemoApp()
	cfg := demo.Config{API: s.r.URL, Sandbox: s.sandbox, AppID: app.AppID, OperatorToken: s.r.Secrets["OperatorTokenSecret"],
		Template: localrun.DemoSubscribeTemplate, Users: 12, Parallel: 4, Out: io.Discard}
	ids, err := demo.Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	campaign, err := demo.StartCampaign(ctx, cfg, ids)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Tick(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := demo.Wait(ctx, cfg, campaign, len(ids)); err != nil {
		t.Fatal(err)
	}
	var progress struct{ Current minipush.Run }
	s.operator(t, "/v1/admin/campaigns/"+campaign+"/progress", &progress)
	run := progress.Current.N
	s.operator(t, "/v1/admin/campaigns/"+campaign+"/runs/"+strconv.Itoa(run)+"/deliveries?outcome=sent&limit=5", nil)
	s.operator(t, "/v1/admin/campaigns/"+campaign+"/runs/"+strconv.Itoa(run)+"/deliveries?limit=5", nil)
	s.operator(t, "/v1/admin/inventory?appId="+app.AppID, nil)
	// A test send to two of the users: admin reads them, looks for a grant (the run
	// spent theirs: no_grant), records and reads back the test's deliveries.
	s.post(t, "/v1/admin/campaigns/"+campaign+"/test", `{"openIds":["`+ids[0]+`","`+ids[1]+`"]}`)

	// One of the run's batches dead-lettered, as SQS moves it after maxReceiveCount
	// failed receives: its recipients are final already, so deadletter reads them and
	// lets the run be.
	sqsc := s.r.Stack.NewClients().SQS
	body, _ := json.Marshal(minipush.Batch{ID: "iamcheck-dead", CampaignID: campaign, Run: run, AppID: app.AppID, OpenIDs: ids[:3]})
	dlq := s.r.Resources.Queue("SendDeadLetterQueue").URL
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(string(body))}); err != nil {
		t.Fatal(err)
	}
	// The grants stream's first record, as if expire had given up on it: the replay
	// mapping (enabled for this run) hands the failure record to expire, which reads
	// the range back from the stream itself.
	stream := s.r.Resources.StreamARNs["GrantsTable"]
	streams := s.r.Stack.NewClients().Streams
	desc, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(stream)})
	if err != nil || len(desc.StreamDescription.Shards) == 0 {
		t.Fatalf("grants stream %s: %v", stream, err)
	}
	shard := aws.ToString(desc.StreamDescription.Shards[0].ShardId)
	it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(stream), ShardId: aws.String(shard),
		ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	page, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil || len(page.Records) == 0 {
		t.Fatalf("grants stream %s: no record (%v)", stream, err)
	}
	seq := aws.ToString(page.Records[0].Dynamodb.SequenceNumber)
	failure, _ := json.Marshal(map[string]any{"DDBStreamBatchInfo": map[string]any{
		"shardId": shard, "startSequenceNumber": seq, "endSequenceNumber": seq, "batchSize": 1, "streamArn": stream}})
	failures := s.r.Resources.Queue("ExpireFailureQueue").URL
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(failures), MessageBody: aws.String(string(failure))}); err != nil {
		t.Fatal(err)
	}

	// Each is handled when its function has made its calls and its queue is empty (the
	// mapping deletes a message once the function returned it as done); the spent
	// grants' removals reach expire through the stream mapping.
	waitFor(t, ctx, "deadletter to handle the dead letter and expire to replay the stream", func() bool {
		calls := s.rec.Calls()
		return slices.ContainsFunc(calls, func(c iamcheck.Call) bool { return c.Function == "DeadLetterFunction" }) &&
			slices.ContainsFunc(calls, func(c iamcheck.Call) bool { return c.Action == "dynamodb:GetRecords" }) &&
			slices.ContainsFunc(calls, func(c iamcheck.Call) bool { return c.Function == "ExpireFunction" && c.Operation == "UpdateItem" }) &&
			empty(ctx, sqsc, dlq) && empty(ctx, sqsc, failures)
	})
	return s.rec.Calls()
}

// empty reports whether a queue holds no message, visible or in flight.
func empty(ctx context.Context, sqsc *sqs.Client, queueURL string) bool {
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	return err == nil && out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)] == "0" &&
		out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)] == "0"
}

// operator GETs an operator API path and decodes the answer into out (if not nil).
func (s *system) operator(t *testing.T, path string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", s.r.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.r.Secrets["OperatorTokenSecret"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
}

// post POSTs body to an operator API path and wants 200.
func (s *system) post(t *testing.T, path, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.r.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.r.Secrets["OperatorTokenSecret"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
}

// waitFor polls ok until it holds or the deadline passes.
func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}
