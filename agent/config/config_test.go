package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testPlugins is a registry of two built-in plugins for these tests.
type testPlugins struct{}

type genConfig struct {
	Rate     int      `toml:"rate"`
	Interval Duration `toml:"interval"`
}

func (g *genConfig) Validate() error {
	if g.Rate < 0 {
		return errors.New("rate: must not be negative")
	}
	return nil
}

type fileSinkConfig struct {
	Path      string `toml:"path"`
	RotateAt  Size   `toml:"rotate_bytes"`
	Separator string `toml:"separator"`
}

func (testPlugins) NewConfig(k Kind, typ string) (any, bool) {
	switch {
	case k == KindSource && typ == "gen":
		return &genConfig{Rate: 10}, true
	case k == KindSink && typ == "file":
		return &fileSinkConfig{Separator: "\n"}, true
	}
	return nil, false
}

func (testPlugins) Types(k Kind) []string {
	switch k {
	case KindSource:
		return []string{"gen"}
	case KindSink:
		return []string{"file"}
	}
	return nil
}

// writeWasm creates an (empty) module file for file-existence checks.
func writeWasm(t *testing.T) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "parse.wasm")
	if err := os.WriteFile(p, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `
[agent]
data_dir = "/tmp/x"

[channels.raw]
segment_bytes = "1MiB"
max_bytes = "64MiB"

[channels.parsed]
fsync = "never"

[sources.orders]
type = "gen"
output = "raw"
  [sources.orders.config]
  rate = 5
  interval = "250ms"

[bolts.parse]
wasm = "WASM"
input = "raw"
output = "parsed"
parallelism = 2
grouping = "shuffle"
capabilities = ["log", "state"]
max_memory = "32MiB"
[bolts.parse.config]
window = "1m"
fields = { price = "p" }

[sinks.out]
type = "file"
input = "parsed"
config = { path = "out.txt", rotate_bytes = "10MB" }
`

func TestParseGood(t *testing.T) {
	text := strings.ReplaceAll(good, "WASM", writeWasm(t))
	f, err := Parse("good.toml", []byte(text), testPlugins{})
	if err != nil {
		t.Fatalf("unexpected errors:\n%v", err)
	}
	if got := f.Channels["raw"].SegmentBytes.Bytes; got != 1<<20 {
		t.Errorf("segment_bytes = %d", got)
	}
	if ch := f.Channels["raw"]; ch.Partitions != 2 || ch.Grouping != "shuffle" || ch.Fsync != "always" || ch.Type != "file" {
		t.Errorf("raw channel = %+v, want 2 shuffled partitions, fsync always, type file", ch)
	}
	g := f.Sources["orders"].Plugin.(*genConfig)
	if g.Rate != 5 || g.Interval.D.Milliseconds() != 250 {
		t.Errorf("gen config = %+v", g)
	}
	fs := f.Sinks["out"].Plugin.(*fileSinkConfig)
	if fs.Path != "out.txt" || fs.RotateAt.Bytes != 10e6 || fs.Separator != "\n" {
		t.Errorf("file sink config = %+v (defaults must survive decoding)", fs)
	}
	m := f.Bolts["parse"].Plugin.(map[string]any)
	if m["window"] != "1m" {
		t.Errorf("wasm config = %v", m)
	}
	if b := f.Bolts["parse"]; b.MaxMemory.Bytes != 32<<20 || b.BatchSize != DefaultBatchSize || b.MaxRetries != DefaultMaxRetries {
		t.Errorf("bolt = %+v", b)
	}
}

func TestParseErrors(t *testing.T) {
	wasm := writeWasm(t)
	cases := []struct {
		name string
		text string
		want []string
	}{
		{
			name: "undefined channel with hint",
			text: `
[channels.raw]

[sources.orders]
type = "gen"
output = "raw"

[sinks.out]
type = "file"
input = "raww"
`,
			want: []string{
				`x.toml:2: channels.raw: channel "raw" has no reader: it would fill up and stop its writers (remove it, or set input = "raw" on a bolt or sink)`,
				`x.toml:10: sinks.out.input: channel "raww" is not defined (did you mean "raw"?)`,
			},
		},
		{
			name: "unknown keys everywhere, all reported",
			text: `
[agent]
data_dri = "x"

[channels.raw]
fsycn = "always"

[sources.orders]
type = "gen"
outptu = "raw"
output = "raw"
[sources.orders.config]
rat = 3

[sinks.out]
type = "file"
input = "raw"
`,
			want: []string{
				`x.toml:3: agent.data_dri: unknown key (did you mean "data_dir"?)`,
				`x.toml:6: channels.raw.fsycn: unknown key (did you mean "fsync"?)`,
				`x.toml:10: sources.orders.outptu: unknown key (did you mean "output"?)`,
				`x.toml:13: sources.orders.config.rat: unknown key (did you mean "rate"?)`,
			},
		},
		{
			name: "bad values each reported",
			text: `
[agent]
shutdown_timeout = "10 parsecs"
log_level = "loud"

[channels.raw]
max_bytes = "lots"
fsync = "sometimes"

[sources.orders]
type = "gen"
output = "raw"
config = { rate = -1 }

[sinks.out]
type = "file"
input = "raw"
grouping = "key"
`,
			want: []string{
				`x.toml:3: agent.shutdown_timeout: duration "10 parsecs" is not a duration (write e.g. "500ms", "10s", "1m")`,
				`x.toml:4: agent.log_level: "loud" is not allowed (one of debug, error, info, warn)`,
				`x.toml:7: channels.raw.max_bytes: size "lots" is not a size (write e.g. "64MiB", "2GiB", "500KB")`,
				`x.toml:8: channels.raw.fsync: "sometimes" is not allowed (one of always, interval, never)`,
				`x.toml:13: sources.orders.config: rate: must not be negative`,
				`x.toml:18: sinks.out.grouping: grouping applies only to bolts (remove it)`,
			},
		},
		{
			name: "cycle, bolt without input, duplicate names, unknown type",
			text: `
[channels.a]
[channels.b]

[sources.s]
type = "gne"
output = "a"

[bolts.one]
wasm = "WASM"
input = "a"
output = "b"

[bolts.two]
wasm = "WASM"
input = "b"
output = "a"

[bolts.lonely]
wasm = "WASM"
output = "b"

[sinks.s]
type = "file"
input = "b"
`,
			want: []string{
				`x.toml:6: sources.s.type: unknown source type "gne" (did you mean "gen"?)`,
				`x.toml:16: bolts.two.input: cycle: two → one → two (a topology must be acyclic)`,
				`x.toml:19: bolts.lonely: a bolt needs an input channel (add input = "CHANNEL")`,
				`x.toml:23: sinks.s: name "s" is also used by sources.s (rename one of them)`,
			},
		},
		{
			name: "missing and unpinned wasm, parallelism mismatch",
			text: `
[agent]
require_sha256 = true

[channels.raw]
partitions = 3

[channels.out]

[sources.s]
type = "gen"
output = "raw"

[bolts.parse]
wasm = "does/not/exist.wasm"
sha256 = "abc"
input = "raw"
output = "out"
parallelism = 4

[bolts.pinned]
wasm = "WASM"
input = "raw"
output = "out"
parallelism = 2

[sinks.f]
type = "file"
input = "out"
`,
			want: []string{
				`x.toml:15: bolts.parse.wasm: module "does/not/exist.wasm" does not exist (build it with ` + "`sluice plugin build DIR`" + `)`,
				`x.toml:16: bolts.parse.sha256: "abc" is not a sha256 (64 hex digits, from ` + "`sha256sum FILE`" + `)`,
				`x.toml:19: bolts.parse.parallelism: parallelism 4 is more than the 3 partitions of input channel "raw": partitions bound parallelism (set parallelism to at most 3, or channels.raw.partitions = 4)`,
				`x.toml:21: bolts.pinned: module is not pinned by sha256, which agent.require_sha256 requires (add sha256 = "…" from ` + "`sha256sum WASM`" + `)`,
			},
		},
		{
			name: "bolt from a memory channel into a file channel",
			text: `
[channels.fast]
type = "memory"
[channels.out]

[sources.s]
type = "gen"
output = "fast"

[bolts.b]
wasm = "WASM"
input = "fast"
output = "out"

[sinks.f]
type = "file"
input = "out"
`,
			want: []string{
				`x.toml:12: bolts.b.input: reads memory channel "fast" but writes file channel "out": after a restart its stored position would point into a channel that starts over (make both channels file or both memory)`,
			},
		},
		{
			name: "syntax error has its line",
			text: `
[channels.raw]
fsync = "always

[sources.s]
`,
			want: []string{`x.toml:3: channels.raw.fsync: strings cannot contain newlines`},
		},
		{
			name: "type mismatch",
			text: `
[channels.raw]
partitions = "two"
`,
			want: []string{`x.toml:3: channels.raw.partitions: incompatible types: TOML value has type string; destination has type integer`},
		},
		{
			name: "wrong types in several tables are all reported",
			text: `
[channels.raw]
partitions = "two"
fsync = "often"

[sources.s]
type = "gen"
output = "raw"
batch_size = "big"
extra = 1

[sinks.f]
type = "file"
input = "raw"
fsink = true
`,
			want: []string{
				`x.toml:3: channels.raw.partitions: incompatible types: TOML value has type string; destination has type integer`,
				`x.toml:9: sources.s.batch_size: incompatible types: TOML value has type string; destination has type integer`,
				`x.toml:15: sinks.f.fsink: unknown key`,
			},
		},
		{
			name: "env expansion with default, and unset variable",
			text: `
[channels.raw]
fsync = "${SLUICE_TEST_UNSET_FSYNC:-never}"
type = "${SLUICE_TEST_UNSET_TYPE}"

[sources.s]
type = "gen"
output = "raw"

[sinks.f]
type = "file"
input = "raw"
`,
			want: []string{
				`x.toml:4: environment variable SLUICE_TEST_UNSET_TYPE is not set (set it, or write ${SLUICE_TEST_UNSET_TYPE:-default})`,
			},
		},
		{
			name: "admin API reachable from the network without a token, bad address",
			text: `
[agent]
admin_addr = "0.0.0.0:8686"

[channels.raw]

[sources.s]
type = "gen"
output = "raw"

[sinks.f]
type = "file"
input = "raw"
`,
			want: []string{
				`x.toml:3: agent.admin_addr: "0.0.0.0:8686" is reachable from other machines, so the admin API needs a token (set admin_token or SLUICE_ADMIN_TOKEN, or bind to 127.0.0.1)`,
			},
		},
		{
			name: "admin address without a port",
			text: `
[agent]
log_level = "debug"
admin_addr = "localhost"
`,
			want: []string{
				`x.toml:4: agent.admin_addr: "localhost" is not a host:port address (write e.g. "127.0.0.1:8686", or "off" to disable the admin API)`,
			},
		},
	}
	t.Setenv(AdminTokenEnv, "") // the token must come from the file in these cases
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.ReplaceAll(tc.text, "WASM", wasm)
			_, err := Parse("x.toml", []byte(text), testPlugins{})
			var got []string
			var es Errors
			if errors.As(err, &es) {
				for _, e := range es {
					got = append(got, strings.ReplaceAll(e.Error(), wasm, "WASM"))
				}
			} else if err != nil {
				got = []string{err.Error()}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestLineIndex(t *testing.T) {
	text := `# comment
[agent]
data_dir = "a"  # trailing
s = """
[not.a.table]
x = 1
"""
arr = [
  "x = 2",
  { y = 3 },
]
"quoted.key" = 1
a.b.c = 2

[[sinks.x.list]]
v = 'lit[eral'
[ "bolts" . "p q" ]
w = 1
`
	idx := indexLines(text)
	for path, want := range map[string]int{
		"agent":                 2,
		"agent.data_dir":        3,
		"agent.s":               4,
		"agent.arr":             8,
		"agent.quoted.key":      12,
		"agent.a.b.c":           13,
		"agent.a":               13,
		"sinks.x.list":          15,
		"sinks.x.list.v":        16,
		"bolts.p q.w":           18,
		"agent.arr.nonexistent": 8,
	} {
		if got := idx.line(path); got != want {
			t.Errorf("line(%q) = %d, want %d", path, got, want)
		}
	}
	if _, bad := idx["agent.x"]; bad || idx.line("not.a.table") != 0 {
		t.Errorf("keys inside a multi-line string were indexed: %v", idx)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "2GiB": 2 << 30, "500KB": 500e3, "4096": 4096, "1.5 KiB": 1536, "7B": 7} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1KB", "x"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) did not fail", in)
		}
	}
	if FormatSize(64<<20) != "64MiB" || FormatSize(1000) != "1000B" {
		t.Errorf("FormatSize: %s %s", FormatSize(64<<20), FormatSize(1000))
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[a\n"))
	f.Add([]byte("s = \"\"\"\n[x]\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		_, _ = Parse("f.toml", text, testPlugins{})
		_ = indexLines(string(text))
	})
}

func TestAdminSettings(t *testing.T) {
	const graph = `
[channels.raw]
[sources.s]
type = "gen"
output = "raw"
[sinks.f]
type = "file"
input = "raw"
`
	cases := []struct {
		name, agent, env     string
		addr, token          string
		isDefault, wantError bool
	}{
		{name: "absent: default loopback address", addr: DefaultAdminAddr, isDefault: true},
		{name: "off disables", agent: `admin_addr = "off"`},
		{name: "empty disables", agent: `admin_addr = ""`},
		{name: "explicit port", agent: `admin_addr = "127.0.0.1:0"`, addr: "127.0.0.1:0"},
		{name: "token from the environment", agent: `admin_addr = ":8686"`, env: "s3cret", addr: ":8686", token: "s3cret"},
		{name: "token in the file wins", agent: "admin_addr = \"[::]:9000\"\nadmin_token = \"file\"", env: "env", addr: "[::]:9000", token: "file"},
		{name: "every interface without a token", agent: `admin_addr = ":8686"`, wantError: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(AdminTokenEnv, tc.env)
			f, err := Parse("x.toml", []byte("[agent]\n"+tc.agent+"\n"+graph), testPlugins{})
			if tc.wantError {
				if err == nil || !strings.Contains(err.Error(), "x.toml:2: agent.admin_addr:") {
					t.Fatalf("err = %v, want an agent.admin_addr error on line 2", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := f.Agent
			if a.AdminAddr != tc.addr || a.AdminToken != tc.token || a.AdminAddrDefault != tc.isDefault {
				t.Errorf("admin = %q token %q default %v, want %q token %q default %v", a.AdminAddr, a.AdminToken, a.AdminAddrDefault, tc.addr, tc.token, tc.isDefault)
			}
		})
	}
}

// TestParallelismDefaults pins the partition rules: a channel's partitions
// default to the largest parallelism reading it, a bolt's parallelism to its
// input's partitions, and bolts of one channel may differ in parallelism.
func TestParallelismDefaults(t *testing.T) {
	wasm := writeWasm(t)
	text := `
[channels.raw]
[channels.fixed]
partitions = 4
[channels.out]

[sources.s]
type = "gen"
output = "raw"
[sources.t]
type = "gen"
output = "fixed"

[bolts.a]
wasm = "WASM"
input = "raw"
output = "out"
parallelism = 3
[bolts.b]
wasm = "WASM"
input = "raw"
output = "out"
parallelism = 1
[bolts.c]
wasm = "WASM"
input = "fixed"
output = "out"

[sinks.f]
type = "file"
input = "out"
`
	f, err := Parse("p.toml", []byte(strings.ReplaceAll(text, "WASM", wasm)), testPlugins{})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Channels["raw"].Partitions; got != 3 {
		t.Errorf("raw partitions = %d, want 3 (the largest reader parallelism)", got)
	}
	if a, b, c := f.Bolts["a"].Parallelism, f.Bolts["b"].Parallelism, f.Bolts["c"].Parallelism; a != 3 || b != 1 || c != 4 {
		t.Errorf("parallelism a, b, c = %d, %d, %d, want 3, 1, 4 (c: one per partition of fixed)", a, b, c)
	}
}
