// Package registry maps the type names used in config (type = "tail") to
// built-in plugins. A Registry is a value: the binary uses Builtin(), the
// one place where every built-in plugin is registered, and tests build their
// own with New.
package registry

import (
	"fmt"
	"log/slog"
	"sort"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// Env is what a plugin instance gets besides its config.
type Env struct {
	// Name is the stage name in config.
	Name string
	// DataDir is a directory owned by this stage (created on demand by the
	// plugin), under the agent's data directory AgentDataDir.
	DataDir      string
	AgentDataDir string
	// Partition is the input partition a sink instance serves (0 for
	// sources) out of Partitions.
	Partition, Partitions int
	Logger                *slog.Logger
	// State is the instance's state store, for bolts declared Stateful: the
	// runner persists it with the output positions (docs/adr/0004 §4).
	State pipeline.StateStore
}

// Plugin is one built-in plugin type. Exactly one of NewSource, NewBolt and
// NewSink is set, matching Kind.
type Plugin struct {
	Kind config.Kind
	Type string
	// Sample is the documented sample of the plugin's config table.
	Sample string
	// NewConfig returns a pointer to a fresh config holding the defaults;
	// the [KIND.NAME.config] table is decoded into it and its Validate
	// method (if any) is called.
	NewConfig func() any
	// Stateful bolts get Env.State, persisted by the runner.
	Stateful  bool
	NewSource func(cfg any, env Env) (pipeline.Source, error)
	NewBolt   func(cfg any, env Env) (pipeline.Bolt, error)
	NewSink   func(cfg any, env Env) (pipeline.Sink, error)
}

// Registry holds plugin types by kind and name. Not safe for concurrent
// registration; register everything before use.
type Registry struct {
	plugins map[config.Kind]map[string]Plugin
}

var _ config.Plugins = (*Registry)(nil)

// New returns an empty registry.
func New() *Registry { return &Registry{plugins: map[config.Kind]map[string]Plugin{}} }

// Register adds p; a second plugin of the same kind and type is an error.
func (r *Registry) Register(p Plugin) error {
	ok := false
	switch p.Kind {
	case config.KindSource:
		ok = p.NewSource != nil
	case config.KindBolt:
		ok = p.NewBolt != nil
	case config.KindSink:
		ok = p.NewSink != nil
	}
	if !ok || p.Type == "" || p.NewConfig == nil {
		return fmt.Errorf("registry: plugin %s %q needs a type, NewConfig and the constructor of its kind", p.Kind, p.Type)
	}
	m := r.plugins[p.Kind]
	if m == nil {
		m = map[string]Plugin{}
		r.plugins[p.Kind] = m
	}
	if _, dup := m[p.Type]; dup {
		return fmt.Errorf("registry: %s %q registered twice", p.Kind, p.Type)
	}
	m[p.Type] = p
	return nil
}

// Lookup returns the plugin of kind and type.
func (r *Registry) Lookup(kind config.Kind, typ string) (Plugin, bool) {
	p, ok := r.plugins[kind][typ]
	return p, ok
}

// NewConfig implements config.Plugins.
func (r *Registry) NewConfig(kind config.Kind, typ string) (any, bool) {
	p, ok := r.Lookup(kind, typ)
	if !ok {
		return nil, false
	}
	return p.NewConfig(), true
}

// Types implements config.Plugins.
func (r *Registry) Types(kind config.Kind) []string {
	out := make([]string, 0, len(r.plugins[kind]))
	for t := range r.plugins[kind] {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// All lists every plugin, by kind then type.
func (r *Registry) All() []Plugin {
	var out []Plugin
	for _, k := range []config.Kind{config.KindSource, config.KindBolt, config.KindSink} {
		for _, t := range r.Types(k) {
			out = append(out, r.plugins[k][t])
		}
	}
	return out
}
