package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/internal/orders"
)

// reloadConfig is tail → raw → order-parse (C, WASM) → parsed → file sink,
// plus EXTRA (more tables) and the admin API on an ephemeral port.
const reloadConfig = `
[agent]
data_dir = "DIR/data"
shutdown_timeout = "5s"
admin_addr = "127.0.0.1:0"

[channels.raw]
partitions = 2
[channels.parsed]

[sources.log]
type = "tail"
output = "raw"
config = { paths = ["DIR/in/*.log"], start_at = "beginning", poll_interval = "20ms" }

[bolts.parse]
wasm = "DIR/parse.wasm"
input = "raw"
output = "parsed"
parallelism = PAR

[sinks.out]
type = "file"
input = "parsed"
config = { path = "DIR/out.jsonl" }
EXTRA
`

// reloadHarness runs an agent in-process with every reload trigger on.
type reloadHarness struct {
	t    *testing.T
	dir  string
	path string
	url  string
	rl   *reloader
	log  *syncWriter
}

func (h *reloadHarness) text(par int, extra string) string {
	s := strings.ReplaceAll(reloadConfig, "DIR", h.dir)
	s = strings.Replace(s, "PAR", fmt.Sprint(par), 1)
	return strings.Replace(s, "EXTRA", extra, 1)
}

