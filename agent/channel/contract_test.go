package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
)

// impl opens a channel of one implementation; reopen (nil for Memory)
// closes and reopens it on the same storage.
type impl struct {
	name string
	open func(t *testing.T, o Options) Channel
}

func implementations() []impl {
	return []impl{
		{"memory", func(t *testing.T, o Options) Channel {
			m := NewMemory(o)
			t.Cleanup(func() { m.Close() })
			return m
		}},
		{"file", func(t *testing.T, o Options) Channel {
			if o.Dir == "" {
				o.Dir = t.TempDir()
			}
			f, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}},
	}
}

// testBatch returns a wire-form batch of n events whose bodies name tag.
func testBatch(tag string, n int) []byte {
	var b event.Builder
	for i := range n {
		b.Add(&event.Event{Time: int64(i), Body: fmt.Appendf(nil, "%s-%d", tag, i)})
	}
	return append([]byte(nil), b.Bytes()...)
}

func mustAppend(t *testing.T, c Channel, p int, producer, tag string, n int) uint64 {
	t.Helper()
	off, err := c.Append(context.Background(), p, producer, testBatch(tag, n), n, []byte("pos-"+tag))
	if err != nil {
		t.Fatalf("append %s: %v", tag, err)
	}
	return off
}

func mustNext(t *testing.T, r Reader) Record {
	t.Helper()
	rec, ok, err := r.TryNext()
	if err != nil || !ok {
		t.Fatalf("TryNext: ok=%v err=%v", ok, err)
	}
	return rec
}

