package browser_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"minipush/internal/admin"
	"minipush/internal/dev/apispec"
	"minipush/internal/dev/demo"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/lambdaenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// chromiumPath finds Debian's chromium. Missing, the test fails (never skips): make test
// installs it through infra/install.sh first, so a missing browser is a broken setup.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found (/usr/bin/chromium): run infra/install.sh, which installs Debian's chromium when it is missing (make test does)")
	return ""
}

// recorder is a proxy in front of the API that checks every answer against openapi.json.
type recorder struct {
	doc  *apispec.Doc
	mu   sync.Mutex
	errs []string
}

func (rec *recorder) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(resp *http.Response) error {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		if err := rec.doc.Observe(resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), b); err != nil {
			rec.mu.Lock()
			rec.errs = append(rec.errs, err.Error())
			rec.mu.Unlock()
		}
		return nil
	}
	return p
}

// into runs a by value action and keeps its value in dst, as one step of a sequence.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, tg)
		*dst = v
		return chromedp.Void{}, err
	}
}

func TestConsole(t *testing.T) {
	exe := chromiumPath(t)
	began := time.Now()
	app := localrun.DemoApp()
	sb := sandbox.New(sandbox.Options{Seed: 16})
	if err := sb.Apply(app.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	wx := httptest.NewServer(sb)
	t.Cleanup(wx.Close)
	ep := testenv.Endpoints(t)
	r, err := localrun.Start(t.Context(), localrun.Options{
		Root: testenv.Root(), Stack: &ep, Addr: "127.0.0.1:0",
		Prefix:   fmt.Sprintf("web%d-", time.Now().UnixNano()%1e9),
		Builders: lambdaenv.Builders(),
		Params:   map[string]string{"WeChatBaseURL": wx.URL},
		Secrets:  map[string]string{"WeChatSecret": app.SecretJSON()},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
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
	token := r.Secrets["OperatorTokenSecret"]

	// Users who logged in and accepted the template once; three more never did (no_grant),
	// and WeChat refuses the first three sends (43101: failed, user_refused).
	cfg := demo.Config{API: r.URL, Sandbox: wx.URL, AppID: app.AppID, OperatorToken: token,
		Template: localrun.DemoSubscribeTemplate, Users: 12, Parallel: 4, Out: io.Discard}
	openIDs, err := demo.Seed(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	openIDs = append(openIDs, "oNeverGranted000000000000001", "oNeverGranted000000000000002", "oNeverGranted000000000000003")
	if err := sb.AddFault(sandbox.Fault{Path: sandbox.PathSubscribeSend, ErrCode: 43101, Times: 3}); err != nil {
		t.Fatal(err)
	}
	csv := filepath.Join(t.TempDir(), "audience.csv")
	if err := os.WriteFile(csv, []byte("openid\n"+strings.Join(openIDs, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	doc, err := apispec.Parse(admin.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{doc: doc}
	proxy := httptest.NewServer(rec.handler(r.URL))
	t.Cleanup(proxy.Close)

	actx, cancel := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1000))...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first run starts the browser; it must not carry the timeout (chromedp.Run).
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	// Screenshots go to .local/screenshots (ignored by git), so make test leaves the tree
	// clean; UPDATE_SCREENSHOTS=1 writes the README's, docs/screenshots/.
	shots := filepath.Join(testenv.Root(), ".local", "screenshots")
	if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		shots = filepath.Join(testenv.Root(), "docs", "screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			b, err := chromedp.FullScreenshot(100)(ctx, tg) // 100: PNG
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644)
		}
	}
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			loc, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
			text, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Text("body"))
			t.Fatalf("%s: %v\nat %s, page says:\n%s", name, err, loc, text)
		}
		t.Logf("%-28s %s", name, time.Since(began).Round(time.Millisecond))
	}
	// fill sets the form's data fields: the registry's fields when the app has a template
	// registry (keys read-only), free key/value rows otherwise.
	const fill = `(() => {
	  const set = (el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); };
	  const want = { thing1: 'Daily check-in', time2: '2026-12-01 10:00' };
	  let rows = [...document.querySelectorAll('#fields .kv')];
	  if (!rows.length || !rows[0].querySelector('.field-key').readOnly) {
	    while (rows.length < 2) { document.getElementById('add-field').click(); rows = [...document.querySelectorAll('#fields .kv')]; }
	    Object.keys(want).forEach((k, i) => set(rows[i].querySelector('.field-key'), k));
	  }
	  for (const r of rows) { const k = r.querySelector('.field-key').value; if (want[k]) set(r.querySelector('.field-value'), want[k]); }
	  return rows.length;
	})()`
	var n int
	var hash string
	var dispatched bool
	step("log in",
		chromedp.Navigate(proxy.URL+"/console"),
		chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", token),
		chromedp.Click("#login"),
		chromedp.WaitVisible("#campaigns"))
	step("create a campaign",
		chromedp.Click(`nav a[href="#/new"]`),
		chromedp.WaitVisible("#campaign-form"),
		chromedp.SendKeys("#name", "Check-in reminder"),
		chromedp.SendKeys("#template", localrun.DemoSubscribeTemplate),
		into(&dispatched, chromedp.Evaluate[bool](`document.getElementById('template').dispatchEvent(new Event('change', {bubbles: true}))`)),
		into(&n, chromedp.Evaluate[int](fill)),
		chromedp.WaitVisible(`#validation.ok`),
		chromedp.WaitVisible(`#preview .msgcard dd`),
		shot("console-new-campaign"),
		chromedp.Click("#save"),
		chromedp.WaitVisible("#upload-card"),
		into(&hash, chromedp.Evaluate[string](`location.hash`)))
	id := strings.TrimPrefix(hash, "#/campaign/")
	var uploaded, next string
	step("upload the audience CSV",
		chromedp.SetUploadFiles("#csv", []string{csv}),
		chromedp.Click("#upload"),
		chromedp.WaitVisible("#upload-status.ok"),
		into(&uploaded, chromedp.Text("#upload-status")))
	if want := fmt.Sprintf("Uploaded %d openids", len(openIDs)); !strings.Contains(uploaded, want) {
		t.Fatalf("upload says %q, want %q", uploaded, want)
	}
	step("preview a cron's next runs",
		chromedp.SetValue("#schedule-kind", "cron"),
		into(&dispatched, chromedp.Evaluate[bool](`document.getElementById('schedule-kind').dispatchEvent(new Event('change', {bubbles: true}))`)),
		chromedp.WaitVisible("#next-runs li:nth-child(5)"),
		into(&next, chromedp.Text("#next-runs")),
		shot("console-schedule"))
	if strings.Count(next, "\n") < 4 {
		t.Fatalf("next runs %q, want five", next)
	}
	step("schedule it now",
		chromedp.SetValue("#schedule-kind", "now"),
		chromedp.Click("#schedule"),
		chromedp.WaitVisible(`h1 .badge[data-status="scheduled"]`))
	// The planner runs every minute in AWS; the local runner's tick runs it now.
	if err := r.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	var failures, deliveries string
	var cardsLeft int
	step("watch it reach done",
		chromedp.WaitVisible(`h1 .badge[data-status="done"]`),
		// A campaign that ran can be neither scheduled nor given an audience again: the
		// page drops those cards when the status moves, without a reload.
		into(&cardsLeft, chromedp.Evaluate[int](`document.querySelectorAll('#schedule-card, #upload-card').length`)),
		chromedp.WaitVisible(`#failures tr[data-reason="user_refused"]`),
		into(&failures, chromedp.Text("#failures")),
		chromedp.WaitVisible(`#deliveries tr[data-reason="user_refused"]:nth-of-type(3)`),
		into(&deliveries, chromedp.Text("#deliveries")),
		shot("console-progress"))
	if cardsLeft != 0 {
		t.Errorf("the done campaign's page still shows %d of the schedule and upload cards", cardsLeft)
	}
	if !strings.Contains(failures, "43101") || !strings.Contains(failures, "refused") {
		t.Errorf("failures table %q: want user_refused with errcode 43101 and its meaning", failures)
	}
	if strings.Count(deliveries, "user_refused") != 3 {
		t.Errorf("failed deliveries %q: want the three refused sends", deliveries)
	}
	var counters string
	step("read the counters", into(&counters, chromedp.Text("#counters")))
	for _, want := range []string{"15\nplanned", "9\nsent", "3\nfailed", "3\nno grant"} {
		if !strings.Contains(counters, want) {
			t.Errorf("counters %q lack %q", counters, want)
		}
	}
	var chart chromedp.AttributeResult
	step("open the grant inventory",
		chromedp.Click(`nav a[href="#/grants"]`),
		chromedp.WaitVisible("#chart-expired"),
		chromedp.WaitVisible("#chart-expiring"),
		into(&chart, chromedp.AttributeValue("#chart-expired", "aria-label")),
		shot("console-grants"))
	if strings.Count(chart.Value, ":") != 30 {
		t.Errorf("expired chart covers %d days, want 30", strings.Count(chart.Value, ":"))
	}
	step("campaign list", chromedp.Click(`nav a[href="#/campaigns"]`),
		chromedp.WaitVisible(`#campaigns tr[data-id="`+id+`"]`), shot("console-campaigns"))

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.errs {
		t.Errorf("answer not as documented: %s", e)
	}
	// That every documented status is produced is the bad-input suite's check
	// (internal/dev/badinput, its OpenAPI step): it covers every route; this test only
	// follows the console's own path.
	t.Logf("%d documented statuses the browser did not produce", len(doc.Unseen()))
}
