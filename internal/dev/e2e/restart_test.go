package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"minipush/internal/dev/demo"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/sandbox"
	"minipush/internal/dev/testenv"
)

// TestRunnerSurvivesRestart sends a campaign through the real runner binary (HTTP in,
// sandbox out), SIGKILLs the runner mid-send and starts it again on the same "cloud"
// (the shared local stack and sandbox stay up, as AWS and WeChat would): the run must
// complete with every recipient final and nobody messaged twice. Recipients finalized
// just before the kill, whose message's counter update died with the runner, are
// counted by the planner's recount of quiet runs (PLAN_QUIET_SECONDS shortened here).
func TestRunnerSurvivesRestart(t *testing.T) {
	t.Parallel()
	ep := testenv.Endpoints(t)
	app := localrun.DemoApp()
	sb := sandbox.New(sandbox.Options{})
	if err := sb.Apply(app.SandboxConfig()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)

	bin := filepath.Join(t.TempDir(), "minipush-local")
	build := exec.Command("go", "build", "-o", bin, "./cmd/minipush-local")
	build.Dir = testenv.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build runner: %v\n%s", err, out)
	}
	data := t.TempDir()
	prefix := "rst" + time.Now().Format("150405.000")[7:] + "-"
	start := func() (*exec.Cmd, map[string]string) {
		cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data", data, "-prefix", prefix,
			"-dynamodb", ep.DynamoDB, "-sqs", ep.SQS, "-wechat", srv.URL,
			// In-flight batches and a dead sender's claims come back in seconds, not minutes.
			"-param", "SendVisibilityTimeout=5", "-env", "SEND_LEASE_SECONDS=3", "-env", "PLAN_QUIET_SECONDS=2")
		cmd.Dir = testenv.Root()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() {
			t.Fatal("runner printed nothing")
		}
		var ready map[string]string
		if err := json.Unmarshal(sc.Bytes(), &ready); err != nil || ready["api"] == "" {
			t.Fatalf("runner said %q", sc.Text())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		return cmd, ready
	}

	runner, ready := start()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cfg := demo.Config{API: ready["api"], Sandbox: srv.URL, AppID: app.AppID, OperatorToken: ready["operator_token"],
		Template: localrun.DemoSubscribeTemplate, Users: 400, Out: io.Discard}
	ids, err := demo.Seed(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	campaign, err := demo.StartCampaign(ctx, cfg, ids)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Tick(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for sb.Stats().Accepted < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d sends before the kill", sb.Stats().Accepted)
		}
		time.Sleep(5 * time.Millisecond) // polling the sandbox with a deadline
	}
	if err := runner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = runner.Wait()
	atKill := sb.Stats().Accepted
	if atKill >= len(ids) {
		t.Fatalf("all %d sent before the kill; the test proves nothing", atKill)
	}

	_, ready = start()
	cfg.API, cfg.OperatorToken = ready["api"], ready["operator_token"]
	// The schedule ticks every minute; tick every second instead, as a faster EventBridge.
	tickCtx, stopTicks := context.WithCancel(ctx)
	defer stopTicks()
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			_ = demo.Tick(tickCtx, cfg)
			select {
			case <-tickCtx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	sum, err := demo.Wait(ctx, cfg, campaign, len(ids))
	if err != nil {
		t.Fatal(err)
	}
	perUser := map[string]int{}
	for _, m := range sb.Accepted() {
		perUser[m.ToUser]++
	}
	for u, n := range perUser {
		if n > 1 {
			t.Errorf("%s messaged %d times", u, n)
		}
	}
	c := sum.Counters
	if c.Final() != len(ids) {
		t.Fatalf("%d of %d recipients final: %+v", c.Final(), len(ids), c)
	}
	// Sends whose answer died with the runner are unknown, never resent.
	if got := len(perUser); got < c.Sent || got > c.Sent+c.Unknown {
		t.Fatalf("sandbox accepted %d recipients; run says sent %d, unknown %d", got, c.Sent, c.Unknown)
	}
	t.Logf("killed after %d sends; final: sent %d, unknown %d, other %d", atKill, c.Sent, c.Unknown, c.Final()-c.Sent-c.Unknown)
}
