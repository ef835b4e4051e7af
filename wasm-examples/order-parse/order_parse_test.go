package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

// sources are the example's implementations: Go (this directory) and C.
var sources = []struct{ lang, dir string }{{"go", "."}, {"c", "c"}}

// TestOrderParse builds each implementation from source once and runs it in
// the host (a Go guest takes a while to compile, more so under -race).
func TestOrderParse(t *testing.T) {
	for _, src := range sources {
		t.Run(src.lang, func(t *testing.T) {
			p := exampletest.Load(t, wasmhost.PluginConfig{Name: "order-parse-" + src.lang, Kind: wasmhost.KindBolt, Path: exampletest.Build(t, src.dir)})
			t.Run("matches the reference", func(t *testing.T) { matchesReference(t, p) })
			t.Run("README example", func(t *testing.T) { readmeExample(t, p) })
		})
	}
}

// matchesReference checks that the example's output and rejects equal the
// native reference's, byte for byte, over generated orders with malformed
// lines of every kind.
func matchesReference(t *testing.T, p *wasmhost.Plugin) {
	g := orders.NewGenerator(orders.GenConfig{Seed: 21, MalformedEvery: 7})
	rejected := 0
	for _, in := range exampletest.Batches(g, 0, 5000, 1000) {
		res, err := p.Process(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		var want event.Builder
		wantRejects, err := orders.Normalise(in, &want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.Batch, want.Bytes()) {
			t.Fatalf("output differs from the reference:\n got %d bytes\nwant %d bytes", len(res.Batch), len(want.Bytes()))
		}
		if got, want := fmt.Sprint(res.Rejects), fmt.Sprint(wantRejects); got != want {
			t.Fatalf("rejects differ:\n got %s\nwant %s", got, want)
		}
		rejected += len(res.Rejects)
	}
	if want := int(g.MalformedCount(5000)); rejected != want {
		t.Fatalf("%d rejects, want the %d malformed lines", rejected, want)
	}
}

// readmeExample checks the example in README.md.
func readmeExample(t *testing.T, p *wasmhost.Plugin) {
	in := event.AppendBatch(nil, []event.Event{
		{Body: []byte(` {"ts":"2026-11-25T12:00:00.1Z","order_id":"o-000001","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.5,"city":"Hangzhou","status":"paid","coupon":{"code":"X"}}`)},
		{Body: []byte(`{"ts":"2026-11-25T12:00:00Z","order_id":"o-000002"}`)},
	})
	res, err := p.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	out := exampletest.Events(t, res.Batch)
	const want = `{"ts":"2026-11-25T12:00:00.100Z","order_id":"o-000001","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.50,"city":"Hangzhou","status":"paid"}`
	if len(out) != 1 || string(out[0].Body) != want || string(out[0].Key) != "books" || out[0].Time != 1795608000100000000 {
		t.Fatalf("output %+v, want one event keyed books at 1795608000100000000 with body %s", out, want)
	}
	if len(res.Rejects) != 1 || res.Rejects[0].Index != 1 || res.Rejects[0].Reason != "missing field user_id" {
		t.Fatalf("rejects %+v, want event 1: missing field user_id", res.Rejects)
	}
}
