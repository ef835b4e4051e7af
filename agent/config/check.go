package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a config file.
type Error struct {
	File string
	Line int    // 0 when the line is not known
	Path string // TOML path, e.g. "bolts.stats.input"
	Msg  string
	Hint string // e.g. `did you mean "raw"?`; may be empty
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// Errors is every problem found in a file, in line order.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

type checker struct {
	file    string
	plugins Plugins
	lines   lineIndex
	md      toml.MetaData
	errs    Errors
	// broken holds the tables ("bolts.x") that failed to decode: their
	// remaining keys are not reported as unknown, and the graph is not
	// checked (their missing fields would only add noise).
	broken map[string]bool
}

func (c *checker) add(path, hint, format string, args ...any) {
	c.errs = append(c.errs, Error{File: c.file, Line: c.lines.line(path), Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (c *checker) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	sort.SliceStable(c.errs, func(i, j int) bool {
		if c.errs[i].Line != c.errs[j].Line {
			return c.errs[i].Line < c.errs[j].Line
		}
		return c.errs[i].Path < c.errs[j].Path
	})
	return c.errs
}

// decodeError turns a BurntSushi error into an Error with its line.
func (c *checker) decodeError(path string, err error) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		p := path
		if pe.LastKey != "" {
			p = pe.LastKey
		}
		c.errs = append(c.errs, Error{File: c.file, Line: pe.Position.Line, Path: p, Msg: pe.Message})
		return
	}
	msg := err.Error()
	// "toml: line 3 (last key "x.y"): incompatible types: ..." → path and message.
	if i := strings.Index(msg, `(last key "`); i >= 0 {
		rest := msg[i+len(`(last key "`):]
		if j := strings.Index(rest, `"): `); j >= 0 {
			c.add(rest[:j], "", "%s", rest[j+4:])
			return
		}
	}
	c.add(path, "", "%s", strings.TrimPrefix(msg, "toml: "))
}

func (c *checker) decodePluginConfigs(f *File) {
	for _, s := range f.Stages() {
		if c.broken[s.path()] {
			continue
		}
		path := s.path() + ".config"
		switch {
		case s.Wasm != "":
			m := map[string]any{}
			if c.md.IsDefined(s.keyPath("config")...) {
				if err := c.md.PrimitiveDecode(s.Config, &m); err != nil {
					c.decodeError(path, err)
				}
			}
			s.Plugin = m
		case s.Type != "" && c.plugins != nil:
			cfg, ok := c.plugins.NewConfig(s.Kind, s.Type)
			if !ok {
				continue // reported by check
			}
			if c.md.IsDefined(s.keyPath("config")...) {
				if err := c.md.PrimitiveDecode(s.Config, cfg); err != nil {
					c.decodeError(path, err)
					continue
				}
			}
			s.Plugin = cfg
			if v, ok := cfg.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					for _, e := range unjoin(err) {
						c.add(path, "", "%s", e.Error())
					}
				}
			}
			c.checkUnits(path, reflect.ValueOf(cfg))
		}
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// unknownKeys reports every key that no struct field took, with the closest
// known key as a hint.
func (c *checker) unknownKeys(f *File) {
	for _, k := range c.md.Undecoded() {
		if len(k) >= 2 && c.broken[k[0]+"."+k[1]] || len(k) >= 1 && c.broken[k[0]] {
			continue
		}
		if len(k) >= 4 && isStageTable(k[0]) && k[2] == "config" {
			if s := f.stage(k[0], k[1]); s == nil || s.Plugin == nil || s.Wasm != "" {
				// Unknown plugin type: reported once by check. WASM config
				// tables are taken whole (BurntSushi leaves inline-table
				// keys of a map marked undecoded).
				continue
			}
		}
		known := c.knownKeys(f, k[:len(k)-1])
		hint := ""
		if m := closest(k[len(k)-1], known); m != "" {
			hint = fmt.Sprintf("did you mean %q?", m)
		} else if len(known) > 0 && len(known) <= 12 {
			hint = "known keys: " + strings.Join(known, ", ")
		}
		c.add(k.String(), hint, "unknown key")
	}
}

// knownKeys lists the keys allowed in the table at path.
func (c *checker) knownKeys(f *File, path toml.Key) []string {
	switch {
	case len(path) == 0:
		return []string{"agent", "bolts", "channels", "sinks", "sources"}
	case len(path) == 1 && path[0] == "agent":
		return tomlFields(reflect.TypeOf(Agent{}))
	case len(path) == 2 && path[0] == "channels":
		return tomlFields(reflect.TypeOf(Channel{}))
	case len(path) == 2 && isStageTable(path[0]):
		return tomlFields(reflect.TypeOf(Stage{}))
	case len(path) == 3 && isStageTable(path[0]) && path[2] == "route":
		return tomlFields(reflect.TypeOf(Route{}))
	case len(path) >= 3 && isStageTable(path[0]) && path[2] == "config":
		s := f.stage(path[0], path[1])
		if s == nil || s.Plugin == nil {
			return nil
		}
		t := reflect.TypeOf(s.Plugin)
		for _, name := range path[3:] {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t.Kind() != reflect.Struct {
				return nil
			}
			fld, ok := fieldByKey(t, name)
			if !ok {
				return nil
			}
			t = fld.Type
		}
		return tomlFields(t)
	}
	return nil
}

func isStageTable(s string) bool { return s == "sources" || s == "bolts" || s == "sinks" }

func (f *File) stage(table, name string) *Stage {
	switch table {
	case "sources":
		return f.Sources[name]
	case "bolts":
		return f.Bolts[name]
	case "sinks":
		return f.Sinks[name]
	}
	return nil
}

func tomlFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		fl := t.Field(i)
		if !fl.IsExported() {
			continue
		}
		name := tomlName(fl)
		if name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func tomlName(fl reflect.StructField) string {
	tag, _, _ := strings.Cut(fl.Tag.Get("toml"), ",")
	if tag == "" {
		return fl.Name
	}
	return tag
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		fl := t.Field(i)
		if fl.IsExported() && (tomlName(fl) == key || strings.EqualFold(fl.Name, key)) {
			return fl, true
		}
	}
	return reflect.StructField{}, false
}

