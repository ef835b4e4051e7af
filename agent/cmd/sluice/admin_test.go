package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/internal/testredis"
)

const testToken = "s3cret"

// testAgent is a real agent (tail → raw → file sink) run in-process by
// runAgentFor, the function behind `sluice run`.
type testAgent struct {
	url  string // admin base URL, "http://127.0.0.1:PORT/"
	addr string // host:port
	log  string // the tailed log file
	stop func() error
}

// agentConfig writes a config for dir with the given admin settings.
func agentConfig(t *testing.T, dir, adminLines string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in", "app.log"), []byte("first\nsecond\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.toml")
	text := fmt.Sprintf(`
[agent]
data_dir = %[1]q
shutdown_timeout = "5s"
%[2]s

[channels.raw]

[sources.log]
type = "tail"
output = "raw"
config = { paths = [%[3]q], start_at = "beginning", poll_interval = "20ms" }

[sinks.out]
type = "file"
input = "raw"
config = { path = %[4]q }
`, filepath.Join(dir, "data"), adminLines, filepath.Join(dir, "in", "*.log"), filepath.Join(dir, "out.txt"))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent loads cfgPath and runs it until the test ends (or stop).
func startAgent(t *testing.T, cfgPath string) *testAgent {
	t.Helper()
	cfg, err := config.Load(cfgPath, registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- runAgentFor(ctx, cfg, log, io.Discard, runOptions{OnRunning: func(u string) { running <- u }})
	}()
	ta := &testAgent{log: filepath.Join(filepath.Dir(cfgPath), "in", "app.log")}
	var stopped bool
	var stopErr error
	ta.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := ta.stop(); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	select {
	case ta.url = <-running:
	case err := <-done:
		stopped = true
		t.Fatalf("agent did not start: %v", err)
	}
	ta.addr = strings.TrimSuffix(strings.TrimPrefix(ta.url, "http://"), "/")
	return ta
}

func httpDo(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestRunServesAdminAPI: the agent `sluice run` runs is healthy on /healthz
// once running, /api/topology draws the configured graph, the token is
// enforced, reload answers that it is not there yet, and the server goes
// away with the agent.
func TestRunServesAdminAPI(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, agentConfig(t, dir, `admin_addr = "127.0.0.1:0"`+"\nadmin_token = \""+testToken+"\""))

	if code, body := httpDo(t, "GET", ta.url+"healthz", ""); code != http.StatusOK || !bytes.Contains(body, []byte(`"status":"ok"`)) {
		t.Errorf("/healthz: %d %s, want 200 ok", code, body)
	}
	if code, body := httpDo(t, "GET", ta.url+"api/topology", ""); code != http.StatusUnauthorized {
		t.Errorf("/api/topology without the token: %d %s, want 401", code, body)
	}
	code, body := httpDo(t, "GET", ta.url+"api/topology", testToken)
	if code != http.StatusOK {
		t.Fatalf("/api/topology: %d %s", code, body)
	}
	var topo admin.Topology
	if err := json.Unmarshal(body, &topo); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range topo.Components {
		ids = append(ids, c.ID+"="+c.Plugin)
	}
	slices.Sort(ids)
	if want := []string{"channel/raw=file", "sink/out=file", "source/log=tail"}; !slices.Equal(ids, want) {
		t.Errorf("components %v, want %v", ids, want)
	}
	var edges []string
	for _, e := range topo.Edges {
		edges = append(edges, e.From+"→"+e.To)
	}
	slices.Sort(edges)
	if want := []string{"channel/raw→sink/out", "source/log→channel/raw"}; !slices.Equal(edges, want) {
		t.Errorf("edges %v, want %v", edges, want)
	}
	code, body = httpDo(t, "POST", ta.url+"api/reload", testToken)
	if code != http.StatusOK {
		t.Errorf("/api/reload of the unchanged config: %d %s, want 200", code, body)
	}

	if err := ta.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(ta.url + "healthz"); err == nil {
		t.Error("the admin server still answers after the agent stopped")
	}
}

// TestTopAndTap runs `sluice top` and `sluice tap` against a real agent.
func TestTopAndTap(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, agentConfig(t, dir, `admin_addr = "127.0.0.1:0"`+"\nadmin_token = \""+testToken+"\""))

	code, out, errs := run(t, "top", "--addr", ta.addr, "--token", testToken, "--frames", "1")
	if code != exitOK {
		t.Fatalf("top: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`^agent running at `),
		regexp.MustCompile(`(?m)^COMPONENT\s+KIND\s+STATE`),
		regexp.MustCompile(`(?m)^log\s+source\s+running\s`),
		regexp.MustCompile(`(?m)^out\s+sink\s+running\s`),
		regexp.MustCompile(`(?m)^raw\s+\d+`),
	} {
		if !want.MatchString(out) {
			t.Errorf("top output does not match %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("top cleared a screen that is not a terminal:\n%q", out)
	}
	t.Setenv(config.AdminTokenEnv, testToken) // the token's default
	if code, out, errs := run(t, "top", "--addr", "http://"+ta.addr, "--frames", "1"); code != exitOK {
		t.Errorf("top with the token from %s: exit %d\n%s%s", config.AdminTokenEnv, code, out, errs)
	}
	t.Setenv(config.AdminTokenEnv, "")
	if code, _, errs := run(t, "top", "--addr", ta.addr, "--frames", "1"); code != exitFailed || !strings.Contains(errs, "401") {
		t.Errorf("top without the token: exit %d, stderr %q; want 1 and 401", code, errs)
	}

	// The tap shows only events appended from now on: keep appending
	// until it has seen --limit of them.
	type result struct {
		code      int
		out, errs string
	}
	tapped := make(chan result, 1)
	go func() {
		code, out, errs := run(t, "tap", "raw", "--addr", ta.addr, "--token", testToken, "--limit", "3")
		tapped <- result{code, out, errs}
	}()
	f, err := os.OpenFile(ta.log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var res result
	for n := 0; ; n++ {
		select {
		case res = <-tapped:
		case <-tick.C:
			fmt.Fprintf(f, "appended-%d\n", n)
			continue
		}
		break
	}
	if res.code != exitOK {
		t.Fatalf("tap: exit %d\n%s%s", res.code, res.out, res.errs)
	}
	lines := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	event := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+ \S+ appended-\d+$`)
	if len(lines) != 4 || !strings.HasPrefix(lines[3], "# 3 events (0 dropped") {
		t.Fatalf("tap printed %d lines, want 3 events and a summary:\n%s", len(lines), res.out)
	}
	for _, l := range lines[:3] {
		if !event.MatchString(l) {
			t.Errorf("tap line %q does not match %s", l, event)
		}
	}

	if code, _, errs := run(t, "tap", "nope", "--addr", ta.addr, "--token", testToken); code != exitFailed || !strings.Contains(errs, `channel "nope"`) {
		t.Errorf("tap of an unknown channel: exit %d, stderr %q", code, errs)
	}
}

// TestTopAndTapWithoutAgent: no agent at the address is exit 1 with a
// message that says so.
func TestTopAndTapWithoutAgent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a port nothing listens on
	for _, args := range [][]string{{"top", "--addr", addr, "--frames", "1"}, {"tap", "raw", "--addr", addr}} {
		code, _, errs := run(t, args...)
		if code != exitFailed || !strings.Contains(errs, "cannot reach the admin API at "+addr) {
			t.Errorf("sluice %v: exit %d, stderr %q", args, code, errs)
		}
	}
}

// TestAdminAddressTaken: an admin_addr written in the config that is in
// use stops `sluice run` with an error naming it (the default address
// falls back to a free port instead; the demo test covers that).
func TestAdminAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfg, err := config.Load(agentConfig(t, dir, fmt.Sprintf("admin_addr = %q", ln.Addr().String())), registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	err = runAgentFor(context.Background(), cfg, log, io.Discard, runOptions{})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "set agent.admin_addr") {
		t.Fatalf("runAgentFor with a taken admin address: %v", err)
	}
	// The agent was stopped: the channel can be opened again.
	ta := startAgent(t, agentConfig(t, dir, `admin_addr = "off"`))
	if ta.url != "" {
		t.Errorf("admin_addr = \"off\" still served the admin API at %s", ta.url)
	}
}

// TestDashboardReadsRedisResults: with a Redis sink and no store sink, the
// dashboard's results come from the sink's Redis database (a real
// redis-server, database 3, written by the pipeline in mapping mode).
func TestDashboardReadsRedisResults(t *testing.T) {
	rs := testredis.Start(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	orders := `{"minute":"2026-11-25T14:00","cat":"books","cents":250}
{"minute":"2026-11-25T14:00","cat":"games","cents":900}
{"minute":"2026-11-25T14:01","cat":"books","cents":100}
`
	if err := os.WriteFile(filepath.Join(in, "orders.log"), []byte(orders), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "agent.toml")
	text := fmt.Sprintf(`
[agent]
data_dir = %q
admin_addr = "127.0.0.1:0"

[channels.raw]

[sources.log]
type = "tail"
output = "raw"
config = { paths = [%q], start_at = "beginning", poll_interval = "20ms" }

[sinks.redis]
type = "redis"
input = "raw"
[sinks.redis.config]
addrs = [%q]
db = 3
[[sinks.redis.config.commands]]
op = "hincrby"
key = "rev:cat:{minute}"
field = "{cat}"
value = "{cents}"
`, filepath.Join(dir, "data"), filepath.Join(in, "*.log"), rs.Addr)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ta := startAgent(t, cfgPath)

	// The pipeline writes Redis on its own schedule; the dashboard reads
	// whatever is there, so ask until all three orders are in.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	var view admin.ResultsView
	for {
		code, body := httpDo(t, "GET", ta.url+"api/results", "")
		if code != http.StatusOK {
			t.Fatalf("/api/results: %d %s", code, body)
		}
		view = admin.ResultsView{}
		if err := json.Unmarshal(body, &view); err != nil {
			t.Fatal(err)
		}
		if len(view.Minutes) == 2 && len(view.Categories) == 2 && view.Categories[0].RevenueCents+view.Categories[1].RevenueCents == 1250 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("results never showed the three orders; last: %s", body)
		}
	}
	if view.Source != "redis" || view.Categories[0] != (admin.NameTotal{Name: "games", RevenueCents: 900}) ||
		view.Categories[1] != (admin.NameTotal{Name: "books", RevenueCents: 350}) || view.Minutes[1].RevenueCents != 100 {
		t.Errorf("results = %+v", view)
	}
}
