// Package topology turns a checked config into a running agent: it opens
// the channels (and one dead-letter channel per stage) under the data
// directory, loads WASM modules through agent/wasmhost and built-in plugins
// through a registry, and hands the result to agent/pipeline.
//
// Data directory layout:
//
//	DATA/channels/NAME       one durable channel per [channels.NAME]
//	DATA/channels/dlq.STAGE  the dead-letter channel of each stage
//	DATA/state/STAGE/N.snap  state snapshots of stateful bolts
//	DATA/stages/STAGE        a built-in plugin's own files (e.g. the store)
//	DATA/cache/wasm          wazero's compilation cache
package topology

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/wasmhost"
)

// Agent is a built topology: its channels, plugin runtime and pipeline.
//
// Lifecycle: Build opens everything; Start runs the pipeline; Reload
// (reload.go) changes the running topology; Stop drains it and closes
// everything. Stop is safe without Start and safe twice. Reload, Stop and
// the read methods are safe for concurrent use.
type Agent struct {
	log  *slog.Logger
	reg  *registry.Registry
	rt   *wasmhost.Runtime
	pipe *pipeline.Pipeline

	// lifeMu serialises Reload and Stop.
	lifeMu  sync.Mutex
	stopped bool

	mu       sync.RWMutex // guards the fields below, replaced by Reload
	cfg      *config.File
	channels map[string]channel.Channel // config channels and dlq.STAGE
	modules  map[string]module          // WASM stages' module bytes, by stage name
	sinks    map[string][]pipeline.Sink
}

// module is the WASM module a stage runs: read once when the stage is
// built, so that instances started later (after a fault, a restart or a
// parallelism change) run exactly the bytes that were validated, whatever
// happens to the file meanwhile.
type module struct {
	wasm   []byte
	sha256 string // hex
}

// Options tune Build.
type Options struct {
	Logger *slog.Logger
	// Pipeline overrides pipeline defaults (backoff, commit and snapshot
	// periods); its stage lists and StateDir are filled in by Build.
	Pipeline pipeline.Spec
}

// DeadLetterName is the channel name of stage's dead-letter channel.
func DeadLetterName(stage string) string { return "dlq." + stage }

// ChannelDir is where the file channel name lives under dataDir.
func ChannelDir(dataDir, name string) string { return filepath.Join(dataDir, "channels", name) }

// Build opens the channels and prepares every stage of cfg. WASM modules
// are loaded once here so that a bad module fails the start, not a stage.
func Build(ctx context.Context, cfg *config.File, reg *registry.Registry, opts Options) (_ *Agent, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, log: log, reg: reg, channels: map[string]channel.Channel{},
		modules: map[string]module{}, sinks: map[string][]pipeline.Sink{}}
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	data := cfg.Agent.DataDir
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	a.rt, err = wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{CacheDir: filepath.Join(data, "cache", "wasm"), Logger: log})
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(cfg.Channels) {
		ch, err := a.openChannel(data, cfg.Channels[name])
		if err != nil {
			return nil, err
		}
		a.channels[name] = ch
	}
	for _, s := range cfg.Stages() {
		dlq, err := OpenDeadLetter(data, s.Name, log)
		if err != nil {
			return nil, err
		}
		a.channels[DeadLetterName(s.Name)] = dlq
	}
	if a.modules, err = readModules(cfg); err != nil {
		return nil, err
	}
	spec := opts.Pipeline
	spec.Logger = log
	spec.StateDir = filepath.Join(data, "state")
	spec.Sources, spec.Bolts, spec.Sinks = nil, nil, nil
	for _, s := range cfg.Stages() {
		if s.Wasm != "" {
			if err := a.probe(ctx, s, a.modules[s.Name]); err != nil {
				return nil, err
			}
		}
		a.addStageSpec(&spec, s)
	}
	a.pipe, err = pipeline.New(spec)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// openChannel opens the config channel c under dataDir.
