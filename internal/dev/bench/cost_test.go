package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/collect"
	prices "minipush/internal/cost"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/reqcount"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/queue"
)

// The cost section follows messages through their whole life, each stage run by its
// function as lambdaenv builds it, with only the AWS clients swapped for ones that count
// (package reqcount): collect (a user logs in and uploads the subscribe grant that will
// pay for the message), plan (a tick packs the reachable audience into SQS batches),
// send (the event source hands the batches to the send function), expire (the grants
// stream's REMOVE of each spent grant reaches the expire function).

// List prices, us-east-1, as given in issue #8: package cost's (imported as prices,
// since this file has a type cost), which the operator API's forecast uses too.
const (
	priceWRU        = prices.PriceWRU
	priceRRU        = prices.PriceRRU
	priceSQS        = prices.PriceSQS
	priceLambdaReq  = prices.PriceLambdaReq
	priceLambdaGBs  = prices.PriceLambdaGBs
	priceHTTPAPIReq = prices.PriceHTTPAPIReq
)

// costStage is one function's share of the life of the messages.
type costStage struct {
	name     string // "collect", ...
	function string // template logical id
	counter  *reqcount.Counter
	memoryMB int

	mu        sync.Mutex
	durations []time.Duration // one per invocation
	apiCalls  int             // HTTP API requests (collect)
}

// invoke times one invocation of the stage's function.
func (s *costStage) invoke(fn func()) {
	start := time.Now()
	fn()
	d := time.Since(start)
	s.mu.Lock()
	s.durations = append(s.durations, d)
	s.mu.Unlock()
}

// gbSeconds is what Lambda bills for the invocations: memory times duration rounded up
// to the millisecond.
func (s *costStage) gbSeconds() float64 {
	total := 0.0
	for _, d := range s.durations {
		total += math.Ceil(float64(d)/float64(time.Millisecond)) / 1000 * float64(s.memoryMB) / 1024
	}
	return total
}

func (s *costStage) meanDuration() time.Duration {
	if len(s.durations) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.durations {
		sum += d
	}
	return sum / time.Duration(len(s.durations))
}

// countedClients are DynamoDB and SQS clients of the local stack that count into c.
func countedClients(w *sendWorld, c *reqcount.Counter) (*dynamodb.Client, *sqs.Client) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 64 })
	ddb := dynamodb.NewFromConfig(localstack.Config(), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(w.env.Endpoints.DynamoDB)
		o.HTTPClient = httpClient
		o.APIOptions = append(o.APIOptions, c.Middleware)
	})
	q := sqs.NewFromConfig(localstack.Config(), func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(w.env.Endpoints.SQS)
		o.HTTPClient = httpClient
		o.APIOptions = append(o.APIOptions, c.Middleware)
	})
	return ddb, q
}

