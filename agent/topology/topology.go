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
// Lifecycle: Build opens everything; Start runs the pipeline; Stop drains
// it and closes everything. Stop is safe without Start and safe twice.
type Agent struct {
	cfg      *config.File
	log      *slog.Logger
	rt       *wasmhost.Runtime
	channels map[string]channel.Channel // config channels and dlq.STAGE
	pipe     *pipeline.Pipeline
	stopped  bool

	mu    sync.Mutex
	sinks map[string][]pipeline.Sink
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
	a := &Agent{cfg: cfg, log: log, channels: map[string]channel.Channel{}, sinks: map[string][]pipeline.Sink{}}
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
		c := cfg.Channels[name]
		opts := channel.Options{
			Dir: ChannelDir(data, name), Partitions: c.Partitions,
			SegmentBytes: c.SegmentBytes.Or(config.DefaultSegmentBytes), MaxBytes: c.MaxBytes.Or(config.DefaultMaxBytes),
			MinFreeBytes: c.MinFreeBytes.Or(0), Fsync: channel.FsyncPolicy(c.Fsync),
			FsyncInterval: c.FsyncInterval.Or(time.Second), Logger: log.With("channel", name),
		}
		if c.Type == "memory" {
			a.channels[name] = channel.NewMemory(opts)
			continue
		}
		ch, err := channel.Open(opts)
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", name, err)
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

	spec := opts.Pipeline
	spec.Logger = log
	spec.StateDir = filepath.Join(data, "state")
	spec.Sources, spec.Bolts, spec.Sinks = nil, nil, nil
	for _, s := range cfg.Stages() {
		if s.Wasm != "" {
			if err := a.probe(ctx, s); err != nil {
				return nil, err
			}
		}
		switch s.Kind {
		case config.KindSource:
			spec.Sources = append(spec.Sources, pipeline.SourceSpec{
				Name: s.Name, BatchSize: s.BatchSize, DeadLetter: a.channels[DeadLetterName(s.Name)],
				Output: a.output(s.Output), New: a.sourceFactory(s, reg),
			})
		case config.KindBolt:
			b := pipeline.BoltSpec{
				Name: s.Name, Input: pipeline.Input{Name: s.Input, Channel: a.channels[s.Input]},
				Stateful: stateful(s, reg), Tick: s.Tick.Or(time.Second),
				DeadLetter: a.channels[DeadLetterName(s.Name)], New: a.boltFactory(s, reg),
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
				DeadLetter: a.channels[DeadLetterName(s.Name)], New: a.sinkFactory(s, reg),
			})
		}
	}
	a.pipe, err = pipeline.New(spec)
	if err != nil {
		return nil, err
	}
	return a, nil
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

func (a *Agent) output(name string) pipeline.Output {
	g := pipeline.Shuffle
	if a.cfg.Channels[name].Grouping == "key" {
		g = pipeline.ByKey
	}
	return pipeline.Output{Name: name, Channel: a.channels[name], Grouping: g}
}

func (a *Agent) pluginConfig(s *config.Stage, state pipeline.StateStore) wasmhost.PluginConfig {
	cfg, _ := s.Plugin.(map[string]any)
	return wasmhost.PluginConfig{
		Name: s.Name, Kind: wasmhost.Kind(s.Kind), Path: s.Wasm, SHA256: s.SHA256, Config: cfg,
		Capabilities: s.Capabilities, HTTPHosts: s.HTTPHosts, MaxMemoryBytes: uint64(s.MaxMemory.Or(0)),
		CallTimeout: s.CallTimeout.Or(0), Instances: 1, MaxRetries: s.MaxRetries, Trusted: s.Trusted,
		State: state, Logger: a.log.With("plugin", s.Name),
	}
}

// probe loads a WASM module once and closes it, so that a wrong path, pin,
// ABI or grant fails Build with the plugin's own error.
func (a *Agent) probe(ctx context.Context, s *config.Stage) error {
	var st pipeline.StateStore
	if slices.Contains(s.Capabilities, wasmhost.CapState) {
		st = probeState{}
	}
	p, err := a.rt.Load(ctx, a.pluginConfig(s, st))
	if err != nil {
		return fmt.Errorf("%ss.%s: %w", s.Kind, s.Name, err)
	}
	return p.Close(ctx)
}

