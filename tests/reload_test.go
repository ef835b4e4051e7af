package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/internal/orders"
)

// reloadTestConfig is tail → raw (4 partitions) → order-parse (WASM, PAR
// instances) → orders → file sink "out", and with COPY a second file sink.
const reloadTestConfig = `
[agent]
data_dir = "DIR/data"
shutdown_timeout = "30s"
admin_addr = "127.0.0.1:0"

[channels.raw]
partitions = PARTS
segment_bytes = "8MiB"
max_bytes = "256MiB"

[channels.orders]
segment_bytes = "8MiB"
max_bytes = "OMAX"

[sources.log]
type = "tail"
output = "raw"
batch_size = 2048
[sources.log.config]
paths = ["DIR/logs/orders.log*"]
poll_interval = "20ms"
rotate_wait = "60s"

[bolts.parse]
wasm = "WASM"
input = "raw"
output = "orders"
parallelism = PAR
EXTRA
[sinks.out]
type = "file"
input = "orders"
[sinks.out.config]
path = "DIR/out/orders.jsonl"
COPY
`

const reloadCopySink = `
[sinks.copy]
type = "file"
input = "orders"
[sinks.copy.config]
path = "DIR/copy/orders.jsonl"
`

// reloadState is one version of the config file.
type reloadState struct {
	par   int
	wasm  string // file name under DIR
	copy  bool
	parts int    // raw's partitions (4; anything else is refused)
	omax  string // max_bytes of the orders channel (a change reopens it)
	extra string // text added to [bolts.parse] (unknown keys)
	bad   string // replaces the whole text (syntax error)
}

func (s reloadState) text(dir string) string {
	if s.bad != "" {
		return s.bad
	}
	copySink := ""
	if s.copy {
		copySink = reloadCopySink
	}
	r := strings.NewReplacer("PARTS", fmt.Sprint(s.parts), "OMAX", s.omax, "PAR", fmt.Sprint(s.par), "WASM", "DIR/"+s.wasm,
		"EXTRA", s.extra, "COPY", copySink)
	return strings.ReplaceAll(r.Replace(reloadTestConfig), "DIR", dir)
}

// reloadStep is one change: the new config (nil: unchanged) or a change of
// the running .wasm file, the trigger, and whether it must be rejected.
type reloadStep struct {
	how     string // "write", "rename", "sighup", "post", "wasm-write", "wasm-rename"
	state   *reloadState
	wasmSrc string // for wasm-*: the module whose bytes replace DIR/parse.wasm
	reject  string // a piece of the expected error; "" when it must apply
	changes string // topology.Changes.String() of the reload when it applies
}