func TestBenchCost(t *testing.T) {
	n := 1000
	if !full() {
		n = 30
	}
	ctx := t.Context()
	w := newSendWorld(t)

	scale, err := reqcount.TransactScaleOf(ctx, w.db.Client.(*dynamodb.Client), w.db.Tables.State,
		map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "bench#probe"}, "sk": &ddbtypes.AttributeValueMemberS{Value: "probe"}})
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]*costStage{}
	var order []*costStage
	for _, s := range [][2]string{{"collect", "CollectFunction"}, {"plan", "PlanFunction"}, {"send", "SendFunction"}, {"expire", "ExpireFunction"}} {
		fn := w.env.Template.Functions[s[1]]
		mem, err := strconv.Atoi(fn.MemorySize.String())
		if err != nil {
			t.Fatalf("%s MemorySize %q: %v", s[1], fn.MemorySize.String(), err)
		}
		st := &costStage{name: s[0], function: s[1], counter: &reqcount.Counter{TransactScale: scale}, memoryMB: mem}
		stages[s[0]] = st
		order = append(order, st)
	}
	getenv := func(function string) func(string) string {
		e := functionEnv(t, w.env, function)
		return func(k string) string { return e[k] }
	}

	// Collect: each user logs in and uploads the subscribe grant they accepted.
	st := stages["collect"]
	ch, err := lambdaenv.Collect(ctx, lambdaenv.Env{Getenv: getenv(st.function)})
	if err != nil {
		t.Fatal(err)
	}
	ch.Log = quietLog
	ddb, _ := countedClients(w, st.counter)
	ch.Store.(*dynamo.DB).Client = ddb // the limiter is the same *dynamo.DB
	err = parallel(ctx, 8, n, func(ctx context.Context, i int) error {
		openID, code := w.sb.NewLogin(sendAppID)
		w.sb.AddSubscribeGrant(sendAppID, openID, sendTemplate) // the user tapped "allow"
		var resp events.APIGatewayV2HTTPResponse
		st.invoke(func() {
			resp, _ = ch.Handle(ctx, apiRequest("/v1/session", `{"code":"`+code+`","appId":"`+sendAppID+`"}`, ""))
		})
		var ans collect.SessionAnswer
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(resp.Body), &ans) != nil {
			return fmt.Errorf("session: %d %s", resp.StatusCode, resp.Body)
		}
		body := fmt.Sprintf(`{"grants":[{"type":"subscribe","key":"tap-%d","results":{%q:"accept"}}]}`, i, sendTemplate)
		st.invoke(func() { resp, _ = ch.Handle(ctx, apiRequest("/v1/grants", body, ans.Token)) })
		var up collect.UploadAnswer
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(resp.Body), &up) != nil || up.Accepted != 1 {
			return fmt.Errorf("upload: %d %s", resp.StatusCode, resp.Body)
		}
		st.mu.Lock()
		st.apiCalls += 2
		st.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatalf("collect: %v", err)
	}

	// Plan: the operator's campaign to every reachable user (its creation is not per
	// message and not counted), planned by one tick.
	const campaign = "cost"
	now := time.Now().UTC()
	c := minipush.Campaign{ID: campaign, AppID: sendAppID, Name: campaign, Status: minipush.StatusDraft, Message: sendMessage(),
		Audience: minipush.Audience{Kind: minipush.AudienceReachable}, Policy: minipush.Policy{SkipOptedOut: true},
		CreatedAt: now, UpdatedAt: now}
	if err := w.db.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.ScheduleCampaign(ctx, campaign, minipush.Schedule{At: now}, now); err != nil {
		t.Fatal(err)
	}
	st = stages["plan"]
	ph, err := lambdaenv.Plan(ctx, lambdaenv.Env{Getenv: getenv(st.function)})
	if err != nil {
		t.Fatal(err)
	}
	ph.Log = quietLog
	ddb, q := countedClients(w, st.counter)
	ph.DB.(*dynamo.DB).Client = ddb
	ph.Queue = queue.New(q, w.queue.URL)
	st.invoke(func() {
		lctx, cancel := lambdaContext(ctx, 300*time.Second)
		defer cancel()
		err = ph.Handle(lctx, events.EventBridgeEvent{ID: "cost", Source: "aws.events", DetailType: "Scheduled Event"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := w.db.RunCounters(ctx, campaign, 1); err != nil || p.Planned != n || !p.PlanningDone() {
		t.Fatalf("plan: run %+v (%v), want %d planned", p, err, n)
	}

	// Send: the SQS event source (receive 10, invoke, delete what succeeded) and the
	// send function, until the run is done.
	st = stages["send"]
	sh, err := lambdaenv.Send(ctx, lambdaenv.Env{Getenv: getenv(st.function)})
	if err != nil {
		t.Fatal(err)
	}
	sh.Log = quietLog
	ddb, q = countedClients(w, st.counter)
	sh.Store.(*dynamo.DB).Client = ddb // the token cache shares it
	sh.Queue = queue.New(q, w.queue.URL)
	deadline := time.Now().Add(2 * time.Minute)
	var prog minipush.RunProgress
	for prog.Status != minipush.RunDone {
		if time.Now().After(deadline) {
			t.Fatalf("send: run not done in time: %+v", prog)
		}
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(w.queue.URL), MaxNumberOfMessages: 10,
			WaitTimeSeconds: 1, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) > 0 {
			ev := localrun.SQSEventOf(out.Messages, w.queue.ARN)
			var resp events.SQSEventResponse
			st.invoke(func() {
				lctx, cancel := lambdaContext(ctx, time.Minute)
				defer cancel()
				resp, _ = sh.Handle(lctx, ev)
			})
			if len(resp.BatchItemFailures) > 0 {
				t.Fatalf("send: %d failed messages", len(resp.BatchItemFailures))
			}
			var entries []sqstypes.DeleteMessageBatchRequestEntry
			for i, m := range out.Messages {
				entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
			}
			if _, err := q.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(w.queue.URL), Entries: entries}); err != nil {
				t.Fatal(err)
			}
		}
		if prog, err = w.db.RunCounters(ctx, campaign, 1); err != nil {
			t.Fatal(err)
		}
	}
	w.checkRun(t, campaign, n)
	delivered := map[string]int{}
	for _, m := range w.sb.Accepted() {
		delivered[m.ToUser]++
	}
	if len(delivered) != n {
		t.Errorf("WeChat accepted messages for %d users, want %d", len(delivered), n)
	}
	for u, k := range delivered {
		if k != 1 {
			t.Errorf("%s: WeChat accepted %d messages, want 1", u, k)
		}
	}

	// Expire: the spends' REMOVE records through the template's filter, in batches of
	// the mapping's BatchSize (100). Stream reads by Lambda are free and not counted.
	st = stages["expire"]
	eh, err := lambdaenv.Expire(ctx, lambdaenv.Env{Getenv: getenv(st.function)})
	if err != nil {
		t.Fatal(err)
	}
	eh.Log = quietLog
	ddb, _ = countedClients(w, st.counter)
	eh.DB.(*dynamo.DB).Client = ddb
	reader, err := localstack.NewStreamReader(w.env.Streams, w.env.StreamARNs["GrantsTable"], []string{`{"eventName":["REMOVE"]}`})
	if err != nil {
		t.Fatal(err)
	}
	var removals []events.DynamoDBEventRecord
	deadline = time.Now().Add(time.Minute)
	for len(removals) < n {
		if time.Now().After(deadline) {
			t.Fatalf("expire: %d of %d grant removals on the stream", len(removals), n)
		}
		recs, err := reader.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		removals = append(removals, recs...)
	}
	for chunk := range slices.Chunk(removals, 100) {
		var resp events.DynamoDBEventResponse
		st.invoke(func() {
			lctx, cancel := lambdaContext(ctx, time.Minute)
			defer cancel()
			resp, _ = eh.Handle(lctx, events.DynamoDBEvent{Records: chunk})
		})
		if len(resp.BatchItemFailures) > 0 {
			t.Fatalf("expire: %d failed records", len(resp.BatchItemFailures))
		}
	}

	report := costReport(order, n, scale)
	t.Log("\n" + report)
	if full() {
		record(SectionCost, report)
	}
}

