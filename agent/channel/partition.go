package channel

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/agent/channel/internal/wal"
)

// segment is one segment file of a partition.
type segment struct {
	base         uint64 // offset of its first record (from the file name)
	path         string
	eventsBefore uint64 // partition events before base (0 if unknown: older segments)
	bytesBefore  uint64
	// durable is the number of bytes readers may read (guarded by
	// partition.mu); sealed says they end with a seal frame.
	durable int64
	sealed  bool
	// Writer state, touched by the flusher only.
	w        *os.File
	writePos int64
}

// chunk is the bytes a group adds to one segment.
type chunk struct {
	seg    *segment
	data   []byte
	create bool // seg is new: data starts with its header frame
	seal   bool // data ends with the seal frame
}

// group is the appends that share one write and one fdatasync.
type group struct {
	chunks    []*chunk
	positions []wal.ProducerPos // (producer, input position) in append order
	next      uint64            // offset after the group's last record
	events    uint64
	bytes     uint64
	finished  bool // written and published (or failed); guarded by partition.mu
	err       error
}

func (g *group) chunkFor(s *segment) *chunk {
	if n := len(g.chunks); n > 0 && g.chunks[n-1].seg == s {
		return g.chunks[n-1]
	}
	c := &chunk{seg: s}
	g.chunks = append(g.chunks, c)
	return c
}

type readerState struct {
	pos    wal.Position
	handle *fileReader
}

type partition struct {
	f    *File
	idx  int
	dir  string
	rdir string
	log  *slog.Logger

	mu sync.Mutex
	// Assignment state: what Append has handed to the writer.
	next              uint64 // offset of the next record
	eventsNext        uint64
	bytesNext         uint64
	assignedProducers map[string][]byte // as of next, for new segment headers
	active            *segment
	activeSize        int64
	needRoll          bool // active is sealed (found so at recovery)
	cur               *group
	// Durable state: what readers may see.
	durableNext      uint64
	durableEvents    uint64
	durableBytes     uint64
	durableProducers map[string][]byte
	segments         []*segment // retained, ascending base; last is active
	spares           []string
	readers          map[string]*readerState
	changed          chan struct{} // closed and replaced on every change
	failed           error         // sticky write error
	// Group commit: the appender that finds no write in progress becomes
	// the leader and writes the current group; the others wait on cond.
	flushing bool
	cond     *sync.Cond
	dirty    bool // written since the last fdatasync (interval policy)
	freeBufs [][]byte

	appends, fsyncs, corrupt uint64
	blocked                  time.Duration
	lowDisk                  bool
	corruptLogged            map[string]bool
}

func segName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

func openPartition(f *File, idx int) (*partition, error) {
	p := &partition{
		f:                 f,
		idx:               idx,
		dir:               filepath.Join(f.dir, partDirName(idx)),
		log:               f.log.With("partition", idx),
		next:              1,
		assignedProducers: map[string][]byte{},
		durableProducers:  map[string][]byte{},
		readers:           map[string]*readerState{},
		changed:           make(chan struct{}),
		corruptLogged:     map[string]bool{},
	}
	p.rdir = filepath.Join(p.dir, "readers")
	if err := os.MkdirAll(p.rdir, 0o755); err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := syncDir(p.dir); err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
		case strings.HasSuffix(name, ".tmp"):
			if err := os.Remove(filepath.Join(p.dir, name)); err != nil {
				return nil, fmt.Errorf("channel: %w", err)
			}
		case strings.HasPrefix(name, "spare-") && strings.HasSuffix(name, ".seg"):
			p.spares = append(p.spares, filepath.Join(p.dir, name))
		case strings.HasSuffix(name, ".seg"):
			base, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
			if err != nil || base == 0 || segName(base) != name {
				p.log.Warn("ignoring a file that is not a segment", "file", filepath.Join(p.dir, name))
				continue
			}
			p.segments = append(p.segments, &segment{base: base, path: filepath.Join(p.dir, name)})
		}
	}
	slices.SortFunc(p.segments, func(a, b *segment) int { return cmpU64(a.base, b.base) })
	if err := p.recover(); err != nil {
		return nil, err
	}
	if err := p.loadReaders(); err != nil {
		return nil, err
	}
	p.cur = &group{next: p.next}
	p.cond = sync.NewCond(&p.mu)
	return p, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// recover scans the last segment only: its header carries every producer's
