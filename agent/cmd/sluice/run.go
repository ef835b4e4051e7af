package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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

const runAbout = `Run the topology in FILE until SIGINT or SIGTERM, then drain within
agent.shutdown_timeout. A second signal stops at once (nothing is lost:
the hop protocol redoes unfinished batches on the next start).

The config is reloaded, validated first and applied as a diff, when FILE
changes (also when it is replaced by rename), on SIGHUP, on POST
/api/reload, and when the .wasm file of a running stage changes. A config
that fails validation is rejected and the running one stays. Each good
config is saved as DATA/last-good.toml.

--resume starts from that last good config: with -c FILE only when FILE
is not valid (FILE stays the file reloads read), without -c from the one
in --data-dir DIR.`

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run -c FILE | run --resume [-c FILE] [--data-dir DIR]", runAbout, stdout)
	cfgPath := fs.String("c", "", "config `FILE` (required without --resume)")
	status := fs.Duration("status", 0, "print a status line every `interval` (0: never)")
	resume := fs.Bool("resume", false, "fall back to the last good config saved in the data directory")
	dataDir := fs.String("data-dir", "", "with --resume: the data `DIR` holding last-good.toml (default: FILE's agent.data_dir, else "+config.DefaultDataDir+")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" && !*resume {
		return usageError{"run needs -c FILE (or --resume)"}
	}
	if *dataDir != "" && !*resume {
		return usageError{"--data-dir goes with --resume"}
	}
	var (
		cfg  *config.File
		text []byte
		err  error
	)
	if *cfgPath != "" {
		if text, err = os.ReadFile(*cfgPath); err == nil {
			cfg, err = config.Parse(*cfgPath, text, registry.Builtin())
		}
	}
	watchPath := *cfgPath
	if *resume && (*cfgPath == "" || err != nil) {
		dir := *dataDir
		if dir == "" && cfg != nil && cfg.Agent.DataDir != "" {
			dir = cfg.Agent.DataDir
		}
		if dir == "" {
			dir = config.DefaultDataDir
		}
		if *cfgPath != "" {
			fmt.Fprintf(stderr, "%v\n%s is not valid: resuming from the last good config in %s\n", err, *cfgPath, dir)
			if abs, aerr := filepath.Abs(*cfgPath); aerr == nil {
				watchPath = abs // loadLastGood may change the working directory
			}
		}
		var meta lastGood
		cfg, text, meta, err = loadLastGood(dir)
		if err != nil {
			return exitError{exitUsage, err}
		}
		if *cfgPath == "" && fileExists(meta.Source) {
			watchPath = meta.Source
		}
	} else if err != nil {
		return exitError{exitUsage, err}
	}
	log := newLogger(cfg.Agent.LogLevel, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runAgentFor(ctx, cfg, log, stdout, runOptions{Interval: *status, ConfigPath: watchPath, ConfigText: text, Watch: true})
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
	// ConfigPath is the file reloads re-read (default cfg.Path) and
	// ConfigText the bytes cfg was parsed from (default: read ConfigPath).
	ConfigPath string
	ConfigText []byte
	// Watch reloads on SIGHUP and on changes to the config file and to
	// running .wasm files (POST /api/reload works without it).
	Watch bool
	// OnReloader, when set, is called with the reloader once the agent
	// runs (tests).
	OnReloader func(*reloader)
}

// runAgentFor builds cfg, starts its admin server and runs it until ctx
// ends (or opts.StopAfter), then drains.
func runAgentFor(ctx context.Context, cfg *config.File, log *slog.Logger, stdout io.Writer, opts runOptions) error {
	interval, stopAfter, extra := opts.Interval, opts.StopAfter, opts.Extra
	a, err := topology.Build(ctx, cfg, registry.Builtin(), topology.Options{Logger: log})
	if err != nil {
		return err
	}
	path, text := opts.ConfigPath, opts.ConfigText
	if path == "" {
		path = cfg.Path
	}
	if text == nil && path != "" {
		text, _ = os.ReadFile(path) // only what ApplyBytes-free reapply uses; the file was just parsed
	}
	rl := newReloader(path, cfg, text, a, log)
	adm, srv, closeAdmin, err := startAdmin(ctx, a, cfg, log, opts.AdminFallback || cfg.Agent.AdminAddrDefault, rl)
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
	rl.setAdmin(adm)
	if stopFleet, err := startFleetClient(ctx, cfg, log, rl, adm.Status); err != nil {
		log.Warn("opamp: not connecting to the fleet server; the agent runs without it", "err", err)
	} else {
		defer stopFleet()
	}
	if err := saveLastGood(cfg.Agent.DataDir, cfg.Path, text); err != nil {
		log.Warn("saving the last good config", "err", err)
	}
	if opts.Watch {
		if err := rl.watch(runCtx); err != nil {
			log.Warn("reload: no file watcher; SIGHUP and POST /api/reload still reload", "err", err)
		}
	}
	if opts.OnReloader != nil {
		opts.OnReloader(rl)
	}
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
