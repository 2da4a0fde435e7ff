// Command localstack runs the local AWS stand-ins (DynamoDB Local and the SQS server).
//
//	localstack exec -- CMD ARGS...   start the stack, run CMD with its endpoints in the
//	                                 environment (how make test shares one stack among
//	                                 every test binary), stop the stack, exit as CMD did
//	localstack serve [-data DIR]     start the stack, create the template's tables and
//	                                 queues, print the endpoints, run until interrupted
//
// Both take -scale-k K: DynamoDB is then served through the scale model of AWS's
// partition limits divided by K (internal/dev/scalemodel).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/logs"
)

func main() {
	log := logs.New(os.Stderr, "localstack")
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	code := 0
	switch os.Args[1] {
	case "exec":
		code, err = execCmd(log, os.Args[2:])
	case "serve":
		err = serve(log, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		log.Error("localstack failed", "err", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localstack exec [-scale-k K] -- CMD [ARGS...] | localstack serve [-data DIR] [-scale-k K]")
	os.Exit(2)
}

func root() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "template.yaml")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}

func execCmd(log *slog.Logger, args []string) (int, error) {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	scaleK := scaleFlag(fs)
	_ = fs.Parse(args) // stops at "--" or CMD
	args = fs.Args()
	if len(args) == 0 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := localstack.Start(ctx, localstack.Options{Root: root(), Logger: log})
	if err != nil {
		return 0, err
	}
	defer st.Stop(context.Background())
	ep, stopModel, err := withScaleModel(ctx, log, st.Endpoints, *scaleK)
	if err != nil {
		return 0, err
	}
	defer stopModel()

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), localstack.EnvDynamoDB+"="+ep.DynamoDB, localstack.EnvSQS+"="+ep.SQS)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec %s: %w", args[0], err)
	}
	go func() {
		<-ctx.Done()
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

func serve(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	data := fs.String("data", "", "keep DynamoDB data in this directory (default: in memory)")
	scaleK := scaleFlag(fs)
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := root()
	tpl, err := samtemplate.ReadFile(filepath.Join(r, "template.yaml"))
	if err != nil {
		return err
	}
	st, err := localstack.Start(ctx, localstack.Options{Root: r, DataDir: *data, Logger: log})
	if err != nil {
		return err
	}
	defer st.Stop(context.Background())
	res, err := localstack.Provision(ctx, st.NewClients(), tpl, "minipush-", map[string]string{"WeChatSecretArn": localstack.LocalSecretArn})
	if err != nil {
		return err
	}
	ep, stopModel, err := withScaleModel(ctx, log, st.Endpoints, *scaleK)
	if err != nil {
		return err
	}
	defer stopModel()
	for _, env := range ep.Environ() {
		fmt.Println("export " + env)
	}
	for id, name := range res.Tables {
		log.Info("table", "id", id, "name", name)
	}
	for id, q := range res.Queues {
		log.Info("queue", "id", id, "url", q.URL)
	}
	log.Info("ready: local stack serving until interrupted", "dynamodb", ep.DynamoDB, "sqs", ep.SQS)
	<-ctx.Done()
	return nil
}
