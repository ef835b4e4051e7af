package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

// TestOrderGen builds the example once and runs it in one host (a Go guest
// compiles slowly under -race; the host caches it after the first load).
func TestOrderGen(t *testing.T) {
	wasm := exampletest.Build(t, ".")
	host := exampletest.NewHost(t)
	t.Run("lines and restart", func(t *testing.T) { linesAndRestart(t, host, wasm) })
	t.Run("rate", func(t *testing.T) { rate(t, host, wasm) })
	t.Run("bad config", func(t *testing.T) { badConfig(t, host, wasm) })
}

func linesAndRestart(t *testing.T, host *exampletest.Host, wasm string) {
	ctx := context.Background()
	cfg := map[string]any{"seed": 7, "rate": 0, "count": 2500, "malformed_every": 50, "start": "2026-11-25T12:00:00Z", "step": "10ms"}
	want := orders.NewGenerator(orders.GenConfig{Seed: 7, Start: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Step: 10 * time.Millisecond, MalformedEvery: 50})
	load := func(name string) *wasmhost.Plugin {
		return host.Load(t, wasmhost.PluginConfig{Name: name, Kind: wasmhost.KindSource, Path: wasm, Config: cfg, Capabilities: []string{wasmhost.CapClock}})
	}

	// poll reads from p until it has produced up to index stop, checking
	// every line against the reference generator.
	next := uint64(0)
	poll := func(p *wasmhost.Plugin, stop uint64) []byte {
		var pos []byte
		for next < stop {
			res, err := p.Poll(ctx, 300)
			if err != nil {
				t.Fatal(err)
			}
			evs := exampletest.Events(t, res.Batch)
			if len(evs) == 0 {
				t.Fatalf("poll at order %d returned nothing", next)
			}
			for _, e := range evs {
				line := want.AppendLine(nil, next)
				if !bytes.Equal(e.Body, line[:len(line)-1]) {
					t.Fatalf("order %d:\n got %s\nwant %s", next, e.Body, line)
				}
				if o := want.Order(next); e.Time != o.TimeMs*1e6 {
					t.Fatalf("order %d time %d, want %d", next, e.Time, o.TimeMs*1e6)
				}
				next++
			}
			pos = res.Position
		}
		return pos
	}

	first := load("order-gen")
	if err := first.Ack(ctx, nil); err != nil { // fresh start
		t.Fatal(err)
	}
	pos := poll(first, 1200)
	if next != 1200 || string(pos) != "1200:1795608000000" {
		t.Fatalf("after 1200 orders the position is %q (next %d), want 1200:1795608000000", pos, next)
	}

	// A restart resumes right after the durable position.
	second := load("order-gen-restarted")
	if err := second.Ack(ctx, pos); err != nil {
		t.Fatal(err)
	}
	poll(second, 2500)
	res, err := second.Poll(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(exampletest.Events(t, res.Batch)); n != 0 || next != 2500 {
		t.Fatalf("past count = 2500 it produced %d more (next %d)", n, next)
	}
}

// rate checks that the source never runs ahead of its rate: after any
// number of polls, it has produced at most rate × elapsed + 1 orders, with
// elapsed measured by the test around the calls (so a slow machine can only
// make the bound looser, never fail it).
func rate(t *testing.T, host *exampletest.Host, wasm string) {
	p := host.Load(t, wasmhost.PluginConfig{Name: "order-gen-rate", Kind: wasmhost.KindSource, Path: wasm,
		Config: map[string]any{"rate": 2}, Capabilities: []string{wasmhost.CapClock}})
	ctx := context.Background()
	start := time.Now()
	if err := p.Ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	produced := 0
	for range 5 {
		res, err := p.Poll(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		produced += len(exampletest.Events(t, res.Batch))
	}
	if limit := int(2*time.Since(start).Seconds()) + 1; produced > limit {
		t.Fatalf("rate 2/s produced %d orders within %v", produced, time.Since(start))
	}
}

func badConfig(t *testing.T, host *exampletest.Host, wasm string) {
	_, err := host.Runtime().Load(context.Background(), wasmhost.PluginConfig{Name: "order-gen-bad", Kind: wasmhost.KindSource, Path: wasm,
		Config: map[string]any{"rate": -5}, Capabilities: []string{wasmhost.CapClock}})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("config rate")) {
		t.Fatalf("rate = -5: %v, want an error naming config rate", err)
	}
}
