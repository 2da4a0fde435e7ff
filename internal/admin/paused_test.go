package admin_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/admin"
	"minipush/internal/dev/apispec"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/plan"
	"minipush/internal/queue"
	"minipush/internal/send"
	"minipush/internal/wechat"
)

// TestPausedReason: a campaign send pauses (WeChat answers 40037: the sandbox does not
// know its template) shows why in GET campaigns/{id} as pausedReason, documented in
// openapi.json; resume clears it. The operator used to see only "paused" and had to
// find the reason in the webhook or send's log.
func TestPausedReason(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	db := envDB(env)
	db.Now = func() time.Time { return now }
	doc, err := apispec.Parse(admin.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	h := admin.New(db, token, []string{"wx1"})
	h.Now, h.NewID = db.Now, func() string { return "p1" }
	url := env.Queue("SendQueue").URL

	// The sandbox knows wx1's users but not the campaign's template tplA: 40037.
	sb := sandbox.New(sandbox.Options{Apps: []sandbox.App{{AppID: "wx1", Secret: "s1"}}})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	wc := wechat.New(wechat.Options{BaseURL: srv.URL})
	var ids []string
	var grants []minipush.Grant
	for i := range 3 {
		id := sb.NewUser("wx1")
		ids = append(ids, id)
		grants = append(grants, minipush.Grant{AppID: "wx1", OpenID: id, Kind: minipush.GrantSubscribe, ID: fmt.Sprintf("g%d", i),
			TemplateID: "tplA", Uses: 1, CollectedAt: now.Add(-time.Hour), ExpiresAt: now.Add(30 * 24 * time.Hour)})
	}
	if err := db.ImportGrants(t.Context(), grants); err != nil {
		t.Fatal(err)
	}

	noCanary := strings.Replace(subscribeCampaign, `"audience":{"kind":"list"}`, `"audience":{"kind":"list"},"policy":{"canaryPercent":0}`, 1)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: noCanary}, 201, nil)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/p1/audience", body: body(ids...)}, 200, nil)
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/p1/schedule", body: `{"now":true}`}, 200, nil)
	p := &plan.Handler{DB: db, Queue: queue.New(env.SQS, url), Now: db.Now, Owner: func() string { return "p1" }, Log: slog.New(slog.DiscardHandler)}
	if err := p.Handle(t.Context(), events.EventBridgeEvent{}); err != nil {
		t.Fatal(err)
	}

	// get answers the campaign's JSON as an operator reads it, checked against openapi.json
	// (Campaign is closed: an undocumented field fails).
	get := func() map[string]any {
		t.Helper()
		c := call{method: "GET", target: "/v1/admin/campaigns/p1"}
		resp := do(t, h, c)
		if err := doc.Observe(c.method, c.target, resp.StatusCode, resp.Headers["Content-Type"], []byte(resp.Body)); err != nil {
			t.Errorf("GET campaign against openapi.json: %v", err)
		}
		var out map[string]any
		mustOK(t, h, c, 200, &out)
		return out
	}

	// Send the planned batch: the first answer (40037) pauses the campaign.
	s := &send.Handler{Store: db, Queue: queue.New(env.SQS, url), WeChat: wc, Tokens: stableTokens{wc}, Now: db.Now,
		Log: slog.New(slog.DiscardHandler)}
	deadline := time.Now().Add(30 * time.Second)
	for get()["status"] != string(minipush.StatusPaused) {
		if time.Now().After(deadline) {
			t.Fatalf("campaign %v after 30 s of sending, want paused by 40037", get())
		}
		out, err := env.SQS.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		var ev events.SQSEvent
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)})
		}
		if len(ev.Records) > 0 {
			if _, err := s.Handle(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := sb.Stats().Errcodes[40037]; n == 0 {
		t.Fatalf("the sandbox answered no 40037 (errcodes %v): the pause was not send's", sb.Stats().Errcodes)
	}
	const want = "template_invalid (errcode 40037)"
	if got := get(); got["pausedReason"] != want {
		b, _ := json.Marshal(got)
		t.Fatalf("paused by send: %s, want pausedReason %q", b, want)
	}

	var resumed map[string]any
	mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns/p1/resume"}, 200, &resumed)
	if r, ok := resumed["pausedReason"]; ok || resumed["status"] == string(minipush.StatusPaused) {
		t.Fatalf("resumed: status %v, pausedReason %v; want not paused and no reason", resumed["status"], r)
	}
	if r, ok := get()["pausedReason"]; ok {
		t.Fatalf("GET after resume: pausedReason %v, want none", r)
	}
}
