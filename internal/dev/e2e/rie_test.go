package e2e_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush/internal/dev/localrun"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/lambdaenv"
	"minipush/internal/metrics"
)

// rieVersion pins the runtime interface emulator (the one Lambda's provided.al2023
// images embed); go install fetches it through the module proxy on first use.
const rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"

var (
	rieOnce sync.Once
	riePath string
	rieErr  error
)

// rie returns the emulator binary, installing the pinned version under infra/.cache.
func rie(t *testing.T) string {
	t.Helper()
	rieOnce.Do(func() {
		bin := filepath.Join(testenv.Root(), "infra", ".cache", "bin")
		riePath = filepath.Join(bin, "aws-lambda-rie")
		if _, err := os.Stat(riePath + "." + rieVersion); err == nil {
			return
		}
		cmd := exec.Command("go", "install", "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@"+rieVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			rieErr = fmt.Errorf("install aws-lambda-rie: %v\n%s", err, out)
			return
		}
		rieErr = os.WriteFile(riePath+"."+rieVersion, nil, 0o644)
	})
	if rieErr != nil {
		t.Fatal(rieErr)
	}
	return riePath
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// bootstrap returns a function's bootstrap built for this host (as make build does for
// arm64); all five are built by one go build so they share the compile.
func bootstrap(t *testing.T, fn string) string {
	t.Helper()
	buildOnce.Do(func() {
		// One reused directory (not a temp dir per run) so runs leave nothing behind.
		dir := filepath.Join(testenv.Root(), "infra", ".cache", "rie-build")
		buildDir = dir
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", dir+"/", "./functions/...")
		cmd.Dir = testenv.Root()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build functions: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// RIE runs the file it is given; each function gets its own directory so the
	// emulator sees a file named bootstrap, as Lambda does.
	dir := t.TempDir()
	out := filepath.Join(dir, "bootstrap")
	if err := os.Link(filepath.Join(buildDir, fn), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// function runs one bootstrap under the emulator with env and returns its invoke URL.
func function(t *testing.T, fn string, env map[string]string) string {
	t.Helper()
	bin := bootstrap(t, fn)
	api, runtimeAPI := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rie(t), "--runtime-interface-emulator-address", api, "--runtime-api-address", runtimeAPI, bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &syncBuffer{} // read (INIT REPORT, EMF lines) while the emulator writes
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s logs:\n%s", fn, logs.String())
		}
	})
	url := "http://" + api + "/2015-03-31/functions/function/invocations"
	rieLogs.Store(url, logs)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", api)
		if err == nil {
			c.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator for %s did not listen: %v\n%s", fn, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a port with a deadline
	}
}

// invoke sends an event and decodes the function's answer into out, failing on a
// function error (the emulator answers {"errorMessage":...,"errorType":...}).
func invoke(t *testing.T, url string, event, out any) {
	t.Helper()
	b, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(body), `"errorType"`) || resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("invoke answer %s: %v", body, err)
		}
	}
}

