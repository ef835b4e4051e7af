package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/client"
	"github.com/sluicehq/sluice/agent/event"
)

func newTestServer(t *testing.T, a admin.Agent, cfg admin.Config) *httptest.Server {
	t.Helper()
	s, err := admin.New(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		ok          bool
	}{
		{"", "", true}, // the default, loopback
		{"127.0.0.1:8686", "", true},
		{"localhost:0", "", true},
		{"[::1]:8686", "", true},
		{"0.0.0.0:8686", "", false},
		{":8686", "", false}, // every interface
		{"192.168.1.10:8686", "", false},
		{"[::]:8686", "", false},
		{"0.0.0.0:8686", "s3cret", true},
		{"no-port", "", false},
	} {
		err := admin.Config{Addr: tc.addr, Token: tc.token}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(addr %q, token %q) = %v, want ok=%v", tc.addr, tc.token, err, tc.ok)
		}
		if _, nerr := admin.New(newFakeAgent(), admin.Config{Addr: tc.addr, Token: tc.token}); (nerr == nil) != tc.ok {
			t.Errorf("New(addr %q, token %q) = %v, want ok=%v", tc.addr, tc.token, nerr, tc.ok)
		}
		if err != nil && tc.addr == "0.0.0.0:8686" && !strings.Contains(err.Error(), "token") {
			t.Errorf("error %q does not say a token is needed", err)
		}
	}
}

