package localstack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// process is a child the stack started. It dies with us: Pdeathsig kills it when the
// thread that started it exits, so the starting goroutine locks its OS thread and stays
// alive, waiting on the child, for the child's whole life. A SIGKILLed go test therefore
// leaves no Java or Node process behind.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes

	mu     sync.Mutex
	output []byte // last lines of combined output, for error messages
}

// startProcess starts cmd and returns once it is running, with its stdout as a reader
// when wantStdout is set (the rest of the output is kept as a tail for diagnostics).
func startProcess(name string, cmd *exec.Cmd, wantStdout bool) (*process, io.Reader, error) {
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Stderr = p
	var stdout io.Reader
	if wantStdout {
		pr, pw := io.Pipe()
		cmd.Stdout = io.MultiWriter(pw, p)
		stdout = pr
		go func() { <-p.done; pw.Close() }()
	} else {
		cmd.Stdout = p
	}
	// The child's stdin is a pipe we never write to: it reaches EOF when we die, which
	// the Node server watches as a second line of defence.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, nil, fmt.Errorf("%s: stdin: %w", name, err)
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must outlive the child
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.done)
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, stdout, nil
}

// Write keeps the tail of the child's output.
func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.output = append(p.output, b...)
	if n := len(p.output); n > 8192 {
		p.output = append([]byte(nil), p.output[n-8192:]...)
	}
	return len(b), nil
}

func (p *process) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.output)
}

// stop kills the child's process group and waits for it.
func (p *process) stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if pgid := p.cmd.Process.Pid; pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return nil
	}
}

func readLine(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	if sc.Scan() {
		line := sc.Text()
		go io.Copy(io.Discard, r) // keep draining so the child never blocks on stdout
		return line, nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}
