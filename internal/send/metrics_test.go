package send_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
	"minipush/internal/metrics"
)

// TestMetrics sends one batch through the real handler (DynamoDB Local, the WeChat
// sandbox) to users who get the message, users without a grant and users WeChat
// refuses (43101), and checks the invocation's EMF lines: valid, one flush, and
// counts equal to the delivery items the batch left, by outcome and reason, plus one
// WeChat latency value per send call.
func TestMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 8)
	noGrant := []string{f.sb.NewUser(appID), f.sb.NewUser(appID), f.sb.NewUser(appID)}
	// Grants in storage that WeChat does not hold: it answers 43101.
	refused := []string{f.sb.NewUser(appID), f.sb.NewUser(appID)}
	now := time.Now()
	f.putGrants(t, []minipush.Grant{subGrant(refused[0], subTpl, now.Add(240*time.Hour)), subGrant(refused[1], subTpl, now.Add(240*time.Hour))})
	all := append(append(append([]string{}, ids...), noGrant...), refused...)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(all))

	var out bytes.Buffer
	h := f.handler(4)
	h.Metrics = metrics.New(&out, "send", nil)
	handle(t, h, events10(t, batches("c", all, 100))[0])

	want := map[string]float64{}
	for _, d := range f.outcomes(t, "c") {
		switch d.Outcome {
		case minipush.OutcomeSent:
			want["Sent"]++
		case minipush.OutcomeNoGrant:
			want["NoGrant"]++
		case minipush.OutcomeFailed:
			want["Failed/"+d.Reason]++
		default:
			t.Fatalf("%s ended %s/%s: the test expects sent, no_grant and failed only", d.OpenID, d.Outcome, d.Reason)
		}
	}
	if want["Sent"] != 8 || want["NoGrant"] != 3 || want["Failed/user_refused"] != 2 {
		t.Fatalf("outcomes %v: the batch did not go as the test expects", want)
	}

	got := map[string]float64{}
	calls := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		pts, err := metrics.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("invalid EMF line %s: %v", sc.Bytes(), err)
		}
		for _, p := range pts {
			if p.Dims["Function"] != "send" {
				t.Errorf("%s without Function send: %v", p.Name, p.Dims)
			}
			switch p.Name {
			case metrics.WeChatLatency:
				if p.Dims["API"] == strings.TrimPrefix(sandbox.PathSubscribeSend, "/") {
					calls += len(p.Values)
				}
			case metrics.Failed:
				got["Failed/"+p.Dims["Reason"]] += p.Values[0]
			case metrics.Sent, metrics.NoGrant:
				if p.Dims["AppId"] != appID {
					t.Errorf("%s for app %q, want %s", p.Name, p.Dims["AppId"], appID)
				}
				got[p.Name] += p.Values[0]
			default:
				got[p.Name] += p.Values[0]
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metric %s = %v, want %v (the delivery items)", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected metric %s = %v", k, v)
		}
	}
	if calls != 10 {
		t.Errorf("%d subscribe-send latencies, want 10 (8 sent + 2 refused)", calls)
	}
}