// world is a namespace of the local stack plus a sandbox, and the environment each
// function gets there (what the template resolves to, plus local endpoints and secrets).
type world struct {
	env     *testenv.Env
	sandbox *sandbox.Sandbox
	secrets map[string]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	demo := localrun.DemoApp()
	sb := sandbox.New(sandbox.Options{})
	if err := sb.Apply(demo.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	w := &world{env: testenv.NewWithParams(t, map[string]string{"WeChatBaseURL": srv.URL}), sandbox: sb,
		// Keys of this run only: make events writes them into events/env.json, which is
		// not tracked, so no fixed key sits in the repository for anyone to reuse.
		secrets: map[string]string{"WeChatSecret": demo.SecretJSON(), "SessionSigningSecret": randomKey(t), "OperatorTokenSecret": randomKey(t)}}
	return w
}

// randomKey is 32 random bytes in hex: 64 characters, like the stack's generated keys.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// db is the storage adapter on the world's tables, to read what a function wrote.
func (w *world) db(t *testing.T) *dynamo.DB {
	t.Helper()
	return dynamo.New(w.env.DynamoDB, dynamo.Tables{
		Grants: w.env.Table("GrantsTable"), Users: w.env.Table("UsersTable"), Campaigns: w.env.Table("CampaignsTable"),
		Audience: w.env.Table("AudienceTable"), Deliveries: w.env.Table("DeliveriesTable"), State: w.env.Table("StateTable"),
	})
}

func (w *world) functionEnv(t *testing.T, id string) map[string]string {
	t.Helper()
	env := w.env.MustFunctionEnv(t, id)
	for _, kv := range w.env.Endpoints.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	b, _ := json.Marshal(w.secrets)
	env[lambdaenv.LocalSecretsEnv] = string(b)
	env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(30)
	return env
}

// writeSample keeps an event as events/<name>.json for sam local invoke -e when
// MINIPUSH_UPDATE_EVENTS is set (make events): the samples are real events, not guesses.
func writeSample(t *testing.T, name string, ev any) {
	t.Helper()
	if os.Getenv("MINIPUSH_UPDATE_EVENTS") == "" {
		return
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testenv.Root(), "events")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func httpEvent(t *testing.T, method, route, target, body string, headers map[string]string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	routeMethod, routePath, _ := strings.Cut(route, " ")
	ev, err := localrun.RequestEvent(r, routeMethod, routePath)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestFunctionsUnderRIE runs each function's real bootstrap under the runtime interface
// emulator with the environment the template gives it, so init (env, secrets, clients)
// and the handler signature are tested as deployed, not just the handler function.
func TestFunctionsUnderRIE(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	demo := localrun.DemoApp()

	if os.Getenv("MINIPUSH_UPDATE_EVENTS") != "" {
		// sam local invoke --env-vars format: the environment each function got in this
		// run, with the loopback endpoints as seen from SAM's Docker containers.
		all := map[string]map[string]string{}
		for _, id := range w.env.Template.FunctionIDs() {
			env := w.functionEnv(t, id)
			for k, v := range env {
				env[k] = strings.ReplaceAll(v, "127.0.0.1", "host.docker.internal")
			}
			all[id] = env
		}
		writeSample(t, "env", all)
	}

	t.Run("CollectFunction", func(t *testing.T) {
		t.Parallel()
		url := function(t, "collect", w.functionEnv(t, "CollectFunction"))
		_, code := w.sandbox.NewLogin(demo.AppID)
		ev := httpEvent(t, "POST", "POST /v1/session", "/v1/session", `{"code":"`+code+`","appId":"`+demo.AppID+`"}`,
			map[string]string{"Content-Type": "application/json"})
		writeSample(t, "collect-session", ev)
		var resp events.APIGatewayV2HTTPResponse
		invoke(t, url, ev, &resp)
		if resp.StatusCode != 200 || !strings.Contains(resp.Body, "token") {
			t.Fatalf("session answer %d %s", resp.StatusCode, resp.Body)
		}
		requireEMF(t, url, metrics.Requests, metrics.WeChatLatency)
	})

	t.Run("AdminFunction", func(t *testing.T) {
		t.Parallel()
		url := function(t, "admin", w.functionEnv(t, "AdminFunction"))
		for _, tc := range []struct {
			token  string
			denied bool
		}{{"wrong", true}, {w.secrets["OperatorTokenSecret"], false}} {
			ev := httpEvent(t, "GET", "ANY /v1/admin/{proxy+}", "/v1/admin/campaigns?status=draft", "",
				map[string]string{"Authorization": "Bearer " + tc.token})
			if !tc.denied {
				ev.Headers["authorization"] = "Bearer <operator token>"
				writeSample(t, "admin-list-campaigns", ev)
				ev.Headers["authorization"] = "Bearer " + tc.token
			}
			var resp events.APIGatewayV2HTTPResponse
			invoke(t, url, ev, &resp)
			if (resp.StatusCode == 401) != tc.denied || resp.StatusCode >= 500 {
				t.Fatalf("token %q: status %d %s", tc.token, resp.StatusCode, resp.Body)
			}
		}
		requireEMF(t, url, metrics.Requests)
	})

	t.Run("PlanFunction", func(t *testing.T) {
		t.Parallel()
		url := function(t, "plan", w.functionEnv(t, "PlanFunction"))
		ev := localrun.ScheduledEvent("PlanFunction-Tick", time.Now())
		writeSample(t, "plan-tick", ev)
		invoke(t, url, ev, nil)
	})

	t.Run("SendFunction", func(t *testing.T) {
		t.Parallel()
		url := function(t, "send", w.functionEnv(t, "SendFunction"))
		q := w.env.Queue("SendQueue")
		body, _ := json.Marshal(map[string]any{"id": "rie-c1-r1-b0", "campaignId": "rie-missing", "run": 1, "appId": demo.AppID, "openIds": []string{"o1"}})
		ev := receiveOne(t, w, q.URL, q.ARN, string(body))
		writeSample(t, "send-batch", ev)
		var resp events.SQSEventResponse
		invoke(t, url, ev, &resp)
		for _, f := range resp.BatchItemFailures {
			if f.ItemIdentifier != ev.Records[0].MessageId {
				t.Fatalf("batchItemFailures names %q, not the message", f.ItemIdentifier)
			}
		}
	})

	t.Run("DeadLetterFunction", func(t *testing.T) {
		t.Parallel()
		url := function(t, "deadletter", w.functionEnv(t, "DeadLetterFunction"))
		q := w.env.Queue("SendDeadLetterQueue")
		body, _ := json.Marshal(map[string]any{"id": "rie-c2-r1-b0", "campaignId": "rie-dead", "run": 1, "appId": demo.AppID, "openIds": []string{"o1", "o2"}})
		ev := receiveOne(t, w, q.URL, q.ARN, string(body))
		writeSample(t, "deadletter-batch", ev)
		var resp events.SQSEventResponse
		invoke(t, url, ev, &resp)
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("failures %+v", resp.BatchItemFailures)
		}
		// Nobody had claimed them: both end failed/dead_letter.
		got, err := w.db(t).Deliveries(t.Context(), "rie-dead#1", []string{"o1", "o2"})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"o1", "o2"} {
			if d := got[id]; !d.Final() || d.Outcome != "failed" || d.Reason != "dead_letter" {
				t.Errorf("%s: %+v, want final failed/dead_letter", id, d)
			}
		}
		requireEMF(t, url, metrics.DeadLettered)
	})

	t.Run("ExpireFunction", func(t *testing.T) {
		t.Parallel()
		url := function(t, "expire", w.functionEnv(t, "ExpireFunction"))
		ev := removalEvent(t, w)
		writeSample(t, "expire-removal", ev)
		var resp events.DynamoDBEventResponse
		invoke(t, url, ev, &resp)
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("failures %+v", resp.BatchItemFailures)
		}
		requireEMF(t, url, metrics.GrantsExpired)
	})
}
