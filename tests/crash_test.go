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
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/internal/orders"
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

[channels.raw]
segment_bytes = "8MiB"
max_bytes = "256MiB"

[channels.orders]
segment_bytes = "8MiB"
max_bytes = "256MiB"

[sources.log]
type = "tail"
output = "raw"
batch_size = 2048
[sources.log.config]
paths = ["DIR/logs/orders.log*"]
poll_interval = "20ms"
rotate_wait = "60s"

[bolts.parse]
wasm = "DIR/order-parse.wasm"
input = "raw"
output = "orders"

[sinks.out]
type = "file"
input = "orders"
[sinks.out.config]
path = "DIR/out/orders.jsonl"
`

// TestCrashKill9 writes an order log with rotations while the agent
// (tail → file channel → order-parse → file channel → file sink) is killed
// with SIGKILL ten times at random moments and restarted; at the end the
// file sink must hold every order exactly once.
func TestCrashKill9(t *testing.T) {
	if os.Getenv("SLUICE_TEST_SHORT") != "" {
		t.Skip("SLUICE_TEST_SHORT set: long end-to-end test skipped")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	if _, err := plugintool.Build(context.Background(), "../wasm-examples/order-parse", filepath.Join(dir, "order-parse.wasm")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"logs", "out"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "crash.toml")
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(crashConfig, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}

	total := 1_000_000
	if s := os.Getenv("SLUICE_CRASH_LINES"); s != "" {
		fmt.Sscan(s, &total)
	}
	const rotateEvery = 100_000
	g := orders.NewGenerator(orders.GenConfig{Seed: 42})

	// The writer: ~250k lines/s, rename+create rotation every rotateEvery lines.
	var written atomic.Int64
	genDone := make(chan error, 1)
	go func() {
		genDone <- func() error {
			logPath := filepath.Join(dir, "logs", "orders.log")
			f, err := os.Create(logPath)
			if err != nil {
				return err
			}
			var buf []byte
			for i := 0; i < total; {
				buf = buf[:0]
				for k := 0; k < 2500 && i < total; k++ {
					buf = g.AppendLine(buf, uint64(i))
					i++
				}
				if _, err := f.Write(buf); err != nil {
					return err
				}
				written.Store(int64(i))
				if i%rotateEvery == 0 && i < total {
					f.Close()
					if err := os.Rename(logPath, fmt.Sprintf("%s.%02d", logPath, i/rotateEvery)); err != nil {
						return err
					}
					if f, err = os.Create(logPath); err != nil {
						return err
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			return f.Close()
		}()
	}()

	start := func() (*exec.Cmd, *bytes.Buffer) {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "run", "-c", cfgPath)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stderr
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for kill := 1; kill <= 10; kill++ {
		cmd, stderr := start()
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("agent exited before kill %d (%v):\n%s", kill, err, stderr)
		}
		t.Logf("kill %d: %d lines written, %d in the sink", kill, written.Load(), len(readIDs(t, dir)))
	}
	if err := <-genDone; err != nil {
		t.Fatal(err)
	}
	cmd, stderr := start()
	deadline := time.Now().Add(3 * time.Minute)
	for len(readIDs(t, dir)) < total && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent did not stop cleanly on SIGTERM: %v\n%s", err, stderr)
	}

	ids := readIDs(t, dir)
	count := map[string]int{}
	for _, id := range ids {
		count[id]++
	}
	lost, dup := 0, 0
	var examples []string
	for i := 0; i < total; i++ {
		id := g.Order(uint64(i)).OrderID
		switch n := count[id]; {
		case n == 0:
			lost++
			if len(examples) < 5 {
				examples = append(examples, "lost "+id)
			}
		case n > 1:
			dup += n - 1
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s ×%d", id, n))
			}
		}
		delete(count, id)
	}
	t.Logf("crash test: %d orders, 10 SIGKILLs, %d rotations: lost %d, duplicated %d, unexpected %d", total, total/rotateEvery-1, lost, dup, len(count))
	if lost != 0 || dup != 0 || len(count) != 0 {
		t.Fatalf("lost %d, duplicated %d, unexpected %d (%v)", lost, dup, len(count), examples)
	}
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
