package channel

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
)

const crashDirEnv = "SLUICE_CHANNEL_CRASH_DIR"

var crashProducers = []string{"w0", "w1", "w2"}

func crashOptions(dir string) Options {
	return Options{Dir: dir, SegmentBytes: 32 << 10}
}

// crashBatch is producer w's batch number seq: a few events whose bodies
// name it, so a verifier can tell a whole batch from a partial one.
func crashBatch(w string, seq int) ([]byte, int) {
	n := 1 + seq%11
	var b event.Builder
	for i := range n {
		b.Add(&event.Event{Time: int64(seq), Body: fmt.Appendf(nil, "%s/%d/%d/%s", w, seq, i, strings.Repeat("x", seq%50))})
	}
	return b.Bytes(), n
}

// TestHelperProcess is the crash test's child: it appends batches from
// three producers, each resuming after its last durable input position (the
// hop protocol), and prints "ack <producer> <seq>" for each acknowledged
// append until it is killed. Without the environment variable it does
// nothing.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return
	}
	f, err := Open(crashOptions(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	// A reader that consumes and commits, so retention runs during crashes.
	go func() {
		r, err := f.Reader("child", 0)
		if err != nil {
			return
		}
		for {
			rec, err := r.Next(context.Background())
			if err != nil {
				return
			}
			if rec.Offset%5 == 0 {
				r.Commit(rec.Offset)
			}
		}
	}()
	var wg sync.WaitGroup
	for _, name := range crashProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := 0
			if pos, ok := f.LastInputPosition(0, name); ok {
				n, err := strconv.Atoi(string(pos))
				if err != nil {
					panic(err)
				}
				next = n + 1
			}
			for seq := next; ; seq++ {
				batch, n := crashBatch(name, seq)
				if _, err := f.Append(context.Background(), 0, name, batch, n, []byte(strconv.Itoa(seq))); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Fprintf(w, "ack %s %d\n", name, seq)
				w.Flush()
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[string]int{}   // highest acknowledged seq per producer
	nextSeq := map[string]int{} // next seq the verifier expects per producer
	for _, w := range crashProducers {
		acked[w] = -1
	}
	// Register the verifier before any data exists, so that retention
	// (driven by the child's reader) keeps everything it has not checked.
	f, err := Open(crashOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Reader("verify", 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 1 + rng.IntN(400)
		sc := bufio.NewScanner(stdout)
		seen := 0
		for sc.Scan() {
			var w string
			var seq int
			if _, err := fmt.Sscanf(sc.Text(), "ack %s %d", &w, &seq); err != nil {
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
			acked[w] = max(acked[w], seq)
			if seen++; seen == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		err = cmd.Wait()
		if seen < killAfter {
			t.Fatalf("round %d: child ended after %d acks: %v\n%s", round, seen, err, stderr.String())
		}

		f, err := Open(crashOptions(dir))
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		r, err := f.Reader("verify", 0)
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for {
			rec, ok, err := r.TryNext()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if !ok {
				break
			}
			seq, err := strconv.Atoi(string(rec.InputPos))
			if err != nil || seq != nextSeq[rec.Producer] {
				t.Fatalf("round %d: offset %d: producer %s seq %q, want %d (lost, duplicated or out of order)",
					round, rec.Offset, rec.Producer, rec.InputPos, nextSeq[rec.Producer])
			}
			want, n := crashBatch(rec.Producer, seq)
			if rec.Count != n || string(rec.Batch) != string(want) {
				t.Fatalf("round %d: offset %d: batch %s/%d is not whole", round, rec.Offset, rec.Producer, seq)
			}
			nextSeq[rec.Producer]++
			last = rec.Offset
		}
		for _, w := range crashProducers {
			if nextSeq[w]-1 < acked[w] {
				t.Fatalf("round %d: producer %s acknowledged seq %d but only %d are stored", round, w, acked[w], nextSeq[w])
			}
			pos, ok := f.LastInputPosition(0, w)
			if nextSeq[w] > 0 && (!ok || string(pos) != strconv.Itoa(nextSeq[w]-1)) {
				t.Fatalf("round %d: producer %s hop position %q, last stored seq %d", round, w, pos, nextSeq[w]-1)
			}
		}
		if f.Stats().CorruptRecords != 0 {
			t.Fatalf("round %d: a process crash produced corrupt records", round)
		}
		if last > 0 {
			if err := r.Commit(last); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, w := range crashProducers {
		total += nextSeq[w]
	}
	t.Logf("20 SIGKILLs, %d batches verified; last acknowledged per producer %v", total, acked)
}
