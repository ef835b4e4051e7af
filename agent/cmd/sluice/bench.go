package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/internal/orders"
)

const benchAbout = `Measure the agent end to end: generate N orders (~200 B each) into a file,
then for each example language run

  tail ─▶ [raw, file channel, fsync always] ─order-parse─▶ [orders, fsync always]
       ─order-stats─▶ [results] ─▶ file sink

in a child process, and print events/s, MB/s, CPU seconds, peak RSS and the
ratio to a raw read-and-split of the same file measured in the same run.
The row's language is the one both WASM bolts are written in (c: order-parse
and order-stats in C; go: both in Go); native runs both as native Go built-ins.`

type benchResult struct {
	Lang    string  `json:"lang"`
	Events  int64   `json:"events"`
	Seconds float64 `json:"seconds"`
	CPU     float64 `json:"cpu_seconds"`
	PeakRSS int64   `json:"peak_rss_bytes"`
	Error   string  `json:"error,omitempty"`
}

func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench [--orders N] [--dir DIR] [--langs c,go]", benchAbout, stdout)
	n := fs.Int("orders", 1_000_000, "number of orders to generate")
	dir := fs.String("dir", filepath.Join(".sluice", "bench"), "work `DIR` (its old contents are replaced)")
	langs := fs.String("langs", "c,go,native", "rows to measure, comma-separated: c, go (the WASM bolts' language) and native (both bolts as the native Go reference, no WASM)")
	trusted := fs.Bool("trusted", false, "run the WASM bolts without the runaway-loop guard (trusted = true)")
	profile := fs.String("profile", "", "write each row's CPU and heap profiles (cpu-LANG.pprof, heap-LANG.pprof) into `DIR`")
	child := fs.String("child", "", "internal: run one measurement with this plugin directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *child != "" {
		return benchChild(*child, *trusted, stdout)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	logPath := filepath.Join(abs, "orders.log")
	fmt.Fprintf(stdout, "generating %d orders into %s…\n", *n, logPath)
	size, err := writeOrderFile(logPath, *n)
	if err != nil {
		return err
	}
	rawSecs, err := rawReadSplit(logPath, *n)
	if err != nil {
		return err
	}
	rawRate := float64(*n) / rawSecs
	fmt.Fprintf(stdout, "raw read+split baseline: %.0f lines/s, %.0f MB/s\n", rawRate, float64(size)/rawSecs/1e6)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	guard := "guarded (default)"
	if *trusted {
		guard = "trusted (no loop guard)"
	}
	fmt.Fprintf(stdout, "\norder-parse (parallelism 2) → order-stats, both in the row's language, WASM %s; native: both as native Go built-ins\n", guard)
	fmt.Fprintf(stdout, "%-6s %12s %9s %9s %10s %10s\n", "lang", "events/s", "MB/s", "CPU s", "peak RSS", "vs raw")
	var rows []string
	for _, lang := range strings.Split(*langs, ",") {
		lang = strings.TrimSpace(lang)
		pdir := filepath.Join(abs, "plugins-"+lang)
		statsSrc := map[string]string{"c": "c", "go": "go", "native": "native"}[lang]
		if statsSrc == "" {
			return usageError{fmt.Sprintf("unknown row %q (want c, go or native)", lang)}
		}
		if lang == "native" {
			pdir = nativeRow
		} else {
			parseSrc := map[string]string{"c": "c", "go": "."}[lang]
			_, err := plugintool.Build(ctx, filepath.Join(root, "wasm-examples", "order-parse", parseSrc), filepath.Join(pdir, "order-parse.wasm"))
			if err == nil {
				_, err = plugintool.Build(ctx, filepath.Join(root, "wasm-examples", "order-stats", statsSrc), filepath.Join(pdir, "order-stats.wasm"))
			}
			var mt *plugintool.MissingToolError
			if errors.As(err, &mt) {
				rows = append(rows, fmt.Sprintf("%-6s skipped: %v", lang, err))
				continue
			}
			if err != nil {
				return err
			}
		}
		res, err := runBenchChild(ctx, self, abs, pdir, lang, *n, *trusted, *profile, stderr)
		if err != nil {
			return err
		}
		if res.Error != "" {
			return fmt.Errorf("bench %s: %s", lang, res.Error)
		}
		rate := float64(res.Events) / res.Seconds
		row := fmt.Sprintf("%-6s %12.0f %9.1f %9.2f %7.1fMiB %10.4f", lang, rate, float64(size)/res.Seconds/1e6, res.CPU, float64(res.PeakRSS)/(1<<20), rate/rawRate)
		fmt.Fprintln(stdout, row)
	}
	for _, r := range rows {
		fmt.Fprintln(stdout, r)
	}
	return nil
}

