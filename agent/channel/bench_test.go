package channel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/agent/event"
)

// benchBatch is 1,024 events of 200 bytes each in the wire form.
func benchBatch() ([]byte, int) {
	const n, eventSize = 1024, 200
	body := make([]byte, eventSize-(8+4+4+4))
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var b event.Builder
	for i := range n {
		b.Add(&event.Event{Time: int64(i), Body: body})
	}
	return append([]byte(nil), b.Bytes()...), n
}

// BenchmarkAppendFsync appends 1,024 × 200 B batches with fsync "always" and
// reports channel throughput ÷ raw throughput (ratio_raw). The raw baseline
// is plain os.File writes of the same bytes into a new file with fdatasync
// after each batch, on the same disk. The two alternate in blocks of 4
// batches, and ratio_raw is the median of the blocks' ratios, so that bursts
// of fsync load from other processes on this shared disk fall on both alike
// and a single stalled block does not decide the figure. ratio_total is the
// plain ratio of the summed times.
func BenchmarkAppendFsync(b *testing.B) {
	batch, n := benchBatch()
	dir := b.TempDir()
	c, err := Open(Options{Dir: filepath.Join(dir, "ch")})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	raw, err := os.Create(filepath.Join(dir, "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	var chanTime, rawTime time.Duration
	var ratios []float64
	const block = 4
	for done := 0; done < b.N; done += block {
		k := min(block, b.N-done)
		start := time.Now()
		for i := range k {
			if _, err := c.Append(ctx, 0, "bench", batch, n, []byte{byte(i)}); err != nil {
				b.Fatal(err)
			}
		}
		chanBlock := time.Since(start)
		chanTime += chanBlock
		start = time.Now()
		for range k {
			if _, err := raw.Write(batch); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fdatasync(int(raw.Fd())); err != nil {
				b.Fatal(err)
			}
		}
		rawBlock := time.Since(start)
		rawTime += rawBlock
		ratios = append(ratios, rawBlock.Seconds()/chanBlock.Seconds())
	}
	b.StopTimer()
	slices.Sort(ratios)
	secs := chanTime.Seconds()
	b.ReportMetric(float64(b.N*len(batch))/secs/1e6, "MB/s")
	b.ReportMetric(float64(b.N*n)/secs, "events/s")
	b.ReportMetric(ratios[len(ratios)/2], "ratio_raw")
	b.ReportMetric(rawTime.Seconds()/secs, "ratio_total")
}

// BenchmarkAppendFsyncParallel has 4 appenders share one partition: group
// commit makes them share fdatasyncs (reported as appends/fsync).
func BenchmarkAppendFsyncParallel(b *testing.B) {
	batch, n := benchBatch()
	c, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := (b.N + 3) / 4
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if _, err := c.Append(context.Background(), 0, string(rune('a'+w)), batch, n, nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	b.StopTimer()
	st := c.Stats()
	b.ReportMetric(float64(4*per*n)/secs, "events/s")
	b.ReportMetric(float64(st.Appends)/float64(max(st.Fsyncs, 1)), "appends/fsync")
}

// BenchmarkRead reads back committed batches (CRC-checked, handed out
// without copying or decoding) and reports events/s, plus the ratio to a
// raw baseline that only reads the same segment files in 4 MiB chunks.
func BenchmarkRead(b *testing.B) {
	batch, n := benchBatch()
	dir := b.TempDir()
	c, err := Open(Options{Dir: dir, Fsync: FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const batches = 200 // ~40 MiB, 204,800 events
	for range batches {
		if _, err := c.Append(context.Background(), 0, "bench", batch, n, nil); err != nil {
			b.Fatal(err)
		}
	}
	r, err := c.Reader("bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(batches * len(batch)))
	b.ResetTimer()
	start := time.Now()
	events := 0
	for range b.N {
		if err := r.Seek(0); err != nil {
			b.Fatal(err)
		}
		for {
			rec, ok, err := r.TryNext()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			events += rec.Count
		}
	}
	secs := time.Since(start).Seconds()
	b.StopTimer()
	if events != b.N*batches*n {
		b.Fatalf("read %d events, want %d", events, b.N*batches*n)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, partDirName(0), "0*.seg"))
	buf := make([]byte, readChunk)
	rawStart := time.Now()
	for range b.N {
		for _, s := range segs {
			f, err := os.Open(s)
			if err != nil {
				b.Fatal(err)
			}
			for off := int64(0); ; off += readChunk {
				m, _ := f.ReadAt(buf, off)
				if m < len(buf) {
					break
				}
			}
			f.Close()
		}
	}
	raw := time.Since(rawStart).Seconds()
	b.ReportMetric(float64(events)/secs, "events/s")
	b.ReportMetric(raw/secs, "ratio_raw")
}

// BenchmarkReopen measures Open (recovery) with a backlog of more than
// 1 GiB that no reader has consumed, the last 64 MiB segment nearly full:
// recovery reads only that last segment. ns/op is the reopen time. "cold"
// first evicts the channel's files from the page cache (fadvise DONTNEED on
// those files only), "warm" does not.
func BenchmarkReopen(b *testing.B) {
	dir, backlog, segs := reopenBacklog(b)
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				if cold {
					evict(b, dir)
				}
				b.StartTimer()
				c, err := Open(Options{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if st := c.Stats(); st.DepthBytes < 1<<30 {
					b.Fatalf("backlog after reopen is %d bytes", st.DepthBytes)
				}
				c.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(backlog)/(1<<30), "backlog_GiB")
			b.ReportMetric(float64(segs), "segments")
		})
	}
}

// evict drops the page cache of every file under dir (and only those).
func evict(b *testing.B, dir string) {
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		// Written back first: only clean pages can be dropped.
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return err
		}
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// The backlog is written once per process (the benchmark function runs
// several times while b.N is calibrated) and removed by TestMain.
var backlogDir struct {
	sync.Once
	dir         string
	bytes, segs int64
	err         error
}

func reopenBacklog(b *testing.B) (string, int64, int64) {
	backlogDir.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-reopen-bench-")
		if err != nil {
			backlogDir.err = err
			return
		}
		backlogDir.dir = dir
		batch, n := benchBatch()
		c, err := Open(Options{Dir: dir, Fsync: FsyncNever})
		if err != nil {
			backlogDir.err = err
			return
		}
		defer c.Close()
		if _, err := c.Reader("slow", 0); err != nil {
			backlogDir.err = err
			return
		}
		const target = 1<<30 + 60<<20
		for written := 0; written < target; written += len(batch) {
			if _, err := c.Append(context.Background(), 0, "bench", batch, n, []byte("pos")); err != nil {
				backlogDir.err = err
				return
			}
		}
		segs, _ := filepath.Glob(filepath.Join(dir, partDirName(0), "0*.seg"))
		for _, s := range segs {
			if st, err := os.Stat(s); err == nil {
				backlogDir.bytes += st.Size()
			}
		}
		backlogDir.segs = int64(len(segs))
	})
	if backlogDir.err != nil {
		b.Fatal(backlogDir.err)
	}
	return backlogDir.dir, backlogDir.bytes, backlogDir.segs
}

// TestMain removes the reopen backlog and fails the run if a goroutine
// outlives the tests (every channel here is closed).
func TestMain(m *testing.M) {
	code := m.Run()
	if backlogDir.dir != "" {
		os.RemoveAll(backlogDir.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// BenchmarkCommit is the cost of one durable reader commit (atomic file
// write: temp file, fdatasync, rename, directory fsync), so runners can pick
// how often to commit.
func BenchmarkCommit(b *testing.B) {
	c, err := Open(Options{Dir: b.TempDir(), Fsync: FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for range b.N {
		if _, err := c.Append(context.Background(), 0, "p", nil, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	r, err := c.Reader("r", 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := r.Commit(uint64(i + 1)); err != nil {
			b.Fatal(err)
		}
	}
}
