package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/collect"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
)

// Collect load: each client owns its users and uploads for them in turn, so one user's
// uploads never overlap (as one phone's do not) and every upload is new grants.
const (
	collectFormItems    = 16 // formIds per upload ...
	collectSubscribes   = 4  // ... and subscribe accepts (one template each): 20 grants
	collectGrantsPerReq = collectFormItems + collectSubscribes
)

// TestBenchCollect measures grant uploads through the real HTTP path: the local runner's
// emulated API Gateway in front of the collect function built by its production wiring (lambdaenv),
// on the local stack. Users log in first (not timed); then concurrent clients upload
// 20 new grants per request. Afterwards the grants table must hold exactly the uploaded
// grants. Each user uploads `rounds` times, within the template's default
// MaxLiveGrantsPerUser (200) and CollectRatePerMinute (30), so no limit is raised.
func TestBenchCollect(t *testing.T) {
	// Smoke runs inside make test, next to every other package's tests on the same
	// stack: few clients, so the collect function's 10 s timeout is never at risk.
	clients, users, rounds := 4, 12, 4 // 48 requests
	if full() {
		clients, users, rounds = 16, 500, 6 // 3,000 requests, 120 grants per user
	}
	sys := startSystem(t)
	ctx := t.Context()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	openIDs := make([]string, users)
	tokens := make([]string, users)
	err := parallel(ctx, clients, users, func(ctx context.Context, i int) error {
		openID, code := sys.sandbox.NewLogin(sys.app.AppID)
		body, err := json.Marshal(map[string]string{"code": code, "appId": sys.app.AppID})
		if err != nil {
			return err
		}
		var sess struct{ Token string }
		if _, err := postJSON(ctx, client, sys.URL+"/v1/session", "", body, &sess); err != nil {
			return fmt.Errorf("session: %w", err)
		}
		openIDs[i], tokens[i] = openID, sess.Token
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Bodies and the grants they must store, built before the clock starts.
	type upload struct {
		user int
		body []byte
	}
	want := map[string]bool{} // user key + "/" + grant id
	uploads := make([][]upload, clients)
	collectedAt := time.Now().UTC().Format(time.RFC3339)
	for r := range rounds {
		for u := range users {
			items := make([]map[string]any, 0, collectGrantsPerReq)
			key := minipush.UserKey(sys.app.AppID, openIDs[u]) + "/"
			for j := range collectFormItems {
				formID := fmt.Sprintf("%08x%08x%016x", u, r, j) // 32 hex digits, as WeChat's
				items = append(items, map[string]any{"type": "form", "formId": formID, "collectedAt": collectedAt})
				want[key+minipush.GrantID(minipush.GrantForm, formID)] = true
			}
			for j := range collectSubscribes {
				k := fmt.Sprintf("bench-%d-%d-%d", u, r, j)
				items = append(items, map[string]any{"type": "subscribe", "key": k,
					"results": map[string]string{localrun.DemoSubscribeTemplate: "accept"}})
				want[key+minipush.GrantID(minipush.GrantSubscribe, localrun.DemoSubscribeTemplate, k)] = true
			}
			body, err := json.Marshal(map[string]any{"grants": items})
			if err != nil {
				t.Fatal(err)
			}
			c := u % clients
			uploads[c] = append(uploads[c], upload{user: u, body: body})
		}
	}

	latencies := make([][]time.Duration, clients)
	retried := make([]int, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for _, up := range uploads[c] {
				for attempt := 1; ; attempt++ {
					var ans collect.UploadAnswer
					t0 := time.Now()
					status, err := postJSON(ctx, client, sys.URL+"/v1/grants", tokens[up.user], up.body, &ans)
					latencies[c] = append(latencies[c], time.Since(t0))
					// A 5xx (the function's 10 s timeout on a starved machine, a throttle) is
					// retried as the mini-program retries it; what a timed-out attempt stored
					// comes back as duplicates.
					if status >= 500 && attempt < 3 {
						retried[c]++
						continue
					}
					if err == nil && (ans.Accepted+ans.Duplicate != collectGrantsPerReq || attempt == 1 && ans.Duplicate > 0) {
						err = fmt.Errorf("user %d: %d accepted, %d duplicate, %d rejected", up.user, ans.Accepted, ans.Duplicate, ans.Rejected)
					}
					if err != nil {
						errs <- fmt.Errorf("upload: %w", err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	retries := 0
	for _, n := range retried {
		retries += n
	}

	stored := storedGrants(t, sys)
	if len(stored) != len(want) {
		t.Fatalf("grants table holds %d grants, %d were uploaded", len(stored), len(want))
	}
	for k := range stored {
		if !want[k] {
			t.Fatalf("grants table holds %s, which was not uploaded", k)
		}
	}

	all := slices.Concat(latencies...)
	slices.Sort(all)
	requests := len(all)
	t.Logf("%d uploads (%d grants, %d 5xx retried) by %d clients in %s: %.0f req/s, %.0f grants/s, p50 %s p99 %s max %s",
		requests, len(stored), retries, clients, wall.Round(time.Millisecond), float64(requests)/wall.Seconds(),
		float64(len(stored))/wall.Seconds(), ms(percentile(all, 50)), ms(percentile(all, 99)), ms(all[len(all)-1]))
	if !full() {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Collect\n\n")
	fmt.Fprintf(&b, "`POST /v1/grants` through the local runner's emulated API Gateway to the collect function\n"+
		"(built by `lambdaenv.Collect`, as in Lambda) on DynamoDB Local. %d users logged in first\n"+
		"(`POST /v1/session` against the WeChat sandbox, not timed); then %d concurrent clients, each\n"+
		"owning 1/%d of the users, uploaded %d times per user, every upload %d new grants (%d formIds and\n"+
		"%d subscribe accepts). One upload is a session check, a rate-limit `UpdateItem`, a read of the\n"+
		"user's inventory (`GetItem` and a `Query` of their grants) and one %d-action\n"+
		"`TransactWriteItems`. The template's defaults apply (MaxLiveGrantsPerUser 200,\n"+
		"CollectRatePerMinute 30): a user ends with %d grants after %d uploads. Latency is measured at\n"+
		"the client, request sent to answer read. It is mostly waiting on DynamoDB Local: alone, an\n"+
		"upload's calls take tens of milliseconds; with concurrent clients its writes queue behind the\n"+
		"other uploads' transactions.\n\n",
		users, clients, clients, rounds, collectGrantsPerReq, collectFormItems, collectSubscribes,
		collectGrantsPerReq+1, rounds*collectGrantsPerReq, rounds)
	fmt.Fprintf(&b, "| concurrency | requests | 5xx, retried | grants stored | wall time | requests/s | grants/s | p50 | p99 | max |\n")
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %.1f s | %.0f | %.0f | %s | %s | %s |\n\n", clients, requests, retries, len(stored),
		wall.Seconds(), float64(requests)/wall.Seconds(), float64(len(stored))/wall.Seconds(),
		ms(percentile(all, 50)), ms(percentile(all, 99)), ms(all[len(all)-1]))
	fmt.Fprintf(&b, "Every upload ended in 200 with its %d grants accepted (a retried one: accepted or duplicate),\n"+
		"and afterwards the grants table held exactly the %d uploaded grants, no more, no fewer.\n",
		collectGrantsPerReq, len(want))
	record(SectionCollect, b.String())
}

// system is the whole backend as make run starts it — the five functions behind the
// template's HTTP API, schedule, queue and stream mappings — on the shared local stack,
// with an in-process WeChat sandbox. Tables and queues are its own.
type system struct {
	*localrun.Runner
	sandbox *sandbox.Sandbox
	app     localrun.App
}

func startSystem(t *testing.T) *system {
	t.Helper()
	return startSystemOn(t, stackFor(t))
}

// startSystemOn is startSystem on the given endpoints (the scale section puts the
// functions' DynamoDB behind the scale model).
func startSystemOn(t *testing.T, ep localstack.Endpoints) *system {
	t.Helper()
	app := localrun.DemoApp()
	sb := sandbox.New(sandbox.Options{})
	if err := sb.Apply(app.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb) // 127.0.0.1
	t.Cleanup(srv.Close)
	builders := lambdaenv.Builders()
	// The collect function as its main.go builds it, logging to nowhere rather than
	// thousands of lines into the bench output.
	builders["CollectFunction"] = func(ctx context.Context, getenv func(string) string) (any, error) {
		h, err := lambdaenv.Collect(ctx, lambdaenv.Env{Getenv: getenv, Log: quietLog})
		if err != nil {
			return nil, err
		}
		return h.Handle, nil
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	r, err := localrun.Start(t.Context(), localrun.Options{
		Root: testenv.Root(), Stack: &ep, Addr: "127.0.0.1:0", Prefix: "b" + hex.EncodeToString(suffix) + "-",
		Builders: builders, Params: map[string]string{"WeChatBaseURL": srv.URL},
		Secrets: map[string]string{"WeChatSecret": app.SecretJSON()}, Log: quietLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop(context.Background())
		if err := r.Resources.Teardown(context.Background(), ep.NewClients()); err != nil {
			t.Logf("teardown: %v", err)
		}
	})
	return &system{Runner: r, sandbox: sb, app: app}
}

// storedGrants returns every grant in the system's grants table as user key + "/" + id.
func storedGrants(t *testing.T, sys *system) map[string]bool {
	t.Helper()
	db := sys.Stack.NewClients().DynamoDB
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: aws.String(sys.Resources.Table("GrantsTable"))})
	out := map[string]bool{}
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			g, err := dynamo.UnmarshalGrant(item)
			if err != nil {
				t.Fatal(err)
			}
			out[minipush.UserKey(g.AppID, g.OpenID)+"/"+g.ID] = true
		}
	}
	return out
}

// postJSON posts a JSON body (with a bearer token when given) and decodes the JSON
// answer into out. Statuses of 300 and above are errors carrying the answer.
func postJSON(ctx context.Context, client *http.Client, url, token string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("POST %s: read answer: %w", url, err)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("POST %s: answer: %w", url, err)
	}
	return resp.StatusCode, nil
}

// percentile is the p-th percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
