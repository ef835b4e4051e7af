package wasmhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/agent/wasmhost/internal/guard"
)

// ABIVersion is the plugin ABI this host implements (sdk/ABI.md).
const ABIVersion = 1

// hostModule is the import module name of the host functions; it changes
// together with ABIVersion.
const hostModule = "sluice_v1"

const pageSize = 65536

// Plugin is one loaded module with its pool of instances.
//
// Lifecycle: Load returns it with one initialised instance; the call methods
// matching its kind may be used concurrently (up to Instances run in
// parallel, the rest wait); Close releases everything and is safe twice.
type Plugin struct {
	name     string
	kind     Kind
	cfg      PluginConfig
	logger   *slog.Logger
	owner    *Runtime
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	config   []byte // flattened config for sluice_init
	hasTick  bool
	hasInit  bool // _initialize exported
	maxMem   uint64
	grants   map[string]bool
	guard    guardMode

	sem    chan struct{} // one token per instance in use or idle
	mu     sync.Mutex    // guards idle, closed, lastPos, opened
	idle   []*instance
	busy   map[*instance]struct{} // instances inside a call
	closed bool
	seq    atomic.Uint64

	// Sources: the position after the last successful poll (or the one
	// given to Open), acknowledged to every fresh instance so it resumes
	// right after the events already handed to the host.
	lastPos []byte
	opened  bool

	stateMu  sync.Mutex // serialises StateStore access between instances
	counters sync.Map   // metric name -> *atomic.Int64

	// totals are the figures Runtime.Stats reports, shared by every plugin
	// loaded under this name (one per partition, and the ones that replace
	// them after a restart or reload).
	totals *pluginTotals
}

// guardMode is how a plugin's runaway loops are stopped (ADR 0002).
type guardMode int

const (
	// guardInstrumented: the module is rewritten by internal/guard; the
	// host sets its stop flag at the deadline. The default.
	guardInstrumented guardMode = iota
	// guardCloseOnDone: wazero's WithCloseOnContextDone, for modules the
	// instrumentation cannot decode. Safe, but loops run several times
	// slower.
	guardCloseOnDone
	// guardNone: Trusted plugins. A runaway loop is never stopped.
	guardNone
)

func (g guardMode) String() string {
	return [...]string{"instrumented", "close-on-context-done", "none (trusted)"}[g]
}

var kindExports = map[Kind][]string{
	KindBolt:   {"sluice_process"},
	KindSource: {"sluice_poll", "sluice_ack"},
	KindSink:   {"sluice_write"},
}

type signature struct{ params, results []api.ValueType }

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

var exportSignatures = map[string]signature{
	"sluice_abi_version": {nil, []api.ValueType{i32}},
	"sluice_buffer":      {[]api.ValueType{i32}, []api.ValueType{i32}},
	"sluice_init":        {[]api.ValueType{i32, i32}, []api.ValueType{i64}},
	"_initialize":        {nil, nil},
	"sluice_process":     {[]api.ValueType{i32, i32}, []api.ValueType{i64}},
	"sluice_tick":        {[]api.ValueType{i64}, []api.ValueType{i64}},
	"sluice_poll":        {[]api.ValueType{i32}, []api.ValueType{i64}},
	"sluice_ack":         {[]api.ValueType{i32, i32}, []api.ValueType{i64}},
	"sluice_write":       {[]api.ValueType{i32, i32}, []api.ValueType{i64}},
}

// Load compiles the module (or takes it from the cache), checks its exports
// and imports against the ABI and the granted capabilities, and initialises
// one instance so that a config the plugin rejects is a load error.
func (r *Runtime) Load(ctx context.Context, cfg PluginConfig) (*Plugin, error) {
	p, err := r.load(ctx, cfg)
	if err != nil {
		var pe *PluginError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, &PluginError{Plugin: cfg.Name, Op: "load", Err: err}
	}
	return p, nil
}

