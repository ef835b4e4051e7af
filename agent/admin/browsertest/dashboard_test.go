// Package browsertest opens the admin dashboard of a real running agent in
// headless Chromium and checks what a person would see.
package browsertest

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/client"
	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/conf"
	"github.com/sluicehq/sluice/internal/orders"
)

// ScreenshotEnv names a file the dashboard screenshot is written to (the
// README's docs/img/dashboard.png); unset, it goes to the test's temp dir.
const ScreenshotEnv = "SLUICE_DASHBOARD_PNG"

const (
	totalOrders    = 24000
	malformedEvery = 500
	writeChunks    = 12 // the order log grows in this many appends, so rates show
)

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// dashboardState is what the page shows, read from its DOM.
type dashboardState struct {
	Bars       []float64 `json:"bars"` // revenue per minute, cents
	OrderLine  int       `json:"orderLine"`
	Categories []string  `json:"categories"`
	CatValues  []float64 `json:"catValues"`
	Cities     []string  `json:"cities"`
	CityValues []float64 `json:"cityValues"`
	SKUs       []string  `json:"skus"`
	SKUValues  []float64 `json:"skuValues"`
	Nodes      []string  `json:"nodes"`
	FailedNode int       `json:"failedNodes"`
	EdgeRates  []string  `json:"edgeRates"`
	Badge      string    `json:"badge"`
	Revenue    string    `json:"revenue"`
}

const readDOM = `JSON.stringify((() => {
  const all = (sel, f) => [...document.querySelectorAll(sel)].map(f);
  const line = document.querySelector('#minute-chart polyline');
  return {
    bars: all('#minute-chart rect.bar', e => +e.dataset.value),
    orderLine: line ? line.getAttribute('points').trim().split(/\s+/).length : 0,
    categories: all('#categories .row', e => e.dataset.name),
    catValues: all('#categories .row', e => +e.dataset.value),
    cities: all('#cities .row', e => e.dataset.name),
    cityValues: all('#cities .row', e => +e.dataset.value),
    skus: all('#skus .row', e => e.dataset.name),
    skuValues: all('#skus .row', e => +e.dataset.value),
    nodes: all('#topology [data-component]', e => e.dataset.component + '=' + e.querySelector('text')?.textContent),
    failedNodes: document.querySelectorAll('#topology .node.failed').length,
    edgeRates: all('#topology .edge-label', e => e.textContent),
    badge: document.getElementById('agent-state')?.textContent,
    revenue: document.getElementById('total-revenue')?.textContent,
  };
})())`

