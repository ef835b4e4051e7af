// Package topoagent adapts a running topology (agent/topology) to the admin
// server's Agent interface: the graph from the config, counters from the
// pipeline and the channels, results from the embedded store sink, and a
// live tap on a channel.
package topoagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/plugins/store"
)

// Options are the parts of the agent the topology does not expose.
type Options struct {
	// Channel returns a config channel by name, for Tap; nil means the
	// topology's own (topology.Agent.Channel).
	Channel func(name string) (channel.Channel, bool)
	// Reload applies the config again (issue 6 reload); nil makes Reload
	// fail with "reload is not available".
	Reload func(ctx context.Context) error
	// ReloadCounts returns the reloads applied and rejected so far, for
	// Status (the reloader counts them; every trigger goes through it, not
	// only Reload). nil reports none.
	ReloadCounts func() (applied, rejected int)
	// Results, when set, is where the dashboard reads results (e.g.
	// RedisResults when the pipeline writes to Redis); otherwise the store
	// sink named ResultsStage, or the config's first store sink when "".
	Results      admin.ResultsReader
	ResultsStage string
}

// Agent implements admin.Agent for a topology.Agent. Its state starts as
// starting; the runner moves it with SetState. Swap replaces the topology
// after a reload.
type Agent struct {
	opts Options

	mu        sync.Mutex
	topo      *topology.Agent
	cfg       *config.File
	state     admin.State
	reloadErr string
	slots     chan int // tap reader slots, see TapReaderName
}

// New returns an adapter for t, built from cfg.
func New(t *topology.Agent, cfg *config.File, opts Options) *Agent {
	a := &Agent{opts: opts, topo: t, cfg: cfg, state: admin.StateStarting, slots: make(chan int, TapSlots)}
	for i := range TapSlots {
		a.slots <- i
	}
	return a
}

// RemoveStaleTaps unregisters the tap readers a crashed process may have
// left on every config channel, so that they hold back no retention. Call
// it once after Build, before any tap.
func (a *Agent) RemoveStaleTaps() error {
	_, cfg := a.current()
	if cfg == nil {
		return nil
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.Channels)) {
		if ch, ok := a.channel(name); ok {
			errs = append(errs, RemoveTapReaders(ch))
		}
	}
	return errors.Join(errs...)
}

// SetState records the agent's lifecycle state: StateRunning once Start
// returned, StateDraining when Stop begins, StateStopped after it.
func (a *Agent) SetState(s admin.State) {
	a.mu.Lock()
	a.state = s
	a.mu.Unlock()
}

// Swap replaces the topology and config after a successful reload.
func (a *Agent) Swap(t *topology.Agent, cfg *config.File) {
	a.mu.Lock()
	a.topo, a.cfg = t, cfg
	a.mu.Unlock()
}

// SetReloadError records the outcome of the last reload (nil: success).
func (a *Agent) SetReloadError(err error) {
	a.mu.Lock()
	a.reloadErr = ""
	if err != nil {
		a.reloadErr = err.Error()
	}
	a.mu.Unlock()
}

func (a *Agent) current() (*topology.Agent, *config.File) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.topo, a.cfg
}

// Topology implements admin.Agent.
func (a *Agent) Topology() admin.Topology { _, cfg := a.current(); return TopologyOf(cfg) }

// TopologyOf draws cfg: every channel and stage, stage→channel for each
// channel a stage writes and channel→stage for the channel it reads.
func TopologyOf(cfg *config.File) admin.Topology {
	t := admin.Topology{Components: []admin.Component{}, Edges: []admin.Edge{}}
	if cfg == nil {
		return t
	}
	for _, s := range cfg.Stages() {
		plugin := s.Type
		if s.Wasm != "" {
			plugin = s.Wasm
		}
		kind := string(s.Kind)
		id := admin.NodeID(kind, s.Name)
		t.Components = append(t.Components, admin.Component{ID: id, Name: s.Name, Kind: kind, Plugin: plugin})
		if s.Input != "" {
			t.Edges = append(t.Edges, admin.Edge{From: admin.NodeID(admin.KindChannel, s.Input), To: id})
		}
		for _, out := range s.Outputs() {
			t.Edges = append(t.Edges, admin.Edge{From: id, To: admin.NodeID(admin.KindChannel, out)})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Channels)) {
		typ := cfg.Channels[name].Type
		if typ == "" {
			typ = "file"
		}
		t.Components = append(t.Components, admin.Component{ID: admin.NodeID(admin.KindChannel, name), Name: name, Kind: admin.KindChannel, Plugin: typ})
	}
	return t
}

