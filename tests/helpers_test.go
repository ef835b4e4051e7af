package tests

import (
	"context"
	"fmt"
	"iter"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/sluicehq/sluice/agent/plugintool"
)

// Config parts shared by the order scenarios (crash, Kafka→Redis): the
// channels, the tail of writeOrderLog's rotating log, and order-parse →
// order-stats as built by buildOrderPlugins. DIR is the test's directory.
const (
	rawChannelConfig = `
[channels.raw]
segment_bytes = "8MiB"
max_bytes = "256MiB"
`
	ordersChannelConfig = `
[channels.orders]
segment_bytes = "8MiB"
max_bytes = "256MiB"
`
	orderLogSourceConfig = `
[sources.log]
type = "tail"
output = "raw"
batch_size = 2048
[sources.log.config]
paths = ["DIR/logs/orders.log*"]
poll_interval = "20ms"
rotate_wait = "60s"
`
	// raw → parse → orders → stats (stateful, closes minutes on tick) → results
	orderBoltsConfig = `
[bolts.parse]
wasm = "DIR/order-parse.wasm"
input = "raw"
output = "orders"

[bolts.stats]
wasm = "DIR/order-stats.wasm"
input = "orders"
output = "results"
capabilities = ["state"]
tick = "200ms"
config = { lateness_ms = 0 }
`
)

// buildOrderPlugins builds the order-parse and order-stats examples from
// source into dir/order-parse.wasm and dir/order-stats.wasm.
func buildOrderPlugins(t *testing.T, dir string) {
	t.Helper()
	for src, out := range map[string]string{"../wasm-examples/order-parse": "order-parse.wasm", "../wasm-examples/order-stats/c": "order-stats.wasm"} {
		if _, err := plugintool.Build(context.Background(), src, filepath.Join(dir, out)); err != nil {
			t.Fatal(err)
		}
	}
}

// envInt is the integer in the environment variable name, or def when it is
// unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: want a whole number: %v", name, s, err)
	}
	return n
}

// kill9 kills a with SIGKILL and waits for it; an agent that had exited by
// itself before the signal fails t (what names the agent and the moment).
func kill9(t *testing.T, a *agentProcess, what string) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	err := a.cmd.Wait()
	if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("agent exited %s (%v):\n%s", what, err, a.log)
	}
}

// terminate stops a with SIGTERM and returns how it exited: nil when it
// stopped cleanly.
func terminate(a *agentProcess) error {
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	return a.cmd.Wait()
}

// writeRename replaces path the way editors and config managers do: write
// a temporary file beside it, rename it over path.
func writeRename(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port nothing listens on (it
// was free a moment ago; the kernel does not hand it out again at once).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freePort is freeAddr's port.
func freePort(t *testing.T) int {
	t.Helper()
	addr, err := net.ResolveTCPAddr("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return addr.Port
}

// onceTally is how far a run's output is from every expected id exactly
// once.
type onceTally struct {
	lost, dup int      // expected ids missing; extra copies of those present
	examples  []string // the first few of either, for the failure message
}

// tallyOnce checks that each id of want occurs once in count (occurrences
// by id), deleting it from count: what is left there was not expected.
func tallyOnce(count map[string]int, want iter.Seq[string]) onceTally {
	var r onceTally
	for id := range want {
		switch n := count[id]; {
		case n == 0:
			r.lost++
			if len(r.examples) < 5 {
				r.examples = append(r.examples, "lost "+id)
			}
		case n > 1:
			r.dup += n - 1
			if len(r.examples) < 5 {
				r.examples = append(r.examples, fmt.Sprintf("%s ×%d", id, n))
			}
		}
		delete(count, id)
	}
	return r
}