func (a *Agent) openChannel(dataDir string, c *config.Channel) (channel.Channel, error) {
	opts := channel.Options{
		Dir: ChannelDir(dataDir, c.Name), Partitions: c.Partitions,
		SegmentBytes: c.SegmentBytes.Or(config.DefaultSegmentBytes), MaxBytes: c.MaxBytes.Or(config.DefaultMaxBytes),
		MinFreeBytes: c.MinFreeBytes.Or(0), Fsync: channel.FsyncPolicy(c.Fsync),
		FsyncInterval: c.FsyncInterval.Or(time.Second), Logger: a.log.With("channel", c.Name),
	}
	if c.Type == "memory" {
		return channel.NewMemory(opts), nil
	}
	ch, err := channel.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", c.Name, err)
	}
	return ch, nil
}

// readModules reads the module of every WASM stage of cfg.
func readModules(cfg *config.File) (map[string]module, error) {
	mods := map[string]module{}
	for _, s := range cfg.Stages() {
		if s.Wasm == "" {
			continue
		}
		b, err := os.ReadFile(s.Wasm)
		if err != nil {
			return nil, fmt.Errorf("%ss.%s.wasm: %w", s.Kind, s.Name, err)
		}
		sum := sha256.Sum256(b)
		mods[s.Name] = module{wasm: b, sha256: hex.EncodeToString(sum[:])}
	}
	return mods, nil
}

// addStageSpec appends the pipeline spec of stage s to spec. The caller
// holds a.mu (or owns a alone, in Build); s's channels are open.
func (a *Agent) addStageSpec(spec *pipeline.Spec, s *config.Stage) {
	switch s.Kind {
	case config.KindSource:
		spec.Sources = append(spec.Sources, pipeline.SourceSpec{
			Name: s.Name, BatchSize: s.BatchSize, DeadLetter: a.channels[DeadLetterName(s.Name)],
			Output: a.output(s.Output), New: a.sourceFactory(s),
		})
	case config.KindBolt:
		b := pipeline.BoltSpec{
			Name: s.Name, Input: pipeline.Input{Name: s.Input, Channel: a.channels[s.Input]},
			Parallelism: s.Parallelism,
			Stateful:    stateful(s, a.reg), Tick: s.Tick.Or(time.Second),
			DeadLetter: a.channels[DeadLetterName(s.Name)], New: a.boltFactory(s),
		}
		if s.Route == nil {
			b.Outputs = []pipeline.Output{a.output(s.Output)}
		} else {
			outs := s.Outputs()
			index := map[string]int{}
			for i, o := range outs {
				index[o] = i
				b.Outputs = append(b.Outputs, a.output(o))
			}
			r := &pipeline.Route{Header: s.Route.Header, To: map[string]int{}, Default: -1}
			for v, ch := range s.Route.Routes {
				r.To[v] = index[ch]
			}
			if s.Route.Default != "" {
				r.Default = index[s.Route.Default]
			}
			b.Route = r
		}
		spec.Bolts = append(spec.Bolts, b)
	case config.KindSink:
		spec.Sinks = append(spec.Sinks, pipeline.SinkSpec{
			Name: s.Name, Input: pipeline.Input{Name: s.Input, Channel: a.channels[s.Input]},
			DeadLetter: a.channels[DeadLetterName(s.Name)], New: a.sinkFactory(s),
		})
	}
}

// stateful says whether a bolt's state is kept by the runner: WASM bolts
// granted the state capability, and built-ins that declare it.
func stateful(s *config.Stage, reg *registry.Registry) bool {
	if s.Wasm != "" {
		return slices.Contains(s.Capabilities, wasmhost.CapState)
	}
	p, _ := reg.Lookup(config.KindBolt, s.Type)
	return p.Stateful
}

