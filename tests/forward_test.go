package tests

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// forwardEdgeConfig: tail → [raw] → group (load_balance over the two
// collectors' forward sources).
const forwardEdgeConfig = `
[agent]
data_dir = "DIR/NAME/data"
shutdown_timeout = "30s"

[channels.raw]
segment_bytes = "8MiB"
max_bytes = "256MiB"

[sources.log]
type = "tail"
output = "raw"
batch_size = 256
[sources.log.config]
paths = ["DIR/NAME/logs/lines.log"]
poll_interval = "20ms"

[sinks.collectors]
type = "group"
input = "raw"
[sinks.collectors.config]
processor = "load_balance"
selector = "round_robin"
backoff = "200ms"
max_backoff = "2s"
in_doubt_timeout = "2m"

[[sinks.collectors.config.members]]
name = "c0"
type = "forward"
[sinks.collectors.config.members.config]
address = "ADDR0"
ack_timeout = "1s"

[[sinks.collectors.config.members]]
name = "c1"
type = "forward"
[sinks.collectors.config.members.config]
address = "ADDR1"
ack_timeout = "1s"
`

// forwardCollectorConfig: forward source → [in] → file sink.
const forwardCollectorConfig = `
[agent]
data_dir = "DIR/NAME/data"
shutdown_timeout = "30s"

[channels.in]
segment_bytes = "8MiB"
max_bytes = "256MiB"

[sources.edges]
type = "forward"
output = "in"
[sources.edges.config]
listen = "ADDR"

[sinks.out]
type = "file"
input = "in"
[sinks.out.config]
path = "DIR/NAME/out/lines.log"
`