// probeState is an empty, write-discarding state for the load probe.
type probeState struct{}

func (probeState) Get([]byte) ([]byte, bool)                 { return nil, false }
func (probeState) Put(_, _ []byte)                           {}
func (probeState) Delete([]byte)                             {}
func (probeState) Scan([]byte, func(key, value []byte) bool) {}

func (a *Agent) env(s *config.Stage, partition int) registry.Env {
	parts := 1
	if s.Input != "" {
		parts = a.channels[s.Input].Partitions()
	}
	return registry.Env{Name: s.Name, DataDir: filepath.Join(a.cfg.Agent.DataDir, "stages", s.Name),
		AgentDataDir: a.cfg.Agent.DataDir, Partition: partition, Partitions: parts, Logger: a.log.With("stage", s.Name)}
}

func (a *Agent) sourceFactory(s *config.Stage, reg *registry.Registry) func(context.Context) (pipeline.Source, error) {
	if s.Wasm != "" {
		return func(ctx context.Context) (pipeline.Source, error) {
			p, err := a.rt.Load(ctx, a.pluginConfig(s, nil))
			if err != nil {
				return nil, err
			}
			return p.Source(), nil
		}
	}
	p, _ := reg.Lookup(config.KindSource, s.Type)
	return func(context.Context) (pipeline.Source, error) { return p.NewSource(s.Plugin, a.env(s, 0)) }
}

func (a *Agent) boltFactory(s *config.Stage, reg *registry.Registry) func(context.Context, int, pipeline.StateStore) (pipeline.Bolt, error) {
	if s.Wasm != "" {
		return func(ctx context.Context, _ int, st pipeline.StateStore) (pipeline.Bolt, error) {
			p, err := a.rt.Load(ctx, a.pluginConfig(s, st))
			if err != nil {
				return nil, err
			}
			return p.Bolt(), nil
		}
	}
	p, _ := reg.Lookup(config.KindBolt, s.Type)
	return func(_ context.Context, i int, st pipeline.StateStore) (pipeline.Bolt, error) {
		env := a.env(s, i)
		env.State = st
		return p.NewBolt(s.Plugin, env)
	}
}

func (a *Agent) sinkFactory(s *config.Stage, reg *registry.Registry) func(context.Context, int) (pipeline.Sink, error) {
	if s.Wasm != "" {
		return func(ctx context.Context, _ int) (pipeline.Sink, error) {
			p, err := a.rt.Load(ctx, a.pluginConfig(s, nil))
			if err != nil {
				return nil, err
			}
			return p.Sink(), nil
		}
	}
	p, _ := reg.Lookup(config.KindSink, s.Type)
	return func(_ context.Context, part int) (pipeline.Sink, error) {
		sink, err := p.NewSink(s.Plugin, a.env(s, part))
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
// the result store's.
func (a *Agent) Sinks(name string) []pipeline.Sink {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]pipeline.Sink(nil), a.sinks[name]...)
}

// Start runs the pipeline; ctx bounds the whole run.
func (a *Agent) Start(ctx context.Context) error { return a.pipe.Start(ctx) }

// Done is closed when every stage has stopped.
func (a *Agent) Done() <-chan struct{} { return a.pipe.Done() }

// Stop drains the pipeline within ctx, then closes channels and the
// runtime. Safe without Start and safe twice.
func (a *Agent) Stop(ctx context.Context) error {
	if a.stopped {
		return nil
	}
	a.stopped = true
	err := a.pipe.Stop(ctx)
	return errors.Join(err, a.closeAll())
}

func (a *Agent) closeAll() error {
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

// Channel returns an open channel of the topology by name: a [channels.NAME]
// of the config or a dead-letter channel "dlq.STAGE". It stays valid until
// Stop. Readers registered on it hold back retention: remove them when done
// (channel.RemoveReader).
func (a *Agent) Channel(name string) (channel.Channel, bool) {
	ch, ok := a.channels[name]
	return ch, ok
}

// ChannelStats returns each channel's counters (config channels only).
func (a *Agent) ChannelStats() map[string]channel.Stats {
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