// position as of its start, its frames the rest.
func (p *partition) recover() error {
	for len(p.segments) > 0 {
		last := p.segments[len(p.segments)-1]
		b, err := os.ReadFile(last.path)
		if err != nil {
			return fmt.Errorf("channel: %w", err)
		}
		res, err := wal.Scan(b)
		if err == nil && res.Header.Base != last.base {
			err = fmt.Errorf("header names base offset %d", res.Header.Base)
		}
		if err == nil && res.Header.Partition != uint32(p.idx) {
			err = fmt.Errorf("header names partition %d", res.Header.Partition)
		}
		if errors.Is(err, wal.ErrUnknownVersion) {
			return fmt.Errorf("channel: segment %s: %w", last.path, err)
		}
		if err != nil {
			// An orphan: a segment whose header is unreadable (for example
			// a file left half-created). Set aside, never deleted.
			aside := last.path + ".orphan"
			p.log.Error("setting aside an unreadable last segment", "file", last.path, "err", err, "renamed_to", aside)
			if rerr := os.Rename(last.path, aside); rerr != nil {
				return fmt.Errorf("channel: %w", rerr)
			}
			p.segments = p.segments[:len(p.segments)-1]
			continue
		}
		for _, d := range res.Skipped {
			p.logCorruptOnce(last.path, int64(d.At), d.Offset, d.Lost, "skipped a damaged record")
		}
		if res.TornAt >= 0 {
			p.log.Info("cut off a torn tail", "file", last.path, "at", res.TornAt)
		}
		last.eventsBefore, last.bytesBefore = res.Header.EventsBefore, res.Header.BytesBefore
		p.eventsNext, p.bytesNext = res.Header.EventsBefore, res.Header.BytesBefore
		for _, pp := range res.Header.Producers {
			p.assignedProducers[pp.Producer] = pp.Pos
		}
		for _, r := range res.Records {
			p.assignedProducers[string(r.Producer)] = slices.Clone(r.InputPos)
			p.eventsNext = r.EventsBefore + uint64(r.Count)
			p.bytesNext = r.BytesBefore + uint64(len(r.Batch))
		}
		p.next = res.Next
		last.durable = int64(res.End)
		last.sealed = res.Sealed
		last.writePos = int64(res.End)
		if res.Sealed {
			p.needRoll = true
		} else {
			w, err := os.OpenFile(last.path, os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("channel: %w", err)
			}
			last.w = w
			if res.DirtyEnd > res.End {
				// Zero the cut-off tail so its frames never reappear.
				if _, err := w.WriteAt(make([]byte, res.DirtyEnd-res.End), int64(res.End)); err != nil {
					return fmt.Errorf("channel: %w", err)
				}
				if err := unix.Fdatasync(int(w.Fd())); err != nil {
					return fmt.Errorf("channel: fdatasync %s: %w", last.path, err)
				}
			}
		}
		p.active = last
		p.activeSize = int64(res.End)
		break
	}
	// Older segments are not scanned: their sizes bound reads, and the
	// first one's header gives the depth baseline.
	for i, s := range p.segments {
		if s == p.active {
			break
		}
		st, err := os.Stat(s.path)
		if err != nil {
			return fmt.Errorf("channel: %w", err)
		}
		s.durable, s.sealed = st.Size(), true
		if i == 0 {
			if hdr, err := readSegmentHeader(s.path); err == nil {
				s.eventsBefore, s.bytesBefore = hdr.EventsBefore, hdr.BytesBefore
			} else {
				p.log.Warn("unreadable segment header", "file", s.path, "err", err)
			}
		}
	}
	for k, v := range p.assignedProducers {
		p.durableProducers[k] = v
	}
	p.durableNext, p.durableEvents, p.durableBytes = p.next, p.eventsNext, p.bytesNext
	if p.active == nil {
		p.needRoll = true
	}
	return nil
}