// TestReloadUnderLoad changes a running agent's config 20 times while
// 1,000,000 orders flow through tail → order-parse (WASM) → file sink: the
// bolt's parallelism (1, 2, 4, 3 …, its input has 4 partitions), its .wasm
// (the Go and the C build of order-parse, same output; by config path, by
// rename over the file and by rewriting it in place), a second file sink
// added and removed, the orders channel's max_bytes (reopened under its
// stages), and invalid configs in between (syntax error, unknown
// key, missing .wasm, partition change). Triggers: the config file written
// in place and replaced by rename, SIGHUP, POST /api/reload, the .wasm file
// changing. Every invalid config is rejected while the old one keeps
// running (reload_error in /api/status, orders keep arriving); at the end
// the main sink holds every order exactly once and the only dead letters
// are the malformed lines the generator injected.
func TestReloadUnderLoad(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	ctx := context.Background()
	for src, out := range map[string]string{"../wasm-examples/order-parse": "go.wasm", "../wasm-examples/order-parse/c": "c.wasm"} {
		if _, err := plugintool.Build(ctx, src, filepath.Join(dir, out)); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, filepath.Join(dir, "go.wasm"), filepath.Join(dir, "parse.wasm"))
	for _, d := range []string{"logs", "out", "copy"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const total = 1_000_000
	g := orders.NewGenerator(orders.GenConfig{Seed: 7, Step: time.Millisecond, MalformedEvery: 5_000})
	cfgPath := filepath.Join(dir, "agent.toml")
	cur := reloadState{par: 1, wasm: "parse.wasm", parts: 4, omax: "256MiB"}
	if err := os.WriteFile(cfgPath, []byte(cur.text(dir)), 0o644); err != nil {
		t.Fatal(err)
	}

	// ok and no build the steps in order (cur follows the good ones).
	ok := func(how, changes string, f func(*reloadState)) func() reloadStep {
		return func() reloadStep { s := cur; f(&s); cur = s; return reloadStep{how: how, state: &s, changes: changes} }
	}
	no := func(how, reject string, f func(*reloadState)) func() reloadStep {
		return func() reloadStep { s := cur; f(&s); return reloadStep{how: how, state: &s, reject: reject} }
	}
	wasmStep := func(how, src string) func() reloadStep {
		return func() reloadStep { return reloadStep{how: how, wasmSrc: src, changes: "changed=[parse]"} }
	}
	steps := []func() reloadStep{
		ok("write", "changed=[parse]", func(s *reloadState) { s.par = 2 }),
		ok("rename", "added=[copy]", func(s *reloadState) { s.copy = true }),
		no("write", "is not valid", func(s *reloadState) { s.bad = "[agent\ndata_dir = 1\n" }),
		ok("sighup", "changed=[parse]", func(s *reloadState) { s.par = 4 }),
		ok("post", "changed=[parse]", func(s *reloadState) { s.wasm = "c.wasm" }),
		no("rename", "bolts.parse.instances: unknown key", func(s *reloadState) { s.extra = "instances = 2\n" }),
		ok("write", "removed=[copy] changed=[parse]", func(s *reloadState) { s.copy = false; s.wasm = "parse.wasm" }),
		wasmStep("wasm-rename", "c.wasm"),
		no("sighup", `module "`+dir+`/missing.wasm" does not exist`, func(s *reloadState) { s.wasm = "missing.wasm" }),
		ok("post", "changed=[parse]", func(s *reloadState) { s.par = 1 }),
		ok("write", "added=[copy]", func(s *reloadState) { s.copy = true }),
		no("rename", "partitions of a running channel cannot change (4 → 8)", func(s *reloadState) { s.parts = 8; s.par = 8 }),
		ok("sighup", "changed=[parse]", func(s *reloadState) { s.par = 3; s.wasm = "go.wasm" }),
		ok("post", "removed=[copy]", func(s *reloadState) { s.copy = false }),
		no("write", "unknown key", func(s *reloadState) { s.extra = "paralelism = 2\n" }),
		ok("rename", "changed=[out parse] reopened_channels=[orders]", func(s *reloadState) { s.wasm = "parse.wasm"; s.omax = "512MiB" }),
		wasmStep("wasm-write", "go.wasm"),
		ok("sighup", "added=[copy] changed=[parse]", func(s *reloadState) { s.par = 4; s.copy = true }),
		no("post", "is not valid", func(s *reloadState) { s.bad = "[agent]\nshutdown_timeout = \"soon\"\n" }),
		ok("write", "removed=[copy] changed=[parse]", func(s *reloadState) { s.par = 2; s.copy = false }),
	}

	a := startAgent(t, bin, cfgPath, filepath.Join(dir, "agent.log"))
	defer func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			<-a.done
			a.cmd.Wait()
		}
	}()
	select {
	case <-a.started:
	case <-a.done:
		t.Fatalf("agent did not start:\n%s", a.log)
	}
	adminURL := "http://" + regexp.MustCompile(`msg="admin server listening" addr=(\S+)`).FindStringSubmatch(a.log.String())[1] + "/"

	// The log is written in len(steps)+1 chunks; each step happens while
	// the chunk before it flows, and must let it through.
	logw := &orderLogWriter{t: t, dir: dir, g: g}
	chunk := total / (len(steps) + 1)
	sink := &lineCounter{dir: filepath.Join(dir, "out")}
	// Outcomes from the agent's log, counted by "applied CHANGES" and
	// "rejected" (whatever the trigger), and by trigger. A step expects one
	// more of its outcome and one more reload by its trigger: after SIGHUP
	// or POST the watcher sees the file it read unchanged and skips it,
	// unless it happened to read the file first (then SIGHUP or POST
	// applies "nothing" and the watcher's reload has the step's changes).
	appliedLine := regexp.MustCompile(`msg="reload applied" trigger=(\w+) changes=(?:"([^"]*)"|(\S+))`)
	rejectedLine := regexp.MustCompile(`msg="reload rejected[^"]*" trigger=(\w+)`)
	counts := func() map[string]int {
		m := map[string]int{}
		log := a.log.String()
		for _, mm := range appliedLine.FindAllStringSubmatch(log, -1) {
			m["applied "+mm[2]+mm[3]]++
			m[mm[1]]++
		}
		for _, mm := range rejectedLine.FindAllStringSubmatch(log, -1) {
			m["rejected"]++
			m[mm[1]]++
		}
		return m
	}
	want := map[string]int{}
	applied, rejected, underLoad := 0, 0, 0
	for i, mk := range steps {
		// The chunk is written over about a second while the reload
		// happens: it is validated and applied with orders in flight.
		wrote := make(chan struct{})
		go func() { defer close(wrote); logw.write(uint64(i*chunk), uint64((i+1)*chunk), 40*time.Millisecond) }()
		step := mk()
		outcome := "applied " + step.changes
		if step.reject != "" {
			outcome = "rejected"
		}
		want[outcome]++
		if step.state != nil {
			text := step.state.text(dir)
			switch step.how {
			case "rename", "sighup", "post":
				// sighup and post: written by rename too; the watcher
				// applies the file once more ~200ms later.
				writeRename(t, cfgPath, text)
			default:
				if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		switch step.how {
		case "write", "rename":
			want["file"]++
		case "sighup":
			if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			want["sighup"]++
		case "post":
			code, body := post(t, adminURL+"api/reload")
			if wantCode := map[bool]int{true: 200, false: 422}[step.reject == ""]; code != wantCode || !strings.Contains(body, step.reject) {
				t.Fatalf("step %d: POST /api/reload answered %d %s, want %d with %q", i+1, code, body, wantCode, step.reject)
			}
			want["api"]++
		case "wasm-write":
			b, err := os.ReadFile(filepath.Join(dir, step.wasmSrc))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "parse.wasm"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			want["wasm"]++
		case "wasm-rename":
			copyFile(t, filepath.Join(dir, step.wasmSrc), filepath.Join(dir, ".parse.wasm.tmp"))
			if err := os.Rename(filepath.Join(dir, ".parse.wasm.tmp"), filepath.Join(dir, "parse.wasm")); err != nil {
				t.Fatal(err)
			}
			want["wasm"]++
		}
		waitReload(t, a, fmt.Sprintf("step %d (%s): reload log lines %v", i+1, step.how, want), func() bool {
			got := counts()
			for k, n := range want {
				if got[k] < n {
					return false
				}
			}
			return true
		})
		if step.reject != "" {
			rejected++
			waitReload(t, a, fmt.Sprintf("step %d: reload_error naming %q in /api/status", i+1, step.reject), func() bool {
				return strings.Contains(reloadError(t, adminURL), step.reject)
			})
		} else {
			applied++
		}
		valid := (i+1)*chunk - int(g.MalformedCount(uint64((i+1)*chunk)))
		if sink.count() < valid {
			underLoad++ // the reload's outcome came before its chunk had drained
		}
		<-wrote
		// Orders keep flowing under the running config: the chunk written
		// before this step reaches the sink (malformed lines excepted).
		waitReload(t, a, fmt.Sprintf("step %d: %d orders in the sink", i+1, valid), func() bool { return sink.count() >= valid })
		t.Logf("step %2d %-11s %s", i+1, step.how, outcome)
	}
	logw.write(uint64(len(steps)*chunk), total, 0)
	logw.close()
	valid := total - int(g.MalformedCount(total))
	waitReload(t, a, fmt.Sprintf("all %d valid orders in the sink", valid), func() bool { return sink.count() >= valid })
	// The last reload was good: /api/status (a sample at most one admin
	// interval old) clears the error.
	waitReload(t, a, "no reload_error after the last good reload", func() bool { return reloadError(t, adminURL) == "" })
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("agent did not stop cleanly: %v\n%s", err, a.log)
	}

	count := map[string]int{}
	for _, id := range readIDs(t, dir) {
		count[id]++
	}
	tally := tallyOnce(count, func(yield func(string) bool) {
		for i := uint64(0); i < total; i++ {
			if !g.Malformed(i) && !yield(g.Order(i).OrderID) {
				return
			}
		}
	})
	lost, dup := tally.lost, tally.dup
	c := counts()
	nApplied, nRejected := c["file"]+c["sighup"]+c["api"]+c["wasm"]-c["rejected"], c["rejected"]
	var took []time.Duration
	for _, m := range regexp.MustCompile(`msg="reload applied" trigger=\w+ changes=("[^"]*"|\S+) took=(\S+)`).FindAllStringSubmatch(a.log.String(), -1) {
		if d, err := time.ParseDuration(m[2]); err == nil && m[1] != "nothing" {
			took = append(took, d)
		}
	}
	slices.Sort(took)
	if len(took) > 0 {
		t.Logf("validate+apply of the %d reloads that changed something: median %v, max %v", len(took), took[len(took)/2], took[len(took)-1])
	}
	t.Logf("reload under load: %d orders (%d malformed), %d config changes (%d applied, %d rejected; %d of them decided while their chunk was still flowing); the agent logged %d reloads applied, %d rejected; lost %d, duplicated %d, unexpected %d; %s",
		total, g.MalformedCount(total), len(steps), applied, rejected, underLoad, nApplied, nRejected, lost, dup, len(count), time.Since(start).Round(time.Second))
	if lost != 0 || dup != 0 || len(count) != 0 {
		t.Fatalf("lost %d, duplicated %d, unexpected %d (%v)", lost, dup, len(count), tally.examples)
	}
	// Dead letters: exactly the malformed lines, in parse's channel; none
	// from the sinks.
	for stage, wantDead := range map[string]int{"parse": int(g.MalformedCount(total)), "out": 0, "copy": 0} {
		if got := dlqCount(t, filepath.Join(dir, "data"), stage); got != wantDead {
			t.Errorf("%s dead-lettered %d events, want %d", stage, got, wantDead)
		}
	}
}