// waitCounts waits until the reloader counted applied and rejected reloads.
func (h *reloadHarness) waitCounts(applied, rejected int, what string) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, r := h.rl.counts()
		if a == applied && r == rejected {
			return
		}
		if a > applied || r > rejected || time.Now().After(deadline) {
			h.t.Fatalf("%s: %d applied, %d rejected; want %d, %d\nagent log:\n%s", what, a, r, applied, rejected, h.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus polls /api/status (a sample at most one admin interval old)
// until ok holds.
func (h *reloadHarness) waitStatus(what string, ok func(admin.Status) bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpDo(h.t, "GET", h.url+"api/status", "")
		var st admin.Status
		if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil {
			h.t.Fatalf("/api/status: %d %v %s", code, err, body)
		}
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("/api/status never showed %s: reload_error %q", what, st.ReloadError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reloadMetrics reads sluice_reloads_total from /metrics, parsed as
// Prometheus' text format, by result label.
func (h *reloadHarness) reloadMetrics() map[string]float64 {
	h.t.Helper()
	code, body := httpDo(h.t, "GET", h.url+"metrics", "")
	if code != http.StatusOK {
		h.t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		h.t.Fatalf("parse /metrics: %v", err)
	}
	got := map[string]float64{}
	if f := fams["sluice_reloads_total"]; f != nil {
		if f.GetType() != dto.MetricType_COUNTER {
			h.t.Fatalf("sluice_reloads_total is a %v, want a counter", f.GetType())
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "result" {
					got[l.GetValue()] = m.Counter.GetValue()
				}
			}
		}
	}
	return got
}

// writeRename replaces the config file the way editors and config managers
// do: write a temporary file, rename it over the config.
func (h *reloadHarness) writeRename(text string) {
	h.t.Helper()
	tmp := filepath.Join(h.dir, ".agent.toml.swp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		h.t.Fatal(err)
	}
}

// TestReloadTriggers drives every trigger of a running agent: an in-place
// write and a rename-replace of the config file, SIGHUP, POST /api/reload
// and a change of the running .wasm file. Valid configs apply as diffs,
// invalid ones are rejected with the error in /api/status, and the last
// good config is saved in the data directory.
func TestReloadTriggers(t *testing.T) {
	dir := t.TempDir()
	if _, err := plugintool.Build(context.Background(), "../../../wasm-examples/order-parse/c", filepath.Join(dir, "parse.wasm")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "in"), 0o755)
	g := orders.NewGenerator(orders.GenConfig{Seed: 1})
	if err := os.WriteFile(filepath.Join(dir, "in", "orders.log"), g.AppendLine(nil, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &reloadHarness{t: t, dir: dir, path: filepath.Join(dir, "agent.toml")}
	first := h.text(1, "")
	if err := os.WriteFile(h.path, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(h.path, registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan string, 1)
	gotRL := make(chan *reloader, 1)
	done := make(chan error, 1)
	logBuf := &syncWriter{}
	h.log = logBuf
	log := slog.New(slog.NewTextHandler(logBuf, nil))
	go func() {
		done <- runAgentFor(ctx, cfg, log, io.Discard, runOptions{Watch: true, ConfigText: []byte(first),
			OnRunning: func(u string) { running <- u }, OnReloader: func(r *reloader) { gotRL <- r }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	select {
	case h.url = <-running:
	case err := <-done:
		t.Fatalf("agent did not start: %v", err)
	}
	h.rl = <-gotRL

	// The first good config is saved at start.
	if b, _ := os.ReadFile(filepath.Join(dir, "data", lastGoodFile)); string(b) != first {
		t.Fatalf("last-good.toml after start:\n%s\nwant the config file", b)
	}

	// 1. In-place write: parallelism 1 → 2 and a second sink.
	second := h.text(2, "[sinks.copy]\ntype = \"file\"\ninput = \"parsed\"\nconfig = { path = \""+dir+"/copy.jsonl\" }\n")
	if err := os.WriteFile(h.path, []byte(second), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitCounts(1, 0, "in-place write")
	if got := h.rl.Current().Bolts["parse"].Parallelism; got != 2 {
		t.Errorf("parallelism after reload %d, want 2", got)
	}
	if _, ok := h.rl.Current().Sinks["copy"]; !ok {
		t.Error("the added sink is not in the running config")
	}

	// 2. Rename-replace with an unknown key: rejected, reported, old kept.
	h.writeRename(strings.Replace(second, "parallelism = 2", "parallelism = 2\nparalelism = 3", 1))
	h.waitCounts(1, 1, "rename-replace with an unknown key")
	h.waitStatus("reload_error naming the unknown key", func(st admin.Status) bool {
		return strings.Contains(st.ReloadError, "bolts.parse.paralelism: unknown key")
	})
	if h.rl.Current().Bolts["parse"].Parallelism != 2 {
		t.Error("a rejected config replaced the running one")
	}

	// 3. POST /api/reload of the same invalid file: 422 with the error.
	code, body := httpDo(t, "POST", h.url+"api/reload", "")
	if code != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte("unknown key")) {
		t.Errorf("POST /api/reload of an invalid file: %d %s, want 422 naming the problem", code, body)
	}
	h.waitCounts(1, 2, "POST /api/reload of an invalid file")

	// 4. Fixed by rename-replace (applied), then SIGHUP (applied, nothing
	// changes); the error is cleared.
	h.writeRename(second)
	h.waitCounts(2, 2, "rename-replace with a good config")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h.waitCounts(3, 2, "SIGHUP")
	h.waitStatus("no reload_error after a good reload", func(st admin.Status) bool { return st.ReloadError == "" })

	// 5. The running .wasm changes in place (a custom section appended:
	// other bytes, same behaviour): the stage restarts with it.
	wasmPath := filepath.Join(dir, "parse.wasm")
	wasm, _ := os.ReadFile(wasmPath)
	wasm = append(wasm, 0, 6, 4, 'n', 'o', 't', 'e', '!')
	f, err := os.OpenFile(wasmPath, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(wasm)
	f.Close()
	h.waitCounts(4, 2, "the .wasm file rewritten")
	if !strings.Contains(logBuf.String(), `trigger=wasm changes="changed=[parse]"`) {
		t.Errorf("log has no wasm-triggered reload restarting parse:\n%s", logBuf.String())
	}

	// 6. POST /api/reload of a good file: 200. The last good config is it.
	code, body = httpDo(t, "POST", h.url+"api/reload", "")
	if code != http.StatusOK {
		t.Errorf("POST /api/reload: %d %s, want 200", code, body)
	}
	h.waitCounts(5, 2, "POST /api/reload")
	if b, _ := os.ReadFile(filepath.Join(dir, "data", lastGoodFile)); string(b) != second {
		t.Errorf("last-good.toml is not the last applied config:\n%s", b)
	}

	// 7. ApplyBytes (remote config): an invalid text is refused under its
	// name; a good one applies and becomes the last good config, and the
	// file on disk stays as it was.
	if err := h.rl.ApplyBytes(context.Background(), "opamp", []byte("[agent\n")); err == nil || !strings.Contains(err.Error(), "opamp is not valid") {
		t.Errorf("ApplyBytes of a broken text: %v", err)
	}
	remote := h.text(1, "")
	if err := h.rl.ApplyBytes(context.Background(), "opamp", []byte(remote)); err != nil {
		t.Fatalf("ApplyBytes: %v", err)
	}
	h.waitCounts(6, 3, "ApplyBytes")
	if got := h.rl.Current().Bolts["parse"].Parallelism; got != 1 {
		t.Errorf("parallelism %d after ApplyBytes, want 1", got)
	}
	if meta, err := readLastGoodMeta(filepath.Join(dir, "data")); err != nil || meta.Source != "opamp" {
		t.Errorf("last good config's source %q (%v), want opamp", meta.Source, err)
	}
	if b, _ := os.ReadFile(h.path); string(b) != second {
		t.Error("ApplyBytes rewrote the config file")
	}

	// The counts, whatever the trigger, are in /api/status and counters on
	// /metrics.
	h.waitStatus("reloads_applied 6, reloads_rejected 3", func(st admin.Status) bool {
		return st.ReloadsApplied == 6 && st.ReloadsRejected == 3
	})
	if got := h.reloadMetrics(); got["applied"] != 6 || got["rejected"] != 3 || len(got) != 2 {
		t.Errorf("sluice_reloads_total by result %v, want applied 6, rejected 3", got)
	}

	// Events still flow end to end after all of it.
	appendFile(t, filepath.Join(dir, "in", "orders.log"), string(g.AppendLine(nil, 1)))
	last := []byte(`"` + g.Order(1).OrderID + `"`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
		if bytes.Contains(b, last) {
			if n := bytes.Count(b, []byte(`"order_id"`)); n != 2 {
				t.Errorf("file sink has %d orders, want 2:\n%s", n, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an order written after the reloads never reached the sink:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLastGoodResume saves a config from one working directory and loads
// it back with its relative paths resolved there.
func TestLastGoodResume(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	data := filepath.Join(dir, "data")
	text := []byte("[agent]\ndata_dir = \"data\"\n[channels.raw]\n[sources.log]\ntype = \"tail\"\noutput = \"raw\"\nconfig = { paths = [\"in/*.log\"] }\n[sinks.out]\ntype = \"file\"\ninput = \"raw\"\nconfig = { path = \"out.txt\" }\n")
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	if err := saveLastGood("data", "agent.toml", text); err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(wd); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := loadLastGood(filepath.Join(dir, "nothing")); err == nil || !strings.Contains(err.Error(), "no last good config in") {
		t.Errorf("load from an empty data dir: %v", err)
	}
	cfg, got, meta, err := loadLastGood(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(text) || meta.Dir != dir {
		t.Errorf("loaded %q from dir %q, want the saved text from %q", got, meta.Dir, dir)
	}
	if now, _ := os.Getwd(); now != dir {
		t.Errorf("working directory %s after resume, want %s (where relative paths resolve)", now, dir)
	}
	if cfg.Agent.DataDir != "data" || cfg.Sinks["out"] == nil {
		t.Errorf("resumed config %+v", cfg.Agent)
	}
	// Unparseable meta is an error naming the file, not a silent fallback.
	os.WriteFile(filepath.Join(data, lastGoodMeta), []byte("{"), 0o644)
	if _, _, _, err := loadLastGood(data); err == nil || !strings.Contains(err.Error(), lastGoodMeta) {
		t.Errorf("load with a broken meta file: %v", err)
	}
}

// TestRunResumeUsage checks the flag combinations `sluice run` refuses.
func TestRunResumeUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"--data-dir", "x"}} {
		err := cmdRun(args, io.Discard, io.Discard)
		if _, ok := err.(usageError); !ok {
			t.Errorf("run %v: %v, want a usage error", args, err)
		}
	}
	err := cmdRun([]string{"--resume", "--data-dir", t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no last good config") {
		t.Errorf("run --resume with an empty data dir: %v", err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// syncWriter collects log output written from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// FuzzReadLastGoodMeta feeds DATA/last-good.meta.json arbitrary bytes: it
// is either read back whole or refused with an error naming the file.
func FuzzReadLastGoodMeta(f *testing.F) {
	f.Add([]byte(`{"source":"/etc/sluice/agent.toml","dir":"/","sha256":"ab","saved":"2026-11-25T12:00:00Z"}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`{"saved":"yesterday"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, lastGoodMeta), b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := readLastGoodMeta(dir)
		if err != nil {
			if !strings.Contains(err.Error(), lastGoodMeta) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back lastGood
		if err := json.Unmarshal(again, &back); err != nil || back.Source != m.Source || back.Dir != m.Dir || !back.Saved.Equal(m.Saved) {
			t.Fatalf("meta does not survive a round trip: %+v → %+v (%v)", m, back, err)
		}
	})
}

// TestReloadEmptyFile refuses an empty config file (an in-place write caught
// between truncate and write) instead of removing every stage.
func TestReloadEmptyFile(t *testing.T) {
	r := &reloader{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err := r.apply(context.Background(), "file", "agent.toml", []byte(" \n"))
	if err == nil || !strings.Contains(err.Error(), "agent.toml is empty") {
		t.Fatalf("err = %v, want the empty file refused", err)
	}
	if _, rejected := r.counts(); rejected != 1 {
		t.Errorf("%d rejected reloads counted, want 1", rejected)
	}
}
