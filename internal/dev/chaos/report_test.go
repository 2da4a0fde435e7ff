package chaos

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// delivery is one recipient's record as the operator API shows it.
type delivery struct {
	OpenID  string           `json:"openId"`
	State   string           `json:"state"`
	Outcome minipush.Outcome `json:"outcome"`
	Reason  string           `json:"reason"`
	ErrCode int              `json:"errcode"`
}

// report is what one chaos run saw, from storage (through the operator API) and from
// the sandbox (what WeChat accepted).
type report struct {
	Users    int
	Campaign string
	Start    time.Time

	// Seeded.
	GrantUsers, TwoGrantUsers, ZeroGrantUsers, OptedOut int

	// Storage, read back through the operator API.
	CampaignStatus, RunStatus string
	Counters                  minipush.Counters // the run's counters
	Deliveries                map[string]delivery
	ListedTwice               int            // deliveries listed more than once
	States                    map[string]int // "sent", "failed/<reason>", ... and "not final/<state>"

	// The sandbox.
	Accepted, AnswerLost int
	FaultsFired          int
	Injected, Organic    map[int]int // errcode answers injected by faults / given by the sandbox itself
	TokensIssued         int
	SendRequests         int

	// What the run went through.
	TokenInvalidations, Kills, Starts, Ticks, SQSDuplicates int
	KilledAt                                                []int
	QueueLeft                                               queueLeft
	Incomplete                                              string // why waiting for the run stopped early

	// The verdict.
	Duplicates                                     int
	LostNotFinal, LostSentUnaccepted, LostMislabel int
	OverIssued                                     int // recipients WeChat accepted more often than it issued grants
	Problems                                       []string
	Examples                                       []string

	SeedTime, SendTime, Total time.Duration

	users    []user
	accepted map[string]int
	lost     map[string]bool // openid -> answer lost
}

// Lost is every way a recipient can be lost.
func (r *report) Lost() int { return r.LostNotFinal + r.LostSentUnaccepted + r.LostMislabel }

// readBack reads the run's progress and every delivery through the operator API.
func readBack(ctx context.Context, t *testing.T, f *fleet, client *http.Client, campaign string, _ progressOut, rep *report) {
	t.Helper()
	ctx = context.WithoutCancel(ctx)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	p, err := progress(rctx, f, client, campaign)
	if err != nil {
		t.Fatalf("read progress: %v", err)
	}
	rep.CampaignStatus = p.Status
	if p.Current == nil {
		rep.Problems = append(rep.Problems, "the campaign has no run")
		return
	}
	rep.RunStatus, rep.Counters = p.Current.Status, p.Current.Counters
	rep.Deliveries = map[string]delivery{}
	cursor := ""
	for {
		path := fmt.Sprintf("/v1/admin/campaigns/%s/runs/%d/deliveries?limit=100", campaign, p.Current.N)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Deliveries []delivery
			Cursor     string
		}
		if err := f.api(rctx, client, http.MethodGet, path, "", nil, &page); err != nil {
			t.Fatalf("read deliveries: %v", err)
		}
		for _, d := range page.Deliveries {
			if _, ok := rep.Deliveries[d.OpenID]; ok {
				rep.ListedTwice++
			}
			rep.Deliveries[d.OpenID] = d
		}
		if page.Cursor == "" {
			return
		}
		cursor = page.Cursor
	}
}

// fromSandbox takes what WeChat saw.
func (r *report) fromSandbox(st sandbox.Stats, accepted []sandbox.Message, users []user) {
	r.users = users
	r.accepted = map[string]int{}
	r.lost = map[string]bool{}
	for _, m := range accepted {
		if m.API != sandbox.PathSubscribeSend || m.TemplateID == "" {
			continue
		}
		r.Accepted++
		r.accepted[m.ToUser]++
		if m.AnswerLost {
			r.AnswerLost++
			r.lost[m.ToUser] = true
		}
	}
	r.FaultsFired = st.Faults
	r.Injected = st.Injected
	r.Organic = map[int]int{}
	for code, n := range st.Errcodes {
		if k := n - st.Injected[code]; k != 0 {
			r.Organic[code] = k
		}
	}
	for _, n := range st.TokensIssued {
		r.TokensIssued += n
	}
	r.SendRequests = st.Requests[sandbox.PathSubscribeSend]
}

