package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush/internal/dev/localrun"
	"minipush/internal/metrics"
)

// syncBuffer is a bytes.Buffer the emulator writes while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rieLogs holds each emulated function's output (the emulator's and the bootstrap's
// stdout and stderr) by invoke URL.
var rieLogs sync.Map // string -> *syncBuffer

func logsOf(t *testing.T, url string) *syncBuffer {
	t.Helper()
	l, ok := rieLogs.Load(url)
	if !ok {
		t.Fatalf("no emulator started for %s", url)
	}
	return l.(*syncBuffer)
}

// initLine is the emulator's own record of the function's init phase: from starting the
// bootstrap process to its first request for work.
var initLine = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// initReport is the init duration the emulator recorded for the function.
func initReport(t *testing.T, url string) time.Duration {
	t.Helper()
	waitReport(t, url)
	m := initLine.FindStringSubmatch(logsOf(t, url).String())
	if m == nil {
		t.Fatalf("no INIT REPORT line:\n%s", logsOf(t, url).String())
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(f * float64(time.Millisecond))
}

// waitReport waits for the emulator's REPORT line of an invocation, which it prints
// after the answer and after what the function wrote while handling it.
func waitReport(t *testing.T, url string) {
	t.Helper()
	logs := logsOf(t, url)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "REPORT RequestId:") {
		if time.Now().After(deadline) {
			t.Fatalf("no REPORT line from the emulator:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the emulator's output with a deadline
	}
}

// requireEMF checks that the real bootstrap wrote, on its stdout as Lambda ships it to
// CloudWatch Logs, valid EMF lines carrying each of names (and logs its cold start).
func requireEMF(t *testing.T, url string, names ...string) {
	t.Helper()
	waitReport(t, url)
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(logsOf(t, url).String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		pts, err := metrics.Parse(sc.Bytes())
		if err == metrics.ErrNotEMF {
			continue
		}
		if err != nil {
			t.Errorf("invalid EMF line %s: %v", sc.Bytes(), err)
			continue
		}
		for _, p := range pts {
			seen[p.Name] = true
		}
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("the function emitted no %s metric:\n%s", n, logsOf(t, url).String())
		}
	}
}

// ColdStartOutEnv names the file (BENCHMARKS.md) whose cold start section
// TestColdStart rewrites; unset, TestColdStart is skipped (make coldstart sets it).
const ColdStartOutEnv = "MINIPUSH_COLDSTART_OUT"

// Markers around the generated section; make bench keeps what lies between them.
const (
	coldStartBegin = "<!-- coldstart:begin (make coldstart) -->"
	coldStartEnd   = "<!-- coldstart:end -->"
)

// coldStartTarget is the init duration each function should stay under.
const coldStartTarget = 50 * time.Millisecond

// TestColdStart starts every function's bootstrap under the runtime interface emulator
// several times, one at a time, and invokes it twice with an event it answers without
// work. Init is the emulator's INIT REPORT (the process start and the function's whole
// init, up to its first request for work; the REPORT line's "Init Duration" only times
// the emulator's start request, a few microseconds); the first answer, timed at the
// client, holds it, and the second is warm. It writes medians and maxima to
// BENCHMARKS.md.
func TestColdStart(t *testing.T) {
	out := os.Getenv(ColdStartOutEnv)
	if out == "" {
		t.Skip(ColdStartOutEnv + " not set (make coldstart)")
	}
	const samples = 7
	w := newWorld(t)
	cheap := map[string]any{
		// An unknown route: answered 404 without storage or WeChat.
		"CollectFunction": httpEvent(t, "GET", "GET /coldstart", "/coldstart", "", nil),
		// A wrong operator token: 401.
		"AdminFunction": httpEvent(t, "GET", "ANY /v1/admin/{proxy+}", "/v1/admin/campaigns", "", map[string]string{"Authorization": "Bearer wrong"}),
		// A tick with nothing due: one Query of the due index.
		"PlanFunction":       localrun.ScheduledEvent("PlanFunction-Tick", time.Now()),
		"SendFunction":       events.SQSEvent{Records: []events.SQSMessage{}},
		"DeadLetterFunction": events.SQSEvent{Records: []events.SQSMessage{}},
		// A MODIFY: routed to the stream handler, which only acts on REMOVEs.
		"ExpireFunction": events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{{EventSource: "aws:dynamodb", EventName: "MODIFY"}}},
	}
	bins := map[string]string{
		"CollectFunction": "collect", "AdminFunction": "admin", "PlanFunction": "plan",
		"SendFunction": "send", "DeadLetterFunction": "deadletter", "ExpireFunction": "expire",
	}
	type row struct {
		id                  string
		inits, firsts, warm []time.Duration
		size                int64
	}
	var rows []row
	for _, id := range w.env.Template.FunctionIDs() {
		r := row{id: id}
		for i := range samples {
			// A subtest per start, so its emulator is stopped before the next one starts.
			t.Run(fmt.Sprintf("%s-%d", id, i), func(t *testing.T) {
				url := function(t, bins[id], w.functionEnv(t, id))
				start := time.Now()
				invoke(t, url, cheap[id], nil)
				first := time.Since(start)
				start = time.Now()
				invoke(t, url, cheap[id], nil)
				warm := time.Since(start)
				r.firsts = append(r.firsts, first)
				r.warm = append(r.warm, warm)
				r.inits = append(r.inits, initReport(t, url))
			})
		}
		if len(r.inits) != samples {
			t.Fatalf("%s: %d of %d cold starts measured", id, len(r.inits), samples)
		}
		if fi, err := os.Stat(filepath.Join(buildDir, bins[id])); err == nil {
			r.size = fi.Size()
		}
		slices.Sort(r.inits)
		slices.Sort(r.firsts)
		slices.Sort(r.warm)
		rows = append(rows, r)
		t.Logf("%s: init p50 %v max %v", id, r.inits[len(r.inits)/2], r.inits[len(r.inits)-1])
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n## Cold start\n\n", coldStartBegin)
	fmt.Fprintf(&b, "Produced by `make coldstart` on %s (%s/%s, %d cores, %s); %d cold starts per\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), samples)
	b.WriteString("function, one at a time. Each is a fresh `aws-lambda-rie` process running the function's\n" +
		"`bootstrap` (built for this host with `-tags lambda.norpc`) with the template's environment\n" +
		"against the local stack, invoked twice with an event it answers without work (collect: an\n" +
		"unknown route; admin: a wrong token; plan: a tick with nothing due; send and deadletter: no\n" +
		"records; expire: a MODIFY record, which it ignores).\n" +
		"**Init** is the emulator's `INIT REPORT`: from starting the bootstrap process to its first\n" +
		"request for work, so the whole init (environment, secrets, AWS clients, logger, metrics).\n" +
		"The emulator starts the bootstrap on the first invocation, so the **first answer** (timed at\n" +
		"the client) holds it; **warm** is the second. (The REPORT line's `Init Duration` only times\n" +
		"the emulator's start request, microseconds, and is not used.)\n" +
		"Lambda adds fetching and unpacking the package; Secrets Manager is the local stand-in here.\n" +
		fmt.Sprintf("Target: init ≤ %v.\n\n", coldStartTarget))
	b.WriteString("| function | init p50 | init max | first answer p50 | warm p50 | binary | init p50 within target |\n|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		p50 := r.inits[len(r.inits)/2]
		within := "yes"
		if p50 > coldStartTarget {
			within = "no"
		}
		fmt.Fprintf(&b, "| %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f MB | %s |\n", r.id,
			msOf(p50), msOf(r.inits[len(r.inits)-1]), msOf(r.firsts[len(r.firsts)/2]), msOf(r.warm[len(r.warm)/2]),
			float64(r.size)/(1<<20), within)
	}
	fmt.Fprintf(&b, "\n%s\n", coldStartEnd)
	if err := replaceSection(out, b.String()); err != nil {
		t.Fatal(err)
	}
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// replaceSection puts section in place of the marked one in path, or appends it.
func replaceSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, coldStartBegin), strings.Index(text, coldStartEnd)
	switch {
	case i >= 0 && j > i:
		text = text[:i] + section + strings.TrimPrefix(text[j+len(coldStartEnd):], "\n")
	default:
		text = strings.TrimRight(text, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
