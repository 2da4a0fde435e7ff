package admin_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/testenv"
	"minipush/internal/plan"
	"minipush/internal/queue"
)

// TestOperatorToPlanner drives a campaign through the operator API only and lets the
// real planner pick it up: the campaign item the admin writes is the one the planner
// finds, claims and streams, and progress reports the planned run.
func TestOperatorToPlanner(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	db := envDB(env)
	db.Now = func() time.Time { return now }
	h := admin.New(db, token, []string{"wx1"})
	h.Now, h.NewID = db.Now, func() string { return "e2e" }
	url := env.Queue("SendQueue").URL

	// No canary (issue #18): this test drains one planner tick's batches with no sender
	// running, and a canary would hold all but 20 until they were sent.
	noCanary := strings.Replace(subscribeCampaign, `"audience":{"kind":"list"}`, `"audience":{"kind":"list"},"policy":{"canaryPercent":0}`, 1)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: noCanary}, http.StatusCreated, nil)
	const n = 250
	var page1 []string
	for i := range 150 {
		page1 = append(page1, fmt.Sprintf("%q", fmt.Sprintf("o%04d", i)))
	}
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/e2e/audience", body: `{"openIds":[` + strings.Join(page1, ",") + `]}`}, 200, nil)
	var csv strings.Builder
	csv.WriteString("openid\n")
	for i := 100; i < n; i++ { // 50 overlap the first page
		fmt.Fprintf(&csv, "o%04d\n", i)
	}
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/e2e/audience", body: csv.String(), contentType: "text/csv"}, 200, nil)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/e2e/schedule", body: `{"now":true}`}, 200, nil)

	p := &plan.Handler{DB: db, Queue: queue.New(env.SQS, url), Now: db.Now, Owner: func() string { return "p1" }, Log: slog.New(slog.DiscardHandler)}
	if err := p.Handle(t.Context(), events.EventBridgeEvent{}); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	for total, empty := 0, 0; empty < 2; {
		out, err := env.SQS.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 600,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			empty++
		}
		for _, m := range out.Messages {
			var b minipush.Batch
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &b); err != nil {
				t.Fatal(err)
			}
			if b.CampaignID != "e2e" || b.Run != 1 || b.AppID != "wx1" {
				t.Fatalf("batch %+v", b)
			}
			for _, id := range b.OpenIDs {
				seen[id]++
				total++
			}
		}
	}
	for i := range n {
		if c := seen[fmt.Sprintf("o%04d", i)]; c != 1 {
			t.Fatalf("o%04d queued %d times", i, c)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d recipients queued, want %d", len(seen), n)
	}
	var prog struct {
		Status  minipush.CampaignStatus `json:"status"`
		Current *minipush.Run           `json:"current"`
	}
	mustOK(t, h, call{method: "GET", target: "/v1/admin/campaigns/e2e/progress"}, 200, &prog)
	if prog.Current == nil || prog.Current.N != 1 || prog.Current.Counters.Planned != n || prog.Current.Status != minipush.RunSending {
		t.Fatalf("progress %+v %+v", prog, prog.Current)
	}
	// A planned campaign is no longer a draft: the operator can no longer edit it.
	mustOK(t, h, call{method: "PATCH", target: "/v1/admin/campaigns/e2e", body: `{"name":"late"}`}, http.StatusConflict, nil)
}
