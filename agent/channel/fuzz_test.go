package channel

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/agent/channel/internal/wal"
)

// FuzzSegmentFile feeds arbitrary bytes to the two paths that read segment
// files: as the last segment (recovery's scan) and as an older segment (a
// reader walking frames). Open must succeed, reading must end, offsets must
// grow, and the channel must take new appends.
func FuzzSegmentFile(f *testing.F) {
	img := wal.AppendSegment(nil, &wal.Segment{Base: 1, Version: wal.Version})
	for off := uint64(1); off <= 3; off++ {
		img = wal.AppendData(img, &wal.Data{Offset: off, Count: 1, Producer: []byte("p"), InputPos: []byte{byte(off)}, Batch: testBatch("f", 1)})
		img = wal.AppendMarker(img, wal.KindSync, off+1)
	}
	f.Add(img, false)
	f.Add(wal.AppendMarker(img, wal.KindSeal, 4), true)
	f.Add(img[:len(img)-5], false)
	f.Add([]byte("garbage"), true)
	f.Fuzz(func(t *testing.T, seg []byte, older bool) {
		dir := t.TempDir()
		pdir := filepath.Join(dir, partDirName(0))
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pdir, segName(1)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		if older {
			// A valid later segment makes the fuzzed one an older segment,
			// read by readers rather than scanned by recovery.
			next := wal.AppendSegment(nil, &wal.Segment{Base: 100, Version: wal.Version})
			next = wal.AppendData(next, &wal.Data{Offset: 100, Producer: []byte("p"), InputPos: []byte("last")})
			if err := os.WriteFile(filepath.Join(pdir, segName(100)), next, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer c.Close()
		r, err := c.Reader("r", 0)
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for range 10000 {
			rec, ok, err := r.TryNext()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if rec.Offset <= last {
				t.Fatalf("offset %d after %d", rec.Offset, last)
			}
			last = rec.Offset
		}
		off, err := c.Append(context.Background(), 0, "p", nil, 0, []byte("new"))
		if err != nil || off <= last {
			t.Fatalf("append after damage: offset %d (last read %d): %v", off, last, err)
		}
		if rec, ok, err := r.TryNext(); err != nil || !ok || rec.Offset != off {
			t.Fatalf("the new record is not readable: %+v %v %v", rec, ok, err)
		}
	})
}
