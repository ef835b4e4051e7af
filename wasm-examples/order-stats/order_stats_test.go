// Package orderstats tests the order-stats examples (c/ and go/): each is
// built from source and run in the host against the native reference in
// internal/orders, with the same batches and ticks.
package orderstats

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

var langs = []string{"c", "go"}

func load(t testing.TB, host *exampletest.Host, wasm string, st *orders.MemState) *wasmhost.Plugin {
	return host.Load(t, wasmhost.PluginConfig{
		Name:         "order-stats",
		Kind:         wasmhost.KindBolt,
		Path:         wasm,
		Config:       map[string]any{"lateness_ms": 2000},
		Capabilities: []string{wasmhost.CapState},
		State:        st,
	})
}

// run feeds batches to the plugin, ticking after each with a wall clock far
// behind the data (windows close by the watermark), then once far ahead.
// It returns all output and the rejects as text.
func run(t *testing.T, p *wasmhost.Plugin, batches [][]byte) (out []byte, rejects string) {
	ctx := context.Background()
	var all event.Builder
	var rj strings.Builder
	for k, in := range batches {
		res, err := p.Process(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if evs := exampletest.Events(t, res.Batch); len(evs) != 0 {
			t.Fatalf("process emitted %d events; order-stats emits only on tick", len(evs))
		}
		fmt.Fprint(&rj, res.Rejects)
		res, err = p.Tick(ctx, tickAt(k))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exampletest.Events(t, res.Batch) {
			all.Add(&e)
		}
	}
	res, err := p.Tick(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exampletest.Events(t, res.Batch) {
		all.Add(&e)
	}
	return bytes.Clone(all.Bytes()), rj.String()
}

func tickAt(k int) int64 {
	return time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC).Add(time.Duration(k) * time.Second).UnixNano()
}

// reference runs the native reference over the same batches and ticks.
func reference(t *testing.T, batches [][]byte, st *orders.MemState) (out []byte, rejects string) {
	s := &orders.Stats{LatenessMs: 2000}
	var all event.Builder
	var rj strings.Builder
	for k, in := range batches {
		r, err := s.Process(in, st)
		if err != nil {
			t.Fatal(err)
		}
		var pr []wasmhost.Reject
		for _, x := range r {
			pr = append(pr, wasmhost.Reject{Index: x.Index, Reason: x.Reason})
		}
		fmt.Fprint(&rj, pr)
		if err := s.Tick(time.Unix(0, tickAt(k)), st, &all); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Tick(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), st, &all); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(all.Bytes()), rj.String()
}

func TestOrderStats(t *testing.T) {
	g := orders.NewGenerator(orders.GenConfig{Seed: 31, MalformedEvery: 97, Step: 7 * time.Millisecond})
	const n = 30000 // 3.5 minutes of orders, so windows close along the way
	batches := exampletest.Batches(g, 0, n, 1000)
	refState := orders.NewMemState()
	wantOut, wantRejects := reference(t, batches, refState)
	truth := orders.GroundTruth(g, 0, n, nil)

	for _, lang := range langs {
		t.Run(lang, func(t *testing.T) {
			wasm := exampletest.Build(t, lang)
			host := exampletest.NewHost(t) // compiles the module once for the three loads

			st := orders.NewMemState()
			out, rejects := run(t, load(t, host, wasm, st), batches)
			if rejects != wantRejects {
				t.Fatalf("rejects differ from the reference:\n got %.300s\nwant %.300s", rejects, wantRejects)
			}
			if !bytes.Equal(out, wantOut) {
				gotEv, wantEv := exampletest.Events(t, out), exampletest.Events(t, wantOut)
				for i := range min(len(gotEv), len(wantEv)) {
					if !bytes.Equal(gotEv[i].Body, wantEv[i].Body) || !bytes.Equal(gotEv[i].Key, wantEv[i].Key) || gotEv[i].Time != wantEv[i].Time {
						t.Fatalf("record %d differs:\n got %s %s %d\nwant %s %s %d", i, gotEv[i].Key, gotEv[i].Body, gotEv[i].Time, wantEv[i].Key, wantEv[i].Body, wantEv[i].Time)
					}
				}
				t.Fatalf("output differs: %d records, want %d", len(gotEv), len(wantEv))
			}
			if !maps.Equal(st.Dump(), refState.Dump()) {
				t.Fatalf("state differs from the reference's:\n got %q\nwant %q", st.Dump(), refState.Dump())
			}
			got := orders.NewTotals()
			if err := got.ApplyBatch(out); err != nil {
				t.Fatal(err)
			}
			if d := got.Diff(truth, 5); d != nil {
				t.Fatalf("totals differ from the ground truth:\n%s", strings.Join(d, "\n"))
			}

			// State lives in the host: a fresh instance (a restart) picks up
			// where the first left off, and the totals stay exact.
			st2 := orders.NewMemState()
			first, _ := run(t, load(t, host, wasm, st2), batches[:12])
			// run's final tick closed every window; replay the rest on a new
			// instance over the same store.
			second, _ := run(t, load(t, host, wasm, st2), batches[12:])
			split := orders.NewTotals()
			if err := split.ApplyBatch(first); err != nil {
				t.Fatal(err)
			}
			if err := split.ApplyBatch(second); err != nil {
				t.Fatal(err)
			}
			if d := split.Diff(truth, 5); d != nil {
				t.Fatalf("totals across a restart differ from the ground truth:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// oddLines are valid and invalid orders off the usual layout: other field
// orders, whitespace, escapes, unknown nested fields, duplicates.
var oddLines = []string{
	`{"ts":"2026-11-25T12:00:00.123Z","order_id":"o-1","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.50,"city":"Hangzhou","status":"paid"}`,
	` { "status" : "paid", "x":{"a":[1,2,{"b":null}]},"city":"Hang\u007a","price":"12.5","qty":2,"category":"b\"ooks","sku":"sku-17","user_id":42,"order_id":"o-2","ts":"2026-11-25T12:00:59.9999Z","y":-1.5e3,"z":true}` + "\r\n",
	`{"ts":"2026-11-25T12:01:00Z","order_id":"o-3","user_id":0,"sku":"s","category":"c","qty":1000000,"price":99999999.99,"city":"X","status":"paid"}`,
	`{"ts":"2026-11-25T12:00:00Z","ts":"2026-11-25T12:00:00Z","order_id":"o-4","user_id":1,"sku":"s","category":"c","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{"ts":"2026-11-25T12:00:00Z","order_id":"o-5","user_id":1,"sku":"s","category":"c","qty":1,"price":1,"city":"X"}`,
	`{"ts":"2026-02-29T12:00:00Z","order_id":"o-6","user_id":1,"sku":"s","category":"c","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{"ts":"2028-02-29T12:00:00Z","order_id":"o-7","user_id":1,"sku":"s","category":"c","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{"ts":"2026-11-25T12:00:00Z","order_id":"o-8","user_id":1,"sku":"s","category":"c","qty":1,"price":1.234,"city":"X","status":"paid"}`,
	`{"ts":"2026-11-25T12:00:00Z","order_id":"o-9","user_id":1,"sku":"s","category":"c","qty":1,"price":1,"city":"X","status":"paid"} x`,
	`{"ts":"2026-11-25T12:00:00Z","order_id":"o-10","user_id":1,"sku":"s\q","category":"c","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{"ts" :"2026-11-25T12:00:00Z","order_id":"o-11","user_id":1,"sku":"s","category":"c","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{"ts":"2026-11-25T12:00:00Z","order_id":"o-12","user_id":9007199254740992,"sku":"s","category":"c","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{"ts":"2026-11-25T12:00:00Z","order_id":"o-13","user_id":1,"sku":"s","category":"","qty":1,"price":1,"city":"X","status":"paid"}`,
	`{}`, `[]`, `{"ts":`, ``,
}

// TestOrderStatsOddLines checks the plugins against the reference on lines
// off the usual layout, which the generated ones never exercise.
func TestOrderStatsOddLines(t *testing.T) {
	var evs []event.Event
	for _, l := range oddLines {
		evs = append(evs, event.Event{Body: []byte(l)})
	}
	batches := [][]byte{event.AppendBatch(nil, evs)}
	wantOut, wantRejects := reference(t, batches, orders.NewMemState())
	if !strings.Contains(wantRejects, "duplicate field ts") || !strings.Contains(wantRejects, "missing field status") {
		t.Fatalf("reference rejects %s: the cases do not cover what they should", wantRejects)
	}
	for _, lang := range langs {
		t.Run(lang, func(t *testing.T) {
			out, rejects := run(t, exampletest.NewHost(t).Load(t, wasmhost.PluginConfig{
				Name: "order-stats", Kind: wasmhost.KindBolt, Path: exampletest.Build(t, lang),
				Capabilities: []string{wasmhost.CapState}, State: orders.NewMemState(),
			}), batches)
			if rejects != wantRejects {
				t.Fatalf("rejects differ from the reference:\n got %s\nwant %s", rejects, wantRejects)
			}
			if !bytes.Equal(out, wantOut) {
				t.Fatalf("output differs from the reference:\n got %q\nwant %q", out, wantOut)
			}
		})
	}
}

func TestOrderStatsRefusesBadConfig(t *testing.T) {
	for _, lang := range langs {
		t.Run(lang, func(t *testing.T) {
			ctx := context.Background()
			rt, err := wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close(ctx)
			_, err = rt.Load(ctx, wasmhost.PluginConfig{
				Name: "order-stats", Kind: wasmhost.KindBolt, Path: exampletest.Build(t, lang),
				Config: map[string]any{"lateness_ms": "soon"}, Capabilities: []string{wasmhost.CapState}, State: orders.NewMemState(),
			})
			if err == nil || !strings.Contains(err.Error(), "lateness_ms") {
				t.Fatalf("load with lateness_ms = \"soon\": %v, want an error naming lateness_ms", err)
			}
		})
	}
}