// TestDashboardInChromium runs the demo pipeline (tail → order-parse →
// order-stats → store, with the C WASM bolts built from source, as sluice
// demo does) behind a real admin server, opens the dashboard in headless
// Chromium, and waits until
// it shows exactly the ground truth of the orders written: revenue per
// minute, categories, cities, top SKUs, and every component of the
// topology, with live rates seen on its edges along the way. A tap on the
// parsed-orders channel runs meanwhile.
func TestDashboardInChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	root := repoRoot(t)
	demo := t.TempDir()
	plugins := filepath.Join(demo, "plugins")
	if _, err := plugintool.Build(ctx, filepath.Join(root, "wasm-examples", "order-parse", "c"), filepath.Join(plugins, "order-parse.wasm")); err != nil {
		t.Fatal(err)
	}
	if _, err := plugintool.Build(ctx, filepath.Join(root, "wasm-examples", "order-stats", "c"), filepath.Join(plugins, "order-stats.wasm")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_DEMO_DIR", demo)
	cfg, err := config.Parse("conf/agent.toml", conf.Demo, registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}

	// Orders over the five minutes that ended five minutes ago, so every
	// window closes at the bolt's first tick after its orders arrive.
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	gen := orders.NewGenerator(orders.GenConfig{Seed: 7, Start: start, Step: 5 * time.Minute / totalOrders, MalformedEvery: malformedEvery})
	truth := orders.GroundTruth(gen, 0, totalOrders, nil)
	wantMinutes, wantRevenue := truthByMinute(truth)
	logPath := filepath.Join(demo, "orders.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
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
		adapter.SetState(admin.StateDraining)
		stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
		defer stop()
		if err := agent.Stop(stopCtx); err != nil {
			t.Errorf("stop the agent: %v", err)
		}
	})

	srv, err := admin.New(adapter, admin.Config{Addr: "127.0.0.1:0", Interval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })

	// A tap on the parsed orders, open before they flow: the server has
	// answered (headers) before it starts the agent's tap, which positions
	// itself in milliseconds, while the orders take seconds to write.
	if err := adapter.RemoveStaleTaps(); err != nil {
		t.Fatal(err)
	}
	tapResp, err := http.Get("http://" + srv.Addr() + "/api/tap?channel=orders&sample=10&limit=20")
	if err != nil || tapResp.StatusCode != http.StatusOK {
		t.Fatalf("tap: %v %v", tapResp, err)
	}
	defer tapResp.Body.Close()
	type tapResult struct {
		events []admin.TapEvent
		end    admin.TapEnd
		err    error
	}
	tapped := make(chan tapResult, 1)
	go func() {
		var r tapResult
		r.err = client.ReadSSE(tapResp.Body, func(m client.Message) error {
			switch m.Event {
			case "event":
				var e admin.TapEvent
				if err := json.Unmarshal(m.Data, &e); err != nil {
					return err
				}
				r.events = append(r.events, e)
			case "end":
				return json.Unmarshal(m.Data, &r.end)
			}
			return nil
		})
		tapped <- r
	}()

	// The order log grows while the page watches.
	written := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			written <- err
			return
		}
		defer f.Close()
		tick := time.NewTicker(300 * time.Millisecond) // pacing the writer, not synchronising
		defer tick.Stop()
		per := uint64(totalOrders / writeChunks)
		for i := uint64(0); i < totalOrders; i += per {
			if err := gen.WriteLines(f, i, min(i+per, totalOrders)); err != nil {
				written <- err
				return
			}
			select {
			case <-ctx.Done():
				written <- ctx.Err()
				return
			case <-tick.C:
			}
		}
		written <- nil
	}()

	browser := startChromium(t, ctx, 1280, 1100)
	browser.navigate(t, "http://"+srv.Addr()+"/")

	wantNodes := []string{}
	for _, c := range topoagent.TopologyOf(cfg).Components {
		wantNodes = append(wantNodes, c.ID+"="+c.Name)
	}
	slices.Sort(wantNodes)

	var png []byte
	var last dashboardState
	sawRate := false
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			t.Fatalf("the dashboard did not show the ground truth in time; last seen: %+v\nwant %d minutes summing to %d cents\npage problems: %v",
				last, len(wantMinutes), wantRevenue, browser.pageProblems())
		case <-poll.C:
		}
		if err := browser.eval(readDOM, &last); err != nil {
			t.Fatal(err)
		}
		live := slices.ContainsFunc(last.EdgeRates, func(r string) bool { return r != "0.0/s" && r != "0/s" })
		sawRate = sawRate || live
		if png == nil && live && len(last.Bars) > 0 {
			png = browser.screenshot(t) // data flowing and charts drawn: the README's picture
		}
		done = sum(last.Bars) == float64(wantRevenue) && len(last.Bars) == len(wantMinutes)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	tap := <-tapped
	if tap.err != nil || len(tap.events) != 20 || tap.end.Sent != 20 {
		t.Errorf("tap of orders: %d events, end %+v, err %v", len(tap.events), tap.end, tap.err)
	}
	for _, e := range tap.events {
		var o struct {
			OrderID string `json:"order_id"`
			Price   any    `json:"price"`
		}
		if err := json.Unmarshal([]byte(e.Body), &o); err != nil || !strings.HasPrefix(o.OrderID, "o-") || o.Price == nil {
			t.Errorf("tapped event is not a parsed order: %q (%v)", e.Body, err)
			break
		}
	}
	if png == nil {
		png = browser.screenshot(t)
	}
	savePNG(t, png)

	// Charts: every minute non-zero and equal to the ground truth.
	for i, m := range wantMinutes {
		if last.Bars[i] != float64(m) || m == 0 {
			t.Errorf("minute %d: bar %v cents, want %d (non-zero)", i, last.Bars[i], m)
		}
	}
	if last.OrderLine != len(wantMinutes) {
		t.Errorf("orders line has %d points, want %d", last.OrderLine, len(wantMinutes))
	}
	checkBreakdown(t, "category", last.Categories, last.CatValues, truth, "rev:cat:", len(orders.DefaultCategories))
	checkBreakdown(t, "city", last.Cities, last.CityValues, truth, "rev:city:", len(orders.DefaultCities))
	wantTop := topSKUs(truth, 10)
	if len(last.SKUs) != 10 || !slices.Equal(last.SKUValues, wantTop) {
		t.Errorf("top SKUs %v %v, want units %v", last.SKUs, last.SKUValues, wantTop)
	}
	// Topology: every component listed, none failing, and rates were live.
	nodes := slices.Clone(last.Nodes)
	slices.Sort(nodes)
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("topology shows %v, want %v", nodes, wantNodes)
	}
	if last.FailedNode != 0 || last.Badge != "running" {
		t.Errorf("%d failed nodes, badge %q", last.FailedNode, last.Badge)
	}
	if !sawRate {
		t.Error("no edge of the topology ever showed a non-zero rate while orders flowed")
	}
	if p := browser.pageProblems(); len(p) > 0 {
		t.Errorf("the page logged errors: %v", p)
	}
	t.Logf("dashboard: %d minutes, revenue %s, %d nodes", len(last.Bars), last.Revenue, len(last.Nodes))
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// truthByMinute returns revenue per minute in minute order, and the total.
func truthByMinute(t *orders.Totals) ([]int64, int64) {
	var keys []string
	for k := range t.Hashes {
		if strings.HasPrefix(k, "rev:cat:") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []int64
	var total int64
	for _, k := range keys {
		var m int64
		for _, v := range t.Hashes[k] {
			m += v
		}
		out = append(out, m)
		total += m
	}
	return out, total
}

func checkBreakdown(t *testing.T, what string, names []string, values []float64, truth *orders.Totals, prefix string, want int) {
	t.Helper()
	byName := map[string]int64{}
	for k, h := range truth.Hashes {
		if strings.HasPrefix(k, prefix) {
			for name, v := range h {
				byName[name] += v
			}
		}
	}
	if len(names) != want || len(byName) != want {
		t.Errorf("%s breakdown shows %d rows (%v), ground truth has %d, want %d", what, len(names), names, len(byName), want)
		return
	}
	for i, name := range names {
		if values[i] != float64(byName[name]) || values[i] == 0 {
			t.Errorf("%s %s: %v cents, want %d", what, name, values[i], byName[name])
		}
	}
}

func topSKUs(truth *orders.Totals, n int) []float64 {
	var units []float64
	for _, v := range truth.ZSets["top:sku"] {
		units = append(units, float64(v))
	}
	slices.Sort(units)
	slices.Reverse(units)
	return units[:min(n, len(units))]
}

func savePNG(t *testing.T, png []byte) {
	t.Helper()
	path := os.Getenv(ScreenshotEnv)
	if path == "" {
		path = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot (%d bytes): %s", len(png), path)
}
