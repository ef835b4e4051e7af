package wasmhost

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tetratelabs/wazero"
)

// Runtime loads plugins. It owns the compilation cache they share, so a
// module used by several plugins (or reloaded) is compiled once.
//
// Lifecycle: NewRuntime, any number of Load calls (safe concurrently), then
// Close, which closes every plugin still open. Close is safe twice.
type Runtime struct {
	cache  wazero.CompilationCache
	logger *slog.Logger

	// interpreter selects wazero's interpreter instead of its compiler, and
	// closeOnDone wazero's own guard instead of instrumentation; only tests
	// and the guard benchmarks set them, to measure those options.
	interpreter bool
	closeOnDone bool

	mu      sync.Mutex
	plugins map[*Plugin]struct{}
	totals  map[string]*pluginTotals // by plugin name; kept after the plugins close
	closed  bool
}

// NewRuntime creates a Runtime. With cfg.CacheDir set, compiled modules are
// kept on disk there and reused by later runtimes.
func NewRuntime(ctx context.Context, cfg RuntimeConfig) (*Runtime, error) {
	_ = ctx
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasmhost: compilation cache in %s: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Runtime{cache: cache, logger: logger, plugins: map[*Plugin]struct{}{}, totals: map[string]*pluginTotals{}}, nil
}

// Close closes every plugin loaded by r that is still open, then the cache.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	open := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		open = append(open, p)
	}
	r.mu.Unlock()
	var first error
	for _, p := range open {
		if err := p.Close(ctx); err != nil && first == nil {
			first = err
		}
	}
	if err := r.cache.Close(ctx); err != nil && first == nil {
		first = fmt.Errorf("wasmhost: closing compilation cache: %w", err)
	}
	return first
}

func (r *Runtime) track(p *Plugin) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("runtime is closed")
	}
	r.plugins[p] = struct{}{}
	return nil
}

// untrack forgets a closed plugin, keeping its counters in its name's
// totals so that they never go backwards.
func (r *Runtime) untrack(p *Plugin) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.plugins[p]; !ok {
		return
	}
	delete(r.plugins, p)
	for name, v := range p.Counters() {
		p.totals.retired[name] += v
	}
}
