package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"minipush/internal/collect"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/sandbox"
)

// user is one seeded mini-program user and what WeChat (the sandbox) issued them.
type user struct {
	openID string
	grants int  // subscribe accepts of the campaign's template, at WeChat and uploaded to us
	optOut bool // opted out through the operator API: the campaign must skip them
}

// mix decides user i's shape: about 5% logged in but never accepted (no_grant), 10%
// accepted twice (a second grant, so a second send would be accepted by WeChat and
// show as a duplicate instead of hiding behind 43101), 3% of the single-grant users
// opted out (skipped), the rest accepted once.
func mix(i int) (grants int, optOut bool) {
	switch k := i % 100; {
	case k < 5:
		return 0, false
	case k < 15:
		return 2, false
	case k < 18:
		return 1, true
	}
	return 1, false
}

// seed makes n users through the public surfaces, parallel workers at once, on the
// runners in turn. The sandbox stands in for the user's phone (wx.login, the accept).
// A quarter of the users with grants log in and upload them as the mini-program does
// (POST /v1/session, POST /v1/grants); the rest reach us as WeChat's signed message
// push (POST /v1/wechat/events), one subscribe_msg_popup_event per accept, which is
// half the work per user and lets 20,000 users be seeded in minutes. Users without a
// grant only log in.
func seed(ctx context.Context, client *http.Client, sb *sandbox.Sandbox, rs []*runner, app localrun.App, template string, n, workers int) ([]user, error) {
	users := make([]user, n)
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range workers {
		wg.Go(func() {
			for i := range next {
				u, err := seedOne(ctx, client, sb, rs[(i+w)%len(rs)], app, template, i)
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					continue
				}
				users[i] = u
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return users, ctx.Err()
}

func seedOne(ctx context.Context, client *http.Client, sb *sandbox.Sandbox, r *runner, app localrun.App, template string, i int) (user, error) {
	grants, optOut := mix(i)
	u := user{grants: grants, optOut: optOut}
	if grants > 0 && i%4 != 0 {
		u.openID = sb.NewUser(app.AppID)
		for k := range grants {
			// The user taps "accept": WeChat records it and pushes the event to us.
			sb.AddSubscribeGrant(app.AppID, u.openID, template)
			created := time.Now().Unix() + int64(k)
			// WeChat retries a push answered 5xx; its grant id makes the retry a duplicate.
			if err := retry(ctx, func() error { return push(ctx, client, r, app, u.openID, template, created) }); err != nil {
				return user{}, fmt.Errorf("seed user %d: push: %w", i, err)
			}
		}
		return u, nil
	}
	openID := sb.NewUser(app.AppID)
	u.openID = openID
	var sess struct{ Token string }
	// A failed login is retried with a new wx.login code, as the client must.
	if err := retry(ctx, func() error {
		return call(ctx, client, http.MethodPost, r.api+"/v1/session", "", map[string]string{"code": sb.LoginCode(app.AppID, openID), "appId": app.AppID}, &sess)
	}); err != nil {
		return user{}, fmt.Errorf("seed user %d: session: %w", i, err)
	}
	if grants == 0 {
		return u, nil
	}
	items := make([]map[string]any, grants)
	for k := range grants {
		// The user taps "accept": WeChat records it, the client uploads it with its key.
		sb.AddSubscribeGrant(app.AppID, openID, template)
		items[k] = map[string]any{"type": "subscribe", "key": fmt.Sprintf("chaos-%d-%d", i, k), "results": map[string]string{template: "accept"}}
	}
	var res struct{ Accepted, Duplicate int }
	// Re-sent with the same keys after a failure, as the client queue does: what the
	// failed attempt stored answers duplicate.
	if err := retry(ctx, func() error {
		return call(ctx, client, http.MethodPost, r.api+"/v1/grants", sess.Token, map[string]any{"grants": items}, &res)
	}); err != nil {
		return user{}, fmt.Errorf("seed user %d: grants: %w", i, err)
	}
	if res.Accepted+res.Duplicate != grants {
		return user{}, fmt.Errorf("seed user %d: %d of %d grants stored", i, res.Accepted+res.Duplicate, grants)
	}
	return u, nil
}

// push sends WeChat's signed subscribe_msg_popup_event for one accept (JSON mode).
func push(ctx context.Context, client *http.Client, r *runner, app localrun.App, openID, template string, created int64) error {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(created, 36) + openID[len(openID)-6:]
	q := url.Values{"appId": {app.AppID}, "timestamp": {ts}, "nonce": {nonce}, "signature": {collect.Signature(app.EventToken, ts, nonce)}}
	body := map[string]any{
		"ToUserName": "gh_chaos", "FromUserName": openID, "CreateTime": created, "MsgType": "event",
		"Event": "subscribe_msg_popup_event",
		"List":  map[string]string{"TemplateId": template, "SubscribeStatusString": "accept", "PopupScene": "0"},
	}
	return call(ctx, client, http.MethodPost, r.api+"/v1/wechat/events?"+q.Encode(), "", body, nil)
}

// retry calls f until it succeeds, up to 6 times with growing pauses, while it fails
// with a 5xx or a transport error: the local stack on a busy machine sometimes takes
// longer than the collect function's 10 s timeout, and every caller of the collect
// API (the mini-program, WeChat's push) retries such failures.
func retry(ctx context.Context, f func() error) error {
	pause := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		var se *statusError
		if err == nil || attempt == 6 || errors.As(err, &se) && se.code < 500 || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause *= 2
	}
}