// TestTokenEnforcedOffLoopback binds a real listener on every interface,
// which requires a token, and checks every protected endpoint with no
// token, a wrong one, the right one, and the dashboard's cookie.
func TestTokenEnforcedOffLoopback(t *testing.T) {
	const token = "tok-123"
	s, err := admin.New(newFakeAgent(), admin.Config{Addr: "0.0.0.0:0", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	_, port, _ := strings.Cut(s.Addr(), "]:")
	if port == "" {
		_, port, _ = strings.Cut(s.Addr(), ":")
	}
	base := "http://127.0.0.1:" + port
	for _, path := range []string{"/metrics", "/api/topology", "/api/status", "/api/results", "/api/tap?channel=raw&limit=1"} {
		if resp, _ := get(t, base+path); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without token: %s, want 401", path, resp.Status)
		}
		if resp, _ := get(t, base+path, "Authorization", "Bearer wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %s, want 401", path, resp.Status)
		}
	}
	for _, path := range []string{"/metrics", "/api/topology", "/api/status", "/api/results"} {
		if resp, body := get(t, base+path, "Authorization", "Bearer "+token); resp.StatusCode != http.StatusOK {
			t.Errorf("%s with the token: %s %s", path, resp.Status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/reload", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /api/reload without token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, _ := get(t, base+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz is for probes and needs no token; got %s", resp.Status)
	}
	// The browser path: /?token= sets a cookie, which then authorises the API.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	if resp, err := browser.Get(base + "/?token=wrong"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/?token=wrong: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err := browser.Get(base + "/?token=" + token)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Request.URL.RawQuery != "" {
		t.Fatalf("/?token=: %v %v (want a redirect to / and the page)", resp, err)
	}
	resp.Body.Close()
	if resp, err := browser.Get(base + "/api/status"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/status with the cookie: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStopWithoutStart(t *testing.T) {
	s, err := admin.New(newFakeAgent(), admin.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestHealthz(t *testing.T) {
	a := newFakeAgent()
	ts := newTestServer(t, a, admin.Config{})
	for _, tc := range []struct {
		name   string
		change func(*fakeAgent)
		code   int
		reason string
	}{
		{"running", func(*fakeAgent) {}, 200, ""},
		{"starting", func(f *fakeAgent) { f.status.State = admin.StateStarting }, 503, "agent is starting"},
		{"draining", func(f *fakeAgent) { f.status.State = admin.StateDraining }, 503, "agent is draining"},
		{"failed component", func(f *fakeAgent) {
			f.status.State = admin.StateRunning
			f.status.Components[1].State = admin.StateFailed
			f.status.Components[1].LastError = "disk full"
		}, 503, "sink out failed: disk full"},
	} {
		a.set(tc.change)
		resp, body := get(t, ts.URL+"/healthz")
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %s %s, want %d with %q", tc.name, resp.Status, body, tc.code, tc.reason)
		}
	}
}

func TestMetricsParse(t *testing.T) {
	ts := newTestServer(t, newFakeAgent(), admin.Config{})
	resp, body := get(t, ts.URL+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
	metrics:
		for _, m := range f.Metric {
			for k, v := range labels {
				found := false
				for _, lp := range m.Label {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue metrics
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.Counter.GetValue(), true
			case dto.MetricType_GAUGE:
				return m.Gauge.GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
		return 0, false
	}
	sink := map[string]string{"component": "out", "kind": "sink"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_component_events_out_total", map[string]string{"component": "orders_log", "kind": "source"}, 100},
		{"sluice_component_bytes_out_total", map[string]string{"component": "orders_log"}, 2000},
		{"sluice_component_events_in_total", sink, 90},
		{"sluice_component_events_failed_total", sink, 3},
		{"sluice_component_events_dead_lettered_total", sink, 2},
		{"sluice_component_bytes_in_total", sink, 1800},
		{"sluice_component_batch_latency_seconds", sink, 10},
		{"sluice_component_state", map[string]string{"component": "out", "state": "running"}, 1},
		{"sluice_component_state", map[string]string{"component": "out", "state": "failed"}, 0},
		{"sluice_channel_depth_events", map[string]string{"channel": "raw"}, 10},
		{"sluice_channel_depth_bytes", map[string]string{"channel": "raw"}, 200},
		{"sluice_channel_disk_bytes", map[string]string{"channel": "raw"}, 4096},
		{"sluice_channel_appends_total", map[string]string{"channel": "raw"}, 7},
		{"sluice_plugin_memory_bytes", map[string]string{"component": "out"}, 1 << 20},
		{"sluice_plugin_guest_seconds_total", map[string]string{"component": "out"}, 1.5},
		{"sluice_plugin_counter", map[string]string{"component": "out", "name": "bad_lines"}, 5},
		{"sluice_agent_state", map[string]string{"state": "running"}, 1},
		{"sluice_reload_failed", nil, 0},
		{"sluice_reloads_total", map[string]string{"result": "applied"}, 4},
		{"sluice_reloads_total", map[string]string{"result": "rejected"}, 1},
	} {
		got, ok := value(tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	h := fams["sluice_component_batch_latency_seconds"].Metric[1].Histogram
	if len(h.Bucket) != 3 || h.Bucket[0].GetCumulativeCount() != 4 || h.Bucket[1].GetUpperBound() != 0.01 || h.GetSampleSum() != 0.25 {
		t.Errorf("latency histogram of the sink = %v", h)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("the Go runtime collector is missing")
	}
}

func TestTopologyAndStatus(t *testing.T) {
	a := newFakeAgent()
	ts := newTestServer(t, a, admin.Config{Interval: time.Nanosecond}) // every call samples
	_, body := get(t, ts.URL+"/api/topology")
	var topo admin.Topology
	if err := json.Unmarshal([]byte(body), &topo); err != nil || len(topo.Components) != 3 || len(topo.Edges) != 2 {
		t.Fatalf("/api/topology = %s (%v)", body, err)
	}
	c := client.New(ts.URL, "")
	first, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Rates) != 0 || first.Components[1].EventsFailed != 3 {
		t.Fatalf("first status: %+v", first)
	}
	a.set(func(f *fakeAgent) {
		f.status.Components[0].EventsOut += 500
		f.status.Components = append(f.status.Components, admin.ComponentStatus{Name: "new", Kind: admin.KindBolt, EventsIn: 5})
	})
	second, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	src := second.Rates["source/orders_log"]
	if src.Out <= 0 || src.In != 0 {
		t.Errorf("source rate = %+v, want Out > 0 and In 0", src)
	}
	if r, ok := second.Rates["sink/out"]; !ok || r.In != 0 {
		t.Errorf("sink rate = %+v %v, want present and 0 (no change)", r, ok)
	}
	if _, ok := second.Rates["bolt/new"]; ok {
		t.Error("a component absent from the previous sample has a rate")
	}
}

func TestResults(t *testing.T) {
	r := mapResults{
		hashes: map[string]map[string]string{
			"rev:cat:2026-11-25T12:00":  {"books": "2500", "toys": "1000"},
			"cnt:cat:2026-11-25T12:00":  {"books": "2", "toys": "1"},
			"rev:city:2026-11-25T12:00": {"Hangzhou": "3500"},
			"cnt:city:2026-11-25T12:00": {"Hangzhou": "3"},
			"rev:cat:2026-11-25T12:01":  {"toys": "4000"},
			"cnt:cat:2026-11-25T12:01":  {"toys": "4"},
			"rev:city:2026-11-25T12:01": {"Paris": "4000"},
			"cnt:city:2026-11-25T12:01": {"Paris": "4"},
			"rev:cat:2026-11-25T11:59":  {"books": "1"}, // older than the window of 2
		},
		zsets: map[string][]admin.ScoredMember{"top:sku": {{Member: "sku-1", Score: 9}, {Member: "sku-2", Score: 3}}},
	}
	v, err := admin.ReadResults(r, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"source":"map","minutes":[{"minute":"2026-11-25T12:00","revenue_cents":3500,"orders":3},{"minute":"2026-11-25T12:01","revenue_cents":4000,"orders":4}],` +
		`"categories":[{"name":"toys","revenue_cents":5000,"orders":5},{"name":"books","revenue_cents":2500,"orders":2}],` +
		`"cities":[{"name":"Paris","revenue_cents":4000,"orders":4},{"name":"Hangzhou","revenue_cents":3500,"orders":3}],` +
		`"top_skus":[{"sku":"sku-1","units":9},{"sku":"sku-2","units":3}]}`
	if got, _ := json.Marshal(v); string(got) != want {
		t.Errorf("ReadResults =\n%s\nwant\n%s", got, want)
	}

	r.hashes["cnt:city:2026-11-25T12:01"]["Paris"] = "four"
	if _, err := admin.ReadResults(r, 2); err == nil || !strings.Contains(err.Error(), `cnt:city:2026-11-25T12:01 field "Paris": value "four"`) {
		t.Errorf("a bad value gave %v, want an error naming key and field", err)
	}
	if _, err := admin.ReadResults(brokenResults{r}, 2); !errors.Is(err, errBroken) {
		t.Errorf("a failing reader gave %v", err)
	}
	if v, err := admin.ReadResults(nil, 5); err != nil || v.Source != "" || v.Minutes == nil {
		t.Errorf("no reader: %+v %v", v, err)
	}

	a := newFakeAgent()
	a.results = brokenResults{r}
	ts := newTestServer(t, a, admin.Config{})
	if resp, body := get(t, ts.URL+"/api/results"); resp.StatusCode != 500 || !strings.Contains(body, "broken") {
		t.Errorf("/api/results with a failing store: %s %s", resp.Status, body)
	}
}

func TestTap(t *testing.T) {
	a := newFakeAgent()
	for i := range 10 {
		a.tapEvents = append(a.tapEvents, event.Event{Time: int64(i) * 1e9, Key: []byte{'k', byte('0' + i)}, Body: []byte(`{"n":` + string(rune('0'+i)) + `}`),
			Headers: []event.Header{{Name: "h", Value: "v"}}})
	}
	a.tapEvents[5].Body = []byte{0xff, 0x00} // binary
	ts := newTestServer(t, a, admin.Config{})
	c := client.New(ts.URL, "")
	var got []admin.TapEvent
	end, err := c.Tap(context.Background(), "raw", 2, 3, func(e admin.TapEvent) error { got = append(got, e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// sample 2 → events 1, 3, 5, 7, 9; limit 3 → the first three.
	if len(got) != 3 || end.Sent != 3 || end.Reason != "limit reached" {
		t.Fatalf("tap got %d events, end %+v", len(got), end)
	}
	if got[0].Key != "k1" || got[0].Body != `{"n":1}` || got[0].Headers["h"] != "v" || !got[0].Time.Equal(time.Unix(1, 0)) {
		t.Errorf("first tapped event = %+v", got[0])
	}
	if got[2].Body != "" || string(got[2].BodyBase64) != "\xff\x00" {
		t.Errorf("binary body = %+v", got[2])
	}

	var sb strings.Builder
	if err := client.PrintTap(context.Background(), &sb, c, "raw", 5, 2); err != nil {
		t.Fatal(err)
	}
	wantOut := "1970-01-01T00:00:04Z k4 {\"n\":4}\n1970-01-01T00:00:09Z k9 {\"n\":9}\n# 2 events (0 dropped: reader too slow); limit reached\n"
	if sb.String() != wantOut {
		t.Errorf("PrintTap =\n%q\nwant\n%q", sb.String(), wantOut)
	}

	for _, tc := range []struct {
		query string
		code  int
	}{
		{"", 400},
		{"channel=nope", 404},
		{"channel=raw&sample=0", 400},
		{"channel=raw&limit=x", 400},
		{"channel=raw&limit=10001", 400},
	} {
		if resp, body := get(t, ts.URL+"/api/tap?"+tc.query); resp.StatusCode != tc.code {
			t.Errorf("/api/tap?%s: %s %s, want %d", tc.query, resp.Status, body, tc.code)
		}
	}
	if _, err := c.Tap(context.Background(), "nope", 1, 1, func(admin.TapEvent) error { return nil }); err == nil || !strings.Contains(err.Error(), "unknown channel") {
		t.Errorf("tap of an unknown channel: %v", err)
	}
}

// TestTapClientLeaves checks that a client going away ends the agent's tap.
func TestTapClientLeaves(t *testing.T) {
	a := newFakeAgent() // no events: Tap waits for its context
	a.tapStarted, a.tapEnded = make(chan struct{}), make(chan struct{})
	ts := newTestServer(t, a, admin.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := client.New(ts.URL, "").Tap(ctx, "raw", 1, 10, func(admin.TapEvent) error { return nil })
		done <- err
	}()
	<-a.tapStarted
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("a tap stopped by its caller returned %v", err)
	}
	<-a.tapEnded // the server cancelled the agent's tap
}

func TestEventsStream(t *testing.T) {
	a := newFakeAgent()
	a.results = mapResults{hashes: map[string]map[string]string{"rev:cat:2026-11-25T12:00": {"books": "5"}}}
	ts := newTestServer(t, a, admin.Config{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	seen := map[string]int{}
	err = client.ReadSSE(resp.Body, func(m client.Message) error {
		seen[m.Event]++
		if m.Event == "results" && !strings.Contains(string(m.Data), `"revenue_cents":5`) {
			t.Errorf("results message %s", m.Data)
		}
		if seen["status"] >= 3 {
			return errors.New("enough")
		}
		return nil
	})
	if err == nil || err.Error() != "enough" {
		t.Fatal(err)
	}
	// The topology is sent once, then only when it changes.
	if seen["topology"] != 1 || seen["results"] < 2 {
		t.Errorf("events seen: %v", seen)
	}
}

func TestReload(t *testing.T) {
	a := newFakeAgent()
	ts := newTestServer(t, a, admin.Config{})
	resp, err := http.Post(ts.URL+"/api/reload", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", resp, err)
	}
	resp.Body.Close()
	a.set(func(f *fakeAgent) { f.reloadErr = errors.New("bolts.parse.wasm: no such file") })
	resp, err = http.Post(ts.URL+"/api/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), "bolts.parse.wasm: no such file") {
		t.Errorf("a failed reload: %s %s", resp.Status, b)
	}
	if a.reloads != 2 {
		t.Errorf("reloads = %d", a.reloads)
	}
	if resp, _ := get(t, ts.URL+"/api/reload"); resp.StatusCode == http.StatusOK || a.reloads != 2 {
		t.Errorf("GET /api/reload: %s, reloads %d: only POST reloads", resp.Status, a.reloads)
	}
}

// TestDashboardOffline checks the page and its assets are served and refer
// to nothing outside the agent.
func TestDashboardOffline(t *testing.T) {
	ts := newTestServer(t, newFakeAgent(), admin.Config{})
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		resp, body := get(t, ts.URL+path)
		if resp.StatusCode != 200 || len(body) < 100 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		rest := strings.ReplaceAll(body, "http://www.w3.org/2000/svg", "") // the SVG namespace, not a fetch
		if strings.Contains(rest, "http://") || strings.Contains(rest, "https://") || strings.Contains(rest, "//cdn") {
			t.Errorf("%s refers to another origin", path)
		}
		if path == "/" && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("no CSP on the page")
		}
	}
}

// TestStopEndsStreams checks that Stop ends a live /api/events stream
// instead of waiting for the client to leave.
func TestStopEndsStreams(t *testing.T) {
	s, err := admin.New(newFakeAgent(), admin.Config{Addr: "127.0.0.1:0", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	resp, err := http.Get("http://" + s.Addr() + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		n := 0
		ended <- client.ReadSSE(resp.Body, func(client.Message) error {
			if n++; n == 1 {
				close(first)
			}
			return nil
		})
	}()
	<-first // the stream is live
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop with a live stream: %v", err)
	}
	if err := <-ended; err != nil {
		t.Errorf("stream ended with %v", err)
	}
}
