// Package exampletest holds what the tests of wasm-examples share: building
// an example from source with agent/plugintool, loading it into the real
// host (agent/wasmhost), and generating order batches.
package exampletest

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/orders"
)

// Build compiles the plugin in dir into a temporary directory of tb.
func Build(tb testing.TB, dir string) string {
	tb.Helper()
	wasm, err := plugintool.Build(context.Background(), dir, filepath.Join(tb.TempDir(), filepath.Base(dir)+".wasm"))
	if err != nil {
		tb.Fatal(err)
	}
	return wasm
}

// Load starts a runtime and loads cfg into it; both are closed when tb ends.
func Load(tb testing.TB, cfg wasmhost.PluginConfig) *wasmhost.Plugin {
	tb.Helper()
	return NewHost(tb).Load(tb, cfg)
}

// Host is one runtime with an on-disk compilation cache, so that loading the
// same module again (a restart) does not compile it again: a Go guest takes
// seconds to compile under -race.
type Host struct {
	rt *wasmhost.Runtime
}

// NewHost starts a runtime that is closed when tb ends.
func NewHost(tb testing.TB) *Host {
	tb.Helper()
	ctx := context.Background()
	rt, err := wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{CacheDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close(ctx) })
	return &Host{rt: rt}
}

// Runtime is the host's runtime.
func (h *Host) Runtime() *wasmhost.Runtime { return h.rt }

// Load loads cfg; the plugin is closed when tb ends.
func (h *Host) Load(tb testing.TB, cfg wasmhost.PluginConfig) *wasmhost.Plugin {
	tb.Helper()
	ctx := context.Background()
	p, err := h.rt.Load(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close(ctx) })
	return p
}

// Batches encodes lines [from, to) of g (without their newline) into batches
// of at most n events; event i has time i.
func Batches(g *orders.Generator, from, to uint64, n int) [][]byte {
	var out [][]byte
	var b event.Builder
	var line []byte
	for i := from; i < to; i++ {
		line = g.AppendLine(line[:0], i)
		b.Add(&event.Event{Time: int64(i), Body: line[:len(line)-1]})
		if b.Len() == n || i == to-1 {
			out = append(out, bytes.Clone(b.Bytes()))
			b.Reset()
		}
	}
	return out
}

// Events decodes a batch, failing tb if it is malformed.
func Events(tb testing.TB, batch []byte) []event.Event {
	tb.Helper()
	evs, err := event.DecodeBatch(nil, batch)
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}
