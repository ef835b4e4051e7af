// Package config reads a Sluice agent's one TOML file and checks it.
//
// A file has five kinds of tables:
//
//	[agent]            data directory, shutdown deadline, log level, policy, admin API address
//	[channels.NAME]    a durable (or memory) channel: partitions, sizes, fsync
//	[sources.NAME]     a source writing to one channel
//	[bolts.NAME]       a bolt reading one channel and writing one (or routing by header)
//	[sinks.NAME]       a sink reading one channel
//
// A stage is either a built-in plugin (type = "tail") or a WASM module
// (wasm = "path/to/x.wasm"). Its own settings go in its [KIND.NAME.config]
// table: a built-in plugin decodes that table into its own Config type (via
// the Plugins registry given to Parse); a WASM plugin receives it through
// sluice_init (sdk/ABI.md §4).
//
// Sizes and durations are strings ("2GiB", "500ms"). "${VAR}" and
// "${VAR:-default}" are replaced from the environment before parsing.
// Relative paths are relative to the current directory.
//
// Parse and Load report every problem at once, each as "file:line: toml.path:
// message (hint)": unknown keys, bad values, and graph errors (undefined
// channels, cycles, a bolt without input, missing or unpinned .wasm files,
// duplicate names). The same check runs in `sluice validate` and at start.
package config

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Kind is the role of a stage in the topology.
type Kind string

// The three stage kinds; their config tables are [sources.*], [bolts.*] and
// [sinks.*].
const (
	KindSource Kind = "source"
	KindBolt   Kind = "bolt"
	KindSink   Kind = "sink"
)

// Plugins is what config needs from the plugin registry: the built-in
// plugin types of each kind and a fresh default config for one of them.
type Plugins interface {
	// NewConfig returns a pointer to the default config of the built-in
	// plugin typ of kind, ready to be decoded into, or false if there is no
	// such plugin. If the value has a `Validate() error` method it is called
	// after decoding.
	NewConfig(kind Kind, typ string) (any, bool)
	// Types lists the built-in plugin types of kind.
	Types(kind Kind) []string
}

// File is a parsed and checked agent configuration.
type File struct {
	Path     string
	Agent    Agent
	Channels map[string]*Channel
	Sources  map[string]*Stage
	Bolts    map[string]*Stage
	Sinks    map[string]*Stage
}

