package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds this command once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "minipush-local-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "minipush-local")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// command is the runner on the shared local stack, under its own table prefix.
func command(t *testing.T, args ...string) *exec.Cmd {
	ep := testenv.Endpoints(t)
	args = append([]string{"-addr", "127.0.0.1:0", "-dynamodb", ep.DynamoDB, "-sqs", ep.SQS,
		"-prefix", fmt.Sprintf("cmd%d-", time.Now().UnixNano()%1e9), "-summary", "0"}, args...)
	cmd := exec.Command(binary(t), args...)
	cmd.Dir = testenv.Root()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// make demo's terminal shows progress and the summary; the functions' JSON log lines go
// to the log file, not between the progress lines.
func TestDemoLogsGoToFile(t *testing.T) {
	t.Parallel()
	logFile := filepath.Join(t.TempDir(), "logs", "demo.jsonl")
	cmd := command(t, "-data", "", "-demo", "12", "-log-file", logFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `"level":"`) {
			t.Errorf("a JSON log line on the terminal: %s", line)
		}
	}
	for _, want := range []string{"seeding  [", "12/12 users", "sending  [", "12/12 recipients", "/s", "done in", "sent           12"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the terminal lacks %q:\n%s", want, out)
		}
	}
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logs, []byte(`"function":"collect"`)) || !bytes.Contains(logs, []byte(`"function":"send"`)) {
		t.Errorf("the log file lacks the functions' lines:\n%.2000s", logs)
	}
}

// runner is a started make run: its ready line, and the data directory it writes.
type runner struct {
	ready map[string]string
	where string // what it told the terminal
	data  string
}

// startRun starts the runner as make run does (data kept, logs to a file) and waits for
// its ready line and the list of where things are.
func startRun(t *testing.T, data string) runner {
	t.Helper()
	logFile := filepath.Join(data, "logs", "functions.jsonl")
	cmd := command(t, "-data", data, "-log-file", logFile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("runner printed nothing; log:\n%s", b)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	r := runner{data: data}
	if err := json.Unmarshal(sc.Bytes(), &r.ready); err != nil {
		t.Fatalf("ready line %q: %v", sc.Text(), err)
	}
	// The terminal's list ends with the log file's line.
	lines := make(chan string)
	go func() {
		es := bufio.NewScanner(stderr)
		for es.Scan() {
			lines <- es.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	var where strings.Builder
	for !strings.Contains(where.String(), "  logs ") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stderr ended before the list:\n%s", where.String())
			}
			where.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("no list of where things are within 30 s:\n%s", where.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	r.where = where.String()
	return r
}

// make run tells the person at the terminal where the console, the API, the OpenAPI
// document and the logs are, and writes the endpoints and token for curl.
func TestRunSaysWhereThingsAre(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), ".local")
	r := startRun(t, data)
	api := r.ready["api"]
	for _, want := range []string{
		"console   " + api + "/console/",
		"API       " + api + "/v1/",
		"OpenAPI   " + api + "/v1/openapi.json",
		"logs      " + filepath.Join(data, "logs", "functions.jsonl"),
		"operator  . " + filepath.Join(data, "operator.env"),
	} {
		if !strings.Contains(r.where, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, r.where)
		}
	}
	env, err := os.ReadFile(filepath.Join(data, "operator.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"API=" + api + "\n", "TOKEN=" + r.ready["operator_token"] + "\n", "APP_ID=" + r.ready["app_id"] + "\n", "WECHAT=" + r.ready["wechat_sandbox"] + "\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("operator.env lacks %q:\n%s", want, env)
		}
	}
	if fi, err := os.Stat(filepath.Join(data, "operator.env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("operator.env holds the operator token: want mode 0600, got %v (%v)", fi.Mode().Perm(), err)
	}
}

// The README's first-campaign section, run verbatim against make run: the fenced block
// marked `sh first-campaign` must reach a done campaign whose recipients were sent.
func TestReadmeFirstCampaign(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(testenv.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sh first-campaign\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```sh first-campaign block")
	}
	dir := t.TempDir() // the operator's shell: make run's .local/ is here
	startRun(t, filepath.Join(dir, ".local"))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", string(m[1]))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's first-campaign commands failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"status":"done"`, `"sent":3`, `"outcome":"sent"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output lacks %s:\n%s", want, out)
		}
	}
	t.Logf("README first-campaign output:\n%s", out)
}
