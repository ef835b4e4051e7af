// Package filter tests the AssemblyScript filter example: it is built from
// source and run in the host.
package filter

import (
	"bytes"
	"context"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

func TestFilter(t *testing.T) {
	wasm := exampletest.Build(t, ".")
	paid := exampletest.Load(t, wasmhost.PluginConfig{Name: "filter", Kind: wasmhost.KindBolt, Path: wasm})
	ctx := context.Background()

	t.Run("generated orders", func(t *testing.T) {
		g := orders.NewGenerator(orders.GenConfig{Seed: 51, MalformedEvery: 11})
		const n = 4000
		var kept []event.Event
		rejected := map[int]bool{}
		for k, in := range exampletest.Batches(g, 0, n, 500) {
			res, err := paid.Process(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			kept = append(kept, exampletest.Events(t, res.Batch)...)
			for _, r := range res.Rejects {
				rejected[k*500+r.Index] = true
			}
		}
		// Every well-formed paid order is kept, unchanged and in order;
		// nothing else well-formed is; a malformed line is either rejected
		// or judged by its status like any other.
		j := 0
		for i := uint64(0); i < n; i++ {
			line := bytes.TrimSuffix(g.AppendLine(nil, i), []byte("\n"))
			isPaid := bytes.Contains(line, []byte(`"status":"paid"`))
			if !g.Malformed(i) && rejected[int(i)] {
				t.Fatalf("well-formed line %d rejected: %s", i, line)
			}
			if !isPaid || rejected[int(i)] {
				continue
			}
			if j >= len(kept) || !bytes.Equal(kept[j].Body, line) || kept[j].Time != int64(i) {
				t.Fatalf("kept event %d is not line %d (%s)", j, i, line)
			}
			j++
		}
		if j != len(kept) {
			t.Fatalf("%d events kept, want %d", len(kept), j)
		}
		if len(rejected) == 0 {
			t.Fatal("no malformed line was rejected")
		}
	})

	t.Run("cases", func(t *testing.T) {
		cases := []struct {
			body   string
			kept   bool
			reason string
		}{
			{`{"status":"paid"}`, true, ""},
			{` { "a" : {"status":"refunded","x":[1,{"y":null}]}, "status" : "paid" } `, true, ""},
			{`{"status":"refunded"}`, false, ""},
			{`{"status":"pai"}`, false, ""},
			{`{"status":"paid\""}`, false, ""},
			{`[1]`, false, "not a JSON object"},
			{`{"x":1}`, false, "missing field status"},
			{`{}`, false, "missing field status"},
			{`{"status":1}`, false, "field status is not a string"},
			{`{"x":"unterminated`, false, "not a JSON object"},
		}
		var evs []event.Event
		for i, c := range cases {
			evs = append(evs, event.Event{Time: int64(i), Body: []byte(c.body)})
		}
		res, err := paid.Process(ctx, event.AppendBatch(nil, evs))
		if err != nil {
			t.Fatal(err)
		}
		out := exampletest.Events(t, res.Batch)
		keptAt := map[int64]bool{}
		for _, e := range out {
			keptAt[e.Time] = true
		}
		reasons := map[int]string{}
		for _, r := range res.Rejects {
			reasons[r.Index] = r.Reason
		}
		for i, c := range cases {
			if keptAt[int64(i)] != c.kept || reasons[i] != c.reason {
				t.Errorf("%s: kept %v reject %q; want kept %v reject %q", c.body, keptAt[int64(i)], reasons[i], c.kept, c.reason)
			}
		}
	})

	t.Run("configured status", func(t *testing.T) {
		refunds := exampletest.Load(t, wasmhost.PluginConfig{Name: "filter-refunded", Kind: wasmhost.KindBolt, Path: wasm,
			Config: map[string]any{"status": "refunded"}})
		res, err := refunds.Process(ctx, event.AppendBatch(nil, []event.Event{{Body: []byte(`{"status":"paid"}`)}, {Body: []byte(`{"status":"refunded"}`)}}))
		if err != nil {
			t.Fatal(err)
		}
		out := exampletest.Events(t, res.Batch)
		if len(out) != 1 || string(out[0].Body) != `{"status":"refunded"}` {
			t.Fatalf("kept %+v, want only the refunded order", out)
		}
	})
}
