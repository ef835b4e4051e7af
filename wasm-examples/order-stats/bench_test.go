package orderstats

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

const benchBatch = 1024

// BenchmarkOrderStats measures order-stats (parse + aggregate + merge into
// host state, per batch of 1,024 order lines of ~200 B) in each language on
// one core. Each iteration runs the same batch through the WASM plugin and
// through the native Go reference (internal/orders.Stats, with the same kind
// of state store), timing each, so that both see the same machine load; it
// reports the plugin's events/s and its ratio to the reference
// (ratio-to-native > 1 means faster than native Go). ns/op covers both.
//
//	go test -bench . -run '^$' -cpu 1 ./wasm-examples/order-stats
//
// The -trusted rows run without the host's runaway-loop guard.
func BenchmarkOrderStats(b *testing.B) {
	g := orders.NewGenerator(orders.GenConfig{Seed: 41})
	batches := exampletest.Batches(g, 0, 64*benchBatch, benchBatch)
	for _, v := range []struct {
		name, lang string
		trusted    bool
	}{{"c", "c", false}, {"go", "go", false}, {"c-trusted", "c", true}, {"go-trusted", "go", true}} {
		b.Run(v.name, func(b *testing.B) {
			wasm := exampletest.Build(b, v.lang)
			p := exampletest.Load(b, wasmhost.PluginConfig{
				Name: "order-stats-" + v.name, Kind: wasmhost.KindBolt, Path: wasm, Trusted: v.trusted,
				Config: map[string]any{"lateness_ms": 2000}, Capabilities: []string{wasmhost.CapState}, State: orders.NewMemState(),
			})
			ref, refState := &orders.Stats{LatenessMs: 2000}, orders.NewMemState()
			ctx := context.Background()
			var inWasm, inNative time.Duration
			i := 0
			for b.Loop() {
				in := batches[i%len(batches)]
				t0 := time.Now()
				if _, err := p.Process(ctx, in); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := ref.Process(in, refState); err != nil {
					b.Fatal(err)
				}
				inWasm += t1.Sub(t0)
				inNative += time.Since(t1)
				i++
			}
			b.ReportMetric(float64(i*benchBatch)/inWasm.Seconds(), "events/s")
			b.ReportMetric(float64(i*benchBatch)/inNative.Seconds(), "native-events/s")
			b.ReportMetric(inNative.Seconds()/inWasm.Seconds(), "ratio-to-native")
		})
	}
}