// orderLogWriter appends lines of g to DIR/logs/orders.log, rotating it
// (rename + create) every 200,000 lines.
type orderLogWriter struct {
	t   *testing.T
	dir string
	g   *orders.Generator
	f   *os.File
	buf []byte
}

// write appends lines [from, to) in pieces of 2,500, pausing between them.
func (w *orderLogWriter) write(from, to uint64, pause time.Duration) {
	path := filepath.Join(w.dir, "logs", "orders.log")
	flush := func() {
		if _, err := w.f.Write(w.buf); err != nil {
			w.t.Fatal(err)
		}
		w.buf = w.buf[:0]
	}
	for i := from; i < to; i++ {
		if w.f == nil || (i%200_000 == 0 && i > 0) {
			if w.f != nil {
				flush()
				w.f.Close()
				if err := os.Rename(path, fmt.Sprintf("%s.%02d", path, i/200_000)); err != nil {
					w.t.Fatal(err)
				}
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				w.t.Fatal(err)
			}
			w.f = f
		}
		w.buf = w.g.AppendLine(w.buf, i)
		if (i+1)%2500 == 0 {
			flush()
			time.Sleep(pause) // pacing the writer, not synchronisation
		}
	}
	flush()
}

func (w *orderLogWriter) close() {
	if w.f != nil {
		w.f.Close()
	}
}

