// Package deploy_test checks the deployment files: the example configs pass
// the same validation as `sluice validate` and agent start, and the systemd
// unit passes systemd's own checker and keeps the settings operators rely on.
package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/plugins/sinkgroup"
)

func TestExampleConfigsValidate(t *testing.T) {
	for _, env := range []map[string]string{
		{}, // the defaults after ${VAR:-default}
		{"COLLECTOR_1": "10.0.1.11:7070", "COLLECTOR_2": "10.0.1.12:7070", "KAFKA_BROKERS": "kafka1:9092",
			"FORWARD_LISTEN": "0.0.0.0:7070", "ORDERS_LOG": "/var/log/orders/orders.log", "SLUICE_DATA_DIR": t.TempDir()},
	} {
		for _, k := range []string{"COLLECTOR_1", "COLLECTOR_2", "KAFKA_BROKERS", "FORWARD_LISTEN", "ORDERS_LOG", "SLUICE_DATA_DIR"} {
			t.Setenv(k, env[k])
		}
		for _, f := range []string{"edge.toml", "collector.toml"} {
			cfg, err := config.Load(f, registry.Builtin())
			if err != nil {
				t.Errorf("%s with %v:\n%v", f, env, err)
				continue
			}
			if f == "edge.toml" {
				g := cfg.Sinks["collectors"].Plugin.(*sinkgroup.Config)
				if g.Processor != "load_balance" || len(g.Members) != 2 || g.Members[1].Type != "forward" {
					t.Errorf("edge.toml: group %+v", g)
				}
			}
			if f == "collector.toml" && cfg.Sources["edges"].Type != "forward" {
				t.Errorf("collector.toml: source type %q", cfg.Sources["edges"].Type)
			}
		}
	}
}

// A broken edit of the example is reported with its path, as operators
// would see it from `sluice validate`.
func TestBrokenEdgeConfigNamesTheKey(t *testing.T) {
	b, err := os.ReadFile("edge.toml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), `address = "${COLLECTOR_2:-127.0.0.1:7071}"`, `adress = "10.0.1.12:7070"`, 1)
	_, err = config.Parse("edge.toml", []byte(bad), registry.Builtin())
	if err == nil || !strings.Contains(err.Error(), "sinks.collectors.config") || !strings.Contains(err.Error(), "members[1].config.adress: unknown key") {
		t.Errorf("want an error naming members[1].config.adress, got:\n%v", err)
	}
}

func TestSystemdUnit(t *testing.T) {
	keys := map[string][]string{}
	f, err := os.Open("sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	f.Close()
	for k, want := range map[string]string{
		"Restart":         "on-failure",
		"ExecReload":      "/bin/kill -HUP $MAINPID",
		"StateDirectory":  "sluice",
		"ExecStart":       "/usr/local/bin/sluice run --resume -c /etc/sluice/sluice.toml",
		"KillSignal":      "SIGTERM",
		"SLUICE_DATA_DIR": "",
	} {
		if k == "SLUICE_DATA_DIR" {
			if !strings.Contains(strings.Join(keys["Environment"], " "), "SLUICE_DATA_DIR=/var/lib/sluice") {
				t.Errorf("Environment does not set SLUICE_DATA_DIR=/var/lib/sluice: %v", keys["Environment"])
			}
			continue
		}
		if got := keys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, want %q", k, got, want)
		}
	}
	// systemd's own checker, with the binary path pointed at one that
	// exists here; any complaint about the file fails the test.
	unit, err := os.ReadFile("sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "sluice.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sluice", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
	if err != nil || strings.Contains(string(out), p) {
		t.Errorf("systemd-analyze verify (package systemd; scripts/test installs it): %v\n%s", err, out)
	}
}
