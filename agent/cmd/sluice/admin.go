package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/client"
	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/plugins/redis"
)

// fallbackAdminAddr is where the admin server listens when its address is
// taken and falling back is allowed: any free loopback port.
const fallbackAdminAddr = "127.0.0.1:0"

// startAdmin wraps a in the admin adapter and, unless cfg turns the admin
// API off, starts its HTTP server. With fallback an address in use moves
// the server to an ephemeral loopback port. The returned close stops the
// server and releases what it holds; it is safe to call once the agent has
// stopped. srv is nil when the admin API is off. POST /api/reload runs rl
// (trigger "api"), and the status's reload counts are rl's.
func startAdmin(ctx context.Context, a *topology.Agent, cfg *config.File, log *slog.Logger, fallback bool, rl *reloader) (adm *topoagent.Agent, srv *admin.Server, close func(), err error) {
	opts := topoagent.Options{
		Reload:       func(ctx context.Context) error { return rl.reloadFile(ctx, "api") },
		ReloadCounts: rl.counts,
	}
	var rdb goredis.UniversalClient
	if !hasSinkType(cfg, "store") {
		if rdb = redisResultsClient(cfg); rdb != nil {
			opts.Results = topoagent.RedisResults(rdb)
		}
	}
	closeRedis := func() {
		if rdb != nil {
			rdb.Close()
		}
	}
	adm = topoagent.New(a, cfg, opts)
	if err := adm.RemoveStaleTaps(); err != nil {
		log.Warn("admin: removing tap readers a previous run left behind", "err", err)
	}
	if cfg.Agent.AdminAddr == "" {
		log.Info("admin API is off (agent.admin_addr)")
		return adm, nil, closeRedis, nil
	}
	acfg := admin.Config{Addr: cfg.Agent.AdminAddr, Token: cfg.Agent.AdminToken, Logger: log}
	srv, err = listenAdmin(ctx, adm, acfg)
	if err != nil && fallback && errors.Is(err, syscall.EADDRINUSE) {
		log.Warn("admin: address in use, listening on an ephemeral loopback port instead", "addr", acfg.Addr)
		acfg.Addr = fallbackAdminAddr
		srv, err = listenAdmin(ctx, adm, acfg)
	}
	if err != nil {
		closeRedis()
		return nil, nil, nil, fmt.Errorf("%w (set agent.admin_addr to another address, or \"off\")", err)
	}
	return adm, srv, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Stop(sctx); err != nil {
			log.Warn("admin: stop", "err", err)
		}
		closeRedis()
	}, nil
}