func readSegmentHeader(path string) (wal.Segment, error) {
	fh, err := os.Open(path)
	if err != nil {
		return wal.Segment{}, err
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	n, _ := fh.ReadAt(buf, 0)
	size, ok := wal.PeekSize(buf[:n])
	if ok && size > n {
		buf = make([]byte, size)
		n, _ = fh.ReadAt(buf, 0)
	}
	fr, err := wal.Decode(buf[:n])
	if err != nil {
		return wal.Segment{}, err
	}
	return wal.DecodeSegment(fr)
}

func (p *partition) loadReaders() error {
	entries, err := os.ReadDir(p.rdir)
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	for _, e := range entries {
		path := filepath.Join(p.rdir, e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(path)
			continue
		}
		if !strings.HasSuffix(e.Name(), ".pos") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("channel: %w", err)
		}
		pos, err := wal.DecodePosition(b)
		if err == nil && hex.EncodeToString([]byte(pos.Name))+".pos" != e.Name() {
			err = errors.New("name does not match the file name")
		}
		if err != nil {
			// The name is still known from the file name: keep the reader
			// registered at the oldest record (re-delivery, never loss).
			name, herr := hex.DecodeString(strings.TrimSuffix(e.Name(), ".pos"))
			p.log.Error("reader position unreadable; restarting that reader at the oldest record", "file", path, "err", err)
			p.corrupt++
			if herr != nil {
				continue
			}
			pos = p.oldestPositionLocked(string(name))
		}
		p.readers[pos.Name] = &readerState{pos: pos}
	}
	if len(p.segments) == 0 {
		// Every segment is gone (retention freed them all and the
		// channel was emptied, or damage): offsets must still only grow,
		// so continue after the furthest reader.
		for _, st := range p.readers {
			if st.pos.Offset >= p.next {
				p.next = st.pos.Offset + 1
				p.eventsNext, p.bytesNext = st.pos.EventsThrough, st.pos.BytesThrough
			}
		}
		p.durableNext, p.durableEvents, p.durableBytes = p.next, p.eventsNext, p.bytesNext
	}
	for _, st := range p.readers {
		// A reader cannot be past the log's end; it can only look so after
		// a power failure under fsync "never"/"interval" lost the tail.
		if st.pos.Offset >= p.next {
			st.pos.Offset = p.next - 1
			st.pos.EventsThrough, st.pos.BytesThrough = p.eventsNext, p.bytesNext
		}
	}
	return nil
}

func (p *partition) oldestPositionLocked(name string) wal.Position {
	if len(p.segments) == 0 {
		return wal.Position{Name: name, Offset: p.next - 1, EventsThrough: p.eventsNext, BytesThrough: p.bytesNext}
	}
	s := p.segments[0]
	return wal.Position{Name: name, Offset: s.base - 1, EventsThrough: s.eventsBefore, BytesThrough: s.bytesBefore}
}

func (p *partition) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// retainedBytesLocked is the batch bytes held for the slowest reader.
func (p *partition) retainedBytesLocked() int64 {
	if len(p.segments) == 0 {
		return 0
	}
	return int64(p.bytesNext - p.segments[0].bytesBefore)
}

