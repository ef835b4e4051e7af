package conformance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/internal/toolchain"
	"github.com/sluicehq/sluice/sdk/internal/pluginbuild"
	"go.uber.org/goleak"
)

// languages are the SDKs under test, each with its conformance plugin in
// plugins/<lang>.
var languages = []toolchain.Lang{toolchain.Go, toolchain.C, toolchain.AssemblyScript}

var (
	rt       *wasmhost.Runtime
	buildDir string
	builds   sync.Map // lang -> *buildResult
)

type buildResult struct {
	once sync.Once
	wasm []byte
	err  error
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "sluice-conformance-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		buildDir = dir
		rt, err = wasmhost.NewRuntime(context.Background(), wasmhost.RuntimeConfig{CacheDir: filepath.Join(dir, "cache")})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		code := m.Run()
		if err := rt.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "closing the runtime:", err)
			return 1
		}
		// Every plugin is closed by its test's cleanup and the runtime is
		// closed: nothing of the host may be left running.
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goroutines left running:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// module builds plugins/<dir> (written in lang) from source once per test
// process.
func module(t *testing.T, lang toolchain.Lang, dir string) []byte {
	t.Helper()
	v, _ := builds.LoadOrStore(dir, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		out := filepath.Join(buildDir, dir+".wasm")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if b.err = pluginbuild.Build(ctx, lang, filepath.Join("plugins", dir), out); b.err == nil {
			b.wasm, b.err = os.ReadFile(out)
		}
	})
	if b.err != nil {
		t.Fatalf("building plugins/%s from source: %v", dir, b.err)
	}
	return b.wasm
}

// newMemState gives a plugin a real, map-backed pipeline.StateStore.
var newMemState = orders.NewMemState

// logBuffer collects what a plugin logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// allCaps are the capabilities the conformance plugin needs: it calls every
// host function but http, which bolts may not have (sdk/ABI.md §6); http is
// checked with the httpsink plugins.
var allCaps = []string{wasmhost.CapLog, wasmhost.CapClock, wasmhost.CapRandom, wasmhost.CapMetrics, wasmhost.CapState}

var sinkCaps = allCaps

type loadOptions struct {
	kind      wasmhost.Kind
	config    map[string]any
	caps      []string
	state     *orders.MemState
	httpHosts []string
	logs      *logBuffer
	maxMemory uint64
	plugin    string // plugins/<lang><plugin>; "" is the conformance plugin
}

func (o loadOptions) dir(lang toolchain.Lang) string { return string(lang) + o.plugin }

func load(t *testing.T, lang toolchain.Lang, o loadOptions) *wasmhost.Plugin {
	t.Helper()
	p, err := tryLoad(t, lang, o)
	if err != nil {
		t.Fatalf("loading the %s conformance plugin as a %s: %v", lang, o.kind, err)
	}
	return p
}

