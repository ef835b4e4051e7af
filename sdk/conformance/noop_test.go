package conformance

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/sdk/internal/pluginbuild"
	"github.com/tetratelabs/wazero"
)

// noopDirs are the smallest plugin of each SDK: a bolt that forwards events.
var noopDirs = map[pluginbuild.Lang]string{
	pluginbuild.Go:             filepath.Join("..", "go", "testdata", "noop"),
	pluginbuild.C:              filepath.Join("..", "c", "testdata", "noop"),
	pluginbuild.AssemblyScript: filepath.Join("..", "assemblyscript", "testdata", "noop"),
}

func noopModule(t testing.TB, lang pluginbuild.Lang) []byte {
	t.Helper()
	v, _ := builds.LoadOrStore("noop-"+string(lang), &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		out := filepath.Join(buildDir, "noop-"+string(lang)+".wasm")
		if b.err = pluginbuild.Build(context.Background(), lang, noopDirs[lang], out); b.err == nil {
			b.wasm, b.err = readFile(out)
		}
	})
	if b.err != nil {
		t.Fatalf("building the %s noop plugin: %v", lang, b.err)
	}
	return b.wasm
}

// TestPluginsImportOnlyWhatTheyCall: an SDK must not make every plugin
// import every host function, or each would need every capability granted.
// A forwarding bolt imports nothing from sluice_v1 in any language, and
// loads with no capability at all.
func TestPluginsImportOnlyWhatTheyCall(t *testing.T) {
	ctx := context.Background()
	for _, lang := range languages {
		wasm := noopModule(t, lang)
		// The interpreter only validates the module: a cheap way to list imports.
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		m, err := r.CompileModule(ctx, wasm)
		if err != nil {
			t.Fatal(err)
		}
		var sluiceImports []string
		for _, f := range m.ImportedFunctions() {
			if mod, name, _ := f.Import(); mod == "sluice_v1" {
				sluiceImports = append(sluiceImports, name)
			}
		}
		r.Close(ctx)
		if len(sluiceImports) != 0 {
			t.Errorf("%s: a forwarding bolt imports %v from sluice_v1", lang, sluiceImports)
		}
		p, err := rt.Load(ctx, wasmhost.PluginConfig{Name: "noop-" + string(lang), Kind: wasmhost.KindBolt, Wasm: wasm})
		if err != nil {
			t.Fatalf("%s: loading the noop bolt with no capabilities: %v", lang, err)
		}
		in := event.AppendBatch(nil, []event.Event{{Time: 7, Key: []byte("k"), Body: []byte("v"), Headers: []event.Header{{Name: "h", Value: "1"}}}})
		res, err := p.Process(ctx, in)
		p.Close(ctx)
		if err != nil || res.Status != wasmhost.StatusOK || !bytes.Equal(res.Batch, in) {
			t.Errorf("%s: noop bolt: %v %v, batch %x, want the input back", lang, err, res, res.Batch)
		}
	}
}

// BenchmarkBoundary measures the cost per event of a forwarding bolt in each
// language through agent/wasmhost (default, guarded configuration): batches
// of 1,024 events of 200-byte bodies. It reports ns/event and the ratio to
// the same forwarding done natively in Go (event.Iterate + Builder) in the
// same run.
func BenchmarkBoundary(b *testing.B) {
	ctx := context.Background()
	evs := make([]event.Event, 1024)
	for i := range evs {
		evs[i] = event.Event{Time: int64(i), Body: bytes.Repeat([]byte{'x'}, 200)}
	}
	in := event.AppendBatch(nil, evs)
	// The native baseline runs first, as a sub-benchmark of this same run
	// (testing.Benchmark cannot be nested inside a benchmark).
	var native float64
	b.Run("native-go", func(b *testing.B) {
		var out event.Builder
		for i := 0; i < b.N; i++ {
			out.Reset()
			_ = event.Iterate(in, func(_ int, e *event.Event) error { out.Add(e); return nil })
		}
		native = float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(evs))
		b.ReportMetric(native, "ns/event")
	})
	for _, lang := range languages {
		for _, trusted := range []bool{false, true} {
			name := string(lang)
			if trusted {
				name += "/trusted"
			}
			b.Run(name, func(b *testing.B) {
				p, err := rt.Load(ctx, wasmhost.PluginConfig{Name: "noop-" + string(lang), Kind: wasmhost.KindBolt, Wasm: noopModule(b, lang), Trusted: trusted})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(ctx)
				b.SetBytes(int64(len(in)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := p.Process(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				perEvent := float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(evs))
				b.ReportMetric(perEvent, "ns/event")
				b.ReportMetric(perEvent/native, "x-native-go")
			})
		}
	}
}
