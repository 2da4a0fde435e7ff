package collect_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/collect"
	"minipush/internal/dynamo"
)

// receiptCampaign is the campaign the receipt tests' deliveries belong to (24 hex
// digits, as admin makes them).
const receiptCampaign = "c0ffee00c0ffee00c0ffee01"

// sentDelivery stores a delivery of a run that send finished as sent with msgID, the
// way send does for an app with receipts on (a claim, then the final write that keeps
// the msgid and indexes it), expiring at expires, sent now. Its template is the one the
// pushes below name for it: TPL-A in run 1, TPL-B (their second item) in run 2.
func (f *fixture) sentDelivery(t *testing.T, run int, openID, msgID string, expires time.Time) {
	t.Helper()
	tpl := "TPL-A"
	if run == 2 {
		tpl = "TPL-B"
	}
	f.sentDeliveryAt(t, run, openID, tpl, msgID, f.now, expires)
}

// sentDeliveryAt is sentDelivery of template tpl with WeChat's answer at sentAt
// (msgID "" for an answer without one).
func (f *fixture) sentDeliveryAt(t *testing.T, run int, openID, tpl, msgID string, sentAt, expires time.Time) {
	t.Helper()
	ctx := t.Context()
	db := *f.db // the same tables, on a clock of its own: the answer's time
	db.Now = func() time.Time { return sentAt }
	runKey := minipush.RunKey(receiptCampaign, run)
	_, err := db.CreateDelivery(ctx, minipush.Delivery{
		RunKey: runKey, OpenID: openID, State: minipush.DeliverySending, Owner: "sender-1",
		LeaseUntil: sentAt.Add(time.Minute), GrantID: "g1", ExpiresAt: expires,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.FinishDelivery(ctx, runKey, openID, "sender-1", time.Time{}, minipush.OutcomeSent, "", 0, msgID, minipush.ReceiptUser(appID, openID, tpl)); err != nil {
		t.Fatal(err)
	}
}

// delivery reads one delivery of a run.
func (f *fixture) delivery(t *testing.T, run int, openID string) minipush.Delivery {
	t.Helper()
	m, err := f.db.Deliveries(t.Context(), minipush.RunKey(receiptCampaign, run), []string{openID})
	if err != nil {
		t.Fatal(err)
	}
	return m[openID]
}

// receiptCounts reads the campaign's receipt counters, summed over its runs.
func (f *fixture) receiptCounts(t *testing.T) minipush.Counters {
	t.Helper()
	m, err := f.db.ReceiptCounts(t.Context(), receiptCampaign)
	if err != nil {
		t.Fatal(err)
	}
	var c minipush.Counters
	for _, rc := range m {
		c.Delivered += rc.Delivered
		c.AsyncFailed += rc.AsyncFailed
	}
	return c
}

// deliveriesSnapshot is every item of the deliveries table (deliveries and receipt
// counters) as sorted JSON lines.
func (f *fixture) deliveriesSnapshot(t *testing.T) string {
	t.Helper()
	var all []string
	p := dynamodb.NewScanPaginator(f.db.Client, &dynamodb.ScanInput{TableName: aws.String(f.db.Tables.Deliveries), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var items []map[string]any
		if err := attributevalue.UnmarshalListOfMaps(out.Items, &items); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			b, _ := json.Marshal(it)
			all = append(all, string(b))
		}
	}
	sort.Strings(all)
	return strings.Join(all, "\n")
}

// Sent events as WeChat sends them (WECHAT.md §8). %[1]s is the user, %[2]s and %[3]s
// msgids, %[4]s the CreateTime.
const (
	sentXML = `<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[%[1]s]]></FromUserName>
<CreateTime>%[4]s</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event>
<SubscribeMsgSentEvent><List><TemplateId><![CDATA[TPL-A]]></TemplateId><MsgID><![CDATA[%[2]s]]></MsgID><ErrorCode><![CDATA[0]]></ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent></xml>`
	sentXMLTwo = `<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[%[1]s]]></FromUserName>
<CreateTime>%[4]s</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event>
<SubscribeMsgSentEvent><List><TemplateId><![CDATA[TPL-A]]></TemplateId><MsgID>%[2]s</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List>
<List><TemplateId><![CDATA[TPL-B]]></TemplateId><MsgID>%[3]s</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent></xml>`
	// JSON: List an object for one item, numbers as numbers (a msgid above 2^53 that
	// float64 would round), no wrapper.
	sentJSONObject = `{"ToUserName":"gh_123","FromUserName":"%[1]s","CreateTime":%[4]s,"MsgType":"event","Event":"subscribe_msg_sent_event",
"List":{"TemplateId":"TPL-A","MsgID":%[2]s,"ErrorCode":0,"ErrorStatus":"success"}}`
	// JSON: List an array for several, numbers as strings.
	sentJSONArray = `{"ToUserName":"gh_123","FromUserName":"%[1]s","CreateTime":"%[4]s","MsgType":"event","Event":"subscribe_msg_sent_event",
"List":[{"TemplateId":"TPL-A","MsgID":"%[2]s","ErrorCode":"0","ErrorStatus":"success"},{"TemplateId":"TPL-B","MsgID":"%[3]s","ErrorCode":"0","ErrorStatus":"success"}]}`
	// JSON with the wrapper WeChat's JSON does not have, accepted should it come.
	sentJSONWrapped = `{"ToUserName":"gh_123","FromUserName":"%[1]s","CreateTime":%[4]s,"MsgType":"event","Event":"subscribe_msg_sent_event",
"SubscribeMsgSentEvent":{"List":{"TemplateId":"TPL-A","MsgID":"%[2]s","ErrorCode":0,"ErrorStatus":"success"}}}`
	// An asynchronous failure.
	sentJSONFailed = `{"ToUserName":"gh_123","FromUserName":"%[1]s","CreateTime":"%[4]s","MsgType":"event","Event":"subscribe_msg_sent_event",
"List":{"TemplateId":"TPL-A","MsgID":"%[2]s","ErrorCode":"10005","ErrorStatus":"fail:user refused"}}`
)

// msgIDs hands out distinct msgids above 2^53, odd so a float64 cannot hold them.
type msgIDs struct{ n int64 }

func (m *msgIDs) next() string {
	m.n += 2
	return strconv.FormatInt(1<<53+1+m.n, 10)
}

// TestReceipts runs subscribe_msg_sent_event pushes of every format of WECHAT.md §8
// through the collect handler against DynamoDB Local: each moves its sent deliveries to
// delivered and counts them once into the run's receipt counters, which the run's
// progress (CampaignRuns) shows.
func TestReceipts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := &msgIDs{}
	created := strconv.FormatInt(f.now.Unix(), 10)
	want := 0
	for _, tc := range []struct {
		name, format string
		items        int
	}{
		{"XML", sentXML, 1},
		{"XMLTwoItems", sentXMLTwo, 2},
		{"JSONListObjectNumbers", sentJSONObject, 1},
		{"JSONListArrayStrings", sentJSONArray, 2},
		{"JSONWithWrapper", sentJSONWrapped, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := f.sb.NewUser(appID)
			a, b := ids.next(), ids.next()
			// Several items of one push are several messages to one user: here the
			// deliveries of two runs.
			f.sentDelivery(t, 1, user, a, f.now.Add(24*time.Hour))
			if tc.items == 2 {
				f.sentDelivery(t, 2, user, b, f.now.Add(24*time.Hour))
			}
			resp := f.do(t, f.push("POST", fmt.Sprintf(tc.format, user, a, b, created), nil))
			if resp.StatusCode != http.StatusOK || resp.Body != "success" {
				t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
			}
			if d := f.delivery(t, 1, user); d.Receipt != minipush.ReceiptDelivered || d.Outcome != minipush.OutcomeSent || d.MsgID != a {
				t.Fatalf("delivery after the receipt: %+v, want sent and delivered with msgid %s", d, a)
			}
			if tc.items == 2 {
				if d := f.delivery(t, 2, user); d.Receipt != minipush.ReceiptDelivered {
					t.Fatalf("second item's delivery: %+v, want delivered", d)
				}
			}
			want += tc.items
			if c := f.receiptCounts(t); c.Delivered != want || c.AsyncFailed != 0 {
				t.Fatalf("receipt counters %+v, want %d delivered", c, want)
			}
		})
	}

	t.Run("AsyncFailedKeepsErrorCode", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		id := ids.next()
		f.sentDelivery(t, 1, user, id, f.now.Add(24*time.Hour))
		resp := f.do(t, f.push("POST", fmt.Sprintf(sentJSONFailed, user, id, "", created), nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("push %d %s", resp.StatusCode, resp.Body)
		}
		d := f.delivery(t, 1, user)
		if d.Receipt != minipush.ReceiptAsyncFailed || d.ReceiptCode != 10005 || d.ReceiptStatus != "fail:user refused" || d.Outcome != minipush.OutcomeSent {
			t.Fatalf("delivery %+v, want async_failed with 10005 and its status", d)
		}
		if c := f.receiptCounts(t); c.AsyncFailed != 1 || c.Delivered != want {
			t.Fatalf("receipt counters %+v, want 1 async failed, %d delivered", c, want)
		}
	})

	t.Run("ReplayCountsOnce", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		id := ids.next()
		f.sentDelivery(t, 1, user, id, f.now.Add(24*time.Hour))
		body := fmt.Sprintf(sentJSONObject, user, id, "", created)
		first := f.push("POST", body, nil)
		// The same push again under its URL (WeChat's retry), under fresh URLs (a replay
		// the URL memory does not catch), and as a failure after the success.
		for i, req := range []events.APIGatewayV2HTTPRequest{
			first, first, f.push("POST", body, nil), f.push("POST", fmt.Sprintf(sentXML, user, id, "", created), nil),
			f.push("POST", fmt.Sprintf(sentJSONFailed, user, id, "", created), nil),
		} {
			resp := f.do(t, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("push %d: %d %s", i, resp.StatusCode, resp.Body)
			}
		}
		want++
		if c := f.receiptCounts(t); c.Delivered != want || c.AsyncFailed != 1 {
			t.Fatalf("receipt counters %+v after replays, want %d delivered and 1 async failed", c, want)
		}
		if d := f.delivery(t, 1, user); d.Receipt != minipush.ReceiptDelivered || d.ReceiptCode != 0 {
			t.Fatalf("delivery %+v, want the first receipt's delivered", d)
		}
	})

	t.Run("UnknownAndOldMsgIDChangeNothing", func(t *testing.T) {
		old := f.sb.NewUser(appID)
		oldID := ids.next()
		// A delivery past its retention that TTL has not deleted yet.
		f.sentDelivery(t, 1, old, oldID, f.now.Add(-time.Second))
		before := f.deliveriesSnapshot(t)
		longAgo := strconv.FormatInt(f.now.Add(-collect.ReceiptGrace-time.Second).Unix(), 10)
		for _, tc := range []struct {
			body string
			want int
		}{
			// An unknown msgid: while fresh, WeChat is asked to retry (the sender may not
			// have stored it yet); past the grace, acknowledged. Nothing changes either way.
			{fmt.Sprintf(sentJSONObject, f.sb.NewUser(appID), ids.next(), "", created), http.StatusServiceUnavailable},
			{fmt.Sprintf(sentJSONObject, f.sb.NewUser(appID), ids.next(), "", longAgo), http.StatusOK},
			// An old msgid: its delivery is past its retention.
			{fmt.Sprintf(sentXML, old, oldID, "", created), http.StatusOK},
		} {
			if resp := f.do(t, f.push("POST", tc.body, nil)); resp.StatusCode != tc.want {
				t.Fatalf("push %d %s, want %d", resp.StatusCode, resp.Body, tc.want)
			}
		}
		if after := f.deliveriesSnapshot(t); after != before {
			t.Fatalf("deliveries changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("EarlyReceiptRetried", func(t *testing.T) {
		// The receipt overtakes the sender's final write: 503, WeChat retries, and the
		// retry of the same push records it once the msgid is stored.
		user := f.sb.NewUser(appID)
		id := ids.next()
		req := f.push("POST", fmt.Sprintf(sentJSONObject, user, id, "", created), nil)
		if resp := f.do(t, req); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("early receipt: %d %s, want 503 so WeChat retries", resp.StatusCode, resp.Body)
		}
		f.sentDelivery(t, 1, user, id, f.now.Add(24*time.Hour))
		if resp := f.do(t, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("retry: %d %s", resp.StatusCode, resp.Body)
		}
		if d := f.delivery(t, 1, user); d.Receipt != minipush.ReceiptDelivered {
			t.Fatalf("delivery after the retry: %+v, want delivered", d)
		}
		want++
		if c := f.receiptCounts(t); c.Delivered != want {
			t.Fatalf("receipt counters %+v, want %d delivered", c, want)
		}
	})

	t.Run("ProgressShowsReceipts", func(t *testing.T) {
		for run := 1; run <= 2; run++ {
			if _, err := f.db.ClaimRun(t.Context(), receiptCampaign, run, appID, "planner-1", f.now, f.now, f.now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		runs, err := f.db.CampaignRuns(t.Context(), receiptCampaign)
		if err != nil {
			t.Fatal(err)
		}
		// Run 2 holds the second item of each two-item push (2 of them).
		if len(runs) != 2 || runs[0].Counters.Delivered != want-2 || runs[0].Counters.AsyncFailed != 1 || runs[1].Counters.Delivered != 2 {
			t.Fatalf("runs %+v, want run 1 with %d delivered and 1 async failed, run 2 with 2 delivered", runs, want-2)
		}
	})
}

// TestReceiptsFallback: a receipt whose MsgID no delivery holds (WeChat's answer to the
// send carried none) finds its delivery by the user, the template and a window around
// its CreateTime, when exactly one candidate is left; several change nothing; a msgid
// match wins over a candidate closer in time; a replay counts once.
func TestReceiptsFallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := &msgIDs{}
	created := strconv.FormatInt(f.now.Unix(), 10)
	expires := f.now.Add(24 * time.Hour)
	want := 0
	push := func(t *testing.T, user, msgID string, status int) {
		t.Helper()
		if resp := f.do(t, f.push("POST", fmt.Sprintf(sentJSONObject, user, msgID, "", created), nil)); resp.StatusCode != status {
			t.Fatalf("push %d %s, want %d", resp.StatusCode, resp.Body, status)
		}
	}
	counted := func(t *testing.T) {
		t.Helper()
		if c := f.receiptCounts(t); c.Delivered != want || c.AsyncFailed != 0 {
			t.Fatalf("receipt counters %+v, want %d delivered", c, want)
		}
	}

	t.Run("NoMsgIDMatchesByWindow", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		// Outside the window (or another template, or another msgid): never candidates.
		f.sentDeliveryAt(t, 1, user, "TPL-A", "", f.now.Add(-dynamo.ReceiptWindowBefore-time.Minute), expires)
		f.sentDeliveryAt(t, 2, user, "TPL-B", "", f.now.Add(-time.Minute), expires)
		f.sentDeliveryAt(t, 3, user, "TPL-A", ids.next(), f.now.Add(-time.Minute), expires)
		f.sentDeliveryAt(t, 4, user, "TPL-A", "", f.now.Add(-3*time.Minute), expires)
		id := ids.next()
		push(t, user, id, http.StatusOK)
		for run, want := range map[int]minipush.ReceiptState{1: "", 2: "", 3: "", 4: minipush.ReceiptDelivered} {
			if d := f.delivery(t, run, user); d.Receipt != want {
				t.Fatalf("run %d's delivery %+v, want receipt %q", run, d, want)
			}
		}
		want++
		counted(t)
		// WeChat's retry and a replay count once, even with a second candidate sent
		// since: the replay is known by the MsgID the first one left.
		f.sentDeliveryAt(t, 5, user, "TPL-A", "", f.now.Add(-time.Minute), expires)
		push(t, user, id, http.StatusOK)
		push(t, user, id, http.StatusOK)
		if d := f.delivery(t, 5, user); d.Receipt != "" {
			t.Fatalf("a replay recorded on the second candidate: %+v", d)
		}
		counted(t)
	})

	t.Run("TwoCandidatesChangeNothing", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		f.sentDeliveryAt(t, 1, user, "TPL-A", "", f.now.Add(-5*time.Minute), expires)
		push(t, user, ids.next(), http.StatusOK) // one candidate: recorded
		want++
		counted(t)
		// Two more without a msgid and without a receipt: ambiguous, acknowledged.
		f.sentDeliveryAt(t, 2, user, "TPL-A", "", f.now.Add(-2*time.Minute), expires)
		f.sentDeliveryAt(t, 3, user, "TPL-A", "", f.now.Add(-time.Second), expires)
		before := f.deliveriesSnapshot(t)
		push(t, user, ids.next(), http.StatusOK)
		if after := f.deliveriesSnapshot(t); after != before {
			t.Fatalf("an ambiguous receipt changed deliveries:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		counted(t)
	})

	t.Run("MsgIDWinsOverCloserCandidate", func(t *testing.T) {
		user := f.sb.NewUser(appID)
		id := ids.next()
		f.sentDeliveryAt(t, 1, user, "TPL-A", id, f.now.Add(-8*time.Minute), expires)
		f.sentDeliveryAt(t, 2, user, "TPL-A", "", f.now.Add(-5*time.Second), expires)
		push(t, user, id, http.StatusOK)
		if d := f.delivery(t, 1, user); d.Receipt != minipush.ReceiptDelivered {
			t.Fatalf("the msgid's delivery %+v, want delivered", d)
		}
		if d := f.delivery(t, 2, user); d.Receipt != "" {
			t.Fatalf("the closer candidate %+v got the msgid's receipt", d)
		}
		want++
		counted(t)
		// The candidate's own receipt then finds it: the one left without a receipt.
		push(t, user, ids.next(), http.StatusOK)
		if d := f.delivery(t, 2, user); d.Receipt != minipush.ReceiptDelivered {
			t.Fatalf("the candidate's delivery %+v, want delivered", d)
		}
		want++
		counted(t)
	})
}

// TestReceiptsUnparsable: a sent event any of whose items does not parse is answered
// 400 (WeChat retries a non-2xx push, and the log shows it) and applies nothing, not
// even its good items; the log names no openid.
func TestReceiptsUnparsable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var logs strings.Builder
	f.h.Log = slog.New(slog.NewJSONHandler(lockedWriter{mu: &sync.Mutex{}, w: &logs}, nil))
	user := f.sb.NewUser(appID)
	good := "9007199254740993"
	f.sentDelivery(t, 1, user, good, f.now.Add(24*time.Hour))
	created := strconv.FormatInt(f.now.Unix(), 10)
	before := f.deliveriesSnapshot(t)
	head := `{"FromUserName":"` + user + `","CreateTime":` + created + `,"MsgType":"event","Event":"subscribe_msg_sent_event","List":`
	goodItem := `{"TemplateId":"TPL-A","MsgID":"` + good + `","ErrorCode":0,"ErrorStatus":"success"}`
	for _, tc := range []struct{ name, body string }{
		{"ErrGoodThenBadMsgID", head + `[` + goodItem + `,{"TemplateId":"TPL-A","MsgID":"not-a-number","ErrorCode":0}]}`},
		{"ErrGoodThenFloatMsgID", head + `[` + goodItem + `,{"TemplateId":"TPL-A","MsgID":9.007199254740995e15,"ErrorCode":0}]}`},
		{"ErrGoodThenNoErrorCode", head + `[` + goodItem + `,{"TemplateId":"TPL-A","MsgID":"9007199254740995"}]}`},
		{"ErrGoodThenNoTemplate", head + `[` + goodItem + `,{"MsgID":"9007199254740995","ErrorCode":0}]}`},
		{"ErrListEmpty", head + `[]}`},
		{"ErrXMLBadErrorCode", strings.Replace(fmt.Sprintf(sentXML, user, good, "", created), "<ErrorCode><![CDATA[0]]>", "<ErrorCode><![CDATA[zero]]>", 1)},
		{"ErrNoCreateTime", strings.Replace(head, `"CreateTime":`+created+`,`, "", 1) + goodItem + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.do(t, f.push("POST", tc.body, nil))
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("push %d %s, want 400", resp.StatusCode, resp.Body)
			}
			if after := f.deliveriesSnapshot(t); after != before {
				t.Fatalf("deliveries changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	if strings.Contains(logs.String(), user) {
		t.Fatalf("logs name the openid:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "request failed") {
		t.Fatalf("refused pushes not logged:\n%s", logs.String())
	}
}

// TestReceiptsSafeMode: an app in safe mode takes its sent events encrypted, in XML and
// JSON envelopes, and its receipts are recorded like plaintext ones.
func TestReceiptsSafeMode(t *testing.T) {
	t.Parallel()
	f := newFixtureApp(t, nil, map[string]any{"encodingAESKey": aesKey})
	var logs strings.Builder
	f.h.Log = slog.New(slog.NewJSONHandler(lockedWriter{mu: &sync.Mutex{}, w: &logs}, nil))
	ids := &msgIDs{}
	created := strconv.FormatInt(f.now.Unix(), 10)
	want := 0
	for _, tc := range []struct {
		name, message string
		envelopeJSON  bool
		items         int
	}{
		{"XML", sentXML, false, 1},
		{"JSONArrayStrings", sentJSONArray, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := f.sb.NewUser(appID)
			a, b := ids.next(), ids.next()
			f.sentDelivery(t, 1, user, a, f.now.Add(24*time.Hour))
			f.sentDelivery(t, 2, user, b, f.now.Add(24*time.Hour))
			// Plaintext is refused in safe mode: a captured URL could carry any body.
			if resp := f.do(t, f.push("POST", fmt.Sprintf(tc.message, user, a, b, created), nil)); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("plaintext push in safe mode: %d %s, want 401", resp.StatusCode, resp.Body)
			}
			if d := f.delivery(t, 1, user); d.Receipt != "" {
				t.Fatalf("plaintext push recorded a receipt: %+v", d)
			}
			resp := f.do(t, f.sealed(t, appID, fmt.Sprintf(tc.message, user, a, b, created), tc.envelopeJSON, nil))
			if resp.StatusCode != http.StatusOK || resp.Body != "success" {
				t.Fatalf("sealed push %d %s", resp.StatusCode, resp.Body)
			}
			if d := f.delivery(t, 1, user); d.Receipt != minipush.ReceiptDelivered {
				t.Fatalf("delivery %+v, want delivered", d)
			}
			want += tc.items
			if c := f.receiptCounts(t); c.Delivered != want {
				t.Fatalf("receipt counters %+v, want %d delivered", c, want)
			}
			if strings.Contains(logs.String(), user) || strings.Contains(logs.String(), a) {
				t.Fatalf("logs name the openid or msgid:\n%s", logs.String())
			}
		})
	}
}

// TestReceiptsOff: an app with receipts off (the default; minipush.App.Receipts) has its
// sent events acknowledged (200, so WeChat does not retry them) and nothing changes:
// not a delivery that send wrote without the index key, nor one indexed while the app
// still had receipts on, nor a counter.
func TestReceiptsOff(t *testing.T) {
	t.Parallel()
	f := newFixtureApp(t, nil, map[string]any{"receipts": false})
	created := strconv.FormatInt(f.now.Unix(), 10)
	ids := &msgIDs{}
	ctx := t.Context()
	runKey := minipush.RunKey(receiptCampaign, 1)
	plain, indexed := f.sb.NewUser(appID), f.sb.NewUser(appID)
	plainID, indexedID := ids.next(), ids.next()
	for _, d := range []struct {
		user, msgID, rcptUser string
	}{{plain, plainID, ""}, {indexed, indexedID, minipush.ReceiptUser(appID, indexed, "TPL-A")}} {
		if _, err := f.db.CreateDelivery(ctx, minipush.Delivery{
			RunKey: runKey, OpenID: d.user, State: minipush.DeliverySending, Owner: "sender-1",
			LeaseUntil: f.now.Add(time.Minute), GrantID: "g1", ExpiresAt: f.now.Add(24 * time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
		if err := f.db.FinishDelivery(ctx, runKey, d.user, "sender-1", time.Time{}, minipush.OutcomeSent, "", 0, d.msgID, d.rcptUser); err != nil {
			t.Fatal(err)
		}
	}
	before := f.deliveriesSnapshot(t)
	for _, body := range []string{
		fmt.Sprintf(sentJSONObject, plain, plainID, "", created),
		fmt.Sprintf(sentXML, indexed, indexedID, "", created),
		fmt.Sprintf(sentJSONFailed, indexed, indexedID, "", created),
	} {
		if resp := f.do(t, f.push("POST", body, nil)); resp.StatusCode != http.StatusOK || resp.Body != "success" {
			t.Fatalf("push %d %s, want 200 success", resp.StatusCode, resp.Body)
		}
	}
	if after := f.deliveriesSnapshot(t); after != before {
		t.Fatalf("deliveries changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if d := f.delivery(t, 1, plain); d.MsgID != plainID || d.Outcome != minipush.OutcomeSent {
		t.Fatalf("delivery %+v, want sent keeping msgid %s", d, plainID)
	}
}