// writeOrderFile writes n generated order lines and returns the file size.
func writeOrderFile(path string, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	g := orders.NewGenerator(orders.GenConfig{Seed: 7, MalformedEvery: 10_000})
	w := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	var size int64
	for i := 0; i < n; i++ {
		buf = g.AppendLine(buf[:0], uint64(i))
		size += int64(len(buf))
		if _, err := w.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return size, f.Sync()
}

// rawReadSplit is the baseline: read the file in 1 MiB chunks and find
// every line, touching each byte once, as a tail must at least do.
func rawReadSplit(path string, want int) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	buf := make([]byte, 1<<20)
	lines, carry := 0, 0
	var sum int
	for {
		k, err := f.Read(buf[carry:])
		data := buf[:carry+k]
		last := 0
		for {
			i := bytes.IndexByte(data[last:], '\n')
			if i < 0 {
				break
			}
			sum += i
			lines++
			last += i + 1
		}
		carry = copy(buf, data[last:])
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	secs := time.Since(start).Seconds()
	if lines != want {
		return 0, fmt.Errorf("raw baseline counted %d lines, want %d", lines, want)
	}
	_ = sum
	return secs, nil
}

// runBenchChild runs one measurement in a child process (so peak RSS and
// CPU time are its own) and draws a progress bar from its progress lines.
func runBenchChild(ctx context.Context, self, dir, pdir, lang string, n int, trusted bool, profile string, stderr io.Writer) (benchResult, error) {
	args := []string{"bench", "--child", pdir, "--dir", dir, "--orders", fmt.Sprint(n), fmt.Sprintf("--trusted=%t", trusted)}
	if profile != "" {
		abs, err := filepath.Abs(profile)
		if err != nil {
			return benchResult{}, err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return benchResult{}, err
		}
		args = append(args, "--profile", filepath.Join(abs, "%s-"+lang+".pprof"))
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return benchResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return benchResult{}, err
	}
	var res benchResult
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		var done int64
		if _, err := fmt.Sscanf(line, "progress %d", &done); err == nil {
			drawBar(stderr, lang, done, int64(n))
			continue
		}
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				return res, err
			}
		}
	}
	fmt.Fprint(stderr, "\r\033[K")
	if err := cmd.Wait(); err != nil && res.Error == "" {
		return res, fmt.Errorf("bench child for %s: %w", lang, err)
	}
	res.Lang = lang
	return res, nil
}

func drawBar(w io.Writer, lang string, done, total int64) {
	const width = 40
	f := min(float64(done)/float64(total), 1)
	fill := int(f * width)
	fmt.Fprintf(w, "\r%-4s [%s%s] %3.0f%% %d/%d", lang, strings.Repeat("█", fill), strings.Repeat("·", width-fill), f*100, done, total)
}

const benchConfig = `
[agent]
data_dir = "{{DIR}}/data"
log_level = "warn"
shutdown_timeout = "60s"

[channels.raw]
fsync = "always"
segment_bytes = "64MiB"
max_bytes = "512MiB"

[channels.orders]
fsync = "always"
segment_bytes = "64MiB"
max_bytes = "512MiB"

[channels.results]
fsync = "always"

[sources.orders]
type = "tail"
output = "raw"
batch_size = 4096
[sources.orders.config]
paths = ["{{DIR}}/orders.log"]
read_buffer_bytes = "1MiB"
max_batch_bytes = "2MiB"
poll_interval = "20ms"

[bolts.parse]
wasm = "{{PLUGINS}}/order-parse.wasm"
input = "raw"
output = "orders"
parallelism = 2
trusted = {{TRUSTED}}

[bolts.stats]
wasm = "{{PLUGINS}}/order-stats.wasm"
input = "orders"
output = "results"
capabilities = ["state"]
trusted = {{TRUSTED}}
tick = "1s"
[bolts.stats.config]
lateness_ms = 2000

[sinks.out]
type = "file"
input = "results"
[sinks.out.config]
path = "{{DIR}}/results.jsonl"
`

