package main

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

// BenchmarkOrderParse runs, for the C and the Go version, batches of 1,024 order lines of ~200 B through the
// plugin and through the native reference (orders.Normalise) in the same
// iterations, and reports the plugin's events/s and its ratio to native.
//
//	go test -bench . -run '^$' -cpu 1 ./wasm-examples/order-parse
func BenchmarkOrderParse(b *testing.B) {
	const batch = 1024
	g := orders.NewGenerator(orders.GenConfig{Seed: 61})
	batches := exampletest.Batches(g, 0, 32*batch, batch)
	for _, v := range []struct {
		name, dir string
		trusted   bool
	}{{"c", "c", false}, {"go", ".", false}, {"c-trusted", "c", true}, {"go-trusted", ".", true}} {
		b.Run(v.name, func(b *testing.B) {
			wasm := exampletest.Build(b, v.dir)
			p := exampletest.Load(b, wasmhost.PluginConfig{Name: "order-parse-" + v.name, Kind: wasmhost.KindBolt, Path: wasm, Trusted: v.trusted})
			ctx := context.Background()
			var out event.Builder
			var inWasm, inNative time.Duration
			i := 0
			for b.Loop() {
				in := batches[i%len(batches)]
				t0 := time.Now()
				if _, err := p.Process(ctx, in); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				out.Reset()
				if _, err := orders.Normalise(in, &out); err != nil {
					b.Fatal(err)
				}
				inWasm += t1.Sub(t0)
				inNative += time.Since(t1)
				i++
			}
			b.ReportMetric(float64(i*batch)/inWasm.Seconds(), "events/s")
			b.ReportMetric(float64(i*batch)/inNative.Seconds(), "native-events/s")
			b.ReportMetric(inNative.Seconds()/inWasm.Seconds(), "ratio-to-native")
		})
	}
}
