package browsertest

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
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
)

// brokenSinkConfig: a file sink whose directory is a regular file, so the
// sink fails at every (re)start while the source keeps filling its channel.
const brokenSinkConfig = `
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

// TestFailingComponentShows runs a real pipeline whose sink cannot start
// and checks that /healthz, /metrics and the dashboard (in Chromium) all
// say so: 503 naming the sink, its state metric, and its node in red.
func TestFailingComponentShows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocker"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.log"), []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("broken.toml", fmt.Appendf(nil, brokenSinkConfig, dir), registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	agent, err := topology.Build(ctx, cfg, registry.Builtin(), topology.Options{})
	if err != nil {
		t.Fatal(err)
	}
	adapter := topoagent.New(agent, cfg, topoagent.Options{})
	if err := agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	adapter.SetState(admin.StateRunning)
	t.Cleanup(func() {
		stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
		defer stop()
		_ = agent.Stop(stopCtx) // the sink never drains: a deadline error is expected
	})
	srv, err := admin.New(adapter, admin.Config{Addr: "127.0.0.1:0", Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	base := "http://" + srv.Addr()

	// /healthz turns 503 and names the sink and its error.
	var health struct {
		Status  string
		Reasons []string
	}
	until(t, ctx, "healthz reports the sink", func() bool {
		code := getJSON(t, base+"/healthz", &health)
		return code == http.StatusServiceUnavailable && len(health.Reasons) == 1 && strings.HasPrefix(health.Reasons[0], "sink out failed: ")
	})

	// /metrics: the sink's state, its restarts, and the three lines the
	// source wrote waiting in the channel.
	until(t, ctx, "metrics show the failure and the backlog", func() bool {
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
		return metric(fams, "sluice_component_state", "component", "out", "state", "failed") == 1 &&
			metric(fams, "sluice_component_state", "component", "in", "state", "running") == 1 &&
			metric(fams, "sluice_component_restarts_total", "component", "out") >= 1 &&
			metric(fams, "sluice_component_events_out_total", "component", "in") == 3 &&
			metric(fams, "sluice_channel_depth_events", "channel", "lines") == 3
	})

	// The dashboard: the sink's node red, the source's not, the error shown.
	browser := startChromium(t, ctx, 1000, 700)
	browser.navigate(t, base+"/")
	var page struct {
		Failed   []string `json:"failed"`
		Problems string   `json:"problems"`
		Badge    string   `json:"badge"`
	}
	until(t, ctx, "the dashboard shows the failed sink", func() bool {
		if err := browser.eval(`JSON.stringify({
			failed: [...document.querySelectorAll('#topology .node.failed')].map(e => e.dataset.component),
			problems: document.getElementById('problems')?.textContent,
			badge: document.getElementById('agent-state')?.textContent})`, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Failed) == 1 && page.Failed[0] == "sink/out" && strings.HasPrefix(page.Problems, "sink out failed: ") && page.Badge == "failed"
	})
	if p := browser.pageProblems(); len(p) > 0 {
		t.Errorf("the page logged errors: %v", p)
	}
}

// until polls cond until it holds or ctx ends (a failure naming what).
func until(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode
}

// metric returns the value of the first sample of name whose labels
// include the given name/value pairs, or -1.
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}
