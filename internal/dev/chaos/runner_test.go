package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
)

// fleet is the runner processes of one chaos run: they share one prefix (tables and
// queues), one data dir (secrets) and one sandbox, like Lambda instances of one stack.
type fleet struct {
	t      *testing.T
	bin    string
	data   string
	prefix string
	ep     localstack.Endpoints
	wechat string
	args   []string // chaos knobs passed to every runner
	logDir string

	mu      sync.Mutex
	runners map[string]*runner
	starts  int
	kills   int
}

// runner is one live runner process.
type runner struct {
	name  string
	cmd   *exec.Cmd
	api   string
	token string
	done  chan struct{}
}

// buildRunner builds cmd/minipush-local once per test.
func buildRunner(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "minipush-local")
	build := exec.Command("go", "build", "-o", bin, "./cmd/minipush-local")
	build.Dir = testenv.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build runner: %v\n%s", err, out)
	}
	return bin
}

// start starts runner name (again, after a kill) and waits for its ready line.
// Its stderr (JSON logs) is appended to <logDir>/<name>.log.
func (f *fleet) start(name string) *runner {
	f.t.Helper()
	args := append([]string{"-addr", "127.0.0.1:0", "-data", f.data, "-prefix", f.prefix,
		"-dynamodb", f.ep.DynamoDB, "-sqs", f.ep.SQS, "-wechat", f.wechat}, f.args...)
	cmd := exec.Command(f.bin, args...)
	cmd.Dir = testenv.Root()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(filepath.Join(f.logDir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	r := &runner{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	f.t.Cleanup(func() { r.kill() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		f.t.Fatalf("runner %s printed nothing (log in %s)", name, logf.Name())
	}
	var ready map[string]string
	if err := json.Unmarshal(sc.Bytes(), &ready); err != nil || ready["api"] == "" {
		f.t.Fatalf("runner %s said %q", name, sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	r.api, r.token = ready["api"], ready["operator_token"]
	f.mu.Lock()
	f.runners[name] = r
	f.starts++
	f.mu.Unlock()
	return r
}

// kill SIGKILLs the process (no graceful shutdown: in-flight sends, claims and
// leases are left as a crashed Lambda leaves them) and waits for it to be gone.
func (r *runner) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// killAndRestart kills runner name and starts it again.
func (f *fleet) killAndRestart(name string) {
	f.mu.Lock()
	r := f.runners[name]
	delete(f.runners, name)
	f.kills++
	f.mu.Unlock()
	r.kill()
	f.start(name)
}

// live returns the running runners.
func (f *fleet) live() []*runner {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*runner, 0, len(f.runners))
	for _, r := range f.runners {
		out = append(out, r)
	}
	return out
}

// any returns one running runner (for operator API calls).
func (f *fleet) any() *runner {
	if rs := f.live(); len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// countLog counts lines containing s in every runner's log.
func (f *fleet) countLog(s string) int {
	n := 0
	matches, _ := filepath.Glob(filepath.Join(f.logDir, "*.log"))
	for _, p := range matches {
		b, err := os.ReadFile(p)
		if err == nil {
			n += bytes.Count(b, []byte(s))
		}
	}
	return n
}

// ticker drives the planner like an EventBridge that fires every interval and
// overlaps with itself: each beat ticks every live runner twice at once, so two
// planner processes (and two ticks of each) run concurrently. Ticks against a runner
// being killed fail; that is the point. It returns how many ticks were sent.
func (f *fleet) ticker(ctx context.Context, every time.Duration, client *http.Client) (stop func() int) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ticks := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			var beat sync.WaitGroup
			for _, r := range f.live() {
				for range 2 {
					beat.Go(func() {
						req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.api+"/_local/tick", nil)
						if resp, err := client.Do(req); err == nil {
							resp.Body.Close()
						}
						mu.Lock()
						ticks++
						mu.Unlock()
					})
				}
			}
			beat.Wait()
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	return func() int {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return ticks
	}
}

// api calls the HTTP API of a live runner, trying another one when a runner is down
// (it may be mid-restart). token is the bearer token, or "" for the operator's.
func (f *fleet) api(ctx context.Context, client *http.Client, method, path, token string, in, out any) error {
	var lastErr error
	pause := 200 * time.Millisecond
	for attempt := 0; attempt < 20; attempt++ {
		r := f.any()
		if r == nil {
			lastErr = fmt.Errorf("no runner is up")
		} else {
			tok := token
			if tok == "" {
				tok = r.token
			}
			err := call(ctx, client, method, r.api+path, tok, in, out)
			if err == nil {
				return nil
			}
			var se *statusError
			if errors.As(err, &se) && se.code < 500 {
				return err
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w (last: %v)", method, path, ctx.Err(), lastErr)
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
	return lastErr
}

type statusError struct {
	code int
	body string
	url  string
}

func (e *statusError) Error() string { return fmt.Sprintf("%s: %d %s", e.url, e.code, e.body) }

// call makes one JSON request.
func call(ctx context.Context, client *http.Client, method, url, token string, in, out any) error {
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
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		return &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(b)), url: method + " " + strings.SplitN(url, "?", 2)[0]}
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}
