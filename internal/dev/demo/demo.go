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
	"net/http"
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
}

// Summary is what the demo saw at the end.
type Summary struct {
	Campaign string
	Seconds  float64
	Counters minipush.Counters
	Accepted int // messages the sandbox accepted
}

// Run seeds users with grants, sends them a campaign and waits until every recipient
// is in a final state.
func Run(ctx context.Context, c Config) (Summary, error) {
	if c.Parallel <= 0 {
		c.Parallel = 16
	}
	start := time.Now()
	fmt.Fprintf(c.Out, "seeding %d users: wx.login, session, a subscribe accept each\n", c.Users)
	openIDs, err := Seed(ctx, c)
	if err != nil {
		return Summary{}, err
	}
	id, err := StartCampaign(ctx, c, openIDs)
	if err != nil {
		return Summary{}, err
	}
	fmt.Fprintf(c.Out, "campaign %s scheduled now; ticking the planner\n", id)
	if err := Tick(ctx, c); err != nil {
		return Summary{}, err
	}
	sum, err := Wait(ctx, c, id, len(openIDs))
	if err != nil {
		return sum, err
	}
	var accepted []json.RawMessage
	if err := get(ctx, c.Sandbox+"/_sandbox/accepted", "", &accepted); err == nil {
		sum.Accepted = len(accepted)
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
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
			line := fmt.Sprintf("run %s: %d/%d final (sent %d, no grant %d, failed %d, skipped %d, unknown %d)",
				p.Current.Status, cs.Final(), total, cs.Sent, cs.NoGrant, cs.Final()-cs.Sent-cs.NoGrant-cs.Skipped-cs.Unknown, cs.Skipped, cs.Unknown)
			if c.Terminal {
				fmt.Fprintf(c.Out, "\r%s %s", bar(cs.Final(), total), line)
			} else if line != last {
				fmt.Fprintln(c.Out, line)
			}
			last = line
			if p.Current.Status == "done" {
				if c.Terminal {
					fmt.Fprintln(c.Out)
				}
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

func bar(n, total int) string {
	const width = 30
	filled := 0
	if total > 0 {
		filled = n * width / total
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
