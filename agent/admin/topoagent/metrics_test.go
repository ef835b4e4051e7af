package topoagent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/agent/wasmhost/wasmbuild"
)

// echoConfig: tail → raw → the WASM echo bolt (the wasmhost test plugin,
// which counts its calls through the metrics capability) → out → file.
const echoConfig = `
[agent]
data_dir = "%[1]s/data"
[channels.raw]
[channels.out]
[sources.in]
type = "tail"
output = "raw"
[sources.in.config]
paths = ["%[1]s/in.log"]
start_at = "beginning"
poll_interval = "20ms"
[bolts.echo]
wasm = "%[1]s/echo.wasm"
input = "raw"
output = "out"
capabilities = ["metrics"]
[sinks.file]
type = "file"
input = "out"
[sinks.file.config]
path = "%[1]s/out.log"
`

// TestMetricsOfARealTopology builds a real topology with a WASM bolt, runs
// traffic through it and reads /metrics with Prometheus' own text parser:
// bytes, batch latency, WASM memory, guest time and the plugin's counter
// are all non-zero, and /healthz follows the agent's lifecycle.
func TestMetricsOfARealTopology(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	wasm := wasmbuild.MustC(t, wasmbuild.Options{Target: wasmbuild.Freestanding}, filepath.Join("..", "..", "wasmhost", "testdata", "echo.c"))
	if err := os.WriteFile(filepath.Join(dir, "echo.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	const lines = 300
	var log strings.Builder
	for i := range lines {
		fmt.Fprintf(&log, "line %d\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.log"), []byte(log.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	topo, adapter, base := serveTopology(t, ctx, "echo.toml", fmt.Sprintf(echoConfig, dir), topology.Options{})

	if code, reasons := health(t, base); code != http.StatusServiceUnavailable || !strings.Contains(reasons, "agent is starting") {
		t.Fatalf("healthz before start: %d %s, want 503 naming the start", code, reasons)
	}
	if err := topo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	adapter.SetState(admin.StateRunning)

	var fams map[string]*dto.MetricFamily
	for {
		fams = scrape(t, base)
		if value(sample(fams, "sluice_component_events_in_total", "file")) == lines {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the file sink never read %d events; /metrics:\n%v", lines, fams)
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, c := range []string{"in", "echo", "file"} {
		for _, name := range []string{"sluice_component_bytes_in_total", "sluice_component_bytes_out_total"} {
			if v := value(sample(fams, name, c)); v <= 0 {
				t.Errorf("%s{component=%q} = %v, want > 0", name, c, v)
			}
		}
		h := sample(fams, "sluice_component_batch_latency_seconds", c).GetHistogram()
		if h.GetSampleCount() == 0 || h.GetSampleSum() <= 0 || len(h.GetBucket()) == 0 {
			t.Errorf("batch latency of %s: %d batches, %v s, %d buckets; want some of each", c, h.GetSampleCount(), h.GetSampleSum(), len(h.GetBucket()))
		}
		if v := value(sample(fams, "sluice_component_state", c, "state", "running")); v != 1 {
			t.Errorf("%s is not running: state metric %v", c, v)
		}
	}
	if v := value(sample(fams, "sluice_plugin_memory_bytes", "echo")); v < 64<<10 {
		t.Errorf("echo's WASM memory %v bytes, want at least a page", v)
	}
	if v := value(sample(fams, "sluice_plugin_guest_seconds_total", "echo")); v <= 0 {
		t.Errorf("echo's guest time %v s, want > 0", v)
	}
	if v := value(sample(fams, "sluice_plugin_counter", "echo", "name", "calls")); v <= 0 {
		t.Errorf("echo's calls counter %v, want > 0", v)
	}
	if code, reasons := health(t, base); code != http.StatusOK {
		t.Fatalf("healthz while running: %d %s", code, reasons)
	}
	adapter.SetState(admin.StateDraining)
	if code, reasons := health(t, base); code != http.StatusServiceUnavailable || !strings.Contains(reasons, "agent is draining") {
		t.Fatalf("healthz while draining: %d %s, want 503 naming the drain", code, reasons)
	}
}

// serveTopology builds the topology of the config text (not started) and
// an admin server over it on a loopback port; both stop when the test ends.
// base is the server's http:// address.
func serveTopology(t *testing.T, ctx context.Context, name, text string, opts topology.Options) (*topology.Agent, *topoagent.Agent, string) {
	t.Helper()
	cfg, err := config.Parse(name, []byte(text), registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Build(ctx, cfg, registry.Builtin(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Stop(context.Background()) })
	adapter := topoagent.New(topo, cfg, topoagent.Options{})
	srv, err := admin.New(adapter, admin.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	return topo, adapter, "http://" + srv.Addr()
}

func health(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Reasons []string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.Join(body.Reasons, "; ")
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the sample of family name for component whose labels
// also include the given name/value pairs, or nil.
func sample(fams map[string]*dto.MetricFamily, name, component string, labels ...string) *dto.Metric {
	labels = append([]string{"component", component}, labels...)
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, -1 for a missing sample.
func value(m *dto.Metric) float64 {
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

// TestFailedFollowsFailing: a sink that cannot open its file is failed
// (and /healthz 503 names it) while the pipeline reports it failing, and
// running again (200) as soon as it has written, with no grace period.
func TestFailedFollowsFailing(t *testing.T) {
	// Well under the 45 s grace the adapter used to give a restarted stage.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, []byte("a file where the sink wants a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.log"), []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const cfgText = `
[agent]
data_dir = "%[1]s/data"
[channels.lines]
[sources.in]
type = "tail"
output = "lines"
[sources.in.config]
paths = ["%[1]s/in.log"]
start_at = "beginning"
poll_interval = "20ms"
[sinks.out]
type = "file"
input = "lines"
[sinks.out.config]
path = "%[1]s/blocker/out.log"
`
	// A short maximum backoff, so that the fixed sink restarts soon.
	topo, adapter, base := serveTopology(t, ctx, "broken.toml", fmt.Sprintf(cfgText, dir),
		topology.Options{Pipeline: pipeline.Spec{MaxBackoff: 200 * time.Millisecond}})
	if err := topo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	adapter.SetState(admin.StateRunning)

	stateOf := func(name string) admin.State {
		for _, c := range adapter.Status().Components {
			if c.Name == name {
				return c.State
			}
		}
		return ""
	}
	waitUntil(t, ctx, "the sink is failed", func() bool { return stateOf("out") == admin.StateFailed })
	if code, reasons := health(t, base); code != http.StatusServiceUnavailable || !strings.HasPrefix(reasons, "sink out failed: ") {
		t.Fatalf("healthz with the sink failing: %d %q", code, reasons)
	}
	if s := stateOf("in"); s != admin.StateRunning {
		t.Fatalf("source state %s while only the sink fails", s)
	}

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(blocker, 0o755); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "the sink runs again", func() bool { return stateOf("out") == admin.StateRunning })
	if code, reasons := health(t, base); code != http.StatusOK {
		t.Fatalf("healthz after the sink recovered: %d %q", code, reasons)
	}
	if b, err := os.ReadFile(filepath.Join(blocker, "out.log")); err != nil || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("sink output %q, %v; want the 3 lines", b, err)
	}
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}