func (r *Runtime) load(ctx context.Context, cfg PluginConfig) (*Plugin, error) {
	if cfg.Name == "" {
		return nil, errors.New("plugin has no name")
	}
	if _, ok := kindExports[cfg.Kind]; !ok {
		return nil, fmt.Errorf("unknown kind %q (want source, bolt or sink)", cfg.Kind)
	}
	where := "inline module"
	wasm := cfg.Wasm
	switch {
	case cfg.Path != "" && cfg.Wasm != nil:
		return nil, errors.New("both a path and inline module bytes are set")
	case cfg.Path != "":
		where = cfg.Path
		b, err := os.ReadFile(cfg.Path)
		if err != nil {
			return nil, err
		}
		wasm = b
	case wasm == nil:
		return nil, errors.New("neither a module path nor module bytes are set")
	}
	if cfg.SHA256 != "" {
		sum := sha256.Sum256(wasm)
		got := hex.EncodeToString(sum[:])
		if !strings.EqualFold(got, cfg.SHA256) {
			return nil, fmt.Errorf("%s: sha256 is %s, config pins %s", where, got, cfg.SHA256)
		}
	}
	grants := map[string]bool{}
	for _, c := range cfg.Capabilities {
		if _, ok := capabilityImports[c]; !ok {
			return nil, fmt.Errorf("unknown capability %q (known: log, clock, random, metrics, state, http)", c)
		}
		grants[c] = true
	}
	if grants[CapState] != (cfg.State != nil) {
		if cfg.State == nil {
			return nil, errors.New(`capability "state" is granted but no state store is configured`)
		}
		return nil, errors.New(`a state store is configured but capability "state" is not granted`)
	}
	if grants[CapHTTP] && cfg.Kind == KindBolt {
		return nil, errors.New(`capability "http" is for sources and sinks only`)
	}
	if cfg.MaxMemoryBytes == 0 {
		cfg.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	pages := (cfg.MaxMemoryBytes + pageSize - 1) / pageSize
	if pages > 65536 {
		pages = 65536
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.Instances <= 0 || cfg.Kind == KindSource {
		cfg.Instances = 1
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	config, err := flattenConfig(cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = r.logger
	}
	logger = logger.With("plugin", cfg.Name)

	mode := guardInstrumented
	switch {
	case cfg.Trusted:
		mode = guardNone
	case r.closeOnDone:
		mode = guardCloseOnDone
	default:
		instrumented, err := guard.Instrument(wasm)
		if err != nil {
			mode = guardCloseOnDone
			logger.Warn("module cannot be instrumented; falling back to the slower close-on-context-done guard", "err", err)
		} else {
			wasm = instrumented
		}
	}
	rcfg := wazero.NewRuntimeConfigCompiler()
	if r.interpreter {
		rcfg = wazero.NewRuntimeConfigInterpreter()
	}
	rcfg = rcfg.WithCompilationCache(r.cache).
		WithMemoryLimitPages(uint32(pages)).
		WithCloseOnContextDone(mode == guardCloseOnDone)
	p := &Plugin{
		name:   cfg.Name,
		kind:   cfg.Kind,
		cfg:    cfg,
		logger: logger,
		owner:  r,
		rt:     wazero.NewRuntimeWithConfig(ctx, rcfg),
		config: config,
		maxMem: pages * pageSize,
		grants: grants,
		guard:  mode,
		sem:    make(chan struct{}, cfg.Instances),
		busy:   map[*instance]struct{}{},
		totals: r.totalsOf(cfg.Name),
	}
	fail := func(err error) (*Plugin, error) {
		p.rt.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	compiled, err := p.rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("%s: not a valid module: %w", where, err))
	}
	p.compiled = compiled
	if err := p.checkModule(); err != nil {
		return fail(fmt.Errorf("%s: %w", where, err))
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return fail(fmt.Errorf("instantiating WASI: %w", err))
	}
	if err := p.instantiateHostModules(ctx); err != nil {
		return fail(err)
	}
	if err := r.track(p); err != nil {
		return fail(err)
	}
	inst, err := p.newInstance(ctx)
	if err != nil {
		r.untrack(p)
		p.rt.Close(context.WithoutCancel(ctx))
		var pe *PluginError
		if errors.As(err, &pe) {
			return nil, err
		}
		return nil, &PluginError{Plugin: p.name, Op: "init", Err: err}
	}
	p.sem <- struct{}{}
	p.release(inst, true)
	return p, nil
}

// checkModule verifies exports and imports before anything is instantiated.
func (p *Plugin) checkModule() error {
	exports := p.compiled.ExportedFunctions()
	if _, ok := p.compiled.ExportedMemories()["memory"]; !ok {
		return errors.New(`module does not export its memory as "memory"`)
	}
	required := append([]string{"sluice_abi_version", "sluice_buffer", "sluice_init"}, kindExports[p.kind]...)
	for _, name := range required {
		def, ok := exports[name]
		if !ok {
			return fmt.Errorf("missing export %s, required for a %s (sdk/ABI.md §2)", name, p.kind)
		}
		if err := checkSignature(name, def); err != nil {
			return err
		}
	}
	for _, name := range []string{"_initialize", "sluice_tick"} {
		if def, ok := exports[name]; ok {
			if err := checkSignature(name, def); err != nil {
				return err
			}
		}
	}
	_, p.hasInit = exports["_initialize"]
	_, p.hasTick = exports["sluice_tick"]
	if p.hasTick && p.kind != KindBolt {
		p.hasTick = false
	}
	for _, def := range p.compiled.ImportedMemories() {
		mod, name, _ := def.Import()
		return fmt.Errorf("imports memory %s.%s; a plugin must define and export its own memory", mod, name)
	}
	for _, def := range p.compiled.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case "wasi_snapshot_preview1":
			continue // checked by wazero against its WASI module
		case "env":
			if name == "abort" {
				if err := checkImportSignature(mod, name, def, signature{[]api.ValueType{i32, i32, i32, i32}, nil}); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("imports %s.%s, which the host does not provide (only env.abort)", mod, name)
		case hostModule:
			fn, ok := hostFunctions[name]
			if !ok {
				return fmt.Errorf("imports %s.%s, which does not exist in ABI version %d", mod, name, ABIVersion)
			}
			if !p.granted(fn) {
				return fmt.Errorf("imports %s.%s, which needs capability %s; it is not granted to this plugin",
					mod, name, strings.Join(fn.caps, " or "))
			}
			if err := checkImportSignature(mod, name, def, fn.sig); err != nil {
				return err
			}
		default:
			return fmt.Errorf("imports %s.%s from unknown module %q (the host provides %s, wasi_snapshot_preview1 and env.abort)",
				mod, name, mod, hostModule)
		}
	}
	return nil
}

func checkSignature(name string, def api.FunctionDefinition) error {
	want := exportSignatures[name]
	if !slices.Equal(def.ParamTypes(), want.params) || !slices.Equal(def.ResultTypes(), want.results) {
		return fmt.Errorf("export %s has signature %s, want %s", name, sigString(def.ParamTypes(), def.ResultTypes()), sigString(want.params, want.results))
	}
	return nil
}

func checkImportSignature(mod, name string, def api.FunctionDefinition, want signature) error {
	if !slices.Equal(def.ParamTypes(), want.params) || !slices.Equal(def.ResultTypes(), want.results) {
		return fmt.Errorf("imports %s.%s with signature %s, want %s", mod, name, sigString(def.ParamTypes(), def.ResultTypes()), sigString(want.params, want.results))
	}
	return nil
}

func sigString(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return "(" + names(params) + ") -> (" + names(results) + ")"
}

func (p *Plugin) granted(fn hostFunction) bool {
	for _, c := range fn.caps {
		if p.grants[c] {
			return true
		}
	}
	return false
}

// Name is the plugin's configured name.
func (p *Plugin) Name() string { return p.name }

// Kind is the plugin's kind.
func (p *Plugin) Kind() Kind { return p.kind }

// Guard names how the plugin's runaway loops are stopped: "instrumented",
// "close-on-context-done" or "none (trusted)".
func (p *Plugin) Guard() string { return p.guard.String() }

// HasTick reports whether a bolt exports sluice_tick.
func (p *Plugin) HasTick() bool { return p.hasTick }

// Counters returns a snapshot of the counters the plugin added to through
// the metrics capability.
func (p *Plugin) Counters() map[string]int64 {
	out := map[string]int64{}
	p.counters.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// Close closes every instance and the plugin's wazero runtime. It is safe
// twice; calls made after Close fail, and calls in progress are stopped
// (unless the plugin is trusted) and fail.
func (p *Plugin) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.idle = nil
	for inst := range p.busy {
		if inst.stop != nil {
			inst.raiseStop()
		}
	}
	p.mu.Unlock()
	p.owner.untrack(p)
	if err := p.rt.Close(ctx); err != nil {
		return &PluginError{Plugin: p.name, Op: "close", Err: err}
	}
	return nil
}

var errClosed = errors.New("plugin is closed")

func (p *Plugin) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// acquire returns an idle instance or a fresh one, waiting while all
// Instances are busy.
func (p *Plugin) acquire(ctx context.Context) (*instance, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, errClosed
	}
	if n := len(p.idle); n > 0 {
		inst := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.busy[inst] = struct{}{}
		p.mu.Unlock()
		return inst, nil
	}
	p.mu.Unlock()
	inst, err := p.newInstance(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	p.mu.Lock()
	p.busy[inst] = struct{}{}
	p.mu.Unlock()
	return inst, nil
}

// release returns inst to the pool, or discards it when it is no longer
// trustworthy (after any fault): an instance is never reused after a trap.
func (p *Plugin) release(inst *instance, healthy bool) {
	p.mu.Lock()
	delete(p.busy, inst)
	if healthy && !p.closed {
		p.idle = append(p.idle, inst)
		p.mu.Unlock()
	} else {
		p.mu.Unlock()
		inst.close()
	}
	<-p.sem
}

// call runs one entry point with retries: a fault or an error status
// discards the instance and tries again on a fresh one, up to MaxRetries
// times. A retry status is returned to the caller at once.
func (p *Plugin) call(ctx context.Context, op string, do func(*instance) (*Result, error)) (*Result, error) {
	var lastErr error
	var lastRes *Result
	for attempt := 0; attempt <= p.cfg.MaxRetries; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, &PluginError{Plugin: p.name, Op: op, Err: err}
		}
		inst, err := p.acquire(ctx)
		if err != nil {
			if errors.Is(err, errClosed) || ctx.Err() != nil {
				return nil, &PluginError{Plugin: p.name, Op: op, Err: err}
			}
			lastErr, lastRes = err, nil // a fresh instance failed to start
			continue
		}
		res, err := do(inst)
		switch {
		case err != nil:
			p.release(inst, false)
			if ctx.Err() != nil && !errors.Is(err, errDeadline) {
				return nil, &PluginError{Plugin: p.name, Op: op, Err: err}
			}
			lastErr, lastRes = err, nil
			p.logger.Warn("plugin fault; instance discarded", "op", op, "attempt", attempt+1, "err", err)
		case res.Status == StatusError:
			inst.pending = nil
			p.release(inst, false)
			lastErr, lastRes = nil, res
		default:
			if res.Status == StatusOK {
				if err := p.commitState(inst); err != nil {
					p.release(inst, false)
					return nil, &PluginError{Plugin: p.name, Op: op, Err: err}
				}
			}
			inst.discardState()
			p.release(inst, !inst.poisoned)
			return res, nil
		}
	}
	if lastRes != nil {
		return lastRes, nil
	}
	if p.cfg.MaxRetries > 0 {
		lastErr = fmt.Errorf("%w (failed %d attempts)", lastErr, p.cfg.MaxRetries+1)
	}
	return nil, &PluginError{Plugin: p.name, Op: op, Err: lastErr}
}

