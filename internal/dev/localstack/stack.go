// Package localstack runs the local stand-ins for AWS that make run and make test use:
// DynamoDB Local (the official jar, on Java 17) and local-aws-sqs (on Node), both bound to
// 127.0.0.1 on free ports, and creates the tables and queues that template.yaml declares.
package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush/internal/logs"
)

// Environment variables through which a parent process (make test, via
// cmd/localstack exec) hands its running stack to every test binary.
const (
	EnvDynamoDB = "MINIPUSH_DYNAMODB_ENDPOINT"
	EnvSQS      = "MINIPUSH_SQS_ENDPOINT"
)

// LocalSecretArn is the value the local stack gives the WeChatSecretArn parameter; the
// local runner serves the secret's content itself.
const LocalSecretArn = "local:WeChatSecret"

// Region is the region every local client uses; the stand-ins ignore it but the SDK
// needs one.
const Region = "us-east-1"

// Endpoints are the URLs of a running local stack.
type Endpoints struct {
	DynamoDB string // also serves DynamoDB Streams
	SQS      string
}

// Environ returns the variables that point an aws-sdk-go-v2 program (config.LoadDefaultConfig)
// at these endpoints with dummy credentials, e.g. for a function binary run under RIE.
func (e Endpoints) Environ() []string {
	return []string{
		"AWS_ENDPOINT_URL_DYNAMODB=" + e.DynamoDB,
		"AWS_ENDPOINT_URL_DYNAMODB_STREAMS=" + e.DynamoDB,
		"AWS_ENDPOINT_URL_SQS=" + e.SQS,
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
	}
}

// Config returns an AWS config with static dummy credentials for the local stack.
func Config() aws.Config {
	return aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	}
}

// Options configure Start.
type Options struct {
	// Root is the repository root (where template.yaml and infra/ live).
	Root string
	// DataDir keeps DynamoDB Local's data between runs; empty runs it in memory.
	DataDir string
	// Logger receives progress lines; nil discards them.
	Logger *slog.Logger
}

// Stack is a running local stack.
type Stack struct {
	Endpoints
	procs []*process
}

// Install runs infra/install.sh, which installs Java (only if missing), the npm lock and
// the DynamoDB Local jar. It is idempotent and cheap when everything is in place.
func Install(ctx context.Context, root string) error {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "infra", "install.sh"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("localstack: infra/install.sh: %w\n%s", err, out)
	}
	return nil
}

// Start installs what is missing, starts DynamoDB Local and the SQS server, and returns
// once both answer. Stop the stack when done; if this process dies first, its children
// die with it.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	log := opts.Logger
	log = logs.Or(log)
	if err := Install(ctx, opts.Root); err != nil {
		return nil, err
	}
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Stop(context.WithoutCancel(ctx))
		}
	}()
	if err := s.startDynamoDB(ctx, opts); err != nil {
		return nil, err
	}
	if err := s.startSQS(ctx, opts); err != nil {
		return nil, err
	}
	log.Info("local stack ready", "dynamodb", s.DynamoDB, "sqs", s.SQS)
	return s, nil
}

func (s *Stack) startDynamoDB(ctx context.Context, opts Options) error {
	dir := filepath.Join(opts.Root, "infra", ".cache", "dynamodb")
	var lastErr error
	// DynamoDB Local cannot listen on port 0 and report it, so take a free port and retry
	// on the rare race where someone else grabs it first.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		args := []string{
			"-XX:+UseSerialGC", "-Xss1m",
			"-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"),
			"-jar", filepath.Join(dir, "DynamoDBLocal.jar"),
			"-port", strconv.Itoa(port), "-sharedDb", "-disableTelemetry",
		}
		if opts.DataDir != "" {
			// Java runs in the jar's directory, so a relative path would land there.
			dataDir, err := filepath.Abs(opts.DataDir)
			if err != nil {
				return fmt.Errorf("localstack: data dir: %w", err)
			}
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return fmt.Errorf("localstack: data dir: %w", err)
			}
			args = append(args, "-dbPath", dataDir)
		} else {
			args = append(args, "-inMemory")
		}
		cmd := exec.Command("java", args...)
		cmd.Dir = dir
		p, _, err := startProcess("dynamodb-local", cmd, false)
		if err != nil {
			return fmt.Errorf("localstack: %w", err)
		}
		s.procs = append(s.procs, p)
		endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
		db := dynamodb.NewFromConfig(Config(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(endpoint) })
		lastErr = waitReady(ctx, p, 60*time.Second, func(ctx context.Context) error {
			_, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
			return err
		})
		if lastErr == nil {
			s.DynamoDB = endpoint
			return nil
		}
		_ = p.stop(ctx)
	}
	return fmt.Errorf("localstack: dynamodb local did not start: %w", lastErr)
}

func (s *Stack) startSQS(ctx context.Context, opts Options) error {
	infra := filepath.Join(opts.Root, "infra")
	cmd := exec.Command("node", filepath.Join(infra, "sqs-server.mjs"), "0")
	cmd.Dir = infra
	p, stdout, err := startProcess("sqs", cmd, true)
	if err != nil {
		return fmt.Errorf("localstack: %w", err)
	}
	s.procs = append(s.procs, p)
	lineCh := make(chan string, 1)
	go func() {
		line, _ := readLine(stdout)
		lineCh <- line
	}()
	var line string
	select {
	case line = <-lineCh:
	case <-p.done:
		return fmt.Errorf("localstack: sqs server exited: %v\n%s", p.err, p.tail())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("localstack: sqs server did not report its port\n%s", p.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
	var hello struct{ Port int }
	if err := json.Unmarshal([]byte(line), &hello); err != nil || hello.Port == 0 {
		return fmt.Errorf("localstack: sqs server said %q\n%s", line, p.tail())
	}
	endpoint := "http://127.0.0.1:" + strconv.Itoa(hello.Port)
	client := sqs.NewFromConfig(Config(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint) })
	if err := waitReady(ctx, p, 30*time.Second, func(ctx context.Context) error {
		_, err := client.ListQueues(ctx, &sqs.ListQueuesInput{})
		return err
	}); err != nil {
		return fmt.Errorf("localstack: sqs server: %w", err)
	}
	s.SQS = endpoint
	return nil
}

// Stop stops every process the stack started.
func (s *Stack) Stop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, p := range s.procs {
		_ = p.stop(ctx)
	}
}

// waitReady polls check until it succeeds, the process dies or the deadline passes.
func waitReady(ctx context.Context, p *process, limit time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%s not ready after %s", p.name, limit), err)
		case <-tick.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localstack: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Clients are the local clients of a stack.
type Clients struct {
	DynamoDB *dynamodb.Client
	Streams  *dynamodbstreams.Client
	SQS      *sqs.Client
}

// NewClients returns clients bound to e.
func (e Endpoints) NewClients() Clients {
	cfg := Config()
	return Clients{
		DynamoDB: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(e.DynamoDB) }),
		Streams:  dynamodbstreams.NewFromConfig(cfg, func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(e.DynamoDB) }),
		SQS:      sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.SQS) }),
	}
}

// PIDs returns the process ids of the stack's children.
func (s *Stack) PIDs() []int {
	out := make([]int, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}