// checkUnits reports Size and Duration values that did not parse, anywhere
// in v, with their TOML path.
func (c *checker) checkUnits(path string, v reflect.Value) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case Size:
		if x.err != nil {
			c.add(path, "", "%v", x.err)
		}
		return
	case Duration:
		if x.err != nil {
			c.add(path, "", "%v", x.err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).IsExported() && tomlName(t.Field(i)) != "-" {
				c.checkUnits(path+"."+tomlName(t.Field(i)), v.Field(i))
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			c.checkUnits(fmt.Sprintf("%s.%v", path, k.Interface()), v.MapIndex(k))
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				c.checkUnits(path, v.Index(i))
			}
		}
	}
}

func (s *Stage) path() string              { return string(s.Kind) + "s." + s.Name }
func (s *Stage) keyPath(k string) []string { return []string{string(s.Kind) + "s", s.Name, k} }

var (
	capabilityNames = []string{"clock", "http", "log", "metrics", "random", "state"}
	fsyncNames      = []string{"always", "interval", "never"}
	channelTypes    = []string{"file", "memory"}
	groupingNames   = []string{"key", "shuffle"}
	logLevels       = []string{"debug", "error", "info", "warn"}
)

// check applies defaults and validates values and the graph.
func (c *checker) check(f *File) {
	a := &f.Agent
	if a.DataDir == "" {
		a.DataDir = DefaultDataDir
	}
	if a.LogLevel == "" {
		a.LogLevel = "info"
	}
	if !c.broken["agent"] {
		c.oneOf("agent.log_level", a.LogLevel, logLevels)
		c.checkUnits("agent", reflect.ValueOf(a))
		c.checkAdmin(a)
		c.checkOpAMP(&a.OpAMP)
	}

	for _, n := range sortedKeys(f.Channels) {
		ch := f.Channels[n]
		p := "channels." + n
		if c.broken[p] {
			continue // which keys were decoded before the type error is arbitrary
		}
		if ch.Type == "" {
			ch.Type = "file"
		}
		c.oneOf(p+".type", ch.Type, channelTypes)
		if ch.Fsync == "" {
			ch.Fsync = "always"
		}
		c.oneOf(p+".fsync", ch.Fsync, fsyncNames)
		if ch.Fsync == "interval" && !ch.FsyncInterval.IsSet() {
			c.add(p+".fsync", `add fsync_interval = "1s"`, `fsync = "interval" needs fsync_interval`)
		}
		if ch.Partitions < 0 {
			c.add(p+".partitions", "", "partitions must be at least 1, not %d", ch.Partitions)
		}
		c.checkUnits(p, reflect.ValueOf(ch))
		if ch.SegmentBytes.Or(DefaultSegmentBytes) > ch.MaxBytes.Or(DefaultMaxBytes) {
			c.add(p+".segment_bytes", "", "segment_bytes (%s) is larger than max_bytes (%s)",
				FormatSize(ch.SegmentBytes.Or(DefaultSegmentBytes)), FormatSize(ch.MaxBytes.Or(DefaultMaxBytes)))
		}
		if strings.HasPrefix(n, "dlq.") {
			c.add(p, "choose another name", `names starting with "dlq." are reserved for dead-letter channels`)
		}
	}

	// Names: one namespace for every stage (they name producers, readers and
	// dead-letter channels).
	owner := map[string]string{}
	for _, s := range f.Stages() {
		if prev, ok := owner[s.Name]; ok {
			c.add(s.path(), "rename one of them", "name %q is also used by %s", s.Name, prev)
		} else {
			owner[s.Name] = s.path()
		}
	}

	for _, s := range f.Stages() {
		if !c.broken[s.path()] {
			c.checkStage(f, s)
		}
	}
	if len(c.broken) == 0 {
		c.checkGraph(f)
	}
}