// benchChild runs the topology until the source has read every line and
// the bolts and sink have drained, then prints a JSON result.
func benchChild(pdir string, trusted bool, stdout io.Writer) error {
	fs := newFlags("bench", "", "", io.Discard)
	dir := fs.String("dir", "", "")
	n := fs.Int("orders", 0, "")
	fs.String("child", "", "")
	fs.Bool("trusted", false, "")
	profile := fs.String("profile", "", "") // a path with %s for cpu or heap
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	work := filepath.Join(*dir, "run-"+filepath.Base(pdir))
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(*dir, "orders.log"), filepath.Join(work, "orders.log")); err != nil {
		return err
	}
	text := strings.NewReplacer("{{DIR}}", work, "{{PLUGINS}}", pdir, "{{TRUSTED}}", fmt.Sprint(trusted)).Replace(benchConfig)
	reg := registry.Builtin()
	if pdir == nativeRow {
		text = strings.NewReplacer(
			`wasm = "native/order-parse.wasm"`, `type = "native-order-parse"`,
			`wasm = "native/order-stats.wasm"`, `type = "native-order-stats"`,
			"trusted = "+fmt.Sprint(trusted)+"\n", "",
			"capabilities = [\"state\"]\n", "",
		).Replace(text)
		text = strings.Replace(text, "[bolts.stats.config]\nlateness_ms = 2000\n", "", 1)
		registerNative(reg)
	}
	fail := func(err error) error {
		b, _ := json.Marshal(benchResult{Error: err.Error()})
		fmt.Fprintln(stdout, string(b))
		return exitError{exitFailed, nil}
	}
	cfg, err := config.Parse("bench.toml", []byte(text), reg)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	log := newLogger("warn", os.Stderr)
	a, err := topology.Build(ctx, cfg, reg, topology.Options{Logger: log})
	if err != nil {
		return fail(err)
	}
	if *profile != "" {
		f, err := os.Create(fmt.Sprintf(*profile, "cpu"))
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	if err := a.Start(ctx); err != nil {
		return fail(err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	for {
		<-tick.C
		var read uint64
		for _, s := range a.Stats() {
			if s.Kind == "source" {
				read += s.EventsOut
			}
		}
		fmt.Fprintf(stdout, "progress %d\n", read)
		if read >= uint64(*n) {
			break
		}
	}
	tick.Stop()
	if *profile != "" {
		// The heap while the pipeline still holds its buffers and instances.
		if err := writeHeapProfile(fmt.Sprintf(*profile, "heap")); err != nil {
			return fail(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		return fail(err)
	}
	secs := time.Since(start).Seconds()
	pprof.StopCPUProfile() // a no-op without --profile
	b, _ := json.Marshal(benchResult{Events: int64(*n), Seconds: secs, CPU: cpuSeconds() - cpu0, PeakRSS: peakRSS()})
	fmt.Fprintln(stdout, string(b))
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func peakRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024
}

// nativeRow is the plugin directory name that selects the native row: both
// bolts as the native Go reference of internal/orders, registered as
// built-ins in the bench's own registry, to show the agent's ceiling
// without WASM.
const nativeRow = "native"

func registerNative(reg *registry.Registry) {
	empty := func() any { return &struct{}{} }
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(reg.Register(registry.Plugin{Kind: config.KindBolt, Type: "native-order-parse", NewConfig: empty,
		NewBolt: func(any, registry.Env) (pipeline.Bolt, error) { return nativeParse{}, nil }}))
	must(reg.Register(registry.Plugin{Kind: config.KindBolt, Type: "native-order-stats", NewConfig: empty, Stateful: true,
		NewBolt: func(_ any, env registry.Env) (pipeline.Bolt, error) {
			return &nativeStats{s: orders.Stats{LatenessMs: 2000}, st: env.State}, nil
		}}))
}

type nativeParse struct{}

func (nativeParse) Process(_ context.Context, in []byte, out *event.Builder) ([]pipeline.Reject, error) {
	rs, err := orders.Normalise(in, out)
	return pipelineRejects(rs), err
}
func (nativeParse) Close(context.Context) error { return nil }

type nativeStats struct {
	s  orders.Stats
	st pipeline.StateStore
}

func (n *nativeStats) Process(_ context.Context, in []byte, _ *event.Builder) ([]pipeline.Reject, error) {
	rs, err := n.s.Process(in, n.st)
	return pipelineRejects(rs), err
}
func (n *nativeStats) Tick(_ context.Context, now time.Time, out *event.Builder) error {
	return n.s.Tick(now, n.st, out)
}
func (n *nativeStats) Close(context.Context) error { return nil }

func pipelineRejects(rs []orders.Reject) []pipeline.Reject {
	out := make([]pipeline.Reject, len(rs))
	for i, r := range rs {
		out[i] = pipeline.Reject{Index: r.Index, Reason: r.Reason}
	}
	return out
}
