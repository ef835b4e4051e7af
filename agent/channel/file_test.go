package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/channel/internal/wal"
)

func openFile(t *testing.T, o Options) *File {
	t.Helper()
	f, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func segFiles(t *testing.T, dir string, part int) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, partDirName(part), "0*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// readAll reads every retained record of partition p with a throwaway
// reader name and returns the offsets and input positions.
func readAll(t *testing.T, c Channel, p int, name string) (offs []uint64, poss []string) {
	t.Helper()
	r, err := c.Reader(name, p)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return offs, poss
		}
		want := testBatch(string(rec.InputPos), rec.Count)
		if !bytes.Equal(rec.Batch, want) {
			t.Fatalf("record %d: batch differs from what was appended", rec.Offset)
		}
		offs = append(offs, rec.Offset)
		poss = append(poss, string(rec.InputPos))
	}
}

// appendN appends records tagged "0".."n-1" (input position = tag).
func appendN(t *testing.T, c Channel, from, n int, producer string) {
	t.Helper()
	for i := from; i < from+n; i++ {
		tag := strconv.Itoa(i)
		if _, err := c.Append(context.Background(), 0, producer, testBatch(tag, 1+i%7), 1+i%7, []byte(tag)); err != nil {
			t.Fatal(err)
		}
	}
}

func seq(from, n int) []string {
	var s []string
	for i := from; i < from+n; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentBytes: 2048}
	f := openFile(t, o)
	// "early" appends once, then "bulk" fills many segments: after reopen
	// early's position must come from a segment header table.
	if _, err := f.Append(context.Background(), 0, "early", testBatch("e", 1), 1, []byte("early-pos")); err != nil {
		t.Fatal(err)
	}
	appendN(t, f, 0, 60, "bulk")
	r, _ := f.Reader("sink", 0)
	for range 10 {
		mustNext(t, r)
	}
	if err := r.Commit(10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir, 0)); n < 5 {
		t.Fatalf("only %d segments; the test needs several", n)
	}

	f = openFile(t, o)
	if pos, ok := f.LastInputPosition(0, "early"); !ok || string(pos) != "early-pos" {
		t.Fatalf("early position after reopen = %q %v", pos, ok)
	}
	if pos, ok := f.LastInputPosition(0, "bulk"); !ok || string(pos) != "59" {
		t.Fatalf("bulk position after reopen = %q %v", pos, ok)
	}
	r, _ = f.Reader("sink", 0)
	if r.Committed() != 10 {
		t.Fatalf("committed after reopen = %d", r.Committed())
	}
	if rec := mustNext(t, r); rec.Offset != 11 || string(rec.InputPos) != "9" {
		t.Fatalf("first record after reopen: offset %d pos %q", rec.Offset, rec.InputPos)
	}
	if off, err := f.Append(context.Background(), 0, "bulk", testBatch("60", 5), 5, []byte("60")); err != nil || off != 62 {
		t.Fatalf("append after reopen: offset %d err %v", off, err)
	}
	if st := f.Stats(); st.DepthEvents == 0 || st.Partitions[0].NextOffset != 63 {
		t.Fatalf("stats after reopen %+v", st.PartitionStats)
	}
}

