package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

func loadEcho(t *testing.T, r *Runtime, name string, mut ...func(*PluginConfig)) *Plugin {
	t.Helper()
	cfg := PluginConfig{Name: name, Kind: KindBolt, Wasm: module(t, "echo.c"), Capabilities: []string{CapMetrics}}
	for _, m := range mut {
		m(&cfg)
	}
	p, err := r.Load(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func TestEchoBoltCopiesRejectsAndDrops(t *testing.T) {
	r, _ := newTestRuntime(t)
	p := loadEcho(t, r, "echo")
	res, err := p.Process(t.Context(), batchOf("a", "reject", "b", "skip", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if got := bodiesOf(t, res.Batch); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("output %q", got)
	}
	if want := []Reject{{Index: 1, Reason: "rejected by request"}}; !reflect.DeepEqual(res.Rejects, want) {
		t.Fatalf("rejects %+v, want %+v", res.Rejects, want)
	}

	// The same through the pipeline.Bolt adapter.
	var out event.Builder
	rejs, err := p.Bolt().Process(t.Context(), batchOf("x", "reject"), &out)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodiesOf(t, out.Bytes()); !reflect.DeepEqual(got, []string{"x"}) || len(rejs) != 1 || rejs[0].Index != 1 {
		t.Fatalf("adapter output %q rejects %+v", got, rejs)
	}
	if _, ok := p.Bolt().(pipeline.Ticker); ok {
		t.Fatal("echo has no sluice_tick but its adapter is a Ticker")
	}

	// An empty batch gives an empty batch.
	res, err = p.Process(t.Context(), batchOf())
	if err != nil || len(bodiesOf(t, res.Batch)) != 0 {
		t.Fatalf("empty batch: %v %v", res, err)
	}
}

func TestStatusErrorIsRetriedOnFreshInstances(t *testing.T) {
	r, _ := newTestRuntime(t)
	p := loadEcho(t, r, "flaky", func(c *PluginConfig) { c.MaxRetries = 2 })
	res, err := p.Process(t.Context(), batchOf("a", "fail"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusError || res.Message != "asked to fail" {
		t.Fatalf("got status %s message %q", res.Status, res.Message)
	}
	c := p.Counters()
	// One instance from Load and two fresh ones, each called once.
	if c["calls"] != 3 || c["inits"] != 3 {
		t.Fatalf("counters %v, want 3 calls on 3 instances", c)
	}
	var out event.Builder
	if _, err := p.Bolt().Process(t.Context(), batchOf("fail"), &out); err == nil || !strings.Contains(err.Error(), "asked to fail") {
		t.Fatalf("adapter error %v", err)
	}
	// A healthy batch afterwards runs on yet another fresh instance.
	if _, err := p.Process(t.Context(), batchOf("ok")); err != nil {
		t.Fatal(err)
	}
	if c := p.Counters(); c["inits"] != 7 {
		t.Fatalf("inits %d, want 7", c["inits"])
	}
}

func TestConfigErrorsSurfaceAtLoad(t *testing.T) {
	r, _ := newTestRuntime(t)
	_, err := r.Load(t.Context(), PluginConfig{Name: "picky", Kind: KindBolt, Wasm: module(t, "echo.c"),
		Capabilities: []string{CapMetrics}, Config: map[string]any{"prefix": "nope"}})
	var pe *PluginError
	if !errors.As(err, &pe) || pe.Plugin != "picky" || pe.Op != "init" || !strings.Contains(err.Error(), "prefix must be ok") {
		t.Fatalf("got %v", err)
	}
	loadEcho(t, r, "fine", func(c *PluginConfig) { c.Config = map[string]any{"prefix": "ok"} })
}

func TestLoadRejectsBadConfigs(t *testing.T) {
	r, _ := newTestRuntime(t)
	echo := module(t, "echo.c")
	for _, tc := range []struct {
		name string
		cfg  PluginConfig
		want string
	}{
		{"no module", PluginConfig{Kind: KindBolt}, "neither a module path"},
		{"bad kind", PluginConfig{Kind: "filter", Wasm: echo}, `unknown kind "filter"`},
		{"unknown capability", PluginConfig{Kind: KindBolt, Wasm: echo, Capabilities: []string{"disk"}}, `unknown capability "disk"`},
		{"state without store", PluginConfig{Kind: KindBolt, Wasm: echo, Capabilities: []string{CapState, CapMetrics}}, "no state store"},
		{"http for a bolt", PluginConfig{Kind: KindBolt, Wasm: echo, Capabilities: []string{CapHTTP, CapMetrics}}, "sources and sinks only"},
		{"not wasm", PluginConfig{Kind: KindBolt, Wasm: []byte("hello")}, "not a valid module"},
		{"missing file", PluginConfig{Kind: KindBolt, Path: "testdata/nothing.wasm"}, "nothing.wasm"},
		{"wrong kind exports", PluginConfig{Kind: KindSink, Wasm: echo, Capabilities: []string{CapMetrics}}, "missing export sluice_write"},
		{"ungranted metrics", PluginConfig{Kind: KindBolt, Wasm: echo}, "sluice_v1.counter_add"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = "cfg-" + tc.name
			_, err := r.Load(t.Context(), tc.cfg)
			var pe *PluginError
			if !errors.As(err, &pe) || pe.Plugin != tc.cfg.Name || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a PluginError containing %q", err, tc.want)
			}
		})
	}
}

func TestSHA256Pin(t *testing.T) {
	r, _ := newTestRuntime(t)
	wasm := module(t, "echo.c")
	sum := sha256.Sum256(wasm)
	path := t.TempDir() + "/echo.wasm"
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	good := strings.ToUpper(hex.EncodeToString(sum[:]))
	p, err := r.Load(t.Context(), PluginConfig{Name: "pinned", Kind: KindBolt, Path: path, SHA256: good, Capabilities: []string{CapMetrics}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close(t.Context())
	bad := strings.Repeat("0", 64)
	_, err = r.Load(t.Context(), PluginConfig{Name: "pinned", Kind: KindBolt, Path: path, SHA256: bad, Capabilities: []string{CapMetrics}})
	if err == nil || !strings.Contains(err.Error(), "sha256 is "+hex.EncodeToString(sum[:])) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v", err)
	}
}

// TestBadPlugins loads each misbehaving module from testdata/bad: every one
// must give an error naming the plugin and what it did, and a healthy
// plugin in the same runtime must keep working afterwards.
func TestBadPlugins(t *testing.T) {
	for _, closeOnDone := range []bool{false, true} {
		t.Run(map[bool]string{false: "instrumented", true: "close-on-context-done"}[closeOnDone], func(t *testing.T) {
			testBadPlugins(t, closeOnDone)
		})
	}
}

func testBadPlugins(t *testing.T, closeOnDone bool) {
	r, _ := newTestRuntime(t)
	r.closeOnDone = closeOnDone
	healthy := loadEcho(t, r, "healthy")
	for _, tc := range []struct {
		src    string
		op     string // "load" / "init" when Load fails, else "process"
		want   []string
		mutate func(*PluginConfig)
	}{
		{src: "trap.c", op: "process", want: []string{"trap: unreachable"}, mutate: func(c *PluginConfig) { c.Capabilities = []string{CapMetrics} }},
		{src: "loop.c", op: "process", want: []string{"timed out", "50ms deadline", "runaway loop"}, mutate: func(c *PluginConfig) { c.CallTimeout = 50 * time.Millisecond }},
		{src: "bomb.c", op: "process", want: []string{"trap: unreachable", "limit of 1048576 bytes", "memory exhausted"}, mutate: func(c *PluginConfig) { c.MaxMemoryBytes = 1 << 20 }},
		{src: "noexport.c", op: "load", want: []string{"missing export sluice_process"}},
		{src: "version.c", op: "init", want: []string{"ABI version 2", "implements version 1"}},
		{src: "ungranted.c", op: "load", want: []string{"imports sluice_v1.state_get", "needs capability state", "not granted"}},
		{src: "oversized.c", op: "process", want: []string{"invalid result", "2147483647 bytes is oversized"}},
		{src: "oob.c", op: "process", want: []string{"invalid result", "[0xfffff000, 0xfffff040) lies outside guest memory"}},
		{src: "garbage.c", op: "process", want: []string{"invalid result", "batch claims 1000 events"}},
		{src: "procexit.c", op: "process", want: []string{"proc_exit(3)"}},
		{src: "abort.c", op: "process", want: []string{"abort: index out of range at assembly/index.ts:12:7"}},
	} {
		t.Run(tc.src, func(t *testing.T) {
			name := "bad-" + strings.TrimSuffix(tc.src, ".c")
			cfg := PluginConfig{Name: name, Kind: KindBolt, Wasm: module(t, "bad/"+tc.src), MaxRetries: 1}
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			p, err := r.Load(t.Context(), cfg)
			if err == nil {
				defer p.Close(t.Context())
				_, err = p.Process(t.Context(), batchOf("a", "b"))
			}
			var pe *PluginError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *PluginError", err)
			}
			if pe.Plugin != name || pe.Op != tc.op {
				t.Fatalf("error names plugin %q op %q, want %q %q: %v", pe.Plugin, pe.Op, name, tc.op, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			if tc.op == "process" && !strings.Contains(err.Error(), "failed 2 attempts") {
				t.Fatalf("error %q does not say the batch was retried", err)
			}
			if tc.src == "trap.c" && p.Counters()["attempts"] != 2 {
				t.Fatalf("trap plugin ran %d times, want 2", p.Counters()["attempts"])
			}
			res, err := healthy.Process(t.Context(), batchOf("still", "fine"))
			if err != nil || !reflect.DeepEqual(bodiesOf(t, res.Batch), []string{"still", "fine"}) {
				t.Fatalf("healthy plugin after %s: %v %v", tc.src, res, err)
			}
		})
	}
}

// TestLoopingGuestNeitherHangsGCNorOthers runs a guest stuck in a loop with
// a long deadline, and while it loops: forces garbage collections (which
// would wait forever for an unguarded guest), runs another plugin, then
// cancels the stuck call, which must return. Both guards are tested: the
// default instrumentation and wazero's close-on-context-done fallback.
func TestLoopingGuestNeitherHangsGCNorOthers(t *testing.T) {
	for _, closeOnDone := range []bool{false, true} {
		want := map[bool]string{false: "instrumented", true: "close-on-context-done"}[closeOnDone]
		t.Run(want, func(t *testing.T) { testLoopingGuest(t, closeOnDone, want) })
	}
}

func testLoopingGuest(t *testing.T, closeOnDone bool, wantGuard string) {
	r, _ := newTestRuntime(t)
	r.closeOnDone = closeOnDone
	stuck := loadEcho(t, r, "stuck", func(c *PluginConfig) { c.CallTimeout = time.Hour })
	if stuck.Guard() != wantGuard {
		t.Fatalf("guard %q, want %q", stuck.Guard(), wantGuard)
	}
	other := loadEcho(t, r, "other")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := stuck.Process(ctx, batchOf("loop"))
		done <- err
	}()
	for stuck.Counters()["calls"] == 0 { // the guest counts the call, then loops
		runtime.Gosched()
	}
	for range 3 {
		runtime.GC()
	}
	res, err := other.Process(t.Context(), batchOf("hello"))
	if err != nil || !reflect.DeepEqual(bodiesOf(t, res.Batch), []string{"hello"}) {
		t.Fatalf("other plugin while one loops: %v %v", res, err)
	}
	cancel()
	err = <-done
	var pe *PluginError
	if !errors.As(err, &pe) || pe.Plugin != "stuck" || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("stuck call ended with %v", err)
	}
	// The plugin recovers on a fresh instance.
	if _, err := stuck.Process(t.Context(), batchOf("again")); err != nil {
		t.Fatal(err)
	}
}

// TestCloseStopsACallInProgress closes a plugin whose guest loops with an
// hour-long deadline: the call must end, with an error saying why.
func TestCloseStopsACallInProgress(t *testing.T) {
	r, _ := newTestRuntime(t)
	p := loadEcho(t, r, "closing", func(c *PluginConfig) { c.CallTimeout = time.Hour; c.MaxRetries = 3 })
	done := make(chan error, 1)
	go func() {
		_, err := p.Process(context.Background(), batchOf("loop"))
		done <- err
	}()
	for p.Counters()["calls"] == 0 {
		runtime.Gosched()
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("call in progress ended with %v", err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestStateIsCommittedOnlyOnSuccess(t *testing.T) {
	r, logs := newTestRuntime(t)
	store := newMemState()
	p, err := r.Load(t.Context(), PluginConfig{Name: "counter", Kind: KindBolt, Wasm: module(t, "stateful.c"),
		Capabilities: []string{CapState, CapLog}, State: store})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	step := func(batch []byte) (*Result, error) { return p.Process(t.Context(), batch) }
	if _, err := step(batchOf("k1:a", "k2:b", "k1:c")); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"k1": 2, "k2": 1}
	if got := counts(store); !reflect.DeepEqual(got, want) {
		t.Fatalf("state %v, want %v", got, want)
	}
	if res, err := step(batchOf("k1:x", "k1:fail")); err != nil || res.Status != StatusError {
		t.Fatalf("fail batch: %v %v", res, err)
	}
	if _, err := step(batchOf("k2:trap")); err == nil || !strings.Contains(err.Error(), "trap") {
		t.Fatalf("trap batch: %v", err)
	}
	if got := counts(store); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after failed batches %v, want %v", got, want)
	}
	if _, err := step(batchOf("k1:forget", "k3:x")); err != nil {
		t.Fatal(err)
	}
	want = map[string]uint64{"k2": 1, "k3": 1}
	if got := counts(store); !reflect.DeepEqual(got, want) {
		t.Fatalf("state %v, want %v", got, want)
	}
	if !p.HasTick() {
		t.Fatal("HasTick is false for a module exporting sluice_tick")
	}
	ticker, ok := p.Bolt().(pipeline.Ticker)
	if !ok {
		t.Fatal("adapter of a ticking bolt is not a pipeline.Ticker")
	}
	var out event.Builder
	now := time.Unix(1700000000, 0)
	if err := ticker.Tick(t.Context(), now, &out); err != nil {
		t.Fatal(err)
	}
	evs, err := event.DecodeBatch(nil, out.Bytes())
	if err != nil || len(evs) != 2 || string(evs[0].Key) != "k2" || string(evs[1].Key) != "k3" ||
		binary.LittleEndian.Uint64(evs[1].Body) != 1 || evs[0].Time != now.UnixNano() {
		t.Fatalf("tick output %+v %v", evs, err)
	}
	if l := logs.String(); !strings.Contains(l, "batch counted") || !strings.Contains(l, "plugin=counter") {
		t.Fatalf("guest log line missing from %q", l)
	}
}

func TestSourceResumesAfterRestartAndAfterFault(t *testing.T) {
	r, _ := newTestRuntime(t)
	load := func(name string, cfg map[string]any) pipeline.Source {
		p, err := r.Load(t.Context(), PluginConfig{Name: name, Kind: KindSource, Wasm: module(t, "source.c"), Config: cfg, MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(context.Background()) })
		return p.Source()
	}
	seqs := func(b pipeline.SourceBatch) (out []uint64) {
		evs, err := event.DecodeBatch(nil, b.Events)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			out = append(out, binary.LittleEndian.Uint64(e.Body))
		}
		return out
	}
	pos := func(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

	src := load("gen", nil)
	if err := src.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	b, err := src.Read(t.Context(), 10)
	if err != nil || !reflect.DeepEqual(seqs(b), []uint64{0, 1, 2}) || !reflect.DeepEqual(b.Position, pos(3)) {
		t.Fatalf("first read %v %x %v", seqs(b), b.Position, err)
	}
	if err := src.Ack(t.Context(), b.Position); err != nil {
		t.Fatal(err)
	}

	restarted := load("gen-restarted", nil)
	if err := restarted.Open(t.Context(), pos(6)); err != nil {
		t.Fatal(err)
	}
	if b, err := restarted.Read(t.Context(), 2); err != nil || !reflect.DeepEqual(seqs(b), []uint64{6, 7}) {
		t.Fatalf("after restart %v %v", seqs(b), err)
	}

	faulty := load("gen-faulty", map[string]any{"trap_at": 3})
	if err := faulty.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if b, err := faulty.Read(t.Context(), 10); err != nil || !reflect.DeepEqual(seqs(b), []uint64{0, 1, 2}) {
		t.Fatalf("before fault %v %v", seqs(b), err)
	}
	// The instance traps at 3; its replacement resumes after position 3.
	if b, err := faulty.Read(t.Context(), 10); err != nil || !reflect.DeepEqual(seqs(b), []uint64{3, 4, 5}) {
		t.Fatalf("after fault %v %v", seqs(b), err)
	}
}

func TestSinkPostsThroughGrantedHTTPOnly(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	r, _ := newTestRuntime(t)
	load := func(name string, hosts []string) pipeline.Sink {
		p, err := r.Load(t.Context(), PluginConfig{Name: name, Kind: KindSink, Wasm: module(t, "sink.c"),
			Capabilities: []string{CapHTTP}, HTTPHosts: hosts, Config: map[string]any{"url": srv.URL + "/hook"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(context.Background()) })
		s := p.Sink()
		if err := s.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	sink := load("webhook", []string{host})
	rejs, err := sink.Write(t.Context(), batchOf("one", "bad", "two"), pipeline.Fence{Stream: "s", Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rejs) != 1 || rejs[0].Index != 1 || rejs[0].Reason != "bad event" {
		t.Fatalf("rejects %+v", rejs)
	}
	mu.Lock()
	if !reflect.DeepEqual(got, []string{"POST one", "POST two"}) {
		t.Fatalf("server got %q", got)
	}
	mu.Unlock()
	if _, err := sink.Write(t.Context(), batchOf("retry"), pipeline.Fence{}); !errors.Is(err, ErrRetry) {
		t.Fatalf("retry status gave %v", err)
	}

	denied := load("webhook-denied", nil)
	_, err = denied.Write(t.Context(), batchOf("one"), pipeline.Fence{})
	if err == nil || !strings.Contains(err.Error(), "host "+host+" is not in this plugin's http_hosts") {
		t.Fatalf("denied host gave %v", err)
	}
}

func TestWASIOutputGoesToTheLog(t *testing.T) {
	r, logs := newTestRuntime(t)
	p, err := r.Load(t.Context(), PluginConfig{Name: "chatty", Kind: KindBolt, Wasm: module(t, "wasihello.c")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	l := logs.String()
	for _, want := range []string{`msg="hello from init, 14 config bytes" plugin=chatty stream=stdout`, `msg="partial line" plugin=chatty stream=stderr`} {
		if !strings.Contains(l, want) {
			t.Fatalf("log %q lacks %q", l, want)
		}
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 {
		r, err := NewRuntime(t.Context(), RuntimeConfig{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.Load(t.Context(), PluginConfig{Name: "cached", Kind: KindBolt, Wasm: module(t, "noop.c"), Trusted: i == 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Process(t.Context(), batchOf("x")); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(t.Context()); err != nil {
			t.Fatal("second Close:", err)
		}
		if _, err := p.Process(t.Context(), batchOf("x")); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("call after Close: %v", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache dir is empty: %v", err)
	}
}

func TestFlattenConfig(t *testing.T) {
	got, err := flattenConfig(map[string]any{
		"window": "1m",
		"fields": map[string]any{"price": "p", "n": int64(3)},
		"hosts":  []any{"a:1", "b:2"},
		"ratio":  0.25,
		"on":     true,
		"at":     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint32(got)
	r := frameReader{buf: got, off: 4}
	var keys []string
	vals := map[string]string{}
	for range n {
		k, _ := r.bytes("k")
		v, _ := r.bytes("v")
		keys = append(keys, string(k))
		vals[string(k)] = string(v)
	}
	wantKeys := []string{"", "at", "fields.n", "fields.price", "hosts.0", "hosts.1", "on", "ratio", "window"}
	if !reflect.DeepEqual(keys, wantKeys) || r.off != len(got) {
		t.Fatalf("keys %q", keys)
	}
	if vals["at"] != "2026-01-02T03:04:05Z" || vals["fields.n"] != "3" || vals["ratio"] != "0.25" || vals["on"] != "true" || vals["hosts.1"] != "b:2" {
		t.Fatalf("values %q", vals)
	}
	if !strings.HasPrefix(vals[""], `{"at":"2026-01-02T03:04:05Z","fields":{`) {
		t.Fatalf("json %q", vals[""])
	}
}

func FuzzParseResult(f *testing.F) {
	ok := binary.LittleEndian.AppendUint32(nil, 0)
	ok = appendBytes(ok, []byte("msg"))
	ok = appendBytes(ok, []byte("pos"))
	ok = append(ok, batchOf("a", "b")...)
	ok = binary.LittleEndian.AppendUint32(ok, 1)
	ok = binary.LittleEndian.AppendUint32(ok, 1)
	ok = appendBytes(ok, []byte("why"))
	f.Add(ok, 2)
	f.Add(ok[:len(ok)-1], 2)
	f.Add([]byte{3, 0, 0, 0}, 0)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, 0)
	f.Fuzz(func(t *testing.T, buf []byte, inCount int) {
		res, err := parseResult(buf, inCount)
		if err != nil {
			return
		}
		if _, err := event.DecodeBatch(nil, res.Batch); err != nil {
			t.Fatalf("accepted result with a bad batch: %v", err)
		}
		for i, rj := range res.Rejects {
			if rj.Index < 0 || rj.Index >= inCount || (i > 0 && rj.Index <= res.Rejects[i-1].Index) {
				t.Fatalf("accepted bad reject indices %+v", res.Rejects)
			}
		}
	})
}

// FuzzSkipBatch holds the unchecked batch walk to the portable one, and
// both to agent/event's decoder.
func FuzzSkipBatch(f *testing.F) {
	f.Add(batchOf("a", "b"), 0)
	f.Add(append([]byte{9, 9}, batchOf("k:v")...), 2)
	f.Add(event.AppendBatch(nil, []event.Event{{Body: []byte("x"), Headers: []event.Header{{Name: "n", Value: "v"}}}}), 0)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, 0)
	f.Fuzz(func(t *testing.T, buf []byte, off int) {
		if off < 0 || off > len(buf) {
			return
		}
		endU, okU := skipBatchUnchecked(buf, off)
		endP, okP := skipBatchPortable(buf, off)
		if okU != okP || endU != endP {
			t.Fatalf("unchecked (%d, %v) != portable (%d, %v)", endU, okU, endP, okP)
		}
		if okP {
			if _, err := event.DecodeBatch(nil, buf[off:endP]); err != nil {
				t.Fatalf("accepted a batch the decoder refuses: %v", err)
			}
		}
	})
}
