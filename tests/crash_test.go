// Package tests holds end-to-end and fault tests that run the sluice binary
// as a separate process.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/plugins/store"
)

// buildSluice builds the agent binary into dir.
func buildSluice(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "../agent/cmd/sluice")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const crashConfig = `
[agent]
data_dir = "DIR/data"
shutdown_timeout = "30s"
` + rawChannelConfig + ordersChannelConfig + orderLogSourceConfig + orderBoltsConfig + `
[sinks.out]
type = "file"
input = "orders"
[sinks.out.config]
path = "DIR/out/orders.jsonl"

# The stateful branch (order-stats): per-minute totals, closed by tick, into
# the embedded store and (for the test to watch while the agent runs) a file.
[channels.results]

[sinks.store]
type = "store"
input = "results"
config = { path = "DIR/results.db" }

[sinks.results_file]
type = "file"
input = "results"
config = { path = "DIR/results/results.jsonl" }
`

// TestCrashKill9 writes an order log with rotations while the agent is
// killed with SIGKILL ten times at random moments and restarted:
//
//	tail → [raw] → order-parse → [orders] → file sink
//	                                     └→ order-stats (stateful) → [results] → store, file sink
//
// At the end the file sink holds every order exactly once, and the per-minute
// totals in the store equal the ground truth computed from the generator.
func TestCrashKill9(t *testing.T) {
	if os.Getenv("SLUICE_TEST_SHORT") != "" {
		t.Skip("SLUICE_TEST_SHORT set: long end-to-end test skipped")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	buildOrderPlugins(t, dir)
	for _, d := range []string{"logs", "out", "results"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "crash.toml")
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(crashConfig, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}

	total := envInt(t, "SLUICE_CRASH_LINES", 1_000_000)
	const rotateEvery = 100_000
	// 1 ms between orders: every minute window lies in the past, so the
	// ticks close them all and the totals can be compared exactly.
	g := orders.NewGenerator(orders.GenConfig{Seed: 42, Step: time.Millisecond})

	// The writer: ~250k lines/s, rename+create rotation every rotateEvery lines.
	var written atomic.Int64
	genDone := make(chan error, 1)
	go func() { genDone <- writeOrderLog(dir, g, total, rotateEvery, 10*time.Millisecond, &written) }()

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for kill := 1; kill <= 10; kill++ {
		// Kills land while data flows, not during start-up: wait until the
		// agent logs that every stage runs.
		a := startAgent(t, bin, cfgPath, "")
		select {
		case <-a.started:
		case <-a.done:
		}
		time.Sleep(time.Duration(100+rng.IntN(1500)) * time.Millisecond)
		kill9(t, a, fmt.Sprintf("before kill %d", kill))
		t.Logf("kill %d: %d lines written, %d in the sink", kill, written.Load(), len(readIDs(t, dir)))
	}
	if err := <-genDone; err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bin, cfgPath, "")
	want := orders.GroundTruth(g, 0, uint64(total), nil)
	deadline := time.Now().Add(3 * time.Minute)
	for (len(readIDs(t, dir)) < total || len(readTotals(t, dir).Diff(want, 1)) > 0) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if err := terminate(a); err != nil {
		t.Fatalf("agent did not stop cleanly on SIGTERM: %v\n%s", err, a.log)
	}

	count := map[string]int{}
	for _, id := range readIDs(t, dir) {
		count[id]++
	}
	tally := tallyOnce(count, func(yield func(string) bool) {
		for i := 0; i < total; i++ {
			if !yield(g.Order(uint64(i)).OrderID) {
				return
			}
		}
	})
	lost, dup := tally.lost, tally.dup
	t.Logf("crash test: %d orders, 10 SIGKILLs, %d rotations: lost %d, duplicated %d, unexpected %d", total, total/rotateEvery-1, lost, dup, len(count))
	if lost != 0 || dup != 0 || len(count) != 0 {
		t.Fatalf("lost %d, duplicated %d, unexpected %d (%v)", lost, dup, len(count), tally.examples)
	}
	if d := readTotals(t, dir).Diff(want, 5); len(d) > 0 {
		t.Errorf("results file differs from the ground truth: %v", d)
	}
	got := storeTotals(t, filepath.Join(dir, "results.db"))
	if d := got.Diff(want, 5); len(d) > 0 {
		t.Errorf("store totals differ from the ground truth after 10 SIGKILLs: %v", d)
	} else {
		t.Logf("store: %d hashes and %d sorted sets equal the ground truth exactly", len(got.Hashes), len(got.ZSets))
	}
}

// readTotals applies the command records in the results file sink's files.
func readTotals(t *testing.T, dir string) *orders.Totals {
	t.Helper()
	tot := orders.NewTotals()
	files, _ := filepath.Glob(filepath.Join(dir, "results", "results.jsonl*"))
	for _, f := range files {
		if strings.HasSuffix(f, ".fence") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) > 0 {
				if err := tot.ApplyCommand(line); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
		}
	}
	return tot
}

// storeTotals reads every hash and sorted set of the store at path.
func storeTotals(t *testing.T, path string) *orders.Totals {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = path
	st, err := store.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	keys, err := st.Scan("", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	tot := orders.NewTotals()
	for _, k := range keys {
		switch k.Type {
		case "hash":
			h, err := st.HGetAll(k.Key)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]int64{}
			for f, v := range h {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("store %s %s = %q: %v", k.Key, f, v, err)
				}
				m[f] = n
			}
			tot.Hashes[k.Key] = m
		case "zset":
			z, err := st.ZTop(k.Key, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]int64{}
			for _, e := range z {
				m[e.Member] = int64(e.Score)
			}
			tot.ZSets[k.Key] = m
		}
	}
	return tot
}

// syncBuffer collects a child's log lines for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) write(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(line)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readIDs returns the order_id of every line in the file sink's files.
func readIDs(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "out", "*"))
	var ids []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if id := extractID(line); id != "" {
				ids = append(ids, id)
			}
		}
		fh.Close()
	}
	return ids
}

// extractID returns the order_id of a JSON order line, or "".
func extractID(line []byte) string {
	i := bytes.Index(line, []byte(`"order_id":"`))
	if i < 0 {
		return ""
	}
	rest := line[i+len(`"order_id":"`):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return string(rest[:j])
	}
	return ""
}