// Agent is the [agent] table.
type Agent struct {
	// DataDir holds every channel, plugin state, the result store and the
	// WASM compile cache. Default ".sluice/data".
	DataDir string `toml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `toml:"log_level"`
	// ShutdownTimeout bounds the graceful drain on stop. Default 10s.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// RequireSHA256 makes a sha256 pin mandatory for every .wasm module.
	RequireSHA256 bool `toml:"require_sha256"`
	// AdminAddr is where the admin API and dashboard listen (agent/admin),
	// as host:port. When the file leaves it out it is DefaultAdminAddr;
	// "" or "off" disables the admin server (Parse leaves AdminAddr ""). A
	// host that is not a loopback address needs AdminToken.
	AdminAddr string `toml:"admin_addr"`
	// AdminToken is the bearer token the admin API requires ("" for none).
	// When the file leaves it out it comes from the environment variable
	// SLUICE_ADMIN_TOKEN, so that it need not be written into the file.
	AdminToken string `toml:"admin_token"`
	// AdminAddrDefault is true when AdminAddr is the default rather than
	// written in the file: the runner may then fall back to another port
	// when the default one is taken (two agents on one machine).
	AdminAddrDefault bool `toml:"-"`
	// DropRemovedChannels lets a reload remove a channel that still holds
	// events: they are deleted with the channel's directory. Without it
	// such a reload is refused until the channel's readers drained it.
	DropRemovedChannels bool `toml:"drop_removed_channels"`
	// Labels describe this agent to a fleet server (e.g. role = "edge",
	// dc = "fra1"); OpAMP groups agents by them.
	Labels map[string]string `toml:"labels"`
	// OpAMP is the [agent.opamp] table: remote management, off unless its
	// endpoint is set.
	OpAMP OpAMP `toml:"opamp"`
}

// Channel is a [channels.NAME] table.
type Channel struct {
	Name string `toml:"-"`
	// Type is "file" (default, durable) or "memory".
	Type string `toml:"type"`
	// Partitions defaults to the largest parallelism of the bolts reading
	// it, or 1. Partitions bound parallelism: a bolt runs at most one
	// instance per partition of its input. A running channel's partitions
	// cannot change on reload (they hold its data and positions).
	Partitions    int      `toml:"partitions"`
	SegmentBytes  Size     `toml:"segment_bytes"`
	MaxBytes      Size     `toml:"max_bytes"`
	MinFreeBytes  Size     `toml:"min_free_bytes"`
	Fsync         string   `toml:"fsync"` // always (default), interval, never
	FsyncInterval Duration `toml:"fsync_interval"`

	// Grouping is how writers spread batches over the partitions, taken
	// from the bolt that reads the channel: "shuffle" or "key".
	Grouping string `toml:"-"`
}

// Stage is a [sources.NAME], [bolts.NAME] or [sinks.NAME] table.
type Stage struct {
	Name string `toml:"-"`
	Kind Kind   `toml:"-"`

	// Exactly one of Type (a built-in plugin) and Wasm (a module path).
	Type   string `toml:"type"`
	Wasm   string `toml:"wasm"`
	SHA256 string `toml:"sha256"`

	// Input is the channel a bolt or sink reads.
	Input string `toml:"input"`
	// Output is the channel a source or bolt writes; Route replaces it to
	// multiplex by a header value.
	Output string `toml:"output"`
	Route  *Route `toml:"route"`

	// Parallelism is the number of concurrent bolt instances, 1 up to the
	// partitions of Input; left out, one per partition. It can change on
	// reload (partitions stay the unit of ordering and state, so nothing
	// moves). Grouping is how the writers of Input pick a partition:
	// "shuffle" (default) or "key" (same event key → same instance).
	Parallelism int    `toml:"parallelism"`
	Grouping    string `toml:"grouping"`

	// BatchSize is the most events a source reads per batch. Default 1024.
	BatchSize int `toml:"batch_size"`
	// Tick is how often a bolt's Tick runs (windows). Default 1s.
	Tick Duration `toml:"tick"`

	// WASM limits and grants (sdk/ABI.md §6).
	Capabilities []string `toml:"capabilities"`
	HTTPHosts    []string `toml:"http_hosts"`
	MaxMemory    Size     `toml:"max_memory"`
	CallTimeout  Duration `toml:"call_timeout"`
	MaxRetries   int      `toml:"max_retries"`
	Trusted      bool     `toml:"trusted"`

	// Plugin holds the decoded [KIND.NAME.config] table: a pointer to the
	// built-in plugin's Config, or map[string]any for a WASM module.
	Plugin any            `toml:"-"`
	Config toml.Primitive `toml:"config"`
}

// Route multiplexes a stage's output by the value of one header.
type Route struct {
	Header  string            `toml:"header"`
	Routes  map[string]string `toml:"routes"`  // header value → channel
	Default string            `toml:"default"` // channel for other values ("" drops them to the dead-letter channel)
}

// Outputs lists the channels the stage writes, sorted, without duplicates.
func (s *Stage) Outputs() []string {
	set := map[string]bool{}
	if s.Output != "" {
		set[s.Output] = true
	}
	if s.Route != nil {
		for _, c := range s.Route.Routes {
			set[c] = true
		}
		if s.Route.Default != "" {
			set[s.Route.Default] = true
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Stages returns every stage, sources then bolts then sinks, each sorted by
// name.
func (f *File) Stages() []*Stage {
	var out []*Stage
	for _, m := range []map[string]*Stage{f.Sources, f.Bolts, f.Sinks} {
		for _, n := range sortedKeys(m) {
			out = append(out, m[n])
		}
	}
	return out
}

// Defaults applied to values the file leaves out.
const (
	DefaultDataDir      = ".sluice/data"
	DefaultAdminAddr    = "127.0.0.1:8686" // loopback only: never reachable from the network by accident
	DefaultBatchSize    = 1024
	DefaultSegmentBytes = 64 << 20
	DefaultMaxBytes     = 2 << 30
	DefaultMaxRetries   = 3
)

// Load reads and checks the file at path. On problems it returns the
// partially filled File and an Errors listing all of them.
func Load(path string, plugins Plugins) (*File, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, text, plugins)
}

// Parse checks text as if read from the file name.
func Parse(name string, text []byte, plugins Plugins) (*File, error) {
	c := &checker{file: name, plugins: plugins}
	expanded := c.expandEnv(string(text))
	c.lines = indexLines(expanded)
	f := &File{Path: name}
	// Each table is decoded on its own, so that a value of the wrong type in
	// one table does not hide the problems of the others.
	var raw struct {
		Agent    toml.Primitive            `toml:"agent"`
		Channels map[string]toml.Primitive `toml:"channels"`
		Sources  map[string]toml.Primitive `toml:"sources"`
		Bolts    map[string]toml.Primitive `toml:"bolts"`
		Sinks    map[string]toml.Primitive `toml:"sinks"`
	}
	md, err := toml.Decode(expanded, &raw)
	if err != nil {
		c.decodeError("", err)
		return f, c.result()
	}
	c.md = md
	c.broken = map[string]bool{}
	decode := func(path string, prim toml.Primitive, v any) {
		if err := md.PrimitiveDecode(prim, v); err != nil {
			c.decodeError(path, err)
			c.broken[path] = true
		}
	}
	if md.IsDefined("agent") {
		decode("agent", raw.Agent, &f.Agent)
	}
	f.Channels = map[string]*Channel{}
	for n, prim := range raw.Channels {
		ch := &Channel{}
		decode("channels."+n, prim, ch)
		f.Channels[n] = ch
	}
	for table, m := range map[string]*map[string]*Stage{"sources": &f.Sources, "bolts": &f.Bolts, "sinks": &f.Sinks} {
		prims := map[string]map[string]toml.Primitive{"sources": raw.Sources, "bolts": raw.Bolts, "sinks": raw.Sinks}[table]
		*m = map[string]*Stage{}
		for n, prim := range prims {
			st := &Stage{}
			decode(table+"."+n, prim, st)
			(*m)[n] = st
		}
	}
	if f.Channels == nil {
		f.Channels = map[string]*Channel{}
	}
	for kind, m := range map[Kind]*map[string]*Stage{KindSource: &f.Sources, KindBolt: &f.Bolts, KindSink: &f.Sinks} {
		if *m == nil {
			*m = map[string]*Stage{}
		}
		for n, s := range *m {
			s.Name, s.Kind = n, kind
		}
	}
	for n, ch := range f.Channels {
		ch.Name = n
	}
	c.decodePluginConfigs(f)
	c.unknownKeys(f)
	c.check(f)
	return f, c.result()
}

// expandEnv replaces ${VAR} and ${VAR:-default} line by line, so line
// numbers do not move.
func (c *checker) expandEnv(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		for {
			start := strings.Index(l, "${")
			if start < 0 {
				break
			}
			end := strings.IndexByte(l[start:], '}')
			if end < 0 {
				break
			}
			expr := l[start+2 : start+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			val, ok := os.LookupEnv(name)
			if !ok || (hasDef && val == "") {
				if !hasDef {
					c.errs = append(c.errs, Error{File: c.file, Line: i + 1, Msg: fmt.Sprintf("environment variable %s is not set", name), Hint: "set it, or write ${" + name + ":-default}"})
				}
				val = def
			}
			l = l[:start] + val + l[start+end+1:]
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
