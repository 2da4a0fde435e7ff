// Package demo drives a running minipush through its public surfaces only — the
// WeChat sandbox's control API (standing in for users tapping in the mini-program), the
// collect API, the operator API and the runner's tick — so a newcomer sees the whole job
// work: users log in and grant, a campaign is created and planned, every recipient ends
// in a final state.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"minipush"
)

// Config says what to drive.
type Config struct {
	API           string // the HTTP API (and /_local/tick)
	Sandbox       string // the WeChat sandbox
	AppID         string
	OperatorToken string
	Template      string // a subscribe template registered in the sandbox
	Users         int
	Parallel      int
	Out           io.Writer
	Terminal      bool // draw a progress bar instead of plain lines
	// Receipts, when set, waits after the run is done for the sent messages'
	// receipts (subscribe_msg_sent_event pushes the sandbox makes) to arrive, up to
	// this long.
	Receipts time.Duration

	seeded *meter // Run's seeding progress, counted by Seed's workers
}

// Summary is what the demo saw at the end.
type Summary struct {
	Campaign string
	Seconds  float64
	Counters minipush.Counters
	Accepted int // messages the sandbox accepted
	// SendSeconds is the time from the campaign's schedule to its run being done.
	SendSeconds float64
}

// Run seeds users with grants, sends them a campaign and waits until every recipient
// is in a final state. What it writes to c.Out is for a person: a progress bar per
// phase (redrawn in place on a terminal, a line a second otherwise) and the summary.
func Run(ctx context.Context, c Config) (Summary, error) {
	if c.Parallel <= 0 {
		c.Parallel = 16
	}
	start := time.Now()
	fmt.Fprintf(c.Out, "seeding %d users: each logs in (wx.login, POST /v1/session) and accepts %s once (POST /v1/grants)\n", c.Users, c.Template)
	c.seeded = newMeter(c.Out, c.Terminal, "seeding", "users", c.Users)
	openIDs, err := Seed(ctx, c)
	c.seeded.finish()
	if err != nil {
		return Summary{}, err
	}
	id, err := StartCampaign(ctx, c, openIDs)
	if err != nil {
		return Summary{}, err
	}
	fmt.Fprintf(c.Out, "campaign %s: %d recipients uploaded, scheduled now; the planner ticks\n", id, len(openIDs))
	if err := Tick(ctx, c); err != nil {
		return Summary{}, err
	}
	sendStart := time.Now()
	sum, err := Wait(ctx, c, id, len(openIDs))
	if err != nil {
		return sum, err
	}
	sum.SendSeconds = time.Since(sendStart).Seconds()
	if c.Receipts > 0 {
		if sum.Counters, err = WaitReceipts(ctx, c, id, sum.Counters); err != nil {
			return sum, err
		}
	}
	var accepted []json.RawMessage
	if err := get(ctx, c.Sandbox+"/_sandbox/accepted", "", &accepted); err == nil {
		sum.Accepted = len(accepted)
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// Print writes the summary as a short table.
func (s Summary) Print(w io.Writer) {
	c := s.Counters
	failed := 0
	for _, n := range c.Failed {
		failed += n
	}
	fmt.Fprintf(w, "\ndone in %.1fs, campaign %s\n", s.Seconds, s.Campaign)
	row := func(name string, n int, note string) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-9s %7d  %s", name, n, note), " "))
	}
	row("planned", c.Planned, "")
	row("sent", c.Sent, fmt.Sprintf("the WeChat sandbox accepted %d", s.Accepted))
	row("no grant", c.NoGrant, "")
	row("failed", failed, reasons(c.Failed))
	row("skipped", c.Skipped, "")
	row("unknown", c.Unknown, "")
	if c.Delivered+c.AsyncFailed > 0 {
		row("delivered", c.Delivered, "receipts: WeChat reported no failure (subscribe_msg_sent_event)")
		row("async err", c.AsyncFailed, "receipts: WeChat reported an asynchronous failure (ErrorCode != 0)")
	}
	if s.SendSeconds > 0 {
		fmt.Fprintf(w, "  %-9s %7.0f  messages/s from schedule to done (%.1fs)\n", "rate", float64(c.Final())/s.SendSeconds, s.SendSeconds)
	}
}

func reasons(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// StartCampaign creates a subscribe campaign of the demo template for openIDs through the
// operator API and schedules it now.
func StartCampaign(ctx context.Context, c Config, openIDs []string) (string, error) {
	var camp struct{ ID string }
	err := c.operator(ctx, "POST", "/v1/admin/campaigns", map[string]any{
		"appId": c.AppID, "name": "daily check-in reminder",
		"message": map[string]any{"kind": "subscribe", "templateId": c.Template, "page": "pages/index/index?from=demo",
			"data": map[string]any{"thing1": map[string]string{"value": "今日签到提醒"}, "time2": map[string]string{"value": "2026-11-25 10:00"}}},
		"audience": map[string]any{"kind": "list"},
	}, &camp)
	if err != nil {
		return "", fmt.Errorf("demo: create campaign: %w", err)
	}
	for i := 0; i < len(openIDs); i += 5000 {
		page := openIDs[i:min(i+5000, len(openIDs))]
		if err := c.operator(ctx, "POST", "/v1/admin/campaigns/"+camp.ID+"/audience", map[string]any{"openIds": page}, nil); err != nil {
			return "", fmt.Errorf("demo: audience: %w", err)
		}
	}
	if err := c.operator(ctx, "POST", "/v1/admin/campaigns/"+camp.ID+"/schedule", map[string]any{"now": true}, nil); err != nil {
		return "", fmt.Errorf("demo: schedule: %w", err)
	}
	return camp.ID, nil
}

// Tick asks the runner to run its schedules now.
func Tick(ctx context.Context, c Config) error {
	if err := post(ctx, c.API+"/_local/tick", "", nil, nil); err != nil {
		return fmt.Errorf("demo: tick: %w", err)
	}
	return nil
}

// Wait reports progress until the campaign's current run is done.
func Wait(ctx context.Context, c Config, id string, total int) (Summary, error) {
	m := newMeter(c.Out, c.Terminal, "sending", "recipients", total)
	defer m.finish()
	var last string
	for {
		var p struct {
			Status  string
			Current *struct {
				Status   string
				Counters minipush.Counters
			}
		}
		if err := c.operatorGet(ctx, "/v1/admin/campaigns/"+id+"/progress", &p); err != nil {
			return Summary{}, err
		}
		if p.Current != nil {
			cs := p.Current.Counters
			failed := cs.Final() - cs.Sent - cs.NoGrant - cs.Skipped - cs.Unknown
			last = fmt.Sprintf("run %s: sent %d, delivered %d, no grant %d, failed %d, skipped %d, unknown %d",
				p.Current.Status, cs.Sent, cs.Delivered, cs.NoGrant, failed, cs.Skipped, cs.Unknown)
			m.set(cs.Final(), last)
			if p.Current.Status == "done" {
				return Summary{Campaign: id, Counters: cs}, nil
			}
		}
		select {
		case <-ctx.Done():
			return Summary{}, fmt.Errorf("demo: waiting for campaign %s: %w (last: %s)", id, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// meter draws one phase's progress: a bar, the count, the rate since the phase began
// and the time left at that rate. On a terminal it redraws one line in place; elsewhere
// (a pipe, a CI log) it writes a line at most once a second, and only on change.
type meter struct {
	out           io.Writer
	terminal      bool
	phase, unit   string
	total         int
	start         time.Time
	mu            sync.Mutex
	n             int
	note          string
	drawn, logged time.Time
	lastLine      string
	now           func() time.Time
}

func newMeter(out io.Writer, terminal bool, phase, unit string, total int) *meter {
	if out == nil {
		out = io.Discard
	}
	return &meter{out: out, terminal: terminal, phase: phase, unit: unit, total: total, start: time.Now(), now: time.Now}
}

// add counts n more done (Seed's workers call it concurrently).
func (m *meter) add(n int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n += n
	m.drawLocked(false)
}

// set says how many are done now, with a note shown after the rate.
func (m *meter) set(n int, note string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n, m.note = n, note
	m.drawLocked(false)
}

// finish draws the final state and ends the line.
func (m *meter) finish() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drawLocked(true)
	if m.terminal {
		fmt.Fprintln(m.out)
	}
}

func (m *meter) drawLocked(final bool) {
	now := m.now()
	if m.terminal {
		// A redraw every 100 ms is smooth enough and keeps 16 seeding workers from
		// flooding the terminal.
		if !final && now.Sub(m.drawn) < 100*time.Millisecond {
			return
		}
		m.drawn = now
		fmt.Fprintf(m.out, "\r\033[K%s", m.line(now))
		return
	}
	if !final && now.Sub(m.logged) < time.Second {
		return
	}
	line := m.line(now)
	if line == m.lastLine {
		return
	}
	m.logged, m.lastLine = now, line
	fmt.Fprintln(m.out, line)
}

// line is the progress line, e.g.
// "sending  [#########.....] 1200/2000 recipients  812/s  ETA 1s  run sending: sent 1200, …".
func (m *meter) line(now time.Time) string {
	elapsed := now.Sub(m.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(m.n) / elapsed
	}
	eta := "ETA -"
	switch {
	case m.n >= m.total:
		eta = fmt.Sprintf("in %.1fs", elapsed)
	case rate > 0:
		eta = "ETA " + (time.Duration(float64(m.total-m.n) / rate * float64(time.Second))).Round(time.Second).String()
	}
	s := fmt.Sprintf("%-8s %s %d/%d %s  %.0f/s  %s", m.phase, bar(m.n, m.total), m.n, m.total, m.unit, rate, eta)
	if m.note != "" {
		s += "  " + m.note
	}
	return s
}

func bar(n, total int) string {
	const width = 30
	filled := width
	if total > 0 && n < total {
		filled = max(0, n) * width / total
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

// Seed makes c.Users users who logged in and accepted the demo template once, and
// returns their openids.
func Seed(ctx context.Context, c Config) ([]string, error) {
	if c.Parallel <= 0 {
		c.Parallel = 16
	}
	ids := make([]string, c.Users)
	errs := make(chan error, c.Parallel)
	var wg sync.WaitGroup
	next := make(chan int)
	for range c.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id, err := seedOne(ctx, c, i)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				ids[i] = id
				c.seeded.add(1)
			}
		}()
	}
	for i := range c.Users {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			return nil, err
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return ids, nil
}

func seedOne(ctx context.Context, c Config, i int) (string, error) {
	var login struct{ OpenID, Code string }
	if err := post(ctx, c.Sandbox+"/_sandbox/codes", "", map[string]string{"appid": c.AppID}, &login); err != nil {
		return "", fmt.Errorf("demo: sandbox login: %w", err)
	}
	var sess struct{ Token string }
	if err := post(ctx, c.API+"/v1/session", "", map[string]string{"code": login.Code, "appId": c.AppID}, &sess); err != nil {
		return "", fmt.Errorf("demo: session: %w", err)
	}
	// The user taps "accept": WeChat records the grant on its side, the client uploads it.
	if err := post(ctx, c.Sandbox+"/_sandbox/grants/subscribe", "", map[string]any{"appid": c.AppID, "openid": login.OpenID, "template_id": c.Template}, nil); err != nil {
		return "", fmt.Errorf("demo: sandbox grant: %w", err)
	}
	body := map[string]any{"grants": []map[string]any{{"type": "subscribe", "key": fmt.Sprintf("demo-%d", i), "results": map[string]string{c.Template: "accept"}}}}
	if err := post(ctx, c.API+"/v1/grants", sess.Token, body, nil); err != nil {
		return "", fmt.Errorf("demo: upload grant: %w", err)
	}
	return login.OpenID, nil
}

func (c Config) operator(ctx context.Context, method, path string, in, out any) error {
	return do(ctx, method, c.API+path, c.OperatorToken, in, out)
}

func (c Config) operatorGet(ctx context.Context, path string, out any) error {
	return do(ctx, "GET", c.API+path, c.OperatorToken, nil, out)
}

func post(ctx context.Context, url, token string, in, out any) error {
	return do(ctx, "POST", url, token, in, out)
}

func get(ctx context.Context, url, token string, out any) error {
	return do(ctx, "GET", url, token, nil, out)
}

func do(ctx context.Context, method, url, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, strings.SplitN(url, "?", 2)[0], resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// WaitReceipts reports the run's receipts (delivered, async failed) as they arrive after
// the run is done, until every sent message has one or c.Receipts passes, and returns
// the counters with them.
func WaitReceipts(ctx context.Context, c Config, id string, cs minipush.Counters) (minipush.Counters, error) {
	m := newMeter(c.Out, c.Terminal, "receipts", "of sent", cs.Sent)
	defer m.finish()
	deadline := time.Now().Add(c.Receipts)
	for {
		var p struct {
			Current *struct{ Counters minipush.Counters }
		}
		if err := c.operatorGet(ctx, "/v1/admin/campaigns/"+id+"/progress", &p); err != nil {
			return cs, err
		}
		if p.Current != nil {
			cs = p.Current.Counters
		}
		m.set(cs.Delivered+cs.AsyncFailed, fmt.Sprintf("sent %d, delivered %d, async failed %d", cs.Sent, cs.Delivered, cs.AsyncFailed))
		if cs.Delivered+cs.AsyncFailed >= cs.Sent || time.Now().After(deadline) {
			return cs, nil
		}
		select {
		case <-ctx.Done():
			return cs, fmt.Errorf("demo: waiting for receipts of %s: %w", id, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