func TestRetentionAndRecycling(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, Options{Dir: dir, SegmentBytes: 2048})
	a, _ := f.Reader("a", 0)
	b, _ := f.Reader("b", 0)
	appendN(t, f, 0, 80, "p")
	before := len(segFiles(t, dir, 0))
	if err := a.Commit(80); err != nil {
		t.Fatal(err)
	}
	if got := len(segFiles(t, dir, 0)); got != before {
		t.Fatalf("segments deleted while reader b is behind: %d -> %d", before, got)
	}
	if err := b.Commit(40); err != nil {
		t.Fatal(err)
	}
	mid := len(segFiles(t, dir, 0))
	if mid >= before {
		t.Fatalf("no segment freed after both readers passed offset 40 (%d segments)", mid)
	}
	spares, _ := filepath.Glob(filepath.Join(dir, partDirName(0), "spare-*.seg"))
	if len(spares) == 0 {
		t.Fatal("freed segments were not kept as spares")
	}
	// b still sees everything after 40, across the segments it has left.
	b2, _ := f.Reader("b", 0)
	for i := 41; i <= 80; i++ {
		if rec := mustNext(t, b2); rec.Offset != uint64(i) {
			t.Fatalf("offset %d, want %d", rec.Offset, i)
		}
	}
	// Recycled spares become segments again and their stale bytes are
	// never read as records.
	appendN(t, f, 80, 80, "p")
	for i := 81; i <= 160; i++ {
		if rec := mustNext(t, b2); rec.Offset != uint64(i) || string(rec.InputPos) != strconv.Itoa(i-1) {
			t.Fatalf("offset %d pos %q, want %d", rec.Offset, rec.InputPos, i)
		}
	}
	if err := f.RemoveReader("b", 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(160); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir, 0)); n != 1 {
		t.Fatalf("%d segments left after every reader committed everything", n)
	}
	f.Close()
	f = openFile(t, Options{Dir: dir, SegmentBytes: 2048})
	// A new reader starts at the oldest retained record: only the active
	// segment's records are left.
	offs, _ := readAll(t, f, 0, "new")
	if len(offs) == 0 || len(offs) > 20 || offs[len(offs)-1] != 160 {
		t.Fatalf("new reader after full retention sees %v", offs)
	}
	appendN(t, f, 160, 3, "p")
	if offs, _ := readAll(t, f, 0, "new2"); offs[len(offs)-1] != 163 {
		t.Fatalf("offsets after retention and reopen: %v", offs)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	openFile(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: %v", err)
	}
}

func TestLowDiskBlocks(t *testing.T) {
	f := openFile(t, Options{Dir: t.TempDir(), MinFreeBytes: 1 << 30})
	var free atomic.Int64
	f.freeBytes = func() (int64, error) { return free.Load(), nil }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Append(ctx, 0, "p", testBatch("x", 1), 1, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if f.Stats().Appends != 0 {
		t.Fatal("append happened below the free-space floor")
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.Append(context.Background(), 0, "p", testBatch("x", 1), 1, nil)
		done <- err
	}()
	for !f.Stats().LowDisk { // the metric says why appends wait
		runtime.Gosched()
	}
	free.Store(2 << 30)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.LowDisk || st.BlockedTime <= 0 || st.Appends != 1 {
		t.Fatalf("stats after the disk freed up: %+v", st.PartitionStats)
	}
}

func TestOptionsAndMeta(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, Options{Dir: dir, Partitions: 2})
	appendN(t, f, 0, 3, "p")
	f.Close()
	if _, err := Open(Options{Dir: dir, Partitions: 3}); err == nil || !strings.Contains(err.Error(), "2 partitions") {
		t.Fatalf("reopen with another partition count: %v", err)
	}
	if _, err := Open(Options{Dir: dir, Fsync: "sometimes"}); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Fatalf("bad fsync policy: %v", err)
	}
	for i, pol := range []FsyncPolicy{FsyncInterval, FsyncNever} {
		f := openFile(t, Options{Dir: dir, Fsync: pol})
		if f.Partitions() != 2 {
			t.Fatalf("partitions %d", f.Partitions())
		}
		appendN(t, f, 3+i, 1, "p")
		f.Close()
	}
	f = openFile(t, Options{Dir: dir})
	if _, poss := readAll(t, f, 0, "r"); !slices.Equal(poss, seq(0, 5)) {
		t.Fatalf("records after policy changes: %v", poss)
	}
}

