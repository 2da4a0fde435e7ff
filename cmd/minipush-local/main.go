// Command minipush-local runs the whole system on this machine (make run): the local
// stack, the WeChat sandbox and the five functions wired from template.yaml.
//
//	minipush-local [-addr 127.0.0.1:3000] [-data .local] [-reset]
//	               [-dynamodb URL -sqs URL] [-wechat URL] [-sqs-duplicate P]
//	               [-logs] [-log-file PATH] [-summary 5s] [-demo N]
//
// Data is kept in -data between runs unless -reset is given. -dynamodb/-sqs use an
// already running local stack and -wechat an already running sandbox (tests use them to
// kill and restart the runner while the "cloud" stays up). -sqs-duplicate P delivers each
// received SQS message a second time with probability P (fault-injection tests).
//
// Its first line on stdout is one JSON object with the endpoints (scripts and tests read
// it); with -data it also writes <data>/operator.env, the same endpoints as shell
// assignments (API, TOKEN, APP_ID, WECHAT) for an operator's curl. The functions' JSON
// logs go to -log-file (make run and make demo name a file under .local/logs/), or, when
// that is empty, to <data>/logs/functions.jsonl if stderr is a terminal, so they do not
// drown the terminal; -logs keeps them on stderr. Whenever the logs are moved, the
// terminal gets a short list of where the console, the API, the OpenAPI document and the
// log file are.
//
// Every -summary interval in which something happened it prints one line of the
// functions' metrics (the EMF lines they emit, summed by localrun.Summary): recipients
// per second by outcome, WeChat latency p50/p99, throttles.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"minipush/internal/dev/demo"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/sandbox"
	"minipush/internal/lambdaenv"
	"minipush/internal/logs"
)

func main() {
	log := logs.New(os.Stderr, "minipush-local")
	if err := run(log); err != nil {
		log.Error("minipush-local failed", "err", err)
		if terminal != os.Stderr {
			fmt.Fprintln(terminal, "minipush-local failed:", err)
		}
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	addr := flag.String("addr", "127.0.0.1:3000", "HTTP API listen address (127.0.0.1 only)")
	data := flag.String("data", ".local", "keep data here between runs; empty keeps nothing")
	reset := flag.Bool("reset", false, "delete the kept data first")
	ddb := flag.String("dynamodb", "", "use this DynamoDB Local instead of starting one")
	sqsURL := flag.String("sqs", "", "use this SQS server instead of starting one")
	wechatURL := flag.String("wechat", "", "use this WeChat sandbox instead of starting one")
	params, env := kvFlag{}, kvFlag{}
	flag.Var(params, "param", "override a template parameter, K=V (repeatable)")
	flag.Var(env, "env", "add K=V to every function's environment (repeatable)")
	prefix := flag.String("prefix", "minipush-", "name prefix of the tables and queues")
	sqsDup := flag.Float64("sqs-duplicate", 0, "deliver each received SQS message a second time with this probability (0..1), as SQS's at-least-once delivery may; for fault-injection tests")
	demoUsers := flag.Int("demo", 0, "seed this many users, send them a campaign, show progress, print the summary and exit")
	showLogs := flag.Bool("logs", false, "keep the functions' JSON logs on stderr instead of a file")
	logFile := flag.String("log-file", "", "write the functions' JSON logs to this file (default <data>/logs/functions.jsonl when stderr is a terminal)")
	summaryEvery := flag.Duration("summary", 5*time.Second, "print a metrics summary this often while something changes; 0 never")
	var receipts localrun.Receipts
	flag.StringVar(&receipts.Format, "receipts", "xml", "the sandbox pushes subscribe_msg_sent_event receipts to the API in this format: xml, json, or off (the app then has receipts off)")
	flag.Float64Var(&receipts.FailRate, "receipt-fail-rate", 0.02, "share of receipts that report an asynchronous failure (ErrorCode 10005)")
	flag.IntVar(&receipts.Batch, "receipt-batch", 1, "List items one receipt push may carry")
	flag.Parse()
	// Reset first: the log file may live under the data directory.
	if *reset && *data != "" {
		if err := os.RemoveAll(*data); err != nil {
			return err
		}
	}
	if *logFile == "" && isTerminal(os.Stderr) && *data != "" {
		*logFile = filepath.Join(*data, "logs", "functions.jsonl")
	}
	if *showLogs {
		*logFile = ""
	}
	if *logFile != "" {
		var err error
		if terminal, err = logsToFile(*logFile); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	opts := localrun.Options{Root: root, DataDir: *data, Addr: *addr, Log: log, Reap: 10 * time.Second,
		Builders: lambdaenv.Builders(), Params: params, Env: env, Prefix: *prefix, SQSDuplicate: *sqsDup}
	if *ddb != "" || *sqsURL != "" {
		if *ddb == "" || *sqsURL == "" {
			return fmt.Errorf("-dynamodb and -sqs go together")
		}
		opts.Stack = &localstack.Endpoints{DynamoDB: *ddb, SQS: *sqsURL}
	}
	app := localrun.DemoApp()
	app.NoReceipts = receipts.Format == "off" // no pushes: the app has receipts off too
	sandboxURL := *wechatURL
	if sandboxURL == "" {
		sb := sandbox.New(sandbox.Options{Logger: log})
		if err := sb.Apply(app.SandboxConfig()); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		sandboxURL = "http://" + ln.Addr().String()
	}
	opts.Params["WeChatBaseURL"] = sandboxURL
	opts.Secrets = map[string]string{"WeChatSecret": app.SecretJSON()}

	r, err := localrun.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer r.Stop(context.Background())
	// Receipts flow once the API listens: the sandbox pushes each sent message's
	// subscribe_msg_sent_event to it, as WeChat would.
	if err := app.EnableReceipts(ctx, sandboxURL, r.URL, receipts); err != nil {
		return err
	}
	ready := map[string]string{
		"api": r.URL, "tick": r.URL + "/_local/tick", "wechat_sandbox": sandboxURL,
		"dynamodb": r.Stack.DynamoDB, "sqs": r.Stack.SQS, "app_id": app.AppID,
		"operator_token": r.Secrets["OperatorTokenSecret"],
	}
	log.Info("ready", "api", r.URL, "wechat_sandbox", sandboxURL, "data", *data)
	if *demoUsers > 0 {
		if *logFile != "" {
			fmt.Printf("minipush demo: the functions' JSON logs go to %s (LOGS=1 shows them here)\n", *logFile)
		}
		return runDemo(ctx, r, sandboxURL, app.AppID, *demoUsers, receipts.Format != "off")
	}
	b, _ := json.Marshal(ready)
	fmt.Println(string(b))
	envFile := ""
	if *data != "" {
		envFile = filepath.Join(*data, "operator.env")
		if err := writeOperatorEnv(envFile, r.URL, r.Secrets["OperatorTokenSecret"], app.AppID, sandboxURL); err != nil {
			return err
		}
	}
	if terminal != os.Stderr || isTerminal(os.Stderr) {
		printWhere(terminal, r.URL, sandboxURL, *logFile, envFile)
	}
	if *summaryEvery > 0 {
		go r.Metrics.Report(ctx, terminal, *summaryEvery)
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

func runDemo(ctx context.Context, r *localrun.Runner, sandboxURL, appID string, users int, receipts bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	fi, _ := os.Stdout.Stat()
	cfg := demo.Config{
		API: r.URL, Sandbox: sandboxURL, AppID: appID, OperatorToken: r.Secrets["OperatorTokenSecret"],
		Template: localrun.DemoSubscribeTemplate, Users: users, Out: os.Stdout,
		Terminal: fi != nil && fi.Mode()&os.ModeCharDevice != 0,
	}
	if receipts {
		cfg.Receipts = 30 * time.Second
	}
	sum, err := demo.Run(ctx, cfg)
	if err != nil {
		return err
	}
	sum.Print(os.Stdout)
	c := sum.Counters
	if c.Final() != users || sum.Accepted != c.Sent {
		return fmt.Errorf("demo: %d of %d recipients final, %d accepted for %d sent", c.Final(), users, sum.Accepted, c.Sent)
	}
	if receipts && c.Delivered+c.AsyncFailed != c.Sent {
		return fmt.Errorf("demo: %d receipts (%d delivered, %d async failed) for %d sent", c.Delivered+c.AsyncFailed, c.Delivered, c.AsyncFailed, c.Sent)
	}
	return nil
}

// kvFlag collects repeated K=V flags.
type kvFlag map[string]string

func (f kvFlag) String() string { return fmt.Sprint(map[string]string(f)) }

func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want K=V, got %q", s)
	}
	f[k] = v
	return nil
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "template.yaml")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no template.yaml above %s", wd)
		}
	}
}

