package topology

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/internal/orders"
)

// totalsSink applies order-stats' command records to Totals, fenced like
// the real result sinks so that replays do not double-count.
type totalsSink struct {
	mu     sync.Mutex
	totals *orders.Totals
	fences map[string]uint64
}

func (s *totalsSink) Open(context.Context) error { return nil }
func (s *totalsSink) Write(_ context.Context, batch []byte, f pipeline.Fence) ([]pipeline.Reject, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Offset <= s.fences[f.Stream] {
		return nil, nil
	}
	s.fences[f.Stream] = f.Offset
	return nil, s.totals.ApplyBatch(batch)
}
func (s *totalsSink) Close(context.Context) error { return nil }

func (s *totalsSink) diff(want *orders.Totals) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.totals.Diff(want, 5)
}

// buildExamples builds order-parse (Go) and order-stats (C) from source.
func buildExamples(t *testing.T, dir string) {
	t.Helper()
	root, err := plugintool.SDKRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for src, out := range map[string]string{
		"wasm-examples/order-parse":   "order-parse.wasm",
		"wasm-examples/order-stats/c": "order-stats.wasm",
	} {
		if _, err := plugintool.Build(ctx, filepath.Join(root, src), filepath.Join(dir, out)); err != nil {
			t.Fatal(err)
		}
	}
}

const e2eConfig = `
[agent]
data_dir = "DIR/data"

[channels.raw]
segment_bytes = "1MiB"
[channels.orders]
partitions = 2
segment_bytes = "1MiB"
[channels.results]

[sources.log]
type = "tail"
output = "raw"
batch_size = 500
[sources.log.config]
paths = ["DIR/orders.log"]
poll_interval = "10ms"

[bolts.parse]
wasm = "DIR/order-parse.wasm"
input = "raw"
output = "orders"

[bolts.stats]
wasm = "DIR/order-stats.wasm"
input = "orders"
output = "results"
capabilities = ["state"]
parallelism = 2
grouping = "key"
tick = "50ms"
config = { lateness_ms = 0 }

[sinks.totals]
type = "totals"
input = "results"
`

// TestOrderPipelineEndToEnd runs the demo's shape — tail, file channels,
// the WASM order-parse and a parallel, key-grouped, stateful order-stats —
// and checks the results against the generator's ground truth exactly, and
// the malformed lines against the parse stage's dead-letter channel.
func TestOrderPipelineEndToEnd(t *testing.T) {
	dir := t.TempDir()
	buildExamples(t, dir)
	const n = 8_000
	g := orders.NewGenerator(orders.GenConfig{Seed: 5, MalformedEvery: 400})
	var buf []byte
	for i := uint64(0); i < n; i++ {
		buf = g.AppendLine(buf, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "orders.log"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	sink := &totalsSink{totals: orders.NewTotals(), fences: map[string]uint64{}}
	reg := registry.Builtin()
	if err := reg.Register(registry.Plugin{Kind: config.KindSink, Type: "totals",
		NewConfig: func() any { return &struct{}{} },
		NewSink:   func(any, registry.Env) (pipeline.Sink, error) { return sink, nil }}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("e2e.toml", []byte(strings.ReplaceAll(e2eConfig, "DIR", dir)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := Build(ctx, cfg, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	want := orders.GroundTruth(g, 0, n, nil)
	deadline := time.Now().Add(2 * time.Minute)
	for d := sink.diff(want); len(d) > 0; d = sink.diff(want) {
		if time.Now().After(deadline) {
			a.Stop(ctx)
			t.Fatalf("results never matched the ground truth: %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(sctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// Every malformed line is in parse's dead-letter channel with a reason.
	dlq, err := OpenDeadLetter(cfg.Agent.DataDir, "parse", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	r, err := dlq.Reader("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	dead := 0
	for {
		rec, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			if reason, _ := e.Header(pipeline.HeaderReason); reason == "" {
				t.Errorf("dead letter without reason: %q", e.Body)
			}
			dead++
			return nil
		})
	}
	if want := int(g.MalformedCount(n)); dead != want {
		t.Errorf("parse dead-lettered %d lines, want the %d malformed ones", dead, want)
	}
}
