package conformance

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/internal/toolchain"
	"github.com/sluicehq/sluice/sdk/internal/pluginbuild"
	"github.com/tetratelabs/wazero"
)

// noopDirs are the smallest plugin of each SDK: a bolt that forwards events.
var noopDirs = map[toolchain.Lang]string{
	toolchain.Go:             filepath.Join("..", "go", "testdata", "noop"),
	toolchain.C:              filepath.Join("..", "c", "testdata", "noop"),
	toolchain.AssemblyScript: filepath.Join("..", "assemblyscript", "testdata", "noop"),
}

func noopModule(t testing.TB, lang toolchain.Lang) []byte {
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

// BenchmarkBoundary measures the cost per event of a forwarding bolt built
// with each SDK, through agent/wasmhost: batches of 1,024 events with
// 200-byte bodies. Each language's sub-benchmark alternates, batch by batch,
// the guarded (default) plugin, the same module trusted, and the same
// forwarding done natively in Go (event.Iterate into an event.Builder), so
// that load on a shared machine hits all three alike. It reports wall and
// thread-CPU ns/event and the ratios to native Go.
func BenchmarkBoundary(b *testing.B) {
	ctx := context.Background()
	evs := make([]event.Event, 1024)
	for i := range evs {
		evs[i] = event.Event{Time: int64(i), Body: bytes.Repeat([]byte{'x'}, 200)}
	}
	in := event.AppendBatch(nil, evs)
	var native event.Builder
	runNative := func() {
		native.Reset()
		_ = event.Iterate(in, func(_ int, e *event.Event) error { native.Add(e); return nil })
	}
	for _, lang := range languages {
		b.Run(string(lang), func(b *testing.B) {
			wasm := noopModule(b, lang)
			load := func(trusted bool) *wasmhost.Plugin {
				p, err := rt.Load(ctx, wasmhost.PluginConfig{Name: "noop-" + string(lang), Kind: wasmhost.KindBolt, Wasm: wasm, Trusted: trusted})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { p.Close(ctx) })
				return p
			}
			guarded, trusted := load(false), load(true)
			var wall, cpu [3]time.Duration // guarded, trusted, native
			timed := func(i int, f func()) {
				w, c := time.Now(), threadCPU()
				f()
				wall[i] += time.Since(w)
				cpu[i] += threadCPU() - c
			}
			call := func(p *wasmhost.Plugin) func() {
				return func() {
					res, err := p.Process(ctx, in)
					if err != nil || len(res.Batch) != len(in) {
						b.Fatalf("forward: %v, %d bytes out for %d in", err, len(res.Batch), len(in))
					}
					res.Release()
				}
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.SetBytes(int64(len(in)))
			b.ResetTimer()
			for b.Loop() {
				timed(0, call(guarded))
				timed(1, call(trusted))
				timed(2, runNative)
			}
			n := float64(b.N * len(evs))
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / n }
			b.ReportMetric(per(wall[0]), "guarded-ns/event")
			b.ReportMetric(per(wall[1]), "trusted-ns/event")
			b.ReportMetric(per(wall[2]), "native-ns/event")
			b.ReportMetric(per(cpu[0]), "guarded-cpu-ns/event")
			b.ReportMetric(per(cpu[1]), "trusted-cpu-ns/event")
			b.ReportMetric(float64(wall[0])/float64(wall[2]), "guarded/native")
			b.ReportMetric(float64(cpu[0])/float64(cpu[2]), "guarded/native-cpu")
		})
	}
}

// threadCPU is the CPU time of the calling OS thread: on a shared machine,
// wall time also counts waiting for a core.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
