// Package testenv gives integration tests real local AWS services: DynamoDB Local and the
// SQS server, started once per test binary (or reused when make test already started them
// and passed their endpoints in the environment), and a fresh namespace of every table and
// queue in template.yaml per test, so tests run in parallel without seeing each other.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/samtemplate"
)

var (
	once      sync.Once
	endpoints localstack.Endpoints
	stack     *localstack.Stack
	startErr  error

	tplOnce sync.Once
	tpl     *samtemplate.Template
	tplErr  error
)

// Root returns the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Main runs a package's tests and stops the stack this binary started, if any. Use it
// from TestMain; without it the stack still dies with the test binary.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main for a TestMain that has more to do after the tests (e.g. write a report):
// it runs them, stops the stack this binary started and returns the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if stack != nil {
		stack.Stop(context.Background())
	}
	return code
}

// Endpoints returns the endpoints of the shared local stack, starting it on first use.
func Endpoints(tb testing.TB) localstack.Endpoints {
	tb.Helper()
	once.Do(func() {
		d, s := os.Getenv(localstack.EnvDynamoDB), os.Getenv(localstack.EnvSQS)
		if d != "" && s != "" {
			endpoints = localstack.Endpoints{DynamoDB: d, SQS: s}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		stack, startErr = localstack.Start(ctx, localstack.Options{Root: Root()})
		if startErr == nil {
			endpoints = stack.Endpoints
		}
	})
	if startErr != nil {
		tb.Fatalf("testenv: local stack: %v", startErr)
	}
	return endpoints
}

// Template returns the parsed template.yaml.
func Template(tb testing.TB) *samtemplate.Template {
	tb.Helper()
	tplOnce.Do(func() { tpl, tplErr = samtemplate.ReadFile(filepath.Join(Root(), "template.yaml")) })
	if tplErr != nil {
		tb.Fatalf("testenv: %v", tplErr)
	}
	return tpl
}

// Env is one test's namespace: clients of the shared stack and its own copy of every
// table and queue of the template.
type Env struct {
	localstack.Clients
	*localstack.Resources
	Endpoints localstack.Endpoints
	Template  *samtemplate.Template
}

// New provisions a fresh namespace for tb and deletes it when tb ends.
func New(tb testing.TB) *Env {
	tb.Helper()
	return NewWithParams(tb, nil)
}

// NewWithParams is New with template parameter overrides (e.g. WeChatBaseURL).
func NewWithParams(tb testing.TB, params map[string]string) *Env {
	tb.Helper()
	return NewOn(tb, Endpoints(tb), params)
}

// PrivateEndpoints starts a local stack for tb alone and stops it when tb ends. Tests
// share one stack (Endpoints); measurements take their own, because DynamoDB Local slows
// down with what earlier tests left in it — every write to a table with a stream looks
// the stream up, and that lookup grows with the stream records the instance holds — so a
// number would depend on what ran before it.
func PrivateEndpoints(tb testing.TB) localstack.Endpoints {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := localstack.Start(ctx, localstack.Options{Root: Root()})
	if err != nil {
		tb.Fatalf("testenv: private local stack: %v", err)
	}
	tb.Cleanup(func() { s.Stop(context.Background()) })
	return s.Endpoints
}

// NewOn is NewWithParams on the stack at ep.
func NewOn(tb testing.TB, ep localstack.Endpoints, params map[string]string) *Env {
	tb.Helper()
	t := Template(tb)
	clients := ep.NewClients()
	prefix := "t" + randomHex(6) + "-"
	ctx := context.Background()
	all := map[string]string{"WeChatSecretArn": localstack.LocalSecretArn}
	for k, v := range params {
		all[k] = v
	}
	res, err := localstack.Provision(ctx, clients, t, prefix, all)
	if res != nil {
		tb.Cleanup(func() {
			if err := res.Teardown(context.Background(), clients); err != nil {
				tb.Logf("testenv: teardown %s: %v", prefix, err)
			}
		})
	}
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return &Env{Clients: clients, Resources: res, Endpoints: ep, Template: t}
}

// MustFunctionEnv returns a function's resolved environment in this namespace.
func (e *Env) MustFunctionEnv(tb testing.TB, logicalID string) map[string]string {
	tb.Helper()
	env, err := e.FunctionEnv(logicalID)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
