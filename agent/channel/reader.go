package channel

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sluicehq/sluice/agent/channel/internal/wal"
)

// readChunk is how much a reader fetches per read call.
const readChunk = 4 << 20

type through struct{ offset, events, bytes uint64 }

// maxInflight bounds the returned-but-uncommitted records a handle
// remembers.
const maxInflight = 4096

type fileReader struct {
	p     *partition
	name  string
	state *readerState

	// Guarded by p.mu.
	replaced bool
	seg      *segment // segment being read; holds back its retention

	// Used only by the handle's goroutine.
	fd       *os.File
	pos      int64  // file position of the next frame in seg
	expect   uint64 // offset the next data frame should carry
	last     uint64 // records up to this offset are not returned
	buf      []byte
	bufStart int64
	// returned records not yet committed, to commit without a scan
	inflight []through
	producer string // last producer name returned, reused to save an allocation per record
}

func (p *partition) reader(name string) (Reader, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f.isClosed() {
		return nil, ErrClosed
	}
	st, ok := p.readers[name]
	if !ok {
		pos := p.oldestPositionLocked(name)
		if err := writeAtomic(p.posPath(name), wal.EncodePosition(pos)); err != nil {
			return nil, fmt.Errorf("channel: register reader %q: %w", name, err)
		}
		st = &readerState{pos: pos}
		p.readers[name] = st
	}
	if old := st.handle; old != nil {
		old.replaced = true
		old.seg = nil
		old.abandonLocked()
	}
	h := &fileReader{p: p, name: name, state: st, last: st.pos.Offset}
	st.handle = h
	return h, nil
}

func (p *partition) posPath(name string) string {
	return filepath.Join(p.rdir, hex.EncodeToString([]byte(name))+".pos")
}

func (p *partition) removeReader(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.readers[name]
	if !ok {
		return nil
	}
	if err := os.Remove(p.posPath(name)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("channel: remove reader %q: %w", name, err)
	}
	if err := syncDir(p.rdir); err != nil {
		return fmt.Errorf("channel: remove reader %q: %w", name, err)
	}
	if h := st.handle; h != nil {
		h.replaced = true
		h.seg = nil
		h.abandonLocked()
	}
	delete(p.readers, name)
	p.retainLocked()
	return nil
}

// abandonLocked closes the handle's file from another goroutine (a
// replacing handle, RemoveReader, Close). It leaves r.fd set: only the
// handle's own goroutine writes that field, and os.File tolerates a Close
// concurrent with a ReadAt (which then fails; the handle reports why).
func (r *fileReader) abandonLocked() {
	if r.fd != nil {
		r.fd.Close()
	}
}

// closeFileLocked closes the handle's file; the handle's goroutine only.
func (r *fileReader) closeFileLocked() {
	if r.fd != nil {
		r.fd.Close()
		r.fd = nil
	}
}

