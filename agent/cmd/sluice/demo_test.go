package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/admin"
)

// TestDemoRunsAndStopsCleanly runs `sluice demo` for a few seconds: it
// builds the example plugins from source, writes orders, prints status
// lines and stops cleanly, leaving everything under --dir.
func TestDemoRunsAndStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	// Hold the default admin port (or find it held already): the demo must
	// move to another one and say where.
	if ln, err := net.Listen("tcp", admin.DefaultAddr); err == nil {
		defer ln.Close()
	}
	code, out, errs := run(t, "demo", "--dir", dir, "--for", "4s", "--rate", "500")
	if code != exitOK {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"building wasm-examples/order-parse", "ev/s", "depth orders=", "stopped cleanly"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`(?m)^dashboard: http://127\.0\.0\.1:(\d+)/ `).FindStringSubmatch(out); m == nil || m[1] == "8686" {
		t.Errorf("demo printed no dashboard URL on a free port (got %v):\n%s", m, out)
	}
	for _, f := range []string{"orders.log", "orders.next", "agent.log", "plugins/order-parse.wasm", "plugins/order-stats.wasm", "data/channels/raw"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("demo left no %s: %v", f, err)
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	if strings.Contains(string(log), "level=ERROR") {
		t.Errorf("agent log has errors:\n%s", log)
	}
}