// terminal is where the summary and a fatal error go: stderr, or what stderr was
// before logsToFile moved it.
var terminal = os.Stderr

// logsToFile sends stderr (every function's JSON logs, and the runner's) to path and
// returns the terminal's stderr for the summary.
func logsToFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	term, err := redirectStderr(f)
	if err != nil {
		f.Close()
		return os.Stderr, nil // logs stay on stderr where the descriptor cannot move
	}
	return term, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printWhere tells the person at the terminal where everything is: the ready JSON line
// is for scripts.
func printWhere(w io.Writer, api, sandboxURL, logFile, envFile string) {
	fmt.Fprintf(w, "minipush is running; Ctrl-C stops it.\n")
	fmt.Fprintf(w, "  console   %s/console/\n", api)
	fmt.Fprintf(w, "  API       %s/v1/  (operator routes under /v1/admin/, Bearer operator token)\n", api)
	fmt.Fprintf(w, "  OpenAPI   %s/v1/openapi.json\n", api)
	fmt.Fprintf(w, "  plan now  curl -X POST %s/_local/tick  (else the planner runs every minute)\n", api)
	fmt.Fprintf(w, "  WeChat    %s  (the sandbox; GET /_sandbox/accepted lists what it accepted)\n", sandboxURL)
	if envFile != "" {
		fmt.Fprintf(w, "  operator  . %s  sets API, TOKEN, APP_ID and WECHAT for curl\n", envFile)
	}
	if logFile != "" {
		fmt.Fprintf(w, "  logs      %s  (LOGS=1 or -logs shows them here); metrics summary below\n", logFile)
	}
}

// writeOperatorEnv writes the endpoints and the operator token as shell assignments,
// readable only by the owner (the token is the operator credential).
func writeOperatorEnv(path, api, token, appID, sandboxURL string) error {
	body := fmt.Sprintf("# written by minipush-local at each start: . this file, then curl $API with $TOKEN\n"+
		"API=%s\nTOKEN=%s\nAPP_ID=%s\nWECHAT=%s\n", api, token, appID, sandboxURL)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return fmt.Errorf("operator env: %w", err)
	}
	return nil
}