func tryLoad(t *testing.T, lang toolchain.Lang, o loadOptions) (*wasmhost.Plugin, error) {
	t.Helper()
	if o.kind == "" {
		o.kind = wasmhost.KindBolt
	}
	if o.caps == nil {
		// The conformance plugin calls every host function, so it imports
		// them all and needs every capability to load.
		o.caps = allCaps
	}
	if o.state == nil {
		o.state = newMemState()
	}
	cfg := wasmhost.PluginConfig{
		Name:           "conformance-" + string(lang),
		Kind:           o.kind,
		Wasm:           module(t, lang, o.dir(lang)),
		Config:         o.config,
		Capabilities:   o.caps,
		HTTPHosts:      o.httpHosts,
		MaxMemoryBytes: o.maxMemory,
		CallTimeout:    time.Minute, // generous: -race and 2 shared cores
	}
	if slices.Contains(o.caps, wasmhost.CapState) {
		cfg.State = o.state
	}
	if o.logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := rt.Load(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p, nil
}

// resultBytes re-encodes what the host decoded, to compare with a vector:
// the encoding is canonical, so equal bytes mean the guest's were equal.
func resultBytes(res *wasmhost.Result) []byte {
	rejects := make([]modelReject, len(res.Rejects))
	for i, r := range res.Rejects {
		rejects[i] = modelReject{r.Index, r.Reason}
	}
	return encodeResult(uint32(res.Status), res.Message, res.Position, res.Batch, rejects)
}

func batchOf(bodies ...string) []byte {
	evs := make([]event.Event, len(bodies))
	for i, b := range bodies {
		evs[i] = event.Event{Time: int64(i + 1), Body: []byte(b)}
	}
	return event.AppendBatch(nil, evs)
}

func decode(t *testing.T, batch []byte) []event.Event {
	t.Helper()
	evs, err := event.DecodeBatch(nil, batch)
	if err != nil {
		t.Fatalf("output batch: %v", err)
	}
	return evs
}

func bodies(t *testing.T, batch []byte) []string {
	t.Helper()
	var out []string
	for _, e := range decode(t, batch) {
		out = append(out, string(e.Body))
	}
	return out
}

func process(t *testing.T, p *wasmhost.Plugin, batch []byte) *wasmhost.Result {
	t.Helper()
	res, err := p.Process(context.Background(), batch)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	return res
}

func mustOK(t *testing.T, res *wasmhost.Result) {
	t.Helper()
	if res.Status != wasmhost.StatusOK {
		t.Fatalf("status %v (%q), want ok", res.Status, res.Message)
	}
}

func TestConformance(t *testing.T) {
	for _, lang := range languages {
		t.Run(string(lang), func(t *testing.T) {
			t.Run("vectors", func(t *testing.T) { testVectors(t, lang) })
			t.Run("init-config", func(t *testing.T) { testInitConfig(t, lang) })
			t.Run("init-fails", func(t *testing.T) { testInitFails(t, lang) })
			t.Run("empty-batch", func(t *testing.T) { testEmptyBatch(t, lang) })
			t.Run("largest-batch", func(t *testing.T) { testLargestBatch(t, lang) })
			t.Run("reject", func(t *testing.T) { testReject(t, lang) })
			t.Run("batch-error", func(t *testing.T) { testBatchError(t, lang) })
			t.Run("retry", func(t *testing.T) { testRetry(t, lang) })
			t.Run("state", func(t *testing.T) { testState(t, lang) })
			t.Run("tick", func(t *testing.T) { testTick(t, lang) })
			t.Run("host-functions", func(t *testing.T) { testHostFunctions(t, lang) })
			t.Run("source", func(t *testing.T) { testSource(t, lang) })
			t.Run("sink", func(t *testing.T) { testSink(t, lang) })
			t.Run("http", func(t *testing.T) { testHTTP(t, lang) })
		})
	}
}

func testVectors(t *testing.T, lang toolchain.Lang) {
	p := load(t, lang, loadOptions{config: map[string]any{"prefix": vectorPrefix}})
	for _, v := range readVectors(t) {
		res, err := p.Process(context.Background(), v.in)
		if err != nil {
			t.Errorf("vector %s: %v", v.name, err)
			continue
		}
		if got := resultBytes(res); !bytes.Equal(got, v.out) {
			t.Errorf("vector %s: result differs from %s.out\n got: status %v %q, %d rejects, %d batch bytes\nwant: %x",
				v.name, v.name, res.Status, res.Message, len(res.Rejects), len(res.Batch), head(v.out))
		}
	}
}

func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func testInitConfig(t *testing.T, lang toolchain.Lang) {
	cfg := map[string]any{
		"prefix": "pre/",
		"nested": map[string]any{"a": int64(1), "list": []any{"x", "y"}},
		"ratio":  0.5,
	}
	p := load(t, lang, loadOptions{config: cfg})
	res := process(t, p, batchOf("x"))
	mustOK(t, res)
	if got := bodies(t, res.Batch); len(got) != 1 || got[0] != "pre/x" {
		t.Fatalf("echo with prefix = %q, want [pre/x]", got)
	}
}

func testInitFails(t *testing.T, lang toolchain.Lang) {
	_, err := tryLoad(t, lang, loadOptions{config: map[string]any{"fail_init": true}})
	if err == nil || !strings.Contains(err.Error(), "fail_init requested") {
		t.Fatalf("load with fail_init = %v, want an error carrying the plugin's message", err)
	}
}

func testEmptyBatch(t *testing.T, lang toolchain.Lang) {
	p := load(t, lang, loadOptions{})
	res := process(t, p, event.AppendBatch(nil, nil))
	mustOK(t, res)
	if n, err := event.Count(res.Batch); err != nil || n != 0 || len(res.Rejects) != 0 {
		t.Fatalf("empty batch → %d events (%v), %d rejects; want nothing", n, err, len(res.Rejects))
	}
}

// largestBatchBytes is the biggest input the suite sends: one event with a
// 4 MiB body and 4 MiB of small events, to a plugin with the host's default
// memory cap (wasmhost.DefaultMaxMemoryBytes, 64 MiB) — a Go guest that let
// append grow its buffers ran out of memory here.
const largestBatchBytes = 8 << 20

func testLargestBatch(t *testing.T, lang toolchain.Lang) {
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	evs := []event.Event{{Time: 1, Key: []byte("big"), Body: big}}
	var size int
	for i := 0; size < largestBatchBytes-len(big); i++ {
		e := event.Event{Time: int64(i), Body: []byte("small event " + strconv.Itoa(i))}
		size += e.EncodedSize()
		evs = append(evs, e)
	}
	in := event.AppendBatch(nil, evs)
	p := load(t, lang, loadOptions{config: map[string]any{"prefix": ">"}})
	res := process(t, p, in)
	if got, want := resultBytes(res), modelProcess(">", in); !bytes.Equal(got, want) {
		t.Fatalf("largest batch (%d events, %d bytes): status %v %q, %d output bytes; want %d bytes from the model",
			len(evs), len(in), res.Status, res.Message, len(got), len(want))
	}
	// And again, with the buffers already grown.
	res = process(t, p, in)
	mustOK(t, res)
	if n, _ := event.Count(res.Batch); n != len(evs) {
		t.Fatalf("second largest batch: %d events out, want %d", n, len(evs))
	}
}

func testReject(t *testing.T, lang toolchain.Lang) {
	p := load(t, lang, loadOptions{})
	res := process(t, p, batchOf("a", "reject:no good", "b", "reject:worse"))
	mustOK(t, res)
	want := []wasmhost.Reject{{Index: 1, Reason: "no good"}, {Index: 3, Reason: "worse"}}
	if fmt.Sprint(res.Rejects) != fmt.Sprint(want) {
		t.Fatalf("rejects = %v, want %v", res.Rejects, want)
	}
	if got := bodies(t, res.Batch); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("outputs = %q, want [a b]", got)
	}
}

