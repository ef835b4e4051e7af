package guard

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/agent/wasmhost/wasmbuild"
)

// builds of testdata/mix.c covering different instruction sets.
var variants = []struct {
	name string
	opts wasmbuild.Options
}{
	{"O0", wasmbuild.Options{Target: wasmbuild.Freestanding, Flags: []string{"-O0"}}},
	{"O2", wasmbuild.Options{Target: wasmbuild.Freestanding}},
	{"simd", wasmbuild.Options{Target: wasmbuild.Freestanding, Flags: []string{"-O3", "-msimd128"}}},
	{"features", wasmbuild.Options{Target: wasmbuild.Freestanding, Flags: []string{"-O2", "-mnontrapping-fptoint", "-msign-ext", "-mmutable-globals"}}},
	{"wasi", wasmbuild.Options{Target: wasmbuild.WASI}},
}

func instantiate(t testing.TB, wasm []byte) (api.Module, func()) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	var mod api.Module
	compiled, err := r.CompileModule(ctx, wasm)
	if err == nil {
		if strings.Contains(string(wasm), "wasi_snapshot_preview1") {
			_, err = r.NewHostModuleBuilder("wasi_snapshot_preview1").
				NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), []api.ValueType{api.ValueTypeI32}, nil).Export("proc_exit").
				Instantiate(ctx)
		}
		if err == nil {
			mod, err = r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithStartFunctions())
		}
	}
	if err != nil {
		r.Close(ctx)
		t.Fatal(err)
	}
	return mod, func() { r.Close(ctx) }
}

func TestInstrumentKeepsBehaviour(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			orig := wasmbuild.MustC(t, v.opts, filepath.Join("testdata", "mix.c"))
			inst, err := Instrument(orig)
			if err != nil {
				t.Fatal(err)
			}
			want := call(t, orig, 1000)
			if got := call(t, inst, 1000); got != want {
				t.Fatalf("instrumented run(1000) = %d, original %d", got, want)
			}
			// Enough iterations to pass through the refuel path many times.
			if got, want := call(t, inst, 3*Fuel), call(t, orig, 3*Fuel); got != want {
				t.Fatalf("instrumented run(%d) = %d, original %d", 3*Fuel, got, want)
			}
		})
	}
}

func call(t *testing.T, wasm []byte, n uint64) uint64 {
	t.Helper()
	mod, closeFn := instantiate(t, wasm)
	defer closeFn()
	res, err := mod.ExportedFunction("run").Call(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// TestStopFlagStopsASpinningGuest raises the stop flag of a guest spinning
// forever, with garbage collections forced meanwhile: the collections must
// complete (the guest passes through Go every Fuel iterations) and the
// guest must trap.
func TestStopFlagStopsASpinningGuest(t *testing.T) {
	orig := wasmbuild.MustC(t, variants[1].opts, filepath.Join("testdata", "mix.c"))
	inst, err := Instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	mod, closeFn := instantiate(t, inst)
	defer closeFn()
	stop := mod.ExportedGlobal(StopExport).(api.MutableGlobal)
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(context.Background())
		done <- err
	}()
	for range 3 {
		runtime.GC()
	}
	stop.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin ended with %v, want an unreachable trap", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("spinning guest ignored its stop flag for a minute")
	}
}

// minimal is a module with one memory and one function `loop: br 0` and
// neither a global nor an export section.
var minimal = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type () -> ()
	0x03, 0x02, 0x01, 0x00, // one function of type 0
	0x05, 0x03, 0x01, 0x00, 0x01, // memory min 1
	0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop br 0 end end
}

func TestInstrumentAddsMissingSections(t *testing.T) {
	out, err := Instrument(minimal)
	if err != nil {
		t.Fatal(err)
	}
	mod, closeFn := instantiate(t, out)
	defer closeFn()
	if mod.ExportedGlobal(StopExport) == nil {
		t.Fatal("stop flag not exported")
	}
}

func TestInstrumentRefusesWhatItCannotDecode(t *testing.T) {
	unknown := append([]byte{}, minimal...)
	unknown[len(unknown)-4] = 0xfb // a GC-proposal opcode where br was
	for name, tc := range map[string]struct {
		wasm []byte
		want string
	}{
		"unknown opcode": {unknown, "unknown opcode 0xfb"},
		"not wasm":       {[]byte("hello world"), "not a WebAssembly"},
		"truncated":      {minimal[:len(minimal)-3], "unexpected end"},
		"no memory":      {append(append([]byte{}, minimal[:18]...), minimal[23:]...), "no memory"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Instrument(tc.wasm)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzInstrument: Instrument never panics, and whatever wazero accepts
// before instrumentation it still accepts after.
func FuzzInstrument(f *testing.F) {
	f.Add(minimal)
	for _, v := range variants[:2] {
		f.Add(wasmbuild.MustC(f, v.opts, filepath.Join("testdata", "mix.c")))
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := Instrument(wasm)
		if err != nil {
			return
		}
		ctx := context.Background()
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer r.Close(ctx)
		if _, err := r.CompileModule(ctx, wasm); err != nil {
			return
		}
		if _, err := r.CompileModule(ctx, out); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("valid module became invalid: %v", err)
		}
	})
}

// TestInstrumentGoGuest instruments a module built by the Go toolchain
// (runtime, GC, goroutine scheduler and all) and checks it still computes
// the same thing.
func TestInstrumentGoGuest(t *testing.T) {
	out := filepath.Join(t.TempDir(), "goguest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/goguest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	orig, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := Instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	runGo := func(wasm []byte) uint64 {
		ctx := context.Background()
		r := wazero.NewRuntime(ctx)
		defer r.Close(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, r)
		mod, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := mod.ExportedFunction("run").Call(ctx, 5000)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	if got, want := runGo(inst), runGo(orig); got != want {
		t.Fatalf("instrumented Go guest returned %d, original %d", got, want)
	}
}