func TestContract(t *testing.T) {
	for _, im := range implementations() {
		t.Run(im.name, func(t *testing.T) {
			t.Run("order and hop position", func(t *testing.T) {
				c := im.open(t, Options{})
				for i := range 5 {
					off := mustAppend(t, c, 0, "src", fmt.Sprint(i), i+1)
					if off != uint64(i+1) {
						t.Fatalf("offset %d, want %d", off, i+1)
					}
				}
				if pos, ok := c.LastInputPosition(0, "src"); !ok || string(pos) != "pos-4" {
					t.Fatalf("LastInputPosition = %q %v", pos, ok)
				}
				if _, ok := c.LastInputPosition(0, "other"); ok {
					t.Fatal("unknown producer has a position")
				}
				r, err := c.Reader("sink", 0)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 5 {
					rec := mustNext(t, r)
					want := testBatch(fmt.Sprint(i), i+1)
					if rec.Offset != uint64(i+1) || !bytes.Equal(rec.Batch, want) || rec.Count != i+1 ||
						rec.Producer != "src" || string(rec.InputPos) != fmt.Sprintf("pos-%d", i) {
						t.Fatalf("record %d = %+v", i, rec)
					}
					if n, err := event.Count(rec.Batch); err != nil || n != i+1 {
						t.Fatalf("batch does not decode: %d %v", n, err)
					}
				}
				if _, ok, err := r.TryNext(); ok || err != nil {
					t.Fatalf("TryNext past end: ok=%v err=%v", ok, err)
				}
				if err := r.Seek(2); err != nil {
					t.Fatal(err)
				}
				if rec := mustNext(t, r); rec.Offset != 3 {
					t.Fatalf("after Seek(2) got offset %d", rec.Offset)
				}
				if err := r.Commit(99); err == nil {
					t.Fatal("commit past the end accepted")
				}
				for _, bad := range []struct {
					batch []byte
					count int
				}{{testBatch("x", 2), 3}, {nil, 1}, {[]byte{9, 0, 0, 0, 1}, 9}} {
					if _, err := c.Append(context.Background(), 0, "src", bad.batch, bad.count, nil); err == nil || !strings.Contains(err.Error(), `"src"`) {
						t.Fatalf("bad batch (%d bytes, count %d): %v", len(bad.batch), bad.count, err)
					}
				}
				if c.Stats().Partitions[0].NextOffset != 6 {
					t.Fatal("a refused append used an offset")
				}
				// Commit of records this handle never returned (after a
				// restart, say): depth still counts exactly.
				if _, err := c.Reader("", 0); err == nil {
					t.Fatal("empty reader name accepted")
				}
				if _, err := c.Reader(strings.Repeat("n", 121), 0); err == nil {
					t.Fatal("121-byte reader name accepted")
				}
				fresh, _ := c.Reader("fresh", 0)
				if err := fresh.Commit(3); err != nil {
					t.Fatal(err)
				}
				if err := r.Commit(5); err != nil {
					t.Fatal(err)
				}
				if d := c.Stats().DepthEvents; d != 4+5 {
					t.Fatalf("depth %d events, want 9 (records 4 and 5)", d)
				}
			})
			t.Run("partitions are independent", func(t *testing.T) {
				c := im.open(t, Options{Partitions: 3})
				if c.Partitions() != 3 {
					t.Fatalf("Partitions() = %d", c.Partitions())
				}
				mustAppend(t, c, 2, "a", "x", 1)
				mustAppend(t, c, 2, "a", "y", 1)
				if off := mustAppend(t, c, 0, "a", "z", 1); off != 1 {
					t.Fatalf("partition 0 offset %d", off)
				}
				if pos, _ := c.LastInputPosition(2, "a"); string(pos) != "pos-y" {
					t.Fatalf("partition 2 position %q", pos)
				}
				if pos, _ := c.LastInputPosition(0, "a"); string(pos) != "pos-z" {
					t.Fatalf("partition 0 position %q", pos)
				}
				if _, err := c.Append(context.Background(), 3, "a", nil, 0, nil); err == nil {
					t.Fatal("append to partition 3 of 3 accepted")
				}
				r, _ := c.Reader("r", 1)
				if _, ok, _ := r.TryNext(); ok {
					t.Fatal("empty partition returned a record")
				}
			})
			t.Run("fan-out readers and fan-in producers", func(t *testing.T) {
				c := im.open(t, Options{})
				r1, _ := c.Reader("one", 0)
				r2, _ := c.Reader("two", 0)
				mustAppend(t, c, 0, "p1", "a", 2)
				mustAppend(t, c, 0, "p2", "b", 3)
				for _, r := range []Reader{r1, r2} {
					if a, b := mustNext(t, r), mustNext(t, r); a.Producer != "p1" || b.Producer != "p2" {
						t.Fatalf("producers %q %q", a.Producer, b.Producer)
					}
				}
				if err := r1.Commit(2); err != nil {
					t.Fatal(err)
				}
				st := c.Stats()
				if st.DepthEvents != 5 { // "two" has committed nothing
					t.Fatalf("depth %d events, want 5", st.DepthEvents)
				}
				if err := r2.Commit(1); err != nil {
					t.Fatal(err)
				}
				if st := c.Stats(); st.DepthEvents != 3 || st.Appends != 2 {
					t.Fatalf("stats %+v", st.PartitionStats)
				}
				if err := c.RemoveReader("two", 0); err != nil {
					t.Fatal(err)
				}
				if st := c.Stats(); st.DepthEvents != 0 {
					t.Fatalf("depth after removing slow reader %d", st.DepthEvents)
				}
				// A replaced handle is retired; the new one starts after Committed.
				r1b, _ := c.Reader("one", 0)
				if _, _, err := r1.TryNext(); !errors.Is(err, ErrReaderReplaced) {
					t.Fatalf("old handle: %v", err)
				}
				if r1b.Committed() != 2 {
					t.Fatalf("new handle committed %d", r1b.Committed())
				}
			})
			t.Run("capacity blocks and releases", func(t *testing.T) {
				batch := testBatch("cap", 10)
				c := im.open(t, Options{MaxBytes: 16 << 10, SegmentBytes: 4 << 10})
				r, _ := c.Reader("r", 0)
				var last uint64
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				for {
					// A cancelled context still appends while there is room.
					off, err := c.Append(ctx, 0, "p", batch, 10, nil)
					if errors.Is(err, context.Canceled) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					last = off
					if last > 1000 {
						t.Fatal("capacity never reached")
					}
				}
				if st := c.Stats(); st.BlockedTime < 0 || st.DiskBytes <= 0 {
					t.Fatalf("stats %+v", st.PartitionStats)
				}
				done := make(chan error, 1)
				go func() {
					_, err := c.Append(context.Background(), 0, "p", batch, 10, nil)
					done <- err
				}()
				for range last {
					mustNext(t, r)
				}
				if err := r.Commit(last); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatalf("append after release: %v", err)
				}
				if _, err := c.Append(context.Background(), 0, "p", make([]byte, 32<<10), 0, nil); err == nil {
					t.Fatal("record larger than max_bytes accepted")
				}
			})
			t.Run("next blocks until append and until close", func(t *testing.T) {
				c := im.open(t, Options{})
				r, _ := c.Reader("r", 0)
				got := make(chan Record, 1)
				go func() {
					rec, err := r.Next(context.Background())
					if err != nil {
						t.Error(err)
					}
					got <- rec
				}()
				mustAppend(t, c, 0, "p", "late", 1)
				if rec := <-got; rec.Offset != 1 {
					t.Fatalf("Next got %+v", rec)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				if _, err := r.Next(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("Next with cancelled ctx: %v", err)
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := r.Next(context.Background()); !errors.Is(err, ErrClosed) {
						t.Errorf("Next after Close: %v", err)
					}
				}()
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				if err := c.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if _, err := c.Append(context.Background(), 0, "p", nil, 0, nil); !errors.Is(err, ErrClosed) {
					t.Fatalf("Append after Close: %v", err)
				}
			})
			t.Run("tailing reader while segments roll", func(t *testing.T) {
				c := im.open(t, Options{SegmentBytes: 4096, MaxBytes: 64 << 10})
				r, _ := c.Reader("tail", 0)
				const total = 300
				errs := make(chan error, 1)
				go func() {
					for i := range total {
						tag := fmt.Sprint(i)
						if _, err := c.Append(context.Background(), 0, "p", testBatch(tag, 1+i%9), 1+i%9, []byte(tag)); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
				for i := range total {
					rec, err := r.Next(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					tag := fmt.Sprint(i)
					if rec.Offset != uint64(i+1) || string(rec.InputPos) != tag || !bytes.Equal(rec.Batch, testBatch(tag, 1+i%9)) {
						t.Fatalf("record %d: offset %d pos %q (whole batch: %v)", i, rec.Offset, rec.InputPos, bytes.Equal(rec.Batch, testBatch(tag, 1+i%9)))
					}
					// Committing as it goes frees segments (and lets the
					// capacity-bound appender continue).
					if err := r.Commit(rec.Offset); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
				if st := c.Stats(); st.DepthEvents != 0 {
					t.Fatalf("depth %d after reading everything", st.DepthEvents)
				}
			})
			t.Run("concurrent appenders", func(t *testing.T) {
				c := im.open(t, Options{})
				var wg sync.WaitGroup
				for w := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range 50 {
							if _, err := c.Append(context.Background(), 0, fmt.Sprint("w", w), testBatch("c", 3), 3, fmt.Append(nil, i)); err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				r, _ := c.Reader("r", 0)
				seen := map[string]int{}
				for i := range 200 {
					rec := mustNext(t, r)
					if rec.Offset != uint64(i+1) {
						t.Fatalf("offset %d at %d", rec.Offset, i)
					}
					if want := fmt.Sprint(seen[rec.Producer]); string(rec.InputPos) != want {
						t.Fatalf("producer %s position %s, want %s", rec.Producer, rec.InputPos, want)
					}
					seen[rec.Producer]++
				}
				if st := c.Stats(); st.DepthEvents != 600 {
					t.Fatalf("depth %d", st.DepthEvents)
				}
			})
		})
	}
}
