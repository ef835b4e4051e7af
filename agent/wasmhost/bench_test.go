package wasmhost

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/agent/event"
)

// The boundary benchmarks use the shape: batches of 1,024 events
// with 200-byte bodies.
const benchEvents, benchBody = 1024, 200

func benchBatch() []byte {
	evs := make([]event.Event, benchEvents)
	for i := range evs {
		body := make([]byte, benchBody)
		for j := range body {
			body[j] = "abcdefghijklmnopqrstuvwxyz0123456789"[(i+j)%36]
		}
		evs[i] = event.Event{Time: int64(i), Body: body}
	}
	return event.AppendBatch(nil, evs)
}

func benchPlugin(b *testing.B, r *Runtime, src string, trusted bool) *Plugin {
	b.Helper()
	p, err := r.Load(b.Context(), PluginConfig{Name: fmt.Sprintf("%s-trusted=%v", src, trusted), Kind: KindBolt, Wasm: module(b, src), Trusted: trusted})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// threadCPU is the CPU time used by the calling OS thread. On a machine
// shared with other work, wall time counts the time this thread waited for
// a core; CPU time does not, so both are reported.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTotals accumulates the thread CPU time of timed calls, per plugin.
var cpuTotals = map[*Plugin]time.Duration{}

// timeCall runs one Process and returns how long it took. The benchmark's
// goroutine must be locked to its thread (runtime.LockOSThread).
func timeCall(b *testing.B, p *Plugin, batch []byte) time.Duration {
	start, cpu := time.Now(), threadCPU()
	res, err := p.Process(b.Context(), batch)
	d := time.Since(start)
	cpuTotals[p] += threadCPU() - cpu
	if err != nil {
		b.Fatal(err)
	}
	if len(res.Batch) != len(batch) {
		b.Fatalf("output of %d bytes for %d in", len(res.Batch), len(batch))
	}
	res.Release()
	return d
}

// benchGuardCost runs the same batches through three plugins built from
// the same source, alternating between them so that load on the machine
// hits all three alike: trusted (no guard, the baseline), guarded (the
// default, instrumented guard) and wazero's close-on-context-done guard. It
// reports ns/event for each and the two guards' ratios to the baseline.
func benchGuardCost(b *testing.B, src string) {
	r, _ := newTestRuntime(b)
	trusted := benchPlugin(b, r, src, true)
	guarded := benchPlugin(b, r, src, false)
	rc, _ := newTestRuntime(b)
	rc.closeOnDone = true
	ctxDone := benchPlugin(b, rc, src, false)
	if guarded.Guard() != "instrumented" || ctxDone.Guard() != "close-on-context-done" {
		b.Fatalf("guards %q and %q", guarded.Guard(), ctxDone.Guard())
	}
	batch := benchBatch()
	var tTrusted, tGuarded, tCtxDone time.Duration
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clear(cpuTotals)
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for b.Loop() {
		tTrusted += timeCall(b, trusted, batch)
		tGuarded += timeCall(b, guarded, batch)
		tCtxDone += timeCall(b, ctxDone, batch)
	}
	n := float64(b.N) * benchEvents
	b.ReportMetric(float64(tTrusted.Nanoseconds())/n, "trusted-ns/event")
	b.ReportMetric(float64(tGuarded.Nanoseconds())/n, "guarded-ns/event")
	b.ReportMetric(float64(tCtxDone.Nanoseconds())/n, "ctxdone-ns/event")
	b.ReportMetric(float64(tGuarded)/float64(tTrusted), "guarded/trusted")
	b.ReportMetric(float64(tCtxDone)/float64(tTrusted), "ctxdone/trusted")
	b.ReportMetric(float64(cpuTotals[trusted].Nanoseconds())/n, "trusted-cpu-ns/event")
	b.ReportMetric(float64(cpuTotals[guarded].Nanoseconds())/n, "guarded-cpu-ns/event")
	b.ReportMetric(float64(cpuTotals[guarded])/float64(cpuTotals[trusted]), "guarded/trusted-cpu")
}

// BenchmarkBoundary is the headline figure: ns/event of a no-op C
// bolt on batches of 1,024 × 200 B, one plugin at a time (its memory and
// the batch stay in cache, as in a pipeline stage). BenchmarkNoopBolt gives
// the guard's cost as a ratio measured in the same run.
func BenchmarkBoundary(b *testing.B) {
	for _, mode := range []string{"guarded", "trusted"} {
		b.Run(mode, func(b *testing.B) {
			r, _ := newTestRuntime(b)
			p := benchPlugin(b, r, "noop.c", mode == "trusted")
			batch := benchBatch()
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				res, err := p.Process(b.Context(), batch)
				if err != nil {
					b.Fatal(err)
				}
				res.Release()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
		})
	}
}

// BenchmarkNoopBolt is the boundary cost: copy 1,024 events in, validate and
// copy them out, with a guest that does nothing.
func BenchmarkNoopBolt(b *testing.B) { benchGuardCost(b, "noop.c") }

// BenchmarkUpperBolt adds one guest loop iteration per body byte, where a
// guard's per-iteration check shows.
func BenchmarkUpperBolt(b *testing.B) { benchGuardCost(b, "upper.c") }

// BenchmarkInterpreter measures wazero's interpreter as a guard (it is Go
// code, so always preemptible) against the compiled, trusted baseline.
func BenchmarkInterpreter(b *testing.B) {
	for _, src := range []string{"noop.c", "upper.c"} {
		b.Run(src, func(b *testing.B) {
			r, _ := newTestRuntime(b)
			trusted := benchPlugin(b, r, src, true)
			ri, _ := newTestRuntime(b)
			ri.interpreter = true
			interp := benchPlugin(b, ri, src, false)
			batch := benchBatch()
			var tTrusted, tInterp time.Duration
			b.SetBytes(int64(len(batch)))
			b.ResetTimer()
			for b.Loop() {
				tTrusted += timeCall(b, trusted, batch)
				tInterp += timeCall(b, interp, batch)
			}
			n := float64(b.N) * benchEvents
			b.ReportMetric(float64(tTrusted.Nanoseconds())/n, "trusted-ns/event")
			b.ReportMetric(float64(tInterp.Nanoseconds())/n, "interp-ns/event")
			b.ReportMetric(float64(tInterp)/float64(tTrusted), "interp/trusted")
		})
	}
}

// Worker processes: the alternative guard. A worker is this test binary
// re-executed; it runs the module trusted (no in-process guard, since the
// host can kill the whole worker) and batches cross a pipe or shared memory.
// The benchmark compares a worker round trip with an in-process guarded
// call on the same batches.

const workerEnv = "SLUICE_WASMHOST_BENCH_WORKER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(workerEnv); mode != "" {
		os.Exit(runBenchWorker(mode, os.Getenv(workerEnv+"_WASM")))
	}
	before := goleak.IgnoreCurrent()
	code := m.Run()
	if code == 0 {
		// Every plugin's goroutines (deadline watchers, HTTP clients)
		// must be gone once the tests have closed their runtimes.
		if err := goleak.Find(before); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runBenchWorker serves Process calls: over stdin/stdout frames
// (len:u32 bytes) in mode "pipe"; in mode "shm" the batch and the answer
// are in the shared file given as fd 3 and the pipe carries only lengths.
func runBenchWorker(mode, wasmPath string) int {
	ctx := context.Background()
	r, err := NewRuntime(ctx, RuntimeConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p, err := r.Load(ctx, PluginConfig{Name: "worker", Kind: KindBolt, Path: wasmPath, Trusted: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	in, out := bufio.NewReader(os.Stdin), os.Stdout
	var shm []byte
	if mode == "shm" {
		shm, err = syscall.Mmap(3, 0, shmSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	var hdr [4]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return 0
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		var batch []byte
		if shm != nil {
			batch = shm[:n]
		} else {
			if cap(buf) < int(n) {
				buf = make([]byte, n)
			}
			buf = buf[:n]
			if _, err := io.ReadFull(in, buf); err != nil {
				return 1
			}
			batch = buf
		}
		res, err := p.Process(ctx, batch)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binary.LittleEndian.PutUint32(hdr[:], uint32(len(res.Batch)))
		if shm != nil {
			copy(shm, res.Batch)
			out.Write(hdr[:])
		} else {
			out.Write(hdr[:])
			out.Write(res.Batch)
		}
		res.Release()
	}
}

const shmSize = 1 << 20

func BenchmarkWorkerProcess(b *testing.B) {
	for _, mode := range []string{"pipe", "shm"} {
		b.Run(mode, func(b *testing.B) { benchWorker(b, mode) })
	}
}

func benchWorker(b *testing.B, mode string) {
	wasmPath := filepath.Join(b.TempDir(), "noop.wasm")
	if err := os.WriteFile(wasmPath, module(b, "noop.c"), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"="+mode, workerEnv+"_WASM="+wasmPath)
	cmd.Stderr = os.Stderr
	var shm []byte
	if mode == "shm" {
		f, err := os.CreateTemp("/dev/shm", "sluice-bench-")
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(f.Name())
		defer f.Close()
		if err := f.Truncate(shmSize); err != nil {
			b.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{f}
		if shm, err = syscall.Mmap(int(f.Fd()), 0, shmSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED); err != nil {
			b.Fatal(err)
		}
		defer syscall.Munmap(shm)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	reader := bufio.NewReaderSize(stdout, 1<<18)
	batch := benchBatch()
	frame := binary.LittleEndian.AppendUint32(nil, uint32(len(batch)))
	if mode == "pipe" {
		frame = append(frame, batch...)
	}
	reply := make([]byte, len(batch))
	roundTrip := func() {
		if shm != nil {
			copy(shm, batch)
		}
		if _, err := stdin.Write(frame); err != nil {
			b.Fatal(err)
		}
		var hdr [4]byte
		if _, err := io.ReadFull(reader, hdr[:]); err != nil {
			b.Fatal(err)
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if int(n) != len(batch) {
			b.Fatalf("worker answered %d bytes", n)
		}
		if shm != nil {
			copy(reply, shm[:n])
		} else if _, err := io.ReadFull(reader, reply); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // the worker has compiled and is warm

	r, _ := newTestRuntime(b)
	guarded := benchPlugin(b, r, "noop.c", false)
	var tWorker, tGuarded time.Duration
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		roundTrip()
		tWorker += time.Since(start)
		tGuarded += timeCall(b, guarded, batch)
	}
	n := float64(b.N) * benchEvents
	b.ReportMetric(float64(tWorker.Nanoseconds())/n, "worker-ns/event")
	b.ReportMetric(float64(tGuarded.Nanoseconds())/n, "guarded-ns/event")
	b.ReportMetric(float64(tWorker)/float64(tGuarded), "worker/guarded")
}