func testBatchError(t *testing.T, lang toolchain.Lang) {
	p := load(t, lang, loadOptions{})
	res := process(t, p, batchOf("a", "fail:broken input", "b"))
	if res.Status != wasmhost.StatusError || res.Message != "broken input" {
		t.Fatalf("status %v %q, want error %q", res.Status, res.Message, "broken input")
	}
	if n, _ := event.Count(res.Batch); n != 0 || len(res.Rejects) != 0 {
		t.Fatalf("a failed batch carried %d events and %d rejects", n, len(res.Rejects))
	}
	// A panic (Go) or its equivalent is an error result too, not a fault.
	res = process(t, p, batchOf("panic:kaboom"))
	if res.Status != wasmhost.StatusError || !strings.Contains(res.Message, "kaboom") {
		t.Fatalf("panic: status %v %q, want an error mentioning kaboom", res.Status, res.Message)
	}
	// The instance keeps working.
	res = process(t, p, batchOf("after"))
	mustOK(t, res)
	if got := bodies(t, res.Batch); fmt.Sprint(got) != "[after]" {
		t.Fatalf("after errors: %q", got)
	}
}

func testRetry(t *testing.T, lang toolchain.Lang) {
	p := load(t, lang, loadOptions{})
	res := process(t, p, batchOf("a", "retry:come back later"))
	if res.Status != wasmhost.StatusRetry || res.Message != "come back later" {
		t.Fatalf("status %v %q, want retry", res.Status, res.Message)
	}
}

func testState(t *testing.T, lang toolchain.Lang) {
	st := newMemState()
	p := load(t, lang, loadOptions{state: st})
	res := process(t, p, batchOf("put:a=1", "put:b=22", "put:c=", "get:a", "scan:", "del:a", "get:a", "scan:b", "big:large=100000", "get:large"))
	mustOK(t, res)
	evs := decode(t, res.Batch)
	var got []string
	for _, e := range evs {
		if string(e.Key) == "large" {
			got = append(got, fmt.Sprintf("large=%d bytes", len(e.Body)))
			want := make([]byte, 100000)
			for i := range want {
				want[i] = byte('a' + i%26)
			}
			if !bytes.Equal(e.Body, want) {
				t.Errorf("large value came back different")
			}
			continue
		}
		got = append(got, string(e.Key)+"="+string(e.Body))
	}
	want := "[a=1 a=1 b=22 c= b=22 large=100000 bytes]"
	if fmt.Sprint(got) != want {
		t.Fatalf("state outputs = %v, want %s", got, want)
	}
	if fmt.Sprint(res.Rejects) != fmt.Sprint([]wasmhost.Reject{{Index: 6, Reason: "no state for a"}}) {
		t.Fatalf("rejects = %v, want the get of the deleted key", res.Rejects)
	}
	// The host holds the state, not the guest: a fresh plugin sees it.
	if v, ok := st.Get([]byte("b")); !ok || string(v) != "22" {
		t.Fatalf("host state b = %q %v", v, ok)
	}
	p2 := load(t, lang, loadOptions{state: st})
	res = process(t, p2, batchOf("get:b"))
	mustOK(t, res)
	if got := bodies(t, res.Batch); fmt.Sprint(got) != "[22]" {
		t.Fatalf("state seen by a new instance = %q, want [22]", got)
	}
}

