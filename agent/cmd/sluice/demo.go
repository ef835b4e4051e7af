package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/conf"
	"github.com/sluicehq/sluice/internal/orders"
)

const demoAbout = `Run the order-analysis demo: build the example plugins (order-parse and
order-stats in C, or in Go when clang's wasm32 target is missing), write a
growing order log with the built-in generator, and run conf/agent.toml:

  orders.log ─tail─▶ [raw] ─order-parse─▶ [orders] ─order-stats─▶ [results] ─store

A status line every second shows events/s, channel depths and the top
categories. Ctrl-C stops cleanly. Everything lives under --dir: delete it to
start over. Agent logs go to DIR/agent.log.`

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--dir DIR] [--rate N] [--for D]", demoAbout, stdout)
	dir := fs.String("dir", filepath.Join(".sluice", "demo"), "data `DIR` for the order log, plugins, channels and results")
	rate := fs.Int("rate", 2000, "orders per second written to the log")
	runFor := fs.Duration("for", 0, "stop after running this long (0: until Ctrl-C)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rate <= 0 {
		return usageError{"--rate must be positive"}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "sluice demo: data in %s (delete it to start over)\n", abs)
	if err := buildDemoPlugins(ctx, abs, stdout); err != nil {
		return err
	}
	os.Setenv("SLUICE_DEMO_DIR", abs)
	cfg, err := config.Parse("conf/agent.toml", conf.Demo, registry.Builtin())
	if err != nil {
		return exitError{exitUsage, err}
	}
	logFile, err := os.OpenFile(filepath.Join(abs, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(cfg.Agent.LogLevel, logFile)

	genCtx, stopGen := context.WithCancel(ctx)
	genDone := make(chan error, 1)
	go func() { genDone <- generateOrders(genCtx, abs, *rate) }()
	fmt.Fprintf(stdout, "writing %d orders/s to %s; agent log: %s; Ctrl-C to stop\n",
		*rate, filepath.Join(abs, "orders.log"), filepath.Join(abs, "agent.log"))
	err = runAgentFor(ctx, cfg, log, stdout, runOptions{
		Interval:  time.Second,
		StopAfter: *runFor,
		Extra:     func(a *topology.Agent) string { return "  " + topCategories(a, "results") },
		// A second demo or agent may hold the default port: take another.
		AdminFallback: true,
		OnRunning: func(url string) {
			if url != "" {
				fmt.Fprintf(stdout, "dashboard: %s  (sluice top --addr %s)\n", url, strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
			}
		},
	})
	stopGen()
	if gerr := <-genDone; gerr != nil && !errors.Is(gerr, context.Canceled) {
		err = errors.Join(err, gerr)
	}
	if err == nil {
		fmt.Fprintf(stdout, "stopped cleanly; results and channels are kept in %s\n", abs)
	}
	return err
}

// repoRoot finds the Sluice checkout holding the example plugins.
func repoRoot() (string, error) {
	return plugintool.SDKRoot(".")
}

// buildDemoPlugins builds order-parse and order-stats (C, else Go: the C
// versions are several times faster) into DIR/plugins.
func buildDemoPlugins(ctx context.Context, dir string, stdout io.Writer) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "plugins")
	for _, ex := range []struct{ name, c, golang string }{
		{"order-parse", "c", "."},
		{"order-stats", "c", "go"},
	} {
		fmt.Fprintf(stdout, "building wasm-examples/%s (C)…\n", ex.name)
		wasm := filepath.Join(out, ex.name+".wasm")
		_, err = plugintool.Build(ctx, filepath.Join(root, "wasm-examples", ex.name, ex.c), wasm)
		var mt *plugintool.MissingToolError
		if errors.As(err, &mt) {
			fmt.Fprintf(stdout, "  %v\n  using the Go version of %s instead\n", err, ex.name)
			_, err = plugintool.Build(ctx, filepath.Join(root, "wasm-examples", ex.name, ex.golang), wasm)
		}
		if err != nil {
			return toolError(err)
		}
	}
	return nil
}

// generateOrders appends order lines to DIR/orders.log at rate per second
// until ctx ends. The next order number is kept in DIR/orders.next so a
// second run continues the same log; order times follow the wall clock.
func generateOrders(ctx context.Context, dir string, rate int) error {
	nextPath := filepath.Join(dir, "orders.next")
	var next uint64
	if b, err := os.ReadFile(nextPath); err == nil {
		next, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	step := time.Second / time.Duration(rate)
	start := time.Now()
	g := orders.NewGenerator(orders.GenConfig{Seed: 1, Start: start.Add(-time.Duration(next) * step), Step: step, MalformedEvery: 1000})
	f, err := os.OpenFile(filepath.Join(dir, "orders.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	first := next
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return os.WriteFile(nextPath, []byte(strconv.FormatUint(next, 10)+"\n"), 0o644)
		case now := <-tick.C:
			target := first + uint64(now.Sub(start).Seconds()*float64(rate))
			buf = buf[:0]
			for ; next < target; next++ {
				buf = g.AppendLine(buf, next)
			}
			if _, err := f.Write(buf); err != nil {
				return err
			}
		}
	}
}
