// Package bench_test measures minipush against the local stack and writes BENCHMARKS.md
// (make bench). Each measurement is a TestBench* function that records one section of
// the report. Without MINIPUSH_BENCH_OUT (plain make test) the same code runs at a smoke
// size, so it keeps working, but writes nothing and asserts no speed targets: speed is
// judged by make bench, never by timed unit tests.
package bench_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
)

// OutEnv names the file make bench writes; unset, the benchmarks run at smoke size.
const OutEnv = "MINIPUSH_BENCH_OUT"

// full reports whether this is a real benchmark run (make bench) rather than a smoke run.
func full() bool { return os.Getenv(OutEnv) != "" }

// stackFor is the local stack a section measures on: a fresh one of its own in a real
// run, so no section inherits the stream records and tables of the ones before it
// (testenv.PrivateEndpoints says why that matters); the shared one at smoke size.
func stackFor(t *testing.T) localstack.Endpoints {
	t.Helper()
	if full() {
		return testenv.PrivateEndpoints(t)
	}
	return testenv.Endpoints(t)
}

// Report sections, in the order they appear in BENCHMARKS.md.
const (
	SectionCollect = iota + 1
	SectionPlan
	SectionSend
	SectionCanary
	SectionCost
	SectionScale
)

var (
	sectionsMu sync.Mutex
	sections   = map[int]string{}
)

// record keeps one section (markdown starting with a "## " heading) for the report.
func record(order int, markdown string) {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	sections[order] = strings.TrimSpace(markdown) + "\n"
}

func TestMain(m *testing.M) {
	start := time.Now()
	code := testenv.Run(m)
	if code == 0 && full() {
		if err := writeReport(os.Getenv(OutEnv), start); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// writeReport writes every recorded section under a header naming the machine, the
// date and the command, so the numbers can be reproduced and compared.
func writeReport(path string, start time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# minipush benchmarks\n\n")
	fmt.Fprintf(&b, "Produced by `%s`. Do not edit by hand; rerun it.\n\n", benchCommand())
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n", start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "| machine | %s, %d cores (GOMAXPROCS %d), %s/%s |\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "| go | %s |\n", runtime.Version())
	fmt.Fprintf(&b, "| stack | DynamoDB Local and the local SQS server (local-aws-sqs) on 127.0.0.1, the WeChat sandbox in-process |\n")
	fmt.Fprintf(&b, "| commit | %s |\n", commit())
	fmt.Fprintf(&b, "| duration | %s |\n\n", time.Since(start).Round(time.Second))
	b.WriteString("Everything runs on one machine: the stand-ins (Java, Node) share its cores with the code\n" +
		"measured, so absolute numbers are far below AWS's; the ratios and the per-message counts\n" +
		"are what carry over.\n\n")
	sectionsMu.Lock()
	keys := make([]int, 0, len(sections))
	for k := range sections {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(sections[k])
		b.WriteString("\n")
	}
	sectionsMu.Unlock()
	b.WriteString(coldStartSection(path))
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// coldStartSection is the Cold start section of the report at path, which make
// coldstart writes between its markers (internal/dev/e2e, TestColdStart): kept as it is,
// since this suite does not measure it.
func coldStartSection(path string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	text := string(old)
	i := strings.Index(text, "<!-- coldstart:begin")
	const end = "<!-- coldstart:end -->"
	j := strings.Index(text, end)
	if i < 0 || j < i {
		return ""
	}
	return text[i:j+len(end)] + "\n"
}

func benchCommand() string {
	if c := os.Getenv("MINIPUSH_BENCH_CMD"); c != "" {
		return c
	}
	return "go test ./internal/bench with " + OutEnv + " set"
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func commit() string {
	out, err := exec.Command("git", "-C", testenv.Root(), "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
