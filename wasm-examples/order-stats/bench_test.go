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
// one core, and reports it as events/s and as a ratio to the native Go
// reference (internal/orders.Stats) measured in the same benchmark over the
// same batches and the same kind of state store.
//
//	go test -bench . -run '^$' -cpu 1 ./wasm-examples/order-stats
func BenchmarkOrderStats(b *testing.B) {
	g := orders.NewGenerator(orders.GenConfig{Seed: 41})
	batches := exampletest.Batches(g, 0, 64*benchBatch, benchBatch)
	b.Run("native", func(b *testing.B) {
		st, s := orders.NewMemState(), &orders.Stats{LatenessMs: 2000}
		i := 0
		for b.Loop() {
			if _, err := s.Process(batches[i%len(batches)], st); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(i*benchBatch)/b.Elapsed().Seconds(), "events/s")
	})
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
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if _, err := p.Process(ctx, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			wasmRate := float64(i*benchBatch) / b.Elapsed().Seconds()
			b.ReportMetric(wasmRate, "events/s")
			b.ReportMetric(wasmRate/nativeRate(b, batches, i), "ratio-to-native")
		})
	}
}

// nativeRate runs the native reference over n batches (at least 16) and
// returns its events/s.
func nativeRate(b *testing.B, batches [][]byte, n int) float64 {
	n = max(n, 16)
	st, s := orders.NewMemState(), &orders.Stats{LatenessMs: 2000}
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := s.Process(batches[i%len(batches)], st); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n*benchBatch) / time.Since(start).Seconds()
}