// Process runs a bolt's sluice_process on one input batch. A result with
// StatusError (after MaxRetries retries) comes back with a nil error and the
// plugin's Message; an error means a fault on every attempt.
func (p *Plugin) Process(ctx context.Context, batch []byte) (*Result, error) {
	if p.kind != KindBolt {
		return nil, p.wrongKind("process")
	}
	n := inputCount(batch)
	return p.call(ctx, "process", func(inst *instance) (*Result, error) {
		return inst.invokeWithInput(ctx, inst.process, batch, n)
	})
}

// Tick runs a bolt's sluice_tick with the current time.
func (p *Plugin) Tick(ctx context.Context, nowNs int64) (*Result, error) {
	if p.kind != KindBolt || !p.hasTick {
		return nil, &PluginError{Plugin: p.name, Op: "tick", Err: errors.New("module does not export sluice_tick")}
	}
	return p.call(ctx, "tick", func(inst *instance) (*Result, error) {
		return inst.invoke(ctx, inst.tick, []uint64{uint64(nowNs)}, 0)
	})
}

// Poll runs a source's sluice_poll for up to max events. The returned
// Position is remembered: a fresh instance (after a fault) is acknowledged
// with it so that it resumes right after these events.
func (p *Plugin) Poll(ctx context.Context, max int) (*Result, error) {
	if p.kind != KindSource {
		return nil, p.wrongKind("poll")
	}
	if max <= 0 || max > 1<<30 {
		return nil, &PluginError{Plugin: p.name, Op: "poll", Err: fmt.Errorf("max events %d out of range", max)}
	}
	res, err := p.call(ctx, "poll", func(inst *instance) (*Result, error) {
		return inst.invoke(ctx, inst.poll, []uint64{uint64(max)}, 0)
	})
	if err == nil && res.Status == StatusOK && len(res.Position) > 0 {
		p.mu.Lock()
		p.lastPos = bytes.Clone(res.Position)
		p.mu.Unlock()
	}
	return res, err
}