// damage opens a channel with records "0".."n-1", closes it, lets hurt
// change the files, reopens, and returns the channel.
func damage(t *testing.T, n int, seg int64, hurt func(dir string)) (*File, string) {
	t.Helper()
	dir := t.TempDir()
	f := openFile(t, Options{Dir: dir, SegmentBytes: seg})
	appendN(t, f, 0, n, "p")
	f.Close()
	hurt(dir)
	f, err := Open(Options{Dir: dir, SegmentBytes: seg})
	if err != nil {
		t.Fatalf("open after damage: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f, dir
}

func TestDamageTornTail(t *testing.T) {
	// One segment; cutting N bytes off the end loses exactly the records
	// whose frames are no longer complete, and appends go on after them.
	probe, dir := damage(t, 20, 1<<20, func(string) {})
	last := segFiles(t, dir, 0)[0]
	probe.Close()
	full, _ := os.ReadFile(last)
	res, err := wal.Scan(full)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int]int{} // record end position -> records complete
	for i, r := range res.Records {
		fr, _ := wal.Decode(full[r.Pos:])
		ends[r.Pos+fr.Size] = i + 1
	}
	for cut := 1; cut < len(full)-200; cut += 37 {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			f, dir := damage(t, 20, 1<<20, func(dir string) {
				if err := os.Truncate(segFiles(t, dir, 0)[0], int64(len(full)-cut)); err != nil {
					t.Fatal(err)
				}
			})
			_ = dir
			want := 0
			for end, k := range ends {
				if end <= len(full)-cut {
					want = max(want, k)
				}
			}
			_, poss := readAll(t, f, 0, "r")
			if !slices.Equal(poss, seq(0, want)) {
				t.Fatalf("cut %d: records %v, want the first %d", cut, poss, want)
			}
			if pos, _ := f.LastInputPosition(0, "p"); want > 0 && string(pos) != strconv.Itoa(want-1) {
				t.Fatalf("hop position %q, want %d", pos, want-1)
			}
			appendN(t, f, want, 2, "p")
			if _, poss := readAll(t, f, 0, "r2"); !slices.Equal(poss, seq(0, want+2)) {
				t.Fatalf("after appending past the torn tail: %v", poss)
			}
			if c := f.Stats().CorruptRecords; c != 0 {
				t.Fatalf("a torn tail counted as %d corrupt records", c)
			}
		})
	}
}