// Status implements admin.Agent. A stage is failed while the pipeline
// reports it failing (an instance's last run ended in an error and it is
// backing off, or a sink retries a failed write) and the agent is running;
// otherwise it shares the agent's state.
func (a *Agent) Status() admin.Status {
	t, cfg := a.current()
	var stages []pipeline.StageStats
	var chans map[string]channel.Stats
	var plugins []wasmhost.PluginStats
	if t != nil {
		stages, chans, plugins = t.Stats(), t.ChannelStats(), t.PluginStats()
	}
	a.mu.Lock()
	state, reloadErr := a.state, a.reloadErr
	a.mu.Unlock()
	st := admin.Status{State: state, ReloadError: reloadErr, Components: []admin.ComponentStatus{}, Channels: []admin.ChannelStatus{}}
	if a.opts.ReloadCounts != nil {
		applied, rejected := a.opts.ReloadCounts()
		st.ReloadsApplied, st.ReloadsRejected = uint64(applied), uint64(rejected)
	}
	for _, s := range stages {
		c := admin.ComponentStatus{Name: s.Name, Kind: s.Kind, State: state, LastError: s.LastError, Restarts: s.Restarts,
			EventsIn: s.EventsIn, EventsOut: s.EventsOut, DeadLettered: s.Rejected, BytesIn: s.BytesIn, BytesOut: s.BytesOut,
			BatchLatency: admin.Histogram{Bounds: s.BatchLatency.Bounds, Cumulative: s.BatchLatency.Cumulative,
				Count: s.BatchLatency.Count, Sum: s.BatchLatency.Sum}}
		if state == admin.StateRunning && s.Failing {
			c.State = admin.StateFailed
		}
		st.Components = append(st.Components, c)
	}
	for _, name := range slices.Sorted(maps.Keys(chans)) {
		cs := chans[name]
		st.Channels = append(st.Channels, admin.ChannelStatus{Name: name, DepthEvents: cs.DepthEvents, DepthBytes: cs.DepthBytes,
			DiskBytes: cs.DiskBytes, Appends: cs.Appends, LowDisk: cs.LowDisk})
	}
	current := map[string]bool{}
	if cfg != nil {
		for _, s := range cfg.Stages() {
			current[s.Name] = true
		}
	}
	for _, p := range plugins {
		if !current[p.Name] {
			continue // a stage a reload removed
		}
		st.Plugins = append(st.Plugins, admin.PluginStatus{Component: p.Name, MemoryBytes: p.MemoryBytes,
			GuestTime: p.GuestTime, Counters: p.Counters})
	}
	return st
}

// Results implements admin.Agent: the newest instance of the results
// store sink, or nil when the config has none.
func (a *Agent) Results() admin.ResultsReader {
	if a.opts.Results != nil {
		return a.opts.Results
	}
	t, cfg := a.current()
	if t == nil || cfg == nil {
		return nil
	}
	name := a.opts.ResultsStage
	if name == "" {
		for _, n := range slices.Sorted(maps.Keys(cfg.Sinks)) {
			if cfg.Sinks[n].Type == "store" {
				name = n
				break
			}
		}
	}
	if name == "" {
		return nil
	}
	sinks := t.Sinks(name)
	for i := len(sinks) - 1; i >= 0; i-- {
		if st, ok := sinks[i].(*store.Store); ok {
			return StoreResults(st)
		}
	}
	return nil
}

// Tap implements admin.Agent.
func (a *Agent) Tap(ctx context.Context, name string, sample int, fn func(event.Event) bool) error {
	ch, ok := a.channel(name)
	if !ok {
		return fmt.Errorf("channel %q: %w", name, admin.ErrUnknownChannel)
	}
	slot := <-a.slots
	defer func() { a.slots <- slot }()
	return TapChannel(ctx, ch, TapReaderName(slot), sample, fn)
}

func (a *Agent) channel(name string) (channel.Channel, bool) {
	if a.opts.Channel != nil {
		return a.opts.Channel(name)
	}
	t, cfg := a.current()
	if t == nil || cfg == nil || cfg.Channels[name] == nil {
		return nil, false // config channels only: dead-letter channels are not in the topology
	}
	return t.Channel(name)
}

// Reload implements admin.Agent.
func (a *Agent) Reload(ctx context.Context) error {
	if a.opts.Reload == nil {
		return errors.New("reload is not available in this agent")
	}
	err := a.opts.Reload(ctx)
	a.SetReloadError(err)
	return err
}
