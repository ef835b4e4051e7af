package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func cmdVersion(args []string, stdout, _ io.Writer) error {
	fs := newFlags("version", "version", "Print the version of this binary.", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "sluice", version)
	return nil
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "validate FILE...", "Check each config file and print every problem as\nFILE:LINE: toml.path: message (hint). Exit 2 if any file has a problem.", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"validate needs at least one FILE"}
	}
	reg := registry.Builtin()
	bad := 0
	for _, path := range fs.Args() {
		_, err := config.Load(path, reg)
		if err != nil {
			bad++
			fmt.Fprintln(stderr, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	if bad > 0 {
		return exitError{exitUsage, fmt.Errorf("%d of %d files have problems", bad, fs.NArg())}
	}
	return nil
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run -c FILE", "Run the topology in FILE until SIGINT or SIGTERM, then drain within\nagent.shutdown_timeout. A second signal stops at once (nothing is lost:\nthe hop protocol redoes unfinished batches on the next start).", stdout)
	cfgPath := fs.String("c", "", "config `FILE` (required)")
	status := fs.Duration("status", 0, "print a status line every `interval` (0: never)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError{"run needs -c FILE"}
	}
	cfg, err := config.Load(*cfgPath, registry.Builtin())
	if err != nil {
		return exitError{exitUsage, err}
	}
	log := newLogger(cfg.Agent.LogLevel, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runAgentFor(ctx, cfg, log, stdout, runOptions{Interval: *status})
}

// runOptions tune runAgentFor.
type runOptions struct {
	// Interval is how often a status line is printed (0: never); Extra
	// adds text to it.
	Interval time.Duration
	Extra    func(*topology.Agent) string
	// StopAfter stops the agent this long after it started (0: never).
	StopAfter time.Duration
	// AdminFallback makes the admin server listen on an ephemeral loopback
	// port when its address is taken (the demo). Without it that happens
	// only for the default address; an address written in the config
	// that cannot be bound is an error.
	AdminFallback bool
	// OnRunning, when set, is called once the agent is running with the
	// admin server's base URL ("" when the admin API is off).
	OnRunning func(adminURL string)
}

// runAgentFor builds cfg, starts its admin server and runs it until ctx
// ends (or opts.StopAfter), then drains.
func runAgentFor(ctx context.Context, cfg *config.File, log *slog.Logger, stdout io.Writer, opts runOptions) error {
	interval, stopAfter, extra := opts.Interval, opts.StopAfter, opts.Extra
	a, err := topology.Build(ctx, cfg, registry.Builtin(), topology.Options{Logger: log})
	if err != nil {
		return err
	}
	adm, srv, closeAdmin, err := startAdmin(ctx, a, cfg, log, opts.AdminFallback || cfg.Agent.AdminAddrDefault)
	if err != nil {
		a.Stop(context.Background())
		return err
	}
	defer closeAdmin()
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	if err := a.Start(runCtx); err != nil {
		adm.SetState(admin.StateFailed)
		a.Stop(context.Background())
		return err
	}
	adm.SetState(admin.StateRunning)
	log.Info("agent started", "config", cfg.Path, "data_dir", cfg.Agent.DataDir)
	if opts.OnRunning != nil {
		opts.OnRunning(adminURL(srv))
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	sl := newStatusLine(a)
	var stopTimer <-chan time.Time
	if stopAfter > 0 {
		t := time.NewTimer(stopAfter)
		defer t.Stop()
		stopTimer = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-stopTimer:
			break loop
		case <-a.Done():
			break loop
		case <-tick:
			line := sl.line()
			if extra != nil {
				line += extra(a)
			}
			fmt.Fprintln(stdout, line)
		}
	}
	timeout := cfg.Agent.ShutdownTimeout.Or(10 * time.Second)
	log.Info("stopping: draining in-flight batches", "deadline", timeout)
	// A second signal cuts the drain short.
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(second)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-second:
			cancel()
		case <-sctx.Done():
		}
	}()
	adm.SetState(admin.StateDraining)
	if err := a.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("stop", "err", err)
	}
	adm.SetState(admin.StateStopped)
	var failed []string
	for _, s := range a.Stats() {
		if s.LastError != "" {
			failed = append(failed, s.Name+": "+s.LastError)
		}
	}
	log.Info("agent stopped", "last_errors", strings.Join(failed, "; "))
	return nil
}

// statusLine formats rates and depths from consecutive samples.
type statusLine struct {
	a        *topology.Agent
	last     map[string]uint64
	lastTime time.Time
}

func newStatusLine(a *topology.Agent) *statusLine {
	return &statusLine{a: a, last: map[string]uint64{}, lastTime: time.Now()}
}

func (s *statusLine) line() string {
	now := time.Now()
	dt := now.Sub(s.lastTime).Seconds()
	s.lastTime = now
	var b strings.Builder
	for _, st := range s.a.Stats() {
		if st.Kind != "source" {
			continue
		}
		rate := float64(st.EventsOut-s.last[st.Name]) / dt
		s.last[st.Name] = st.EventsOut
		fmt.Fprintf(&b, "%s %.0f ev/s (total %d)  ", st.Name, rate, st.EventsOut)
	}
	for _, st := range s.a.Stats() {
		if st.Rejected > 0 || st.Restarts > 0 {
			fmt.Fprintf(&b, "%s rejected %d restarts %d  ", st.Name, st.Rejected, st.Restarts)
		}
	}
	chs := s.a.ChannelStats()
	names := make([]string, 0, len(chs))
	for n := range chs {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("depth")
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, chs[n].DepthEvents)
	}
	return b.String()
}