func flipInRecord(t *testing.T, path string, record int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := wal.Scan(b)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Records[record]
	b[r.Pos+wal.HeaderSize+30] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDamageFlippedBit(t *testing.T) {
	t.Run("last segment", func(t *testing.T) {
		f, _ := damage(t, 20, 1<<20, func(dir string) { flipInRecord(t, segFiles(t, dir, 0)[0], 7) })
		_, poss := readAll(t, f, 0, "r")
		want := slices.Delete(seq(0, 20), 7, 8)
		if !slices.Equal(poss, want) {
			t.Fatalf("records %v, want %v", poss, want)
		}
		if c := f.Stats().CorruptRecords; c != 1 {
			t.Fatalf("corrupt_records = %d, want 1", c)
		}
		if pos, _ := f.LastInputPosition(0, "p"); string(pos) != "19" {
			t.Fatalf("hop position %q", pos)
		}
	})
	t.Run("older segment", func(t *testing.T) {
		f, _ := damage(t, 60, 2048, func(dir string) { flipInRecord(t, segFiles(t, dir, 0)[1], 1) })
		_, poss := readAll(t, f, 0, "r")
		if len(poss) != 59 || f.Stats().CorruptRecords != 1 {
			t.Fatalf("%d records, corrupt_records %d; want 59 and 1", len(poss), f.Stats().CorruptRecords)
		}
	})
}

func TestDamageMeta(t *testing.T) {
	for name, hurt := range map[string]func(path string) error{
		"missing":     os.Remove,
		"zero-length": func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"garbage":     func(p string) error { return os.WriteFile(p, []byte("\x00\x01junk"), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			f, dir := damage(t, 5, 1<<20, func(dir string) {
				if err := hurt(filepath.Join(dir, metaName)); err != nil {
					t.Fatal(err)
				}
			})
			if _, poss := readAll(t, f, 0, "r"); !slices.Equal(poss, seq(0, 5)) {
				t.Fatalf("records %v", poss)
			}
			b, _ := os.ReadFile(filepath.Join(dir, metaName))
			if _, err := wal.DecodeMeta(b); err != nil {
				t.Fatalf("metadata not rebuilt: %v", err)
			}
		})
	}
	t.Run("unknown version", func(t *testing.T) {
		dir := t.TempDir()
		f := openFile(t, Options{Dir: dir})
		f.Close()
		os.WriteFile(filepath.Join(dir, metaName), []byte("sluice-channel\nversion 9\npartitions 1\n"), 0o644)
		_, err := Open(Options{Dir: dir})
		if !errors.Is(err, wal.ErrUnknownVersion) || !strings.Contains(err.Error(), "version 9") {
			t.Fatalf("open with version 9: %v", err)
		}
	})
}

func TestDamageSegments(t *testing.T) {
	t.Run("missing middle segment", func(t *testing.T) {
		var lost []string
		f, _ := damage(t, 60, 2048, func(dir string) {
			segs := segFiles(t, dir, 0)
			b, _ := os.ReadFile(segs[2])
			res, _ := wal.Scan(b)
			for _, r := range res.Records {
				lost = append(lost, string(r.InputPos))
			}
			os.Remove(segs[2])
		})
		_, poss := readAll(t, f, 0, "r")
		want := slices.DeleteFunc(seq(0, 60), func(s string) bool { return slices.Contains(lost, s) })
		if len(lost) == 0 || !slices.Equal(poss, want) {
			t.Fatalf("records %v, want %v", poss, want)
		}
		if c := f.Stats().CorruptRecords; c != uint64(len(lost)) {
			t.Fatalf("corrupt_records %d, want %d", c, len(lost))
		}
	})
	t.Run("orphan segment", func(t *testing.T) {
		f, dir := damage(t, 10, 1<<20, func(dir string) {
			os.WriteFile(filepath.Join(dir, partDirName(0), segName(1000)), []byte("not a segment"), 0o644)
			os.WriteFile(filepath.Join(dir, partDirName(0), "notes.seg"), []byte("x"), 0o644)
		})
		if _, poss := readAll(t, f, 0, "r"); !slices.Equal(poss, seq(0, 10)) {
			t.Fatalf("records %v", poss)
		}
		if _, err := os.Stat(filepath.Join(dir, partDirName(0), segName(1000)+".orphan")); err != nil {
			t.Fatalf("orphan not set aside: %v", err)
		}
		if off, err := f.Append(context.Background(), 0, "p", testBatch("10", 1), 1, []byte("10")); err != nil || off != 11 {
			t.Fatalf("append after orphan: %d %v", off, err)
		}
	})
	t.Run("half-finished roll", func(t *testing.T) {
		// A crash during a roll leaves a .tmp file that may hold records
		// with offsets the log will reuse: it is deleted, never recycled.
		var left string
		f, _ := damage(t, 5, 1<<20, func(dir string) {
			img := wal.AppendSegment(nil, &wal.Segment{Base: 6, Version: wal.Version})
			img = wal.AppendData(img, &wal.Data{Offset: 6, Producer: []byte("p"), InputPos: []byte("stale")})
			left = filepath.Join(dir, partDirName(0), "new-1.tmp")
			os.WriteFile(left, img, 0o644)
		})
		if _, err := os.Stat(left); !os.IsNotExist(err) {
			t.Fatalf("leftover roll file still there: %v", err)
		}
		if pos, _ := f.LastInputPosition(0, "p"); string(pos) != "4" {
			t.Fatalf("hop position %q", pos)
		}
	})
	t.Run("every segment gone", func(t *testing.T) {
		dir := t.TempDir()
		f := openFile(t, Options{Dir: dir, SegmentBytes: 2048})
		appendN(t, f, 0, 30, "p")
		r, _ := f.Reader("sink", 0)
		for range 30 {
			mustNext(t, r)
		}
		r.Commit(30)
		f.Close()
		for _, s := range segFiles(t, dir, 0) {
			os.Remove(s)
		}
		f = openFile(t, Options{Dir: dir, SegmentBytes: 2048})
		if off, err := f.Append(context.Background(), 0, "p", testBatch("30", 1), 1, []byte("30")); err != nil || off != 31 {
			t.Fatalf("offset after losing every segment: %d %v (offsets must only grow)", off, err)
		}
		r, _ = f.Reader("sink", 0)
		if rec := mustNext(t, r); rec.Offset != 31 {
			t.Fatalf("reader resumes at %d", rec.Offset)
		}
	})
	t.Run("crash between seal and next segment", func(t *testing.T) {
		f, dir := damage(t, 5, 1<<20, func(dir string) {
			last := segFiles(t, dir, 0)[0]
			b, _ := os.ReadFile(last)
			res, _ := wal.Scan(b)
			b = wal.AppendMarker(b[:res.End], wal.KindSeal, res.Next)
			os.WriteFile(last, b, 0o644)
		})
		r, _ := f.Reader("r", 0)
		for i := range 5 {
			if rec := mustNext(t, r); rec.Offset != uint64(i+1) {
				t.Fatalf("offset %d", rec.Offset)
			}
		}
		if _, ok, err := r.TryNext(); ok || err != nil {
			t.Fatalf("past the seal: ok=%v err=%v", ok, err)
		}
		appendN(t, f, 5, 1, "p")
		if rec := mustNext(t, r); rec.Offset != 6 || string(rec.InputPos) != "5" {
			t.Fatalf("after the seal: offset %d pos %q", rec.Offset, rec.InputPos)
		}
		if n := len(segFiles(t, dir, 0)); n != 2 {
			t.Fatalf("%d segments, want a new one after the sealed one", n)
		}
	})
	t.Run("zero-length last segment", func(t *testing.T) {
		f, _ := damage(t, 60, 2048, func(dir string) {
			segs := segFiles(t, dir, 0)
			os.Truncate(segs[len(segs)-1], 0)
		})
		_, poss := readAll(t, f, 0, "r")
		if len(poss) == 0 || !slices.Equal(poss, seq(0, len(poss))) {
			t.Fatalf("records %v", poss)
		}
		if pos, _ := f.LastInputPosition(0, "p"); string(pos) != poss[len(poss)-1] {
			t.Fatalf("hop position %q, last record %q", pos, poss[len(poss)-1])
		}
	})
	t.Run("damaged reader position", func(t *testing.T) {
		dir := t.TempDir()
		f := openFile(t, Options{Dir: dir})
		appendN(t, f, 0, 5, "p")
		r, _ := f.Reader("sink", 0)
		mustNext(t, r)
		r.Commit(1)
		f.Close()
		os.WriteFile(f.parts[0].posPath("sink"), []byte("bad"), 0o644)
		f = openFile(t, Options{Dir: dir})
		r, _ = f.Reader("sink", 0)
		if rec := mustNext(t, r); rec.Offset != 1 {
			t.Fatalf("reader with a damaged position restarts at %d, want the oldest record", rec.Offset)
		}
	})
}

func TestFsyncPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy FsyncPolicy
		// fdatasyncs for: append (creates the segment), 3 more appends, Close
		want uint64
	}{
		{FsyncAlways, 4},   // one per group
		{FsyncInterval, 2}, // the new segment, then the final one at Close (the hour never passes)
		{FsyncNever, 0},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			f := openFile(t, Options{Dir: t.TempDir(), Fsync: tc.policy, FsyncInterval: time.Hour})
			appendN(t, f, 0, 4, "p")
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got := f.Stats().Fsyncs; got != tc.want {
				t.Fatalf("%d fdatasyncs, want %d", got, tc.want)
			}
		})
	}
}