func testTick(t *testing.T, lang toolchain.Lang) {
	p := load(t, lang, loadOptions{})
	if !p.HasTick() {
		t.Fatal("the conformance plugin exports sluice_tick but the host does not see it")
	}
	mustOK(t, process(t, p, batchOf("a", "b", "reject:x", "c")))
	const now = 1_700_000_000_123_456_789
	res, err := p.Tick(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, res)
	evs := decode(t, res.Batch)
	if len(evs) != 1 || evs[0].Time != now || string(evs[0].Key) != "tick" || string(evs[0].Body) != "3" {
		t.Fatalf("tick output = %+v, want one event at %d, key tick, body 3", evs, int64(now))
	}
	res, err = p.Tick(context.Background(), now+1)
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, res)
	if n, _ := event.Count(res.Batch); n != 0 {
		t.Fatalf("second tick emitted %d events, want none", n)
	}
}

func testHostFunctions(t *testing.T, lang toolchain.Lang) {
	logs := &logBuffer{}
	p := load(t, lang, loadOptions{logs: logs})
	before := time.Now().UnixNano()
	res := process(t, p, batchOf("log:hello from the guest", "count:things", "count:things", "now", "random:32", "random:32"))
	after := time.Now().UnixNano()
	mustOK(t, res)
	if !strings.Contains(logs.String(), "hello from the guest") {
		t.Errorf("log line missing from the plugin's log:\n%s", logs.String())
	}
	if c := p.Counters()["things"]; c != 2 {
		t.Errorf("counter things = %d, want 2 (counters %v)", c, p.Counters())
	}
	evs := decode(t, res.Batch)
	if len(evs) != 3 {
		t.Fatalf("%d outputs, want now + 2 random", len(evs))
	}
	now, err := strconv.ParseInt(string(evs[0].Body), 10, 64)
	if err != nil || now < before || now > after {
		t.Errorf("now() = %q, want a time between %d and %d", evs[0].Body, before, after)
	}
	if len(evs[1].Body) != 32 || len(evs[2].Body) != 32 || bytes.Equal(evs[1].Body, evs[2].Body) {
		t.Errorf("random: %x and %x, want two different 32-byte values", evs[1].Body, evs[2].Body)
	}
	// Without the capability, the same module does not load, and says why.
	_, err = tryLoad(t, lang, loadOptions{caps: []string{wasmhost.CapLog}})
	if err == nil || !strings.Contains(err.Error(), "counter_add") && !strings.Contains(err.Error(), "now") &&
		!strings.Contains(err.Error(), "random") && !strings.Contains(err.Error(), "state_") {
		t.Errorf("load without metrics/clock/random/state = %v, want an error naming an ungranted import", err)
	}
}

