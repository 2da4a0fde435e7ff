// Command wechat-sandbox serves the WeChat API stand-in (package sandbox) on a
// loopback address, for local runs and end-to-end tests of other processes. It
// prints {"url":"http://127.0.0.1:PORT"} on stdout once listening, logs JSON to
// stderr, and is driven through the control API under /_sandbox/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"minipush/internal/dev/sandbox"
	"minipush/internal/logs"
)

// demoApp is used when no -app is given, so `wechat-sandbox` alone is usable.
var demoApp = sandbox.App{AppID: "wx0000000000demo", Secret: "demosecret"}

func main() {
	log := logs.New(os.Stderr, "wechat-sandbox")
	if err := run(context.Background(), os.Args[1:], log); err != nil {
		log.Error("wechat-sandbox failed", "err", err)
		os.Exit(1)
	}
}

// appFlags collects repeated -app appid:secret flags.
type appFlags []sandbox.App

func (a *appFlags) String() string { return fmt.Sprint(len(*a), " apps") }

func (a *appFlags) Set(v string) error {
	id, secret, ok := strings.Cut(v, ":")
	if !ok || id == "" || secret == "" {
		return fmt.Errorf("want appid:secret, got %q", v)
	}
	*a = append(*a, sandbox.App{AppID: id, Secret: secret})
	return nil
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("wechat-sandbox", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address; must be loopback (the sandbox has no auth)")
	config := fs.String("config", "", "optional JSON file: {\"apps\":[{appid,secret}],\"templates\":[{appid,template_id,kind,fields|keywords}]}")
	seed := fs.Uint64("seed", 1, "seed for tokens, ids and fault draws")
	ttl := fs.Duration("token-ttl", sandbox.DefaultTokenTTL, "access token lifetime")
	var apps appFlags
	fs.Var(&apps, "app", "appid:secret of a mini-program (repeatable; default "+demoApp.AppID+":"+demoApp.Secret+")")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wechat-sandbox [flags]\n\ncontrol API:")
		for _, r := range sandbox.ControlRoutes {
			fmt.Fprintln(fs.Output(), "  "+r)
		}
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}

	var cfg sandbox.Config
	if *config != "" {
		raw, err := os.ReadFile(*config)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("parse config %s: %w", *config, err)
		}
	}
	cfg.Apps = append(cfg.Apps, apps...)
	if len(cfg.Apps) == 0 {
		cfg.Apps = []sandbox.App{demoApp}
	}
	sb := sandbox.New(sandbox.Options{Seed: *seed, TokenTTL: *ttl, Logger: log})
	if err := sb.Apply(cfg); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	url := "http://" + ln.Addr().String()
	line, _ := json.Marshal(map[string]string{"url": url})
	fmt.Println(string(line))
	ids := make([]string, len(cfg.Apps))
	for i, a := range cfg.Apps {
		ids[i] = a.AppID
	}
	log.Info("wechat sandbox listening", "url", url, "apps", ids, "templates", len(cfg.Templates))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("wechat sandbox shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Stalled "timeout" faults hold connections; closing them is fine on the way out.
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	srv.Close()
	return nil
}

// checkLoopback refuses to listen beyond this machine: the control API can mint
// users, grants and faults, and has no authentication.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses are allowed (127.0.0.1, ::1, localhost)", addr)
	}
	return nil
}