// AdminTokenEnv is the environment variable agent.admin_token defaults to.
const AdminTokenEnv = "SLUICE_ADMIN_TOKEN"

// checkAdmin applies the admin defaults and refuses an admin address other
// machines can reach without a token (the API can read every event through
// /api/tap).
func (c *checker) checkAdmin(a *Agent) {
	switch {
	case !c.md.IsDefined("agent", "admin_addr"):
		a.AdminAddr, a.AdminAddrDefault = DefaultAdminAddr, true
	case a.AdminAddr == "off":
		a.AdminAddr = ""
	}
	if !c.md.IsDefined("agent", "admin_token") {
		a.AdminToken = os.Getenv(AdminTokenEnv)
	}
	if a.AdminAddr == "" {
		return
	}
	host, port, err := net.SplitHostPort(a.AdminAddr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		c.add("agent.admin_addr", `write e.g. "127.0.0.1:8686", or "off" to disable the admin API`, "%q is not a host:port address", a.AdminAddr)
		return
	}
	if !isLoopback(host) && a.AdminToken == "" {
		c.add("agent.admin_addr", "set admin_token or "+AdminTokenEnv+", or bind to 127.0.0.1",
			"%q is reachable from other machines, so the admin API needs a token", a.AdminAddr)
	}
}

// isLoopback reports whether host only accepts connections from this
// machine; an empty host means every interface. (admin.IsLoopback, kept
// here so that config does not import the admin server.)
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *checker) oneOf(path, v string, allowed []string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	hint := "one of " + strings.Join(allowed, ", ")
	if m := closest(v, allowed); m != "" {
		hint = fmt.Sprintf("did you mean %q?", m)
	}
	c.add(path, hint, "%q is not allowed", v)
}

func (c *checker) channelRef(f *File, path, name string) {
	if _, ok := f.Channels[name]; ok {
		return
	}
	hint := "declare it in [channels." + name + "]"
	if m := closest(name, sortedKeys(f.Channels)); m != "" {
		hint = fmt.Sprintf("did you mean %q?", m)
	}
	c.add(path, hint, "channel %q is not defined", name)
}