func testSource(t *testing.T, lang toolchain.Lang) {
	ctx := context.Background()
	p := load(t, lang, loadOptions{kind: wasmhost.KindSource, config: map[string]any{"events": int64(5)}})
	if err := p.Ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	poll := func(p *wasmhost.Plugin, max int) ([]string, string) {
		t.Helper()
		res, err := p.Poll(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		mustOK(t, res)
		var got []string
		for _, e := range decode(t, res.Batch) {
			if e.Time != int64(len(got))+mustAtoi(t, strings.TrimPrefix(string(e.Body), "event "))-int64(len(got)) || e.Key != nil || len(e.Headers) != 0 {
				t.Fatalf("source event %+v: want time = index, no key, no headers", e)
			}
			got = append(got, string(e.Body))
		}
		return got, string(res.Position)
	}
	if got, pos := poll(p, 3); fmt.Sprint(got) != "[event 0 event 1 event 2]" || pos != "3" {
		t.Fatalf("first poll = %q at %q", got, pos)
	}
	if err := p.Ack(ctx, []byte("3")); err != nil {
		t.Fatal(err)
	}
	if got, pos := poll(p, 3); fmt.Sprint(got) != "[event 3 event 4]" || pos != "5" {
		t.Fatalf("second poll = %q at %q", got, pos)
	}
	if got, pos := poll(p, 3); len(got) != 0 || pos != "5" {
		t.Fatalf("poll past the end = %q at %q, want nothing at 5", got, pos)
	}
	// After a restart the host acknowledges the recovered position first.
	p2 := load(t, lang, loadOptions{kind: wasmhost.KindSource, config: map[string]any{"events": int64(5)}})
	if err := p2.Ack(ctx, []byte("4")); err != nil {
		t.Fatal(err)
	}
	if got, pos := poll(p2, 10); fmt.Sprint(got) != "[event 4]" || pos != "5" {
		t.Fatalf("poll after resuming at 4 = %q at %q", got, pos)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("source body %q is not event <n>", s)
	}
	return n
}

func testSink(t *testing.T, lang toolchain.Lang) {
	st := newMemState()
	p := load(t, lang, loadOptions{kind: wasmhost.KindSink, caps: sinkCaps, state: st})
	ctx := context.Background()
	res, err := p.Write(ctx, batchOf("one", "reject:unwanted", "two"))
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, res)
	if fmt.Sprint(res.Rejects) != fmt.Sprint([]wasmhost.Reject{{Index: 1, Reason: "unwanted"}}) {
		t.Fatalf("sink rejects = %v", res.Rejects)
	}
	var stored []string
	st.Scan([]byte("sink/"), func(k, v []byte) bool {
		stored = append(stored, string(k)+"="+string(v))
		return true
	})
	if fmt.Sprint(stored) != "[sink/00000000=one sink/00000001=two]" {
		t.Fatalf("sink stored %q", stored)
	}
	res, err = p.Write(ctx, batchOf("retry:backend down"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmhost.StatusRetry || res.Message != "backend down" {
		t.Fatalf("sink retry: status %v %q", res.Status, res.Message)
	}
	res, err = p.Write(ctx, batchOf("fail:cannot encode"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmhost.StatusError || res.Message != "cannot encode" {
		t.Fatalf("sink fail: status %v %q", res.Status, res.Message)
	}
}

func testHTTP(t *testing.T, lang toolchain.Lang) {
	var mu sync.Mutex
	var posted []string
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posted = append(posted, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(b))
		code := status
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := load(t, lang, loadOptions{
		kind:      wasmhost.KindSink,
		plugin:    "-httpsink",
		config:    map[string]any{"url": srv.URL + "/ingest"},
		caps:      []string{wasmhost.CapHTTP},
		httpHosts: []string{u.Host},
	})
	ctx := context.Background()
	res, err := p.Write(ctx, batchOf("one", "two"))
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, res)
	mu.Lock()
	got := fmt.Sprint(posted)
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if got != "[POST /ingest text/plain one\ntwo\n]" {
		t.Fatalf("posted %q, want one POST of both bodies", got)
	}
	res, err = p.Write(ctx, batchOf("three"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmhost.StatusRetry || res.Message != "http status 503" {
		t.Fatalf("backend down: status %v %q, want retry with http status 503", res.Status, res.Message)
	}
	mu.Lock()
	status = http.StatusBadRequest
	mu.Unlock()
	res, err = p.Write(ctx, batchOf("four"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmhost.StatusError || res.Message != "http status 400" {
		t.Fatalf("bad request: status %v %q, want error with http status 400", res.Status, res.Message)
	}
	// A host that is not granted is refused, and the plugin passes the
	// host's reason on.
	p2 := load(t, lang, loadOptions{
		kind:      wasmhost.KindSink,
		plugin:    "-httpsink",
		config:    map[string]any{"url": srv.URL + "/ingest"},
		caps:      []string{wasmhost.CapHTTP},
		httpHosts: []string{"127.0.0.1:1"},
	})
	res, err = p2.Write(ctx, batchOf("five"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmhost.StatusError || res.Message == "" {
		t.Fatalf("ungranted host: status %v %q, want an error with the host's reason", res.Status, res.Message)
	}
	t.Logf("ungranted host refused: %s", res.Message)
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