// lineCounter counts the lines of the file sink's files incrementally,
// following each file by inode (the sink rotates by renaming).
type lineCounter struct {
	dir  string
	seen map[uint64]int64 // bytes counted, by inode
	n    int
}

func (c *lineCounter) count() int {
	if c.seen == nil {
		c.seen = map[uint64]int64{}
	}
	files, _ := filepath.Glob(filepath.Join(c.dir, "orders.jsonl*"))
	for _, f := range files {
		if strings.HasSuffix(f, ".fence") {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		fi, err := fh.Stat()
		if err != nil {
			fh.Close()
			continue
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		if _, err := fh.Seek(c.seen[ino], io.SeekStart); err == nil {
			b, _ := io.ReadAll(fh)
			// Count whole lines only; a partly written one is read again.
			if k := bytes.LastIndexByte(b, '\n'); k >= 0 {
				c.n += bytes.Count(b[:k+1], []byte{'\n'})
				c.seen[ino] += int64(k + 1)
			}
		}
		fh.Close()
	}
	return c.n
}

// waitReload polls cond until it holds; it fails the test when the agent
// exits or after two minutes.
func waitReload(t *testing.T, a *agentProcess, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		select {
		case <-a.done:
			t.Fatalf("agent exited while waiting for %s:\n%s", what, a.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; agent log tail:\n%s", what, tail(a.log.String(), 40))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reloadError returns /api/status's reload_error.
func reloadError(t *testing.T, adminURL string) string {
	t.Helper()
	resp, err := http.Get(adminURL + "api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		ReloadError string `json:"reload_error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.ReloadError
}

// dlqCount counts the events in stage's dead-letter channel under data
// (the agent has stopped).
func dlqCount(t *testing.T, data, stage string) int {
	t.Helper()
	if _, err := os.Stat(topology.ChannelDir(data, topology.DeadLetterName(stage))); os.IsNotExist(err) {
		return 0
	}
	dlq, err := topology.OpenDeadLetter(data, stage, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	r, err := dlq.Reader("reload-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		rec, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return n
		}
		event.Iterate(rec.Batch, func(int, *event.Event) error { n++; return nil })
	}
}

// TestRunResume starts `sluice run --resume` from the last good config:
// with -c FILE when FILE has become invalid (and FILE, once fixed, is
// reloaded), and with --data-dir alone.
func TestRunResume(t *testing.T) {
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	os.MkdirAll(filepath.Join(dir, "in"), 0o755)
	os.WriteFile(filepath.Join(dir, "in", "a.log"), []byte("one\n"), 0o644)
	good := strings.ReplaceAll(`
[agent]
data_dir = "DIR/data"
admin_addr = "off"
[channels.raw]
[sources.log]
type = "tail"
output = "raw"
config = { paths = ["DIR/in/*.log"], start_at = "beginning", poll_interval = "20ms" }
[sinks.out]
type = "file"
input = "raw"
config = { path = "DIR/out.txt" }
`, "DIR", dir)
	cfgPath := filepath.Join(dir, "agent.toml")
	os.WriteFile(cfgPath, []byte(good), 0o644)

	run := func(what string, args ...string) *agentProcess {
		t.Helper()
		a := startProcess(t, bin, procOptions{}, append([]string{"run"}, args...)...)
		waitReload(t, a, what+": agent started", func() bool { return strings.Contains(a.log.String(), `msg="agent started"`) })
		return a
	}
	stop := func(a *agentProcess) {
		t.Helper()
		a.cmd.Process.Signal(syscall.SIGTERM)
		<-a.done
		if err := a.cmd.Wait(); err != nil {
			t.Fatalf("agent did not stop cleanly: %v\n%s", err, a.log)
		}
	}

	stop(run("first start", "-c", cfgPath))
	os.WriteFile(cfgPath, []byte(strings.Replace(good, "[sinks.out]", "[sinks.out]\nbogus = 1", 1)), 0o644)
	a := run("resume with an invalid FILE", "--resume", "-c", cfgPath)
	if !strings.Contains(a.log.String(), "is not valid: resuming from the last good config in "+dir+"/data") {
		t.Errorf("no resume notice:\n%s", a.log)
	}
	// FILE is still the file reloads read: fixing it applies it.
	os.WriteFile(cfgPath, []byte(strings.Replace(good, `path = "`+dir+`/out.txt"`, `path = "`+dir+`/out2.txt"`, 1)), 0o644)
	waitReload(t, a, "the fixed FILE reloaded", func() bool {
		return strings.Contains(a.log.String(), `msg="reload applied" trigger=file changes="changed=[out]"`)
	})
	stop(a)
	last, err := os.ReadFile(filepath.Join(dir, "data", "last-good.toml"))
	if err != nil || !strings.Contains(string(last), "out2.txt") {
		t.Fatalf("last-good.toml is not the fixed file (%v):\n%s", err, last)
	}
	// Without -c, from the data dir: the last good config runs (the sink
	// writes out2.txt, resuming where the sink stopped).
	a = run("resume from the data dir", "--resume", "--data-dir", filepath.Join(dir, "data"))
	f, _ := os.OpenFile(filepath.Join(dir, "in", "a.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("two\n")
	f.Close()
	waitReload(t, a, "the new line in out2.txt", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "out2.txt"))
		return strings.Contains(string(b), "two")
	})
	stop(a)
	b1, _ := os.ReadFile(filepath.Join(dir, "out.txt"))
	b2, _ := os.ReadFile(filepath.Join(dir, "out2.txt"))
	if string(b1) != "one\n" || string(b2) != "two\n" {
		t.Errorf("out.txt %q, out2.txt %q: want each line once, in the file of the config running when it came", b1, b2)
	}
}