func (c *checker) checkStage(f *File, s *Stage) {
	p := s.path()
	switch {
	case s.Type != "" && s.Wasm != "":
		c.add(p, "keep one", "both type and wasm are set")
	case s.Type == "" && s.Wasm == "":
		hint := `write wasm = "path/to/plugin.wasm"`
		if c.plugins != nil {
			if ts := c.plugins.Types(s.Kind); len(ts) > 0 {
				hint = fmt.Sprintf(`write type = %q (built-in: %s) or wasm = "path/to/plugin.wasm"`, ts[0], strings.Join(ts, ", "))
			}
		}
		c.add(p, hint, "neither type nor wasm is set")
	case s.Type != "":
		if c.plugins != nil {
			if _, ok := c.plugins.NewConfig(s.Kind, s.Type); !ok {
				ts := c.plugins.Types(s.Kind)
				hint := "built-in " + string(s.Kind) + "s: " + strings.Join(ts, ", ")
				if m := closest(s.Type, ts); m != "" {
					hint = fmt.Sprintf("did you mean %q?", m)
				}
				c.add(p+".type", hint, "unknown %s type %q", s.Kind, s.Type)
			}
		}
		for _, k := range []string{"sha256", "capabilities", "http_hosts", "max_memory", "call_timeout", "trusted"} {
			if c.md.IsDefined(s.keyPath(k)...) {
				c.add(p+"."+k, "remove it", "%s applies only to wasm plugins", k)
			}
		}
	case s.Wasm != "":
		c.checkWasm(f, s)
	}

	switch s.Kind {
	case KindSource:
		if s.Input != "" {
			c.add(p+".input", "remove it", "a source has no input")
		}
	case KindBolt, KindSink:
		if s.Input == "" {
			c.add(p, `add input = "CHANNEL"`, "a %s needs an input channel", s.Kind)
		} else {
			c.channelRef(f, p+".input", s.Input)
		}
	}
	switch s.Kind {
	case KindSource, KindBolt:
		if s.Output == "" && s.Route == nil {
			c.add(p, `add output = "CHANNEL"`, "a %s needs an output channel", s.Kind)
		}
		if s.Output != "" && s.Route != nil {
			c.add(p+".route", "keep one", "both output and route are set")
		}
		if s.Output != "" {
			c.channelRef(f, p+".output", s.Output)
		}
		if r := s.Route; r != nil {
			if s.Kind == KindSource {
				c.add(p+".route", "route in a bolt after the source", "sources cannot route by header")
			}
			if r.Header == "" {
				c.add(p+".route", `add header = "NAME"`, "route needs a header")
			}
			if len(r.Routes) == 0 {
				c.add(p+".route", `add [`+p+`.route.routes] VALUE = "CHANNEL"`, "route has no routes")
			}
			for _, v := range sortedKeys(r.Routes) {
				c.channelRef(f, p+".route.routes."+v, r.Routes[v])
			}
			if r.Default != "" {
				c.channelRef(f, p+".route.default", r.Default)
			}
		}
	case KindSink:
		if s.Output != "" || s.Route != nil {
			c.add(p+".output", "remove it", "a sink has no output channel")
		}
	}

	if s.Kind != KindBolt {
		for _, k := range []string{"parallelism", "grouping", "tick"} {
			if c.md.IsDefined(s.keyPath(k)...) {
				c.add(p+"."+k, "remove it", "%s applies only to bolts", k)
			}
		}
	}
	if s.Kind != KindSource && c.md.IsDefined(s.keyPath("batch_size")...) {
		c.add(p+".batch_size", "remove it", "batch_size applies only to sources")
	}
	if s.Parallelism < 0 {
		c.add(p+".parallelism", "", "parallelism must be at least 1, not %d", s.Parallelism)
	}
	// Parallelism 0 (left out) is resolved by checkGraph to one instance
	// per partition of the input channel.
	if s.Grouping == "" {
		s.Grouping = "shuffle"
	}
	c.oneOf(p+".grouping", s.Grouping, groupingNames)
	if s.BatchSize < 0 {
		c.add(p+".batch_size", "", "batch_size must be at least 1, not %d", s.BatchSize)
	}
	if s.BatchSize == 0 {
		s.BatchSize = DefaultBatchSize
	}
	if s.MaxRetries < 0 {
		c.add(p+".max_retries", "", "max_retries must not be negative")
	}
	if !c.md.IsDefined(s.keyPath("max_retries")...) {
		s.MaxRetries = DefaultMaxRetries
	}
	c.checkUnits(p, reflect.ValueOf(struct {
		MaxMemory   Size     `toml:"max_memory"`
		CallTimeout Duration `toml:"call_timeout"`
		Tick        Duration `toml:"tick"`
	}{s.MaxMemory, s.CallTimeout, s.Tick}))
	for _, cp := range s.Capabilities {
		c.oneOf(p+".capabilities", cp, capabilityNames)
	}
	if len(s.HTTPHosts) > 0 && !contains(s.Capabilities, "http") {
		c.add(p+".http_hosts", `add "http" to capabilities`, "http_hosts without the http capability")
	}
	if contains(s.Capabilities, "http") && s.Kind == KindBolt {
		c.add(p+".capabilities", "", "the http capability is for sources and sinks only")
	}
}

func (c *checker) checkWasm(f *File, s *Stage) {
	p := s.path()
	if !strings.HasSuffix(s.Wasm, ".wasm") {
		c.add(p+".wasm", "build one with `sluice plugin build DIR`", "%q is not a .wasm file", s.Wasm)
	}
	if st, err := os.Stat(s.Wasm); err != nil {
		hint := "build it with `sluice plugin build DIR`"
		if errors.Is(err, os.ErrNotExist) {
			c.add(p+".wasm", hint, "module %q does not exist", s.Wasm)
		} else {
			c.add(p+".wasm", "", "module %q: %v", s.Wasm, err)
		}
	} else if st.IsDir() {
		c.add(p+".wasm", "build it with `sluice plugin build "+s.Wasm+"`", "%q is a directory, not a module", s.Wasm)
	}
	if s.SHA256 != "" {
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != 32 {
			c.add(p+".sha256", "64 hex digits, from `sha256sum FILE`", "%q is not a sha256", s.SHA256)
		}
	} else if f.Agent.RequireSHA256 {
		hint := "add sha256 = \"…\" from `sha256sum " + s.Wasm + "`"
		c.add(p, hint, "module is not pinned by sha256, which agent.require_sha256 requires")
	}
}