// OpenDeadLetter opens the dead-letter channel of stage under dataDir.
func OpenDeadLetter(dataDir, stage string, log *slog.Logger) (channel.Channel, error) {
	if log == nil {
		log = slog.Default()
	}
	ch, err := channel.Open(channel.Options{Dir: ChannelDir(dataDir, DeadLetterName(stage)), Partitions: 1,
		SegmentBytes: 8 << 20, Logger: log.With("channel", DeadLetterName(stage))})
	if err != nil {
		return nil, fmt.Errorf("dead-letter channel of %s: %w", stage, err)
	}
	return ch, nil
}

// output is the pipeline output for channel name. The caller holds a.mu.
func (a *Agent) output(name string) pipeline.Output {
	g := pipeline.Shuffle
	if a.cfg.Channels[name].Grouping == "key" {
		g = pipeline.ByKey
	}
	return pipeline.Output{Name: name, Channel: a.channels[name], Grouping: g}
}

func (a *Agent) pluginConfig(s *config.Stage, mod module, state pipeline.StateStore) wasmhost.PluginConfig {
	cfg, _ := s.Plugin.(map[string]any)
	return wasmhost.PluginConfig{
		Name: s.Name, Kind: wasmhost.Kind(s.Kind), Wasm: mod.wasm, SHA256: s.SHA256, Config: cfg,
		Capabilities: s.Capabilities, HTTPHosts: s.HTTPHosts, MaxMemoryBytes: uint64(s.MaxMemory.Or(0)),
		CallTimeout: s.CallTimeout.Or(0), Instances: 1, MaxRetries: s.MaxRetries, Trusted: s.Trusted,
		State: state, Logger: a.log.With("plugin", s.Name),
	}
}

// probe loads a WASM module once and closes it, so that a wrong pin, ABI
// or grant fails Build (or Reload) with the plugin's own error.
func (a *Agent) probe(ctx context.Context, s *config.Stage, mod module) error {
	var st pipeline.StateStore
	if slices.Contains(s.Capabilities, wasmhost.CapState) {
		st = probeState{}
	}
	p, err := a.rt.Load(ctx, a.pluginConfig(s, mod, st))
	if err != nil {
		return fmt.Errorf("%ss.%s (%s): %w", s.Kind, s.Name, s.Wasm, err)
	}
	return p.Close(ctx)
}

// probeState is an empty, write-discarding state for the load probe.
type probeState struct{}

func (probeState) Get([]byte) ([]byte, bool)                 { return nil, false }
func (probeState) Put(_, _ []byte)                           {}
func (probeState) Delete([]byte)                             {}
func (probeState) Scan([]byte, func(key, value []byte) bool) {}

// env is what a built-in plugin instance of s gets. parts is the number of
// partitions of s's input (1 for sources).
func (a *Agent) env(s *config.Stage, dataDir string, parts, partition int) registry.Env {
	return registry.Env{Name: s.Name, DataDir: filepath.Join(dataDir, "stages", s.Name),
		AgentDataDir: dataDir, Partition: partition, Partitions: parts, Logger: a.log.With("stage", s.Name)}
}

// inputParts is the number of partitions of s's input (1 without one).
// The caller holds a.mu.
func (a *Agent) inputParts(s *config.Stage) int {
	if s.Input == "" {
		return 1
	}
	return a.channels[s.Input].Partitions()
}

// The factories below capture everything they need when the stage spec is
// built (under a.mu), so that instances started later never read fields a
// reload replaces.

func (a *Agent) sourceFactory(s *config.Stage) func(context.Context) (pipeline.Source, error) {
	if s.Wasm != "" {
		pc := a.pluginConfig(s, a.modules[s.Name], nil)
		return func(ctx context.Context) (pipeline.Source, error) {
			p, err := a.rt.Load(ctx, pc)
			if err != nil {
				return nil, err
			}
			return p.Source(), nil
		}
	}
	p, _ := a.reg.Lookup(config.KindSource, s.Type)
	env := a.env(s, a.cfg.Agent.DataDir, 1, 0)
	return func(context.Context) (pipeline.Source, error) { return p.NewSource(s.Plugin, env) }
}