func (r *report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *report) example(format string, args ...any) {
	if len(r.Examples) < 20 {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// check computes the verdict: duplicates, the three kinds of lost, and whether the
// outcomes match the faults injected.
func (r *report) check() {
	r.States = map[string]int{}
	for _, d := range r.Deliveries {
		r.States[stateKey(d)]++
	}
	unknownLost := r.States["unknown/sender_lost"]
	for _, u := range r.users {
		switch {
		case u.optOut:
			r.OptedOut++
		case u.grants == 0:
			r.ZeroGrantUsers++
		}
		if u.grants > 0 {
			r.GrantUsers++
		}
		if u.grants == 2 {
			r.TwoGrantUsers++
		}
		n := r.accepted[u.openID]
		if n > 1 {
			r.Duplicates++
			r.example("%s: WeChat accepted %d messages", u.openID, n)
		}
		if n > u.grants {
			r.OverIssued++
			r.example("%s: WeChat accepted %d messages on %d grants", u.openID, n, u.grants)
		}
		d, ok := r.Deliveries[u.openID]
		switch {
		case !ok || d.State != "final":
			r.LostNotFinal++
			r.example("%s: no final delivery (%+v)", u.openID, d)
		case d.Outcome == minipush.OutcomeSent && n == 0:
			r.LostSentUnaccepted++
			r.example("%s: recorded sent, never accepted by WeChat", u.openID)
		case n > 0 && d.Outcome != minipush.OutcomeSent && d.Outcome != minipush.OutcomeUnknown:
			r.LostMislabel++
			r.example("%s: accepted by WeChat, recorded %s/%s", u.openID, d.Outcome, d.Reason)
		}
		if r.lost[u.openID] && ok && d.Outcome != minipush.OutcomeUnknown {
			r.problem("%s: WeChat's answer was lost, yet the recipient is recorded %s (only unknown is honest)", u.openID, d.Outcome)
		}
	}
	if r.Duplicates > 0 {
		r.problem("%d recipients messaged more than once", r.Duplicates)
	}
	if r.Lost() > 0 {
		r.problem("%d recipients lost: %d not final, %d recorded sent but never accepted, %d accepted but recorded otherwise",
			r.Lost(), r.LostNotFinal, r.LostSentUnaccepted, r.LostMislabel)
	}
	if r.OverIssued > 0 {
		r.problem("%d recipients received more messages than WeChat issued them grants", r.OverIssued)
	}
	if extra := len(r.Deliveries) - r.Users; extra > 0 {
		r.problem("%d deliveries of recipients outside the audience", extra)
	}
	if r.ListedTwice > 0 {
		r.problem("%d deliveries listed twice by the operator API", r.ListedTwice)
	}
	if r.Counters.Planned != r.Users {
		r.problem("the run planned %d recipients for an audience of %d", r.Counters.Planned, r.Users)
	}
	if r.RunStatus != "done" || r.CampaignStatus != string(minipush.StatusDone) {
		r.problem("campaign %s, run %s at the end, want both done (%s)", r.CampaignStatus, r.RunStatus, r.Incomplete)
	}
	if got := r.tally(); !countersEqual(got, r.Counters) {
		r.problem("the run's counters %+v disagree with its deliveries %+v", r.Counters, got)
	}
	if r.QueueLeft.DLQ > 0 {
		r.problem("%d send messages in the dead-letter queue", r.QueueLeft.DLQ)
	}

	// No grant spent twice: WeChat refused no send of its own accord. An organic 43101
	// is a send on a grant already used; token codes are the invalidations' doing.
	for code, n := range r.Organic {
		if code != 40001 && code != 42001 && n > 0 {
			r.problem("the sandbox answered errcode %d %d times on its own (not injected)", code, n)
		}
	}
	// Outcomes match the faults: an injected per-recipient code ends its recipient
	// failed with that reason, unless the sender died first (then unknown/sender_lost).
	missing := 0
	for reason, code := range failCodes {
		got, injected := r.States["failed/"+reason], r.Injected[code]
		if got > injected {
			r.problem("%d recipients failed %s, only %d errcode %d injected", got, reason, injected, code)
		}
		missing += injected - got
	}
	if missing > unknownLost {
		r.problem("%d injected per-recipient errcodes left no failed recipient, more than the %d sender_lost", missing, unknownLost)
	}
	for k := range r.States {
		reason, failed := strings.CutPrefix(k, "failed/")
		if failed && failCodes[reason] == 0 && reason != "retries_exhausted" && reason != "grant_invalid" {
			r.problem("%d recipients failed %s, which no injected fault explains", r.States[k], reason)
		}
	}
	if got := r.States["skipped/opted_out"]; got != r.OptedOut {
		r.problem("%d recipients skipped as opted out, %d opted out", got, r.OptedOut)
	}
	// A user without a grant ends no_grant, or unknown/sender_lost when their sender was
	// killed between the claim (made while the grant lookup is in flight) and the final
	// write.
	zeroLost := 0
	for _, u := range r.users {
		if d := r.Deliveries[u.openID]; u.grants == 0 && !u.optOut && stateKey(d) == "unknown/sender_lost" {
			zeroLost++
		}
	}
	if got := r.States["no_grant"]; got < r.ZeroGrantUsers-zeroLost || got > r.ZeroGrantUsers+r.Injected[41028] {
		r.problem("%d recipients without a grant: %d seeded without one (%d of them claimed by a killed sender), %d grants rejected by an injected 41028",
			got, r.ZeroGrantUsers, zeroLost, r.Injected[41028])
	}
	if unknown := r.Counters.Unknown; unknown < r.AnswerLost {
		r.problem("%d unknown recipients, fewer than the %d messages whose answer was lost", unknown, r.AnswerLost)
	}
}

// tally counts the deliveries as run counters.
func (r *report) tally() minipush.Counters {
	c := minipush.Counters{Failed: map[string]int{}}
	for _, d := range r.Deliveries {
		if d.State != "final" {
			continue
		}
		c.Planned++
		c.Count(d.Outcome, d.Reason)
	}
	return c
}

func countersEqual(a, b minipush.Counters) bool {
	if a.Sent != b.Sent || a.NoGrant != b.NoGrant || a.Skipped != b.Skipped || a.Unknown != b.Unknown {
		return false
	}
	for k := range a.Failed {
		if a.Failed[k] != b.Failed[k] {
			return false
		}
	}
	for k := range b.Failed {
		if a.Failed[k] != b.Failed[k] {
			return false
		}
	}
	return true
}

func stateKey(d delivery) string {
	switch {
	case d.State != "final":
		return "not final/" + d.State
	case d.Reason != "":
		return string(d.Outcome) + "/" + d.Reason
	}
	return string(d.Outcome)
}

// markdown renders the report.
func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	verdict := "PASS"
	if len(r.Problems) > 0 {
		verdict = "FAIL"
	}
	w("# Chaos report")
	w("")
	w("`make chaos` (internal/dev/chaos, TestChaos), %s, %s: **%s** — %d duplicates, %d lost, over %d recipients.",
		r.Start.UTC().Format("2006-01-02 15:04 UTC"), r.Total.Round(time.Second), verdict, r.Duplicates, r.Lost(), r.Counters.Planned)
	w("")
	w("Two runner processes (`cmd/minipush-local`) on one set of tables and queues, each polling SQS and")
	w("running the planner, ticked twice at once every second; every received SQS message delivered a")
	w("second time with probability 0.2; runners SIGKILLed mid-send at %v accepted sends and started", r.KilledAt)
	w("again; the WeChat sandbox injecting latency, transient and per-recipient errcodes, lost answers")
	w("and hang-ups, a flaky token endpoint, and every access token invalidated every 2 s.")
	w("")
	w("| | |")
	w("|---|---|")
	w("| recipients planned | %d (audience %d: %d with a grant, %d of them with two; %d without; %d opted out) |",
		r.Counters.Planned, r.Users, r.GrantUsers, r.TwoGrantUsers, r.ZeroGrantUsers, r.OptedOut)
	for _, k := range slices.Sorted(maps.Keys(r.States)) {
		w("| final: %s | %d |", k, r.States[k])
	}
	w("| messages WeChat (the sandbox) accepted | %d (%d of them with the answer lost) |", r.Accepted, r.AnswerLost)
	w("| **duplicates** (recipients accepted more than once) | **%d** |", r.Duplicates)
	w("| **lost** | **%d** (not final %d; sent but never accepted %d; accepted but recorded other than sent/unknown %d) |",
		r.Lost(), r.LostNotFinal, r.LostSentUnaccepted, r.LostMislabel)
	w("| recipients accepted more often than granted | %d |", r.OverIssued)
	w("| errcodes the sandbox gave on its own | %s |", codes(r.Organic))
	w("| errcodes injected | %s |", codes(r.Injected))
	w("| faults fired (incl. latency, lost answers, hang-ups) | %d of %d send requests |", r.FaultsFired, r.SendRequests)
	w("| token invalidations / tokens issued | %d / %d |", r.TokenInvalidations, r.TokensIssued)
	w("| SQS messages duplicated | %d |", r.SQSDuplicates)
	w("| runner kills / starts | %d / %d |", r.Kills, r.Starts)
	w("| planner ticks sent | %d |", r.Ticks)
	w("| left in send queue / DLQ | %d / %d |", r.QueueLeft.Send, r.QueueLeft.DLQ)
	w("| campaign / run status | %s / %s |", r.CampaignStatus, r.RunStatus)
	w("| time: seed / send until done / total | %s / %s / %s |", r.SeedTime.Round(time.Second), r.SendTime.Round(time.Second), r.Total.Round(time.Second))
	if len(r.Problems) > 0 {
		w("")
		w("## Problems")
		w("")
		for _, p := range r.Problems {
			w("- %s", p)
		}
	}
	if len(r.Examples) > 0 {
		w("")
		w("## Examples")
		w("")
		for _, e := range r.Examples {
			w("- %s", e)
		}
	}
	return b.String()
}

func codes(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d×%d", c, m[c]))
	}
	return strings.Join(parts, ", ")
}