// TestForwardLoadBalanceKill9 runs three edge agents forwarding to two
// collectors through a load_balance group, all as separate processes. The
// edges tail logs that grow during the run; one collector is killed with
// SIGKILL (alternating) several times and restarted at once, and every
// second round an edge as well; before that, one collector is frozen for
// longer than the edges' ack timeout, so that they send their batches again. At the end every line is in exactly one of
// the collectors' file sinks, once.
func TestForwardLoadBalanceKill9(t *testing.T) {
	if os.Getenv("SLUICE_TEST_SHORT") != "" {
		t.Skip("SLUICE_TEST_SHORT set: long end-to-end test skipped")
	}
	const (
		edges        = 3
		linesPerEdge = 60_000
		chunk        = 200
		kills        = 6
	)
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	addrs := []string{freeAddr(t), freeAddr(t)}

	write := func(name, tmpl string, repl ...string) string {
		for _, d := range []string{"logs", "out", "data"} {
			if err := os.MkdirAll(filepath.Join(dir, name, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		text := strings.NewReplacer(append([]string{"DIR", dir, "NAME", name}, repl...)...).Replace(tmpl)
		p := filepath.Join(dir, name+".toml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var collectorCfg [2]string
	for i := range collectorCfg {
		collectorCfg[i] = write(fmt.Sprintf("collector%d", i), forwardCollectorConfig, "ADDR", addrs[i])
	}
	var procs []*agentProcess
	var procsMu sync.Mutex
	start := func(cfg, name string) *agentProcess {
		a := startAgent(t, bin, cfg, filepath.Join(dir, name+".log"))
		procsMu.Lock()
		procs = append(procs, a)
		procsMu.Unlock()
		select {
		case <-a.started:
		case <-a.done:
			t.Fatalf("%s exited during start:\n%s", name, a.log)
		}
		return a
	}
	t.Cleanup(func() {
		procsMu.Lock()
		defer procsMu.Unlock()
		for _, a := range procs {
			a.cmd.Process.Kill()
			<-a.done
			a.cmd.Wait()
		}
	})
	collectors := [2]*agentProcess{start(collectorCfg[0], "collector0"), start(collectorCfg[1], "collector1")}
	var edgeProcs []*agentProcess
	var edgeCfg []string
	for e := 0; e < edges; e++ {
		name := fmt.Sprintf("edge%d", e)
		edgeCfg = append(edgeCfg, write(name, forwardEdgeConfig, "ADDR0", addrs[0], "ADDR1", addrs[1]))
		edgeProcs = append(edgeProcs, start(edgeCfg[e], name))
	}

	// The writers: each edge's log grows by 200 lines every 40ms (~12s).
	var written atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	writeErr := make(chan error, edges)
	for e := 0; e < edges; e++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("edge%d", e), "logs", "lines.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				writeErr <- err
				return
			}
			defer f.Close()
			var buf []byte
			for i := 0; i < linesPerEdge; {
				buf = buf[:0]
				for k := 0; k < chunk && i < linesPerEdge; k++ {
					buf = fmt.Appendf(buf, "%s payload-%040d\n", lineID(e, i), i)
					i++
				}
				if _, err := f.Write(buf); err != nil {
					writeErr <- err
					return
				}
				written.Add(int64(chunk))
				time.Sleep(40 * time.Millisecond) // pacing the writers, not synchronisation
			}
		}()
	}

	kill := func(a *agentProcess, name string, k int) {
		a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.done
		a.cmd.Wait()
		if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("%s exited before kill %d:\n%s", name, k, a.log)
		}
	}
	// Collectors are killed in turn. Every second round an edge is killed
	// too: it restarts from its last committed channel position and sends
	// batches the collectors already acknowledged again, which their fences
	// must recognise.
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	// First a stall: collector0 frozen (SIGSTOP) for longer than the edges'
	// ack_timeout. Batches sent to it are in doubt; the edges hang up and
	// send them again to collector0 only (its kernel still accepts the
	// connections). When it thaws it stores one copy of each and must
	// acknowledge the others without storing them.
	time.Sleep(500 * time.Millisecond) // let data flow first
	collectors[0].cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(2500 * time.Millisecond) // the length of the stall
	collectors[0].cmd.Process.Signal(syscall.SIGCONT)
	t.Logf("stall: collector0 stopped for 2.5s, %d of %d lines written", written.Load(), edges*linesPerEdge)
	edgeKills := 0
	for k := 1; k <= kills; k++ {
		i := k % 2
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond) // a random moment mid-run
		name := fmt.Sprintf("collector%d", i)
		kill(collectors[i], name, k)
		t.Logf("kill %d: %s, %d of %d lines written, %d in the outputs", k, name, written.Load(), edges*linesPerEdge, len(readForwarded(t, dir)))
		collectors[i] = start(collectorCfg[i], name)
		if k%2 == 0 {
			e := (k/2 - 1) % edges
			name := fmt.Sprintf("edge%d", e)
			time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
			kill(edgeProcs[e], name, k)
			edgeKills++
			t.Logf("kill %d: %s as well", k, name)
			edgeProcs[e] = start(edgeCfg[e], name)
		}
	}
	wg.Wait()
	wroteAll := time.Since(began)
	close(writeErr)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	total := edges * linesPerEdge
	deadline := time.Now().Add(2 * time.Minute)
	for uniqueLines(t, dir) < total && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond) // polling the outputs
	}
	arrived := time.Since(began)
	for _, a := range append(edgeProcs, collectors[:]...) {
		a.cmd.Process.Signal(syscall.SIGTERM)
		<-a.done
		if err := a.cmd.Wait(); err != nil {
			t.Errorf("agent did not stop cleanly on SIGTERM: %v\n%s", err, a.log)
		}
	}

	count := map[string]int{}
	perCollector := [2]int{}
	for _, l := range readForwarded(t, dir) {
		count[l.id]++
		perCollector[l.collector]++
	}
	// How often an edge's batch was in doubt on a killed collector and held
	// for it (the path that keeps load_balance exactly-once).
	// And how often a killed edge's replayed batch went back to the
	// collector it was sent to before the kill (the group's assignment log).
	inDoubt, replayed := 0, 0
	for e := 0; e < edges; e++ {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("edge%d.log", e)))
		inDoubt += strings.Count(string(b), "(in doubt: retried on")
		replayed += strings.Count(string(b), "replayed batch goes back to the member it was sent to")
	}
	// How often a collector acknowledged a resend without storing it (the
	// receiver's fence at work).
	fenced := 0
	for c := 0; c < 2; c++ {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("collector%d.log", c)))
		fenced += strings.Count(string(b), "batch already stored (a resend)")
	}
	tally := tallyOnce(count, func(yield func(string) bool) {
		for e := 0; e < edges; e++ {
			for i := 0; i < linesPerEdge; i++ {
				if !yield(lineID(e, i)) {
					return
				}
			}
		}
	})
	lost, dup := tally.lost, tally.dup
	t.Logf("forward test: %d edge agents, 2 collectors (load_balance), %d lines, %d SIGKILLs of collectors and %d of edges (%d batches in doubt, %d replays sent back to their collector after an edge restart, %d resends fenced by a collector): lost %d, duplicated %d, unexpected %d; collector0 %d lines, collector1 %d; the paced writers took %v, the last line arrived %v after the first was written",
		edges, total, kills, edgeKills, inDoubt, replayed, fenced, lost, dup, len(count), perCollector[0], perCollector[1], wroteAll.Round(time.Millisecond), arrived.Round(time.Millisecond))
	if lost != 0 || dup != 0 || len(count) != 0 {
		t.Fatalf("lost %d, duplicated %d, unexpected %d (%v)", lost, dup, len(count), tally.examples)
	}
	if fenced == 0 {
		t.Errorf("no collector acknowledged a resend without storing it: the stall did not exercise the fence")
	}
	if perCollector[0] == 0 || perCollector[1] == 0 {
		t.Errorf("load_balance sent nothing to one collector: %v", perCollector)
	}
}

func lineID(edge, i int) string { return fmt.Sprintf("e%d-%07d", edge, i) }

func uniqueLines(t *testing.T, dir string) int {
	seen := map[string]bool{}
	for _, l := range readForwarded(t, dir) {
		seen[l.id] = true
	}
	return len(seen)
}

type forwardedLine struct {
	id        string
	collector int
}

// readForwarded returns the line ids in both collectors' file sinks.
func readForwarded(t *testing.T, dir string) []forwardedLine {
	t.Helper()
	var out []forwardedLine
	for c := 0; c < 2; c++ {
		files, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("collector%d", c), "out", "lines.log*"))
		for _, f := range files {
			if strings.HasSuffix(f, ".fence") || strings.HasSuffix(f, ".tmp") {
				continue
			}
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				if id, _, ok := strings.Cut(sc.Text(), " "); ok {
					out = append(out, forwardedLine{id: id, collector: c})
				}
			}
			fh.Close()
		}
	}
	return out
}