func (p *partition) append(ctx context.Context, producer string, batch []byte, count int, inputPos []byte) (uint64, error) {
	if len(producer) > 0xffff {
		return 0, fmt.Errorf("channel: producer name of %d bytes is longer than 65535", len(producer))
	}
	if err := checkBatch(producer, batch, count); err != nil {
		return 0, err
	}
	size := int64(wal.DataSize(producer, inputPos, batch))
	if size > wal.MaxBody {
		return 0, fmt.Errorf("channel: record of %d bytes exceeds the 1 GiB frame limit", size)
	}
	maxBytes := p.f.opts.MaxBytes
	if maxBytes > 0 && size > maxBytes {
		return 0, fmt.Errorf("channel %s: record of %d bytes exceeds max_bytes %d", p.f.dir, size, maxBytes)
	}
	p.mu.Lock()
	if err := p.waitRoomLocked(ctx, size); err != nil {
		p.mu.Unlock()
		return 0, err
	}
	if p.f.isClosed() {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	if p.failed != nil {
		p.mu.Unlock()
		return 0, p.failed
	}
	if p.needRoll || (p.activeSize+size > p.f.opts.SegmentBytes && p.activeSize > 0 && p.active.base < p.next) {
		p.rollLocked()
	}
	g := p.cur
	c := g.chunkFor(p.active)
	if c.data == nil {
		c.data = p.takeBufLocked(int(size) + wal.MarkerSize)
	}
	off := p.next
	c.data = wal.AppendData(c.data, &wal.Data{
		Offset:       off,
		EventsBefore: p.eventsNext,
		BytesBefore:  p.bytesNext,
		Count:        uint32(count),
		Producer:     []byte(producer),
		InputPos:     inputPos,
		Batch:        batch,
	})
	pos := slices.Clone(inputPos)
	if pos == nil {
		pos = []byte{}
	}
	p.next++
	p.eventsNext += uint64(count)
	p.bytesNext += uint64(len(batch))
	p.activeSize += size
	p.assignedProducers[producer] = pos
	g.positions = append(g.positions, wal.ProducerPos{Producer: producer, Pos: pos})
	g.next, g.events, g.bytes = p.next, p.eventsNext, p.bytesNext
	for !g.finished {
		if !p.flushing {
			p.flushLocked()
			continue
		}
		p.cond.Wait()
	}
	err := g.err
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return off, nil
}

// waitRoomLocked blocks while the partition is full or the disk is below
// its free-space floor.
func (p *partition) waitRoomLocked(ctx context.Context, size int64) error {
	opts := &p.f.opts
	var start time.Time
	defer func() {
		if !start.IsZero() {
			p.blocked += time.Since(start)
			p.lowDisk = false
		}
	}()
	for !p.f.isClosed() {
		full := opts.MaxBytes > 0 && p.retainedBytesLocked()+size > opts.MaxBytes
		low := false
		if !full && opts.MinFreeBytes > 0 {
			free, err := p.f.freeBytes()
			if err != nil {
				return fmt.Errorf("channel %s: free space: %w", p.f.dir, err)
			}
			if low = free < opts.MinFreeBytes; low && !p.lowDisk {
				p.log.Warn("free disk space below min_free_bytes; appends wait", "free_bytes", free, "min_free_bytes", opts.MinFreeBytes)
			}
		}
		if !full && !low {
			return nil
		}
		if start.IsZero() {
			start = time.Now()
		}
		p.lowDisk = low
		ch := p.changed
		p.mu.Unlock()
		var poll <-chan time.Time
		if low {
			// Free space changes without telling us; look again soon.
			t := time.NewTimer(100 * time.Millisecond)
			poll = t.C
			defer t.Stop()
		}
		select {
		case <-ch:
		case <-poll:
		case <-ctx.Done():
			p.mu.Lock()
			return ctx.Err()
		}
		p.mu.Lock()
	}
	return nil
}

// rollLocked seals the active segment and starts the next one in the
// current group. The new header carries every producer's position so far.
func (p *partition) rollLocked() {
	g := p.cur
	if p.active != nil && !p.needRoll {
		c := g.chunkFor(p.active)
		c.data = wal.AppendMarker(c.data, wal.KindSeal, p.next)
		c.seal = true
	}
	hdr := wal.Segment{
		Base:         p.next,
		Version:      wal.Version,
		Partition:    uint32(p.idx),
		EventsBefore: p.eventsNext,
		BytesBefore:  p.bytesNext,
	}
	for name, pos := range p.assignedProducers {
		hdr.Producers = append(hdr.Producers, wal.ProducerPos{Producer: name, Pos: pos})
	}
	slices.SortFunc(hdr.Producers, func(a, b wal.ProducerPos) int { return strings.Compare(a.Producer, b.Producer) })
	s := &segment{base: p.next, path: filepath.Join(p.dir, segName(p.next)), eventsBefore: p.eventsNext, bytesBefore: p.bytesNext}
	c := g.chunkFor(s)
	c.create = true
	c.data = wal.AppendSegment(c.data, &hdr)
	p.active = s
	p.activeSize = int64(len(c.data))
	p.needRoll = false
}

// flushLocked writes the current group as its leader: one write per
// segment and one fdatasync for every append in it, then publishes it.
// Appenders arriving meanwhile fill the next group, and one of them leads
// it when this write is done (group commit). The leader is an appender, not
// a separate goroutine, so a lone appender pays no thread hand-off. Called
// with p.mu held and no write in progress; returns with p.mu held.
func (p *partition) flushLocked() {
	g := p.cur
	p.cur = &group{next: p.next}
	p.flushing = true
	p.mu.Unlock()
	err := p.writeGroup(g)
	p.mu.Lock()
	p.flushing = false
	if err != nil {
		if p.failed == nil {
			p.failed = fmt.Errorf("channel %s partition %d: write failed, channel must be reopened: %w", p.f.dir, p.idx, err)
			p.log.Error("write failed", "err", err)
		}
		g.err = p.failed
	} else {
		for _, c := range g.chunks {
			if c.create {
				p.segments = append(p.segments, c.seg)
			}
			c.seg.durable = c.seg.writePos
			c.seg.sealed = c.seal
		}
		for _, pp := range g.positions {
			p.durableProducers[pp.Producer] = pp.Pos
		}
		p.durableNext, p.durableEvents, p.durableBytes = g.next, g.events, g.bytes
		p.appends += uint64(len(g.positions))
		p.dirty = p.f.opts.Fsync != FsyncAlways
	}
	g.finished = true
	for _, c := range g.chunks {
		p.putBufLocked(c.data)
	}
	p.notifyLocked()
	p.cond.Broadcast()
}

// Group buffers are reused: a steady appender then copies each batch into
// the same memory instead of allocating a batch-sized buffer per append.
const (
	maxFreeBufs  = 4
	maxReusedBuf = 16 << 20
)

func (p *partition) takeBufLocked(need int) []byte {
	for i, b := range p.freeBufs {
		if cap(b) >= need {
			p.freeBufs = slices.Delete(p.freeBufs, i, i+1)
			return b[:0]
		}
	}
	return make([]byte, 0, max(need, 64<<10))
}

func (p *partition) putBufLocked(b []byte) {
	if cap(b) == 0 || cap(b) > maxReusedBuf {
		return
	}
	if len(p.freeBufs) == maxFreeBufs {
		p.freeBufs = p.freeBufs[1:]
	}
	p.freeBufs = append(p.freeBufs, b[:0])
}

// syncActive runs fdatasync on the active segment if it was written since
// the last one (the interval policy's tick, and Close). It takes the write
// leadership so no roll closes the file meanwhile.
func (p *partition) syncActive() {
	p.mu.Lock()
	for p.flushing {
		p.cond.Wait()
	}
	s := p.active
	if !p.dirty || s == nil || s.w == nil {
		p.mu.Unlock()
		return
	}
	p.flushing = true
	p.mu.Unlock()
	err := unix.Fdatasync(int(s.w.Fd()))
	p.mu.Lock()
	p.flushing = false
	if err == nil {
		p.fsyncs++
		p.dirty = false
	} else {
		p.log.Error("fdatasync failed", "file", s.path, "err", err)
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// drain waits until every group already handed in is written; used by
// Close after the channel is marked closed, so no new group can start.
func (p *partition) drain() {
	p.mu.Lock()
	for p.flushing || len(p.cur.chunks) > 0 {
		if !p.flushing {
			p.flushLocked()
			continue
		}
		p.cond.Wait()
	}
	p.notifyLocked()
	p.mu.Unlock()
	if p.f.opts.Fsync == FsyncInterval {
		p.syncActive()
	}
}

// writeGroup writes g's chunks in order. A new segment is prepared in a
// spare (or new, preallocated) file and renamed into place only after its
// header and data are durable, so a crash never leaves a named segment
// without a header; the previous segment's seal is durable before that.
func (p *partition) writeGroup(g *group) error {
	always := p.f.opts.Fsync == FsyncAlways
	syncs := uint64(0)
	for i, c := range g.chunks {
		s := c.seg
		data := c.data
		if i == len(g.chunks)-1 && !c.seal {
			// The sync frame tells recovery this group was complete.
			data = wal.AppendMarker(data, wal.KindSync, g.next)
		}
		if c.create {
			tmp, err := p.prepareFile()
			if err != nil {
				return err
			}
			s.w = tmp
			s.writePos = 0
		}
		if _, err := s.w.WriteAt(data, s.writePos); err != nil {
			return fmt.Errorf("write %s: %w", s.path, err)
		}
		s.writePos += int64(len(data))
		c.data = data
		needSync := always || (p.f.opts.Fsync == FsyncInterval && (c.seal || c.create))
		if needSync {
			if err := unix.Fdatasync(int(s.w.Fd())); err != nil {
				return fmt.Errorf("fdatasync %s: %w", s.path, err)
			}
			syncs++
		}
		if c.create {
			if err := os.Rename(s.w.Name(), s.path); err != nil {
				return err
			}
			if p.f.opts.Fsync != FsyncNever {
				if err := syncDir(p.dir); err != nil {
					return err
				}
			}
		}
		if c.seal {
			err := s.w.Close()
			s.w = nil
			if err != nil {
				return err
			}
		}
	}
	p.mu.Lock()
	p.fsyncs += syncs
	p.mu.Unlock()
	return nil
}

// prepareFile returns a file to become the next segment: a recycled spare
// (its blocks already written, so overwriting them is cheap) or a new file
// preallocated to the segment size.
func (p *partition) prepareFile() (*os.File, error) {
	p.mu.Lock()
	var spare string
	if n := len(p.spares); n > 0 {
		spare = p.spares[n-1]
		p.spares = p.spares[:n-1]
	}
	p.mu.Unlock()
	// The file gets a ".tmp" name before anything is written to it: if a
	// crash stops the roll before the final rename, the file may hold
	// unacknowledged records with offsets the log will reuse, so Open
	// deletes it rather than recycling it.
	path := filepath.Join(p.dir, fmt.Sprintf("new-%d.tmp", time.Now().UnixNano()))
	if spare != "" {
		if err := os.Rename(spare, path); err == nil {
			if err := syncDir(p.dir); err != nil {
				return nil, err
			}
			if w, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
				return w, nil
			}
		}
	}
	w, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	// KEEP_SIZE: the file's size stays what was written, so readers of a
	// segment from a previous run know where its bytes end.
	if err := unix.Fallocate(int(w.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, p.f.opts.SegmentBytes); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		w.Close()
		os.Remove(path)
		return nil, fmt.Errorf("fallocate %s: %w", path, err)
	}
	return w, nil
}

// retainLocked frees segments that every registered reader has committed
// past and that no open handle is reading. Freed files become spares.
func (p *partition) retainLocked() {
	if len(p.readers) == 0 {
		return
	}
	minCommitted := ^uint64(0)
	for _, st := range p.readers {
		minCommitted = min(minCommitted, st.pos.Offset)
	}
	freed := 0
	for freed < len(p.segments)-1 {
		s, next := p.segments[freed], p.segments[freed+1]
		if next.base-1 > minCommitted || next.base > p.durableNext || s == p.active {
			break
		}
		inUse := false
		for _, st := range p.readers {
			if h := st.handle; h != nil && h.seg == s {
				inUse = true
			}
		}
		if inUse {
			break
		}
		freed++
	}
	if freed == 0 {
		return
	}
	for _, s := range p.segments[:freed] {
		if len(p.spares) < maxSpares {
			spare := filepath.Join(p.dir, fmt.Sprintf("spare-%d.seg", s.base))
			if err := os.Rename(s.path, spare); err == nil {
				p.spares = append(p.spares, spare)
				continue
			}
		}
		if err := os.Remove(s.path); err != nil {
			p.log.Warn("could not delete a released segment", "file", s.path, "err", err)
		}
	}
	// The new first segment's counters are the depth baseline.
	first := p.segments[freed]
	if first.bytesBefore == 0 && first.eventsBefore == 0 && first.base > 1 {
		if hdr, err := readSegmentHeader(first.path); err == nil {
			first.eventsBefore, first.bytesBefore = hdr.EventsBefore, hdr.BytesBefore
		}
	}
	p.segments = slices.Delete(p.segments, 0, freed)
	p.notifyLocked()
}

func (p *partition) stats() PartitionStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := PartitionStats{
		Appends:        p.appends,
		Fsyncs:         p.fsyncs,
		CorruptRecords: p.corrupt,
		BlockedTime:    p.blocked,
		LowDisk:        p.lowDisk,
		NextOffset:     p.durableNext,
	}
	base := p.oldestPositionLocked("")
	evFrom, byFrom := base.EventsThrough, base.BytesThrough
	if len(p.readers) > 0 {
		evFrom, byFrom = ^uint64(0), ^uint64(0)
		for _, st := range p.readers {
			evFrom = min(evFrom, st.pos.EventsThrough)
			byFrom = min(byFrom, st.pos.BytesThrough)
		}
	}
	if p.durableEvents > evFrom {
		ps.DepthEvents = p.durableEvents - evFrom
	}
	if p.durableBytes > byFrom {
		ps.DepthBytes = p.durableBytes - byFrom
	}
	paths := make([]string, 0, len(p.segments)+len(p.spares))
	for _, s := range p.segments {
		paths = append(paths, s.path)
	}
	paths = append(paths, p.spares...)
	for _, path := range paths {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			ps.DiskBytes += st.Blocks * 512
		}
	}
	return ps
}

func (p *partition) closeFiles() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	for _, s := range p.segments {
		if s.w != nil {
			err = errors.Join(err, s.w.Close())
			s.w = nil
		}
	}
	for _, st := range p.readers {
		if h := st.handle; h != nil {
			h.abandonLocked()
		}
	}
	return err
}

// logCorruptOnce counts damage found at byte at of path (where offset was
// expected) and logs it, once per file so a badly damaged file cannot flood
// the log.
// Each damaged spot is counted once, however many readers (and recovery)
// come across it.
func (p *partition) logCorruptOnce(path string, at int64, offset, lost uint64, msg string) {
	p.mu.Lock()
	spot := fmt.Sprintf("%s@%d", path, at)
	if !p.corruptLogged[spot] {
		p.corruptLogged[spot] = true
		p.corrupt += max(lost, 1)
	}
	first := !p.corruptLogged[path]
	p.corruptLogged[path] = true
	p.mu.Unlock()
	if first {
		p.log.Error(msg, "file", path, "byte", at, "offset", offset, "lost_offsets", lost)
	}
}