// checkGraph checks that channels have writers and readers, that bolt
// parallelism fits the input's partitions, and that there is no cycle. It
// resolves each channel's partitions and each bolt's parallelism.
func (c *checker) checkGraph(f *File) {
	writers := map[string][]*Stage{}
	readers := map[string][]*Stage{}
	for _, s := range f.Stages() {
		for _, o := range s.Outputs() {
			writers[o] = append(writers[o], s)
		}
		if s.Input != "" {
			readers[s.Input] = append(readers[s.Input], s)
		}
	}
	for _, n := range sortedKeys(f.Channels) {
		ch := f.Channels[n]
		p := "channels." + n
		if len(writers[n]) == 0 {
			c.add(p, "remove it, or set output = \""+n+"\" on a source or bolt", "channel %q has no writer", n)
		}
		if len(readers[n]) == 0 {
			c.add(p, "remove it, or set input = \""+n+"\" on a bolt or sink", "channel %q has no reader: it would fill up and stop its writers", n)
		}
		// Partitions bound parallelism (as in Kafka): a channel's partitions
		// default to the largest parallelism of the bolts reading it, and
		// every bolt runs at most one instance per partition. Grouping is a
		// property of the channel's writers, so its bolts must agree on it.
		want, grouping, from := 0, "", ""
		for _, r := range readers[n] {
			if r.Kind != KindBolt {
				continue
			}
			if from != "" && r.Grouping != grouping {
				c.add(r.path()+".grouping", "", "bolts %s and %s read channel %q with different grouping (%s, %s)", from, r.Name, n, grouping, r.Grouping)
				continue
			}
			if from == "" {
				grouping, from = r.Grouping, r.Name
			}
			want = max(want, r.Parallelism)
		}
		if grouping == "" {
			grouping = "shuffle"
		}
		if ch.Partitions == 0 {
			ch.Partitions = max(want, 1)
		}
		for _, r := range readers[n] {
			if r.Kind != KindBolt {
				continue
			}
			if r.Parallelism > ch.Partitions {
				hint := fmt.Sprintf("set parallelism to at most %d, or channels.%s.partitions = %d", ch.Partitions, n, r.Parallelism)
				c.add(r.path()+".parallelism", hint, "parallelism %d is more than the %d partitions of input channel %q: partitions bound parallelism", r.Parallelism, ch.Partitions, n)
			}
			if r.Parallelism == 0 {
				r.Parallelism = ch.Partitions
			}
		}
		ch.Grouping = grouping
		if ch.Grouping == "key" {
			for _, w := range writers[n] {
				if w.Kind == KindSource && ch.Partitions > 1 {
					c.add(w.path()+".output", "put a bolt between them", "a source cannot write to channel %q, which is grouped by key", n)
				}
			}
		}
	}
	// A bolt's hop position is an offset in its input channel: stored in a
	// durable output, it must point into a durable input.
	for _, b := range f.Stages() {
		in := f.Channels[b.Input]
		if b.Kind != KindBolt || in == nil || in.Type != "memory" {
			continue
		}
		for _, o := range b.Outputs() {
			if out := f.Channels[o]; out != nil && out.Type == "file" {
				c.add(b.path()+".input", "make both channels file or both memory",
					"reads memory channel %q but writes file channel %q: after a restart its stored position would point into a channel that starts over", b.Input, o)
			}
		}
	}
	c.findCycles(f, readers)
}

// findCycles reports each cycle of bolts once, as the chain of names.
func (c *checker) findCycles(f *File, readers map[string][]*Stage) {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(s *Stage)
	visit = func(s *Stage) {
		color[s.Name] = grey
		stack = append(stack, s.Name)
		for _, o := range s.Outputs() {
			for _, r := range readers[o] {
				if r.Kind != KindBolt {
					continue
				}
				switch color[r.Name] {
				case grey:
					i := len(stack) - 1
					for i > 0 && stack[i] != r.Name {
						i--
					}
					chain := append(append([]string(nil), stack[i:]...), r.Name)
					c.add(r.path()+".input", "a topology must be acyclic", "cycle: %s", strings.Join(chain, " → "))
				case white:
					visit(r)
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[s.Name] = black
	}
	for _, n := range sortedKeys(f.Bolts) {
		if color[n] == white {
			visit(f.Bolts[n])
		}
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// closest returns the candidate within a small edit distance of s, or "".
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	for _, cand := range candidates {
		if cand == s {
			continue
		}
		if d := editDistance(s, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