// apiRequest is an HTTP API (payload 2.0) POST with an optional bearer token.
func apiRequest(path, body, token string) events.APIGatewayV2HTTPRequest {
	req := events.APIGatewayV2HTTPRequest{Version: "2.0", RouteKey: "POST " + path, RawPath: path, Body: body,
		Headers: map[string]string{"content-type": "application/json"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{RequestID: "bench",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST", Path: path}}}
	if token != "" {
		req.Headers["authorization"] = "Bearer " + token
	}
	return req
}

// lambdaContext is ctx as Lambda gives it to a function with the given timeout.
func lambdaContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: "bench"}), cancel
}

// costReport renders the per-message counts and the cost per million messages.
func costReport(stages []*costStage, n int, scale float64) string {
	per := func(v float64) float64 { return v / float64(n) }
	var b strings.Builder
	fmt.Fprintf(&b, "## Requests and cost per message\n\n")
	fmt.Fprintf(&b, "The life of %d messages, each to a different user holding one subscribe grant: **collect** (the\n"+
		"user logs in, `POST /v1/session`, and uploads the grant, `POST /v1/grants`), **plan** (one tick packs the\n"+
		"campaign's reachable audience into SQS batches of 100), **send** (the SQS event source receives 10\n"+
		"batches at a time, invokes the send function, deletes them), **expire** (the grants stream's REMOVE\n"+
		"of each spent grant, 100 records an invocation). Each function is built by `lambdaenv` with only\n"+
		"its AWS clients replaced by counting ones (an SDK middleware, `internal/reqcount`). Every message was\n"+
		"checked delivered exactly once. Collect is counted as one login and one upload per message, the\n"+
		"most it can cost one: a session lasts 7 days and an upload carries up to 50 grants, so a user who\n"+
		"stays logged in, or grants several templates at once, costs less.\n\n", n)
	fmt.Fprintf(&b, "Capacity units are DynamoDB Local's own `ConsumedCapacity` (asked for with `INDEXES` on every\n"+
		"request, so index writes would count; since issue #12 neither the grants nor the deliveries table has\n"+
		"an index), with two corrections where Local is known to differ from AWS:\n"+
		"a BatchGetItem key that finds no item is billed the minimum read (1 RRU strongly consistent) by AWS\n"+
		"but reported as 0 by Local, so it is added; and Local reports a one-item transaction of a small item\n"+
		"as %.0f WRU where AWS bills 2, so transaction units are scaled by %.2f (measured at the start of the run).\n\n", 2/scale, scale)

	fmt.Fprintf(&b, "### Requests per delivered message\n\n| stage | request | calls | billed requests | RRU | WRU |\n|---|---|---:|---:|---:|---:|\n")
	for _, s := range stages {
		snap := s.counter.Snapshot()
		for _, op := range reqcount.Ops(snap) {
			x := snap[op]
			billed := "–"
			if op.Service == "SQS" {
				billed = fmt.Sprintf("%.3f", per(float64(x.Billed)))
			}
			fmt.Fprintf(&b, "| %s | %s | %.3f | %s | %.3f | %.3f |\n", s.name, op, per(float64(x.Calls)), billed, per(x.ReadUnits), per(x.WriteUnits))
		}
	}
	fmt.Fprintf(&b, "\n### Per delivered message, by stage\n\n| stage | DynamoDB calls | RRU | WRU | SQS billed requests | Lambda invocations | mean duration | memory | GB-s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	type cost struct{ rru, wru, sqs, lreq, lgbs, api float64 }
	costs := map[string]cost{}
	var total cost
	var totDDB, totRRU, totWRU, totSQS, totInv, totGBs float64
	var anomalies []string
	for _, s := range stages {
		snap := s.counter.Snapshot()
		d, q := reqcount.Total(snap, "DynamoDB"), reqcount.Total(snap, "SQS")
		if d.Unreported > 0 || d.Errors > 0 || q.Errors > 0 {
			// A failed conditional write is billed too, but its answer carries no capacity.
			anomalies = append(anomalies, fmt.Sprintf("%s: %d DynamoDB answers without capacity, %d DynamoDB and %d SQS errors",
				s.name, d.Unreported, d.Errors, q.Errors))
		}
		gbs := s.gbSeconds()
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.4f | %.4f | %d ms | %d MB | %.6f |\n", s.name, per(float64(d.Calls)), per(d.ReadUnits), per(d.WriteUnits),
			per(float64(q.Billed)), per(float64(len(s.durations))), s.meanDuration().Milliseconds(), s.memoryMB, per(gbs))
		totDDB += per(float64(d.Calls))
		totRRU += per(d.ReadUnits)
		totWRU += per(d.WriteUnits)
		totSQS += per(float64(q.Billed))
		totInv += per(float64(len(s.durations)))
		totGBs += per(gbs)
		c := cost{rru: 1e6 * per(d.ReadUnits) * priceRRU, wru: 1e6 * per(d.WriteUnits) * priceWRU, sqs: 1e6 * per(float64(q.Billed)) * priceSQS,
			lreq: 1e6 * per(float64(len(s.durations))) * priceLambdaReq, lgbs: 1e6 * per(gbs) * priceLambdaGBs, api: 1e6 * per(float64(s.apiCalls)) * priceHTTPAPIReq}
		costs[s.name] = c
		total = cost{total.rru + c.rru, total.wru + c.wru, total.sqs + c.sqs, total.lreq + c.lreq, total.lgbs + c.lgbs, total.api + c.api}
	}
	fmt.Fprintf(&b, "| **total** | %.3f | %.3f | %.3f | %.4f | %.4f | | | %.6f |\n", totDDB, totRRU, totWRU, totSQS, totInv, totGBs)
	if len(anomalies) > 0 {
		fmt.Fprintf(&b, "\nNot counted in the units above: %s.\n", strings.Join(anomalies, "; "))
	}

	fmt.Fprintf(&b, "\n### Cost per million messages (USD)\n\n| stage | DynamoDB reads | DynamoDB writes | SQS | Lambda requests | Lambda compute | HTTP API | total |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	sum := func(c cost) float64 { return c.rru + c.wru + c.sqs + c.lreq + c.lgbs + c.api }
	for _, s := range stages {
		c := costs[s.name]
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", s.name, c.rru, c.wru, c.sqs, c.lreq, c.lgbs, c.api, sum(c))
	}
	fmt.Fprintf(&b, "| **total** | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | **%.2f** |\n", total.rru, total.wru, total.sqs, total.lreq, total.lgbs, total.api, sum(total))
	largest := stages[0].name
	for name, c := range costs {
		if sum(c) > sum(costs[largest]) {
			largest = name
		}
	}

	fmt.Fprintf(&b, "\nPrices: us-east-1 list prices as given in issue #8 (DynamoDB on-demand $0.625 per million WRU and\n"+
		"$0.125 per million RRU, the prices since AWS's 1 November 2024 on-demand cut; SQS standard $0.40 per\n"+
		"million requests of 64 KiB; Lambda arm64 $0.0000133334 per GB-second and $0.20 per million requests;\n"+
		"API Gateway HTTP API $1.00 per million requests), not re-checked against the live pricing pages from\n"+
		"this machine; free tiers ignored. Lambda compute is each function's `MemorySize` from template.yaml\n"+
		"times the handler durations measured in-process here, rounded up to the millisecond per invocation:\n"+
		"against DynamoDB Local on a shared machine these durations are pessimistic (DynamoDB answers in a few\n"+
		"ms in AWS). Not included: CloudWatch Logs and metrics, data transfer, DynamoDB storage (a grant and a\n"+
		"30-day delivery item of a few hundred bytes each), Secrets Manager reads (once per cold start), the\n"+
		"planner's idle ticks (one invocation a minute, a fixed cost) and idle SQS long polls by the event\n"+
		"source (a fixed cost, not per message); DynamoDB Streams reads by Lambda are free. Largest stage: %s.\n", largest)
	return b.String()
}