func listenAdmin(ctx context.Context, adm admin.Agent, cfg admin.Config) (*admin.Server, error) {
	srv, err := admin.New(adm, cfg)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// adminURL is the dashboard's address, "" without a server.
func adminURL(srv *admin.Server) string {
	if srv == nil {
		return ""
	}
	return "http://" + srv.Addr() + "/"
}

func hasSinkType(cfg *config.File, typ string) bool {
	for _, s := range cfg.Sinks {
		if s.Type == typ {
			return true
		}
	}
	return false
}

// redisResultsClient returns a client for the first (by name) Redis sink's
// database, which the dashboard reads results from when the config has no
// store sink; nil when there is no Redis sink. It connects lazily: an
// unreachable server shows as an error on /api/results, not at start.
func redisResultsClient(cfg *config.File) goredis.UniversalClient {
	for _, s := range cfg.Stages() {
		rc, ok := s.Plugin.(*redis.Config)
		if s.Kind != config.KindSink || s.Type != "redis" || !ok {
			continue
		}
		tc, err := rc.TLS.Build()
		if err != nil {
			return nil // the sink itself reports it
		}
		return goredis.NewUniversalClient(&goredis.UniversalOptions{
			Addrs:            rc.Addrs,
			MasterName:       rc.MasterName,
			IsClusterMode:    rc.Mode == redis.ModeCluster,
			Username:         rc.Username,
			Password:         rc.Password,
			SentinelUsername: rc.SentinelUsername,
			SentinelPassword: rc.SentinelPassword,
			DB:               rc.DB,
			DialTimeout:      rc.DialTimeout.D,
			ReadTimeout:      rc.ReadTimeout.D,
			WriteTimeout:     rc.WriteTimeout.D,
			TLSConfig:        tc,
			PoolSize:         2, // one dashboard refresh at a time
			DisableIdentity:  true,
		})
	}
	return nil
}

// adminFlags adds --addr and --token to a command talking to the admin API.
func adminFlags(fs *flag.FlagSet) (addr, token *string) {
	addr = fs.String("addr", admin.DefaultAddr, "the agent's admin `ADDRESS` (agent.admin_addr), host:port or URL")
	token = fs.String("token", "", "bearer `TOKEN` (default $"+config.AdminTokenEnv+")")
	return addr, token
}

func adminToken(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv(config.AdminTokenEnv)
}

// isTerminal reports whether w is a terminal (to clear it between frames).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// adminError explains a failed admin API call.
func adminError(addr string, err error) error {
	var op interface{ Timeout() bool }
	if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Timeout() {
		return fmt.Errorf("cannot reach the admin API at %s: is the agent running, and is this its agent.admin_addr? (%w)", addr, err)
	}
	return err
}

const topAbout = `Show live per-component rates, counters and channel depths of a running
agent, refreshed every --interval, from its admin API (GET /api/status).
Ctrl-C stops. Exit 1 when the agent cannot be reached.`

func cmdTop(args []string, stdout, _ io.Writer) error {
	fs := newFlags("top", "top [--addr ADDRESS] [--token TOKEN] [--interval D] [--frames N]", topAbout, stdout)
	addr, token := adminFlags(fs)
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	frames := fs.Int("frames", 0, "stop after `N` refreshes (0: until Ctrl-C)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("top takes no arguments, got %q", fs.Arg(0))}
	}
	if *interval <= 0 || *frames < 0 {
		return usageError{"--interval must be positive and --frames not negative"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := client.Top(ctx, stdout, client.New(*addr, adminToken(*token)),
		client.TopOptions{Interval: *interval, Frames: *frames, Clear: isTerminal(stdout)})
	if err != nil {
		return adminError(*addr, err)
	}
	return nil
}

const tapAbout = `Print events as they are appended to CHANNEL of a running agent, one line
each (TIME KEY BODY; a binary body as base64:…), then a summary line. Only
new events are shown; a slow terminal loses samples, never slows the
pipeline. Stops after --limit events or on Ctrl-C. Exit 1 when the agent
cannot be reached or has no such channel.`

func cmdTap(args []string, stdout, _ io.Writer) error {
	fs := newFlags("tap", "tap CHANNEL [--addr ADDRESS] [--token TOKEN] [--sample N] [--limit N]", tapAbout, stdout)
	addr, token := adminFlags(fs)
	sample := fs.Int("sample", 1, "print every `N`th event")
	limit := fs.Int("limit", admin.DefaultTapLimit, fmt.Sprintf("stop after `N` events (at most %d)", admin.MaxTapLimit))
	if err := parse(fs, args); err != nil {
		return err
	}
	// Flags may follow CHANNEL: `sluice tap raw --limit 5`.
	var rest []string
	for fs.NArg() > 0 {
		rest = append(rest, fs.Arg(0))
		if err := parse(fs, fs.Args()[1:]); err != nil {
			return err
		}
	}
	if len(rest) != 1 {
		return usageError{fmt.Sprintf("tap needs exactly one CHANNEL, got %d arguments", len(rest))}
	}
	if *sample < 1 || *sample > admin.MaxTapSample || *limit < 1 || *limit > admin.MaxTapLimit {
		return usageError{fmt.Sprintf("--sample must be 1…%d and --limit 1…%d", admin.MaxTapSample, admin.MaxTapLimit)}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := client.PrintTap(ctx, stdout, client.New(*addr, adminToken(*token)), rest[0], *sample, *limit); err != nil {
		return adminError(*addr, err)
	}
	return nil
}