func (a *Agent) boltFactory(s *config.Stage) func(context.Context, int, pipeline.StateStore) (pipeline.Bolt, error) {
	if s.Wasm != "" {
		mod := a.modules[s.Name]
		return func(ctx context.Context, _ int, st pipeline.StateStore) (pipeline.Bolt, error) {
			p, err := a.rt.Load(ctx, a.pluginConfig(s, mod, st))
			if err != nil {
				return nil, err
			}
			return p.Bolt(), nil
		}
	}
	p, _ := a.reg.Lookup(config.KindBolt, s.Type)
	data, parts := a.cfg.Agent.DataDir, a.inputParts(s)
	return func(_ context.Context, i int, st pipeline.StateStore) (pipeline.Bolt, error) {
		env := a.env(s, data, parts, i)
		env.State = st
		return p.NewBolt(s.Plugin, env)
	}
}

func (a *Agent) sinkFactory(s *config.Stage) func(context.Context, int) (pipeline.Sink, error) {
	if s.Wasm != "" {
		pc := a.pluginConfig(s, a.modules[s.Name], nil)
		return func(ctx context.Context, _ int) (pipeline.Sink, error) {
			p, err := a.rt.Load(ctx, pc)
			if err != nil {
				return nil, err
			}
			return p.Sink(), nil
		}
	}
	p, _ := a.reg.Lookup(config.KindSink, s.Type)
	data, parts := a.cfg.Agent.DataDir, a.inputParts(s)
	return func(_ context.Context, part int) (pipeline.Sink, error) {
		sink, err := p.NewSink(s.Plugin, a.env(s, data, parts, part))
		if err == nil {
			a.mu.Lock()
			a.sinks[s.Name] = append(a.sinks[s.Name], sink)
			a.mu.Unlock()
		}
		return sink, err
	}
}

// Sinks returns the built-in sink instances of stage name built so far,
// newest last (a restarted instance adds a new one), for read APIs such as
// the result store's. A reload that restarts or removes the stage forgets
// its old instances.
func (a *Agent) Sinks(name string) []pipeline.Sink {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return append([]pipeline.Sink(nil), a.sinks[name]...)
}

// Start runs the pipeline; ctx bounds the whole run.
func (a *Agent) Start(ctx context.Context) error { return a.pipe.Start(ctx) }

// Done is closed when every stage has stopped.
func (a *Agent) Done() <-chan struct{} { return a.pipe.Done() }

// Stop drains the pipeline within ctx, then closes channels and the
// runtime. Safe without Start and safe twice; a Reload in progress finishes
// first.
func (a *Agent) Stop(ctx context.Context) error {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if a.stopped {
		return nil
	}
	a.stopped = true
	err := a.pipe.Stop(ctx)
	return errors.Join(err, a.closeAll())
}

func (a *Agent) closeAll() error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var err error
	for _, ch := range a.channels {
		err = errors.Join(err, ch.Close())
	}
	if a.rt != nil {
		err = errors.Join(err, a.rt.Close(context.Background()))
	}
	return err
}

// Stats returns the pipeline's stage counters.
func (a *Agent) Stats() []pipeline.StageStats { return a.pipe.Stats() }

// Config returns the config now running (the last one Build or a
// successful Reload was given).
func (a *Agent) Config() *config.File {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg
}

// Channel returns an open channel of the topology by name: a [channels.NAME]
// of the config or a dead-letter channel "dlq.STAGE". It stays valid until
// Stop, or until a reload removes it. Readers registered on it hold back
// retention: remove them when done (channel.RemoveReader).
func (a *Agent) Channel(name string) (channel.Channel, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	ch, ok := a.channels[name]
	return ch, ok
}

// ChannelStats returns each channel's counters (config channels only).
func (a *Agent) ChannelStats() map[string]channel.Stats {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := map[string]channel.Stats{}
	for name := range a.cfg.Channels {
		out[name] = a.channels[name].Stats()
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
