package topology

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/registry"
)

// testRegistry has a gen source of n events, a pass bolt and a sink
// recording bodies by stage name into bodies. bodies["opened:STAGE"]
// counts the instances each plugin built.
func testRegistry(t *testing.T, n int, mu *sync.Mutex, bodies map[string][]string) *registry.Registry {
	t.Helper()
	type genConfig struct {
		Tag string `toml:"tag"`
	}
	reg := registry.New()
	for _, p := range []registry.Plugin{
		{Kind: config.KindSource, Type: "gen", NewConfig: func() any { return &genConfig{} },
			NewSource: func(_ any, env registry.Env) (pipeline.Source, error) {
				mu.Lock()
				bodies["opened:"+env.Name] = append(bodies["opened:"+env.Name], "")
				mu.Unlock()
				return &genSource{n: n}, nil
			}},
		{Kind: config.KindBolt, Type: "pass", NewConfig: func() any { return &genConfig{} },
			NewBolt: func(any, registry.Env) (pipeline.Bolt, error) { return passBolt{}, nil }},
		{Kind: config.KindSink, Type: "bodies", NewConfig: func() any { return &genConfig{} },
			NewSink: func(_ any, env registry.Env) (pipeline.Sink, error) {
				return bodySink{mu, bodies, env.Name}, nil
			}},
	} {
		if err := reg.Register(p); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

const reloadBase = `
[agent]
data_dir = "DIR/data"
[channels.all]
partitions = 4
[channels.out]
[sources.gen]
type = "gen"
output = "all"
[bolts.pass]
type = "pass"
input = "all"
output = "out"
parallelism = 1
[sinks.main]
type = "bodies"
input = "out"
`

func parseIn(t *testing.T, dir, text string, reg *registry.Registry) *config.File {
	t.Helper()
	cfg, err := config.Parse("reload.toml", []byte(strings.ReplaceAll(text, "DIR", dir)), reg)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return cfg
}

// TestDiff pins what counts as a change and what a reload refuses.
func TestDiff(t *testing.T) {
	dir := t.TempDir()
	reg := testRegistry(t, 0, &sync.Mutex{}, map[string][]string{})
	wasmA, wasmB := filepath.Join(dir, "a.wasm"), filepath.Join(dir, "b.wasm")
	os.WriteFile(wasmA, []byte("\x00asm a"), 0o644)
	os.WriteFile(wasmB, []byte("\x00asm b"), 0o644)
	withWasm := strings.Replace(reloadBase, "[sinks.main]", "[sinks.w]\nwasm = \"WASM\"\ninput = \"out\"\n[sinks.main]", 1)
	old := parseIn(t, dir, strings.ReplaceAll(withWasm, "WASM", wasmA), reg)
	oldMods := map[string]module{"w": {sha256: "aaa"}}
	for _, tc := range []struct {
		name    string
		text    string
		mods    map[string]module // nil: the old ones
		want    string            // Changes.String()
		restart []string
		err     string
	}{
		{name: "same text", text: withWasm, want: "nothing"},
		{name: "parallelism", text: strings.Replace(withWasm, "parallelism = 1", "parallelism = 4", 1), want: "changed=[pass]"},
		{name: "plugin config", text: strings.Replace(withWasm, "type = \"pass\"", "type = \"pass\"\nconfig = { tag = \"x\" }", 1), want: "changed=[pass]"},
		{name: "module bytes", text: withWasm, mods: map[string]module{"w": {sha256: "bbb"}}, want: "changed=[w]"},
		{name: "module path, same bytes", text: strings.ReplaceAll(withWasm, "WASM", wasmB), want: "changed=[w]"},
		{name: "sink added", text: withWasm + "[sinks.copy]\ntype = \"bodies\"\ninput = \"out\"\n", want: "added=[copy]"},
		{name: "sink removed", text: strings.Replace(withWasm, "[sinks.w]\nwasm = \"WASM\"\ninput = \"out\"\n", "", 1), want: "removed=[w]"},
		{name: "channel added with its stages", text: withWasm + "[channels.more]\n[sources.g2]\ntype = \"gen\"\noutput = \"more\"\n[sinks.s2]\ntype = \"bodies\"\ninput = \"more\"\n",
			want: "added=[g2 s2] added_channels=[more]"},
		{name: "admin address", text: strings.Replace(withWasm, "[agent]", "[agent]\nadmin_addr = \"127.0.0.1:9999\"", 1), want: "nothing", restart: []string{"agent.admin_addr"}},
		{name: "partitions", text: strings.Replace(withWasm, "partitions = 4", "partitions = 8", 1),
			err: "channels.all.partitions: the partitions of a running channel cannot change (4 → 8)"},
		{name: "data dir", text: strings.Replace(withWasm, "DIR/data", "DIR/other", 1), err: "agent.data_dir: cannot change while the agent runs"},
		{name: "channel storage: reopened, its stages restarted", text: strings.Replace(withWasm, "[channels.out]", "[channels.out]\nfsync = \"never\"", 1),
			want: "changed=[main pass w] reopened_channels=[out]"},
		{name: "channel type", text: strings.Replace(withWasm, "[channels.out]", "[channels.out]\ntype = \"memory\"", 1),
			err: "channels.out.type: a running channel's type cannot change (file → memory)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.ReplaceAll(tc.text, "WASM", wasmA)
			newCfg := parseIn(t, dir, text, reg)
			mods := tc.mods
			if mods == nil {
				mods = oldMods
			}
			ch, err := diff(old, oldMods, newCfg, mods)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ch.String(); got != tc.want {
				t.Errorf("changes %s, want %s", got, tc.want)
			}
			if !slices.Equal(ch.Restart, tc.restart) {
				t.Errorf("restart %v, want %v", ch.Restart, tc.restart)
			}
		})
	}
}

// TestReloadUnderFlow reloads a running agent while events flow: the
// bolt's parallelism grows, a second sink comes and goes, and invalid
// configs are refused with the old one still running. The main sink gets
// every event exactly once.
func TestReloadUnderFlow(t *testing.T) {
	dir := t.TempDir()
	const n = 60_000
	var mu sync.Mutex
	bodies := map[string][]string{}
	reg := testRegistry(t, n, &mu, bodies)
	ctx := context.Background()
	a, err := Build(ctx, parseIn(t, dir, reloadBase, reg), reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Stop(ctx)
	mainCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(bodies["main"])
	}
	// waitFlow waits until the main sink got more events than before.
	waitFlow := func(before int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for mainCount() <= before && mainCount() < n {
			if time.Now().After(deadline) {
				t.Fatalf("no event reached the sink after a reload (%d)", before)
			}
			time.Sleep(time.Millisecond)
		}
	}
	reload := func(text string) (Changes, error) {
		t.Helper()
		before := mainCount()
		ch, err := a.Reload(ctx, parseIn(t, dir, text, reg))
		waitFlow(before)
		return ch, err
	}
	withCopy := reloadBase + "[sinks.copy]\ntype = \"bodies\"\ninput = \"out\"\n"
	garbage := filepath.Join(dir, "garbage.wasm")
	os.WriteFile(garbage, []byte("not a module"), 0o644)
	steps := []struct {
		text, want, err string
	}{
		{text: strings.Replace(reloadBase, "parallelism = 1", "parallelism = 2", 1), want: "changed=[pass]"},
		{text: strings.Replace(withCopy, "parallelism = 1", "parallelism = 4", 1), want: "added=[copy] changed=[pass]"},
		{text: strings.Replace(reloadBase, "partitions = 4", "partitions = 2\n", 1), err: "partitions of a running channel cannot change"},
		{text: withCopy + "[sinks.bad]\nwasm = \"" + garbage + "\"\ninput = \"out\"\n", err: "sinks.bad"},
		{text: reloadBase, want: "removed=[copy] changed=[pass]"},
		{text: reloadBase, want: "nothing"},
		{text: strings.Replace(reloadBase, "[channels.out]", "[channels.out]\nmax_bytes = \"512MiB\"\nsegment_bytes = \"1MiB\"", 1),
			want: "changed=[main pass] reopened_channels=[out]"},
	}
	for i, st := range steps {
		before := a.Config()
		ch, err := reload(st.text)
		if st.err != "" {
			if err == nil || !strings.Contains(err.Error(), st.err) {
				t.Fatalf("step %d: err = %v, want %q", i, err, st.err)
			}
			if a.Config() != before {
				t.Fatalf("step %d: a rejected reload replaced the running config", i)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if ch.String() != st.want {
			t.Errorf("step %d: changes %s, want %s", i, ch, st.want)
		}
	}
	if _, ok := a.Channel(DeadLetterName("copy")); ok {
		t.Error("the removed sink's dead-letter channel is still open")
	}
	mu.Lock()
	opened := len(bodies["opened:gen"])
	mu.Unlock()
	if opened != 1 {
		t.Errorf("the unchanged source was opened %d times across the reloads, want once (it keeps running)", opened)
	}
	deadline := time.Now().Add(time.Minute)
	for mainCount() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(ctx, a.Config()); err != ErrStopped {
		t.Errorf("Reload after Stop: %v, want ErrStopped", err)
	}
	seen := map[string]int{}
	for _, b := range bodies["main"] {
		seen[b]++
	}
	lost, dup := 0, 0
	for i := range n {
		c := []string{"red", "blue", "green"}[i%3]
		switch k := seen[fmt.Sprintf("%s-%d", c, i)]; {
		case k == 0:
			lost++
		case k > 1:
			dup += k - 1
		}
	}
	if lost != 0 || dup != 0 {
		t.Fatalf("main sink: %d events lost, %d duplicated of %d across %d reloads", lost, dup, n, len(steps))
	}
}

// TestReloadRemovedChannel refuses to remove a channel that holds events
// unless agent.drop_removed_channels is set, and then deletes it.
func TestReloadRemovedChannel(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	bodies := map[string][]string{}
	reg := testRegistry(t, 1000, &mu, bodies)
	// side has a writer and a reader that never runs: stopped sinks are
	// not possible in config, so the test fills it and then removes both.
	text := reloadBase + "[channels.side]\n[sources.g2]\ntype = \"gen\"\noutput = \"side\"\n[sinks.s2]\ntype = \"bodies\"\ninput = \"side\"\n"
	ctx := context.Background()
	cfg := parseIn(t, dir, text, reg)
	a, err := Build(ctx, cfg, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop(ctx)
	// Fill side before the pipeline starts: events no reader committed.
	side, _ := a.Channel("side")
	var b event.Builder
	b.Add(&event.Event{Body: []byte("x")})
	b.Add(&event.Event{Body: []byte("y")})
	if _, err := side.Append(ctx, 0, "test", b.Bytes(), b.Len(), nil); err != nil {
		t.Fatal(err)
	}
	// Not started: its reader s2 has committed nothing.
	_, err = a.Reload(ctx, parseIn(t, dir, reloadBase, reg))
	if err == nil || !strings.Contains(err.Error(), "channels.side: removed from the config but still holds") ||
		!strings.Contains(err.Error(), "agent.drop_removed_channels = true") {
		t.Fatalf("err = %v, want the channel refused with the option named", err)
	}
	if _, ok := a.Channel("side"); !ok {
		t.Fatal("a refused reload closed the channel")
	}
	drop := strings.Replace(reloadBase, "[agent]", "[agent]\ndrop_removed_channels = true", 1)
	ch, err := a.Reload(ctx, parseIn(t, dir, drop, reg))
	if err != nil {
		t.Fatal(err)
	}
	if ch.String() != "removed=[g2 s2] removed_channels=[side]" {
		t.Errorf("changes %s", ch)
	}
	if _, err := os.Stat(ChannelDir(filepath.Join(dir, "data"), "side")); !os.IsNotExist(err) {
		t.Errorf("dropped channel's directory: %v, want it gone", err)
	}
}

// TestDiffOfUnchangedExamples parses every example config twice: reloading
// the same text must change nothing, whatever the built-in plugins' config
// types hold (Kafka, Redis, tail, store, file, stdout).
func TestDiffOfUnchangedExamples(t *testing.T) {
	demo := t.TempDir()
	os.MkdirAll(filepath.Join(demo, "plugins"), 0o755)
	for _, m := range []string{"order-parse.wasm", "order-stats.wasm"} {
		os.WriteFile(filepath.Join(demo, "plugins", m), []byte("\x00asm"), 0o644)
	}
	t.Setenv("SLUICE_DEMO_DIR", demo)
	files, _ := filepath.Glob("../../conf/*.toml")
	if len(files) < 4 {
		t.Fatalf("found %d example configs, want the 4 in conf/", len(files))
	}
	for _, f := range files {
		a, err := config.Load(f, registry.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		b, err := config.Load(f, registry.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		mods := map[string]module{}
		for _, s := range a.Stages() {
			mods[s.Name] = module{sha256: "same"}
		}
		ch, err := diff(a, mods, b, mods)
		if err != nil || !ch.Empty() {
			t.Errorf("%s reloaded unchanged: %s, %v; want nothing", f, ch, err)
		}
	}
}

// TestDiffMemoryChannel refuses a change of a memory channel's settings:
// reopening it would lose the events it holds.
func TestDiffMemoryChannel(t *testing.T) {
	dir := t.TempDir()
	reg := testRegistry(t, 0, &sync.Mutex{}, map[string][]string{})
	mem := strings.Replace(reloadBase, "[channels.out]", "[channels.out]\ntype = \"memory\"", 1)
	old := parseIn(t, dir, mem, reg)
	changed := parseIn(t, dir, strings.Replace(mem, "type = \"memory\"", "type = \"memory\"\nmax_bytes = \"1GiB\"", 1), reg)
	_, err := diff(old, nil, changed, nil)
	if err == nil || !strings.Contains(err.Error(), "channels.out: max_bytes of a memory channel cannot change on reload: reopening it would lose its events") {
		t.Fatalf("err = %v, want the memory channel's change refused", err)
	}
}
