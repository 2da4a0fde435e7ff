// Package clienttest runs the mini-program client's own tests (examples/miniprogram:
// `node --test` with a wx shim) against the whole system running in-process on the
// shared local stack, so make test covers the client with the functions, DynamoDB Local
// and the WeChat sandbox it talks to in real life; and type-checks the package's
// TypeScript declarations against miniprogram-api-typings (`tsc --noEmit`).
package clienttest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"minipush/internal/dev/localrun"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
	"minipush/internal/lambdaenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func clientDir() string { return filepath.Join(testenv.Root(), "examples", "miniprogram") }

// TestMiniProgramClient: login, harvest (form, prepay, subscribe), the offline queue,
// batches, the retry of a lost answer with the same keys, DevTools' mock formId — each a
// node test in examples/miniprogram/test/client.test.js, against this system.
func TestMiniProgramClient(t *testing.T) {
	t.Parallel()
	node := mustNode(t)
	app := localrun.DemoApp()
	sb := sandbox.New(sandbox.Options{})
	if err := sb.Apply(app.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	wx := httptest.NewServer(sb)
	t.Cleanup(wx.Close)
	ep := testenv.Endpoints(t)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "runner.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := localrun.Start(t.Context(), localrun.Options{
		Root: testenv.Root(), Stack: &ep, Addr: "127.0.0.1:0",
		Prefix:   fmt.Sprintf("cli%d-", time.Now().UnixNano()%1e9),
		Builders: lambdaenv.Builders(),
		Params:   map[string]string{"WeChatBaseURL": wx.URL},
		Secrets:  map[string]string{"WeChatSecret": app.SecretJSON()},
		Log:      slog.New(slog.NewJSONHandler(logFile, nil)),
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

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// One test at a time: each checks the app's grant inventory before and after.
	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1", "--test-reporter=spec", "test/client.test.js")
	cmd.Dir = clientDir()
	cmd.Env = append(os.Environ(),
		"MINIPUSH_API="+r.URL,
		"MINIPUSH_WECHAT="+wx.URL,
		"MINIPUSH_APP_ID="+app.AppID,
		"MINIPUSH_OPERATOR_TOKEN="+r.Secrets["OperatorTokenSecret"],
		"MINIPUSH_TEMPLATE="+localrun.DemoSubscribeTemplate,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	// A runner that found no test exits 0 too: make sure the tests ran.
	if m := regexp.MustCompile(`(?m)^ℹ pass (\d+)$`).FindSubmatch(out); m == nil || string(m[1]) == "0" {
		t.Fatalf("node --test ran no test:\n%s", out)
	}
	t.Logf("node --test:\n%s", out)
}

// TestMiniProgramTypes type-checks index.d.ts and a TypeScript page using it
// (test/types.ts) against miniprogram-api-typings, both pinned in the package's lock
// (make deps runs its npm ci).
func TestMiniProgramTypes(t *testing.T) {
	t.Parallel()
	node := mustNode(t)
	tsc := filepath.Join(clientDir(), "node_modules", "typescript", "bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Fatalf("typescript is not installed in examples/miniprogram (make deps runs npm ci there): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, tsc, "-p", "tsconfig.json")
	cmd.Dir = clientDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc --noEmit: %v\n%s", err, out)
	}
}

func mustNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed for the mini-program client's tests (make test's prerequisites: Go, Node.js/npm): %v", err)
	}
	return node
}