func (r *fileReader) Next(ctx context.Context) (Record, error) {
	for {
		r.p.mu.Lock()
		ch := r.p.changed
		r.p.mu.Unlock()
		rec, ok, err := r.TryNext()
		if err != nil || ok {
			return rec, err
		}
		select {
		case <-ch:
		case <-r.p.f.closed:
			return Record{}, ErrClosed
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

// view is what a reader may see of its segment, taken under the lock.
type view struct {
	limit       int64  // readable bytes of the segment
	final       bool   // no more bytes will come (a later segment exists)
	durableNext uint64 // offsets below this are durable
	nextSeg     *segment
}

func (r *fileReader) snapshot() (view, error) {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.replaced {
		return view{}, ErrReaderReplaced
	}
	if p.f.isClosed() {
		return view{}, ErrClosed
	}
	if r.seg == nil {
		if err := r.locateLocked(); err != nil {
			return view{}, err
		}
	}
	v := view{durableNext: p.durableNext}
	if r.seg != nil {
		v.limit = r.seg.durable
		// Segments are sorted by base: find ours without a scan.
		i, found := slices.BinarySearchFunc(p.segments, r.seg.base, func(s *segment, base uint64) int { return cmpU64(s.base, base) })
		if found && p.segments[i] == r.seg && i+1 < len(p.segments) {
			v.nextSeg = p.segments[i+1]
			v.final = true
		}
	}
	return v, nil
}

// locateLocked opens the segment holding the first record after r.last.
func (r *fileReader) locateLocked() error {
	p := r.p
	r.closeFileLocked()
	r.buf = r.buf[:0]
	if len(p.segments) == 0 {
		return nil
	}
	seg := p.segments[0]
	for _, s := range p.segments {
		if s.base <= r.last+1 {
			seg = s
		}
	}
	fd, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("channel: reader %q: %w", r.name, err)
	}
	r.seg, r.fd, r.pos, r.expect = seg, fd, 0, seg.base
	return nil
}

// fetch returns n bytes at file position at, or fewer if limit comes first.
func (r *fileReader) fetch(at int64, n int, limit int64) ([]byte, error) {
	end := at + int64(n)
	if end > limit {
		end = limit
	}
	if at >= end {
		return nil, nil
	}
	if at >= r.bufStart && end <= r.bufStart+int64(len(r.buf)) {
		return r.buf[at-r.bufStart : end-r.bufStart], nil
	}
	want := max(int64(n), readChunk)
	if at+want > limit {
		want = limit - at
	}
	if int64(cap(r.buf)) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	m, err := r.fd.ReadAt(r.buf, at)
	r.buf, r.bufStart = r.buf[:m], at
	if m < int(end-at) {
		if err != nil && m == 0 {
			return nil, fmt.Errorf("channel: read %s: %w", r.seg.path, err)
		}
		return r.buf[:m], nil
	}
	return r.buf[:end-at], nil
}

func (r *fileReader) TryNext() (Record, bool, error) {
	for {
		v, err := r.snapshot()
		if err != nil {
			return Record{}, false, err
		}
		if r.seg == nil || r.last+1 >= v.durableNext {
			return Record{}, false, nil
		}
		if r.pos == 0 {
			// Skip the segment header.
			hb, err := r.fetch(0, wal.HeaderSize, v.limit)
			if err != nil {
				return Record{}, false, err
			}
			size, ok := wal.PeekSize(hb)
			if !ok {
				if !v.final {
					return Record{}, false, nil
				}
				r.p.logCorruptOnce(r.seg.path, 0, r.expect, 0, "segment header unreadable; skipping the segment")
				r.advance(v)
				continue
			}
			r.pos = int64(size)
		}
		hb, err := r.fetch(r.pos, wal.HeaderSize, v.limit)
		if err != nil {
			return Record{}, false, err
		}
		var fr wal.Frame
		var ferr error = fmt.Errorf("end of segment")
		if size, ok := wal.PeekSize(hb); ok {
			b, err := r.fetch(r.pos, size, v.limit)
			if err != nil {
				return Record{}, false, err
			}
			fr, ferr = wal.Decode(b)
		}
		if ferr == nil && fr.Offset == r.expect {
			switch fr.Kind {
			case wal.KindSync:
				r.pos += int64(fr.Size)
				continue
			case wal.KindSeal:
				if v.nextSeg == nil {
					// Sealed at recovery, next segment not written yet.
					return Record{}, false, nil
				}
				r.advance(v)
				continue
			case wal.KindData:
				d, err := wal.DecodeData(fr)
				if err == nil {
					r.pos += int64(fr.Size)
					r.expect++
					if d.Offset <= r.last {
						continue
					}
					r.last = d.Offset
					if len(r.inflight) == maxInflight {
						// A reader that rarely commits: forget the older half
						// (committing one of those falls back to a scan).
						r.inflight = r.inflight[:copy(r.inflight, r.inflight[maxInflight/2:])]
					}
					r.inflight = append(r.inflight, through{d.Offset, d.EventsBefore + uint64(d.Count), d.BytesBefore + uint64(len(d.Batch))})
					if string(d.Producer) != r.producer { // no allocation for the comparison
						r.producer = string(d.Producer)
					}
					return Record{Offset: d.Offset, Producer: r.producer, Batch: d.Batch, Count: int(d.Count), InputPos: d.InputPos}, true, nil
				}
			}
		}
		if !v.final && r.pos >= v.limit {
			return Record{}, false, nil // nothing durable here yet
		}
		// Damage inside durable bytes: find where the log continues.
		if err := r.resync(v); err != nil {
			return Record{}, false, err
		}
	}
}

// resync skips damaged bytes at r.pos: to the next frame that continues
// the log within the segment, else to the next segment.
func (r *fileReader) resync(v view) error {
	b, err := r.fetch(r.pos, int(v.limit-r.pos), v.limit)
	if err != nil {
		return err
	}
	img := append([]byte(nil), b...) // fetch may reuse the buffer
	if cand := wal.Resync(img, 1, r.expect); cand > 0 {
		fr, _ := wal.Decode(img[cand:])
		r.p.logCorruptOnce(r.seg.path, r.pos, r.expect, fr.Offset-r.expect, "skipped a damaged record")
		r.pos += int64(cand)
		r.expect = fr.Offset
		return nil
	}
	if !v.final {
		// The active segment's durable bytes end in damage: nothing more to
		// read until the writer appends past it (it never does, so count it).
		r.p.logCorruptOnce(r.seg.path, r.pos, r.expect, v.durableNext-r.expect, "damaged tail in the active segment")
		r.pos = v.limit
		r.expect = v.durableNext
		return nil
	}
	r.p.logCorruptOnce(r.seg.path, r.pos, r.expect, 0, "segment ends without a seal; continuing with the next segment")
	r.advance(v)
	return nil
}

// advance moves to the next segment, counting offsets missing between them
// (a deleted or lost segment).
func (r *fileReader) advance(v view) {
	p := r.p
	p.mu.Lock()
	r.closeFileLocked()
	r.seg = nil
	next := v.nextSeg
	if next != nil {
		if fd, err := os.Open(next.path); err == nil {
			r.seg, r.fd, r.pos = next, fd, 0
		}
	}
	// The segment just left may have been held back only by this handle
	// being inside it.
	p.retainLocked()
	p.mu.Unlock()
	r.buf = r.buf[:0]
	if next != nil && next.base > r.expect {
		r.p.logCorruptOnce(next.path, 0, r.expect, next.base-r.expect, "offsets missing before this segment (a segment file is gone)")
	}
	if next != nil {
		r.expect = next.base
	}
}

func (r *fileReader) Seek(offset uint64) error {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.replaced {
		return ErrReaderReplaced
	}
	r.last = offset
	r.seg = nil
	r.closeFileLocked()
	r.inflight = r.inflight[:0]
	return nil
}

func (r *fileReader) Commit(offset uint64) error {
	p := r.p
	p.mu.Lock()
	if r.replaced {
		p.mu.Unlock()
		return ErrReaderReplaced
	}
	if p.f.isClosed() {
		p.mu.Unlock()
		return ErrClosed
	}
	if offset >= p.durableNext {
		p.mu.Unlock()
		return fmt.Errorf("channel: reader %q commit %d is past the last record %d", r.name, offset, p.durableNext-1)
	}
	if offset <= r.state.pos.Offset {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	pos := wal.Position{Name: r.name, Offset: offset}
	found := false
	for i, t := range r.inflight {
		if t.offset == offset {
			pos.EventsThrough, pos.BytesThrough, found = t.events, t.bytes, true
			r.inflight = r.inflight[:copy(r.inflight, r.inflight[i+1:])]
			break
		}
	}
	if !found {
		var err error
		if pos.EventsThrough, pos.BytesThrough, err = r.p.countsThrough(offset); err != nil {
			return err
		}
		r.inflight = r.inflight[:0]
	}
	if err := writeAtomic(p.posPath(r.name), wal.EncodePosition(pos)); err != nil {
		return fmt.Errorf("channel: commit reader %q: %w", r.name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.replaced {
		// RemoveReader or a newer handle took over while the file was
		// written: put back what the registry holds, so this stale commit
		// neither brings a removed reader back nor overrides the newer one.
		if st, still := p.readers[r.name]; !still {
			os.Remove(p.posPath(r.name))
		} else if err := writeAtomic(p.posPath(r.name), wal.EncodePosition(st.pos)); err != nil {
			return fmt.Errorf("channel: commit reader %q: %w", r.name, err)
		}
		return ErrReaderReplaced
	}
	if offset > r.state.pos.Offset {
		r.state.pos = pos
	}
	p.retainLocked()
	p.notifyLocked()
	return nil
}

// countsThrough finds the partition's event and byte counts through offset
// by reading from its segment: the slow path for a commit of a record this
// handle did not return.
func (p *partition) countsThrough(offset uint64) (uint64, uint64, error) {
	p.mu.Lock()
	tmp := &fileReader{p: p, name: "(commit lookup)", last: offset}
	err := tmp.locateLocked()
	p.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	defer tmp.fd.Close()
	for {
		rec, ok, err := tmp.tryNextNoRegister()
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.durableEvents, p.durableBytes, nil
		}
		t := tmp.inflight[len(tmp.inflight)-1]
		return t.events - uint64(rec.Count), t.bytes - uint64(len(rec.Batch)), nil
	}
}

// tryNextNoRegister is TryNext for a handle that is not registered (so it
// is never "replaced").
func (r *fileReader) tryNextNoRegister() (Record, bool, error) {
	return r.TryNext()
}

func (r *fileReader) Committed() uint64 {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.state.pos.Offset
}