// Ack tells a source that every event up to position pos is durable.
// Called first with the position to resume from (nil on a fresh start).
func (p *Plugin) Ack(ctx context.Context, pos []byte) error {
	if p.kind != KindSource {
		return p.wrongKind("ack")
	}
	p.mu.Lock()
	if !p.opened {
		p.opened = true
		p.lastPos = bytes.Clone(pos)
	}
	p.mu.Unlock()
	res, err := p.call(ctx, "ack", func(inst *instance) (*Result, error) {
		return inst.invokeWithInput(ctx, inst.ack, pos, 0)
	})
	if err != nil {
		return err
	}
	if res.Status != StatusOK {
		return &PluginError{Plugin: p.name, Op: "ack", Err: fmt.Errorf("status %s: %s", res.Status, res.Message)}
	}
	return nil
}

// Write runs a sink's sluice_write on one batch.
func (p *Plugin) Write(ctx context.Context, batch []byte) (*Result, error) {
	if p.kind != KindSink {
		return nil, p.wrongKind("write")
	}
	n := inputCount(batch)
	return p.call(ctx, "write", func(inst *instance) (*Result, error) {
		return inst.invokeWithInput(ctx, inst.write, batch, n)
	})
}

func (p *Plugin) wrongKind(op string) error {
	return &PluginError{Plugin: p.name, Op: op, Err: fmt.Errorf("not supported by a %s", p.kind)}
}
