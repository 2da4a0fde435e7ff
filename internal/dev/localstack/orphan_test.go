package localstack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
)

// TestChildrenDieWithParent starts a stack in a child test process, SIGKILLs that
// process (no cleanup runs) and checks that DynamoDB Local and the SQS server go too.
func TestChildrenDieWithParent(t *testing.T) {
	t.Parallel()
	if os.Getenv("LOCALSTACK_ORPHAN_HELPER") == "1" {
		t.Skip("helper mode")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestOrphanHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "LOCALSTACK_ORPHAN_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &pids); err == nil && len(pids) > 0 {
			break
		}
	}
	if len(pids) != 2 {
		_ = cmd.Process.Kill()
		t.Fatalf("helper reported pids %v, want 2", pids)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d not running before the kill", pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still running after its parent was killed", pid)
			}
			time.Sleep(50 * time.Millisecond) // polling a process table, not synchronising goroutines
		}
	}
}

// TestOrphanHelper is the child of TestChildrenDieWithParent.
func TestOrphanHelper(t *testing.T) {
	if os.Getenv("LOCALSTACK_ORPHAN_HELPER") != "1" {
		t.Skip("runs only as TestChildrenDieWithParent's child")
	}
	st, err := localstack.Start(context.Background(), localstack.Options{Root: testenv.Root()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st.PIDs())
	fmt.Println(string(b))
	select {} // wait to be killed
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false
	}
	// A zombie (killed, not yet reaped by init) still answers signal 0; read its state.
	b, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if rerr != nil {
		return false
	}
	var p int
	var comm, state string
	_, _ = fmt.Sscanf(string(b), "%d %s %s", &p, &comm, &state)
	return state != "Z"
}
