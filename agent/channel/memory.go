package channel

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory is a Channel held in process memory: the same contract as File
// except that nothing survives Close or a crash, so every Append is
// "durable" as soon as it is stored. Options.Dir, MinFreeBytes and the fsync
// fields are ignored.
type Memory struct {
	opts  Options
	parts []*memPartition
}

var _ Channel = (*Memory)(nil)

// NewMemory returns an open in-memory channel.
func NewMemory(opts Options) *Memory {
	opts = opts.withDefaults()
	m := &Memory{opts: opts}
	for range opts.Partitions {
		m.parts = append(m.parts, &memPartition{
			next:      1,
			producers: map[string][]byte{},
			readers:   map[string]*memReaderState{},
			changed:   make(chan struct{}),
			maxBytes:  opts.MaxBytes,
		})
	}
	return m
}

type memRecord struct {
	rec  Record
	size int64 // bytes charged against MaxBytes
}

type memReaderState struct {
	committed uint64
	handle    *memReader
}

type memPartition struct {
	mu        sync.Mutex
	records   []memRecord // retained records, offsets ascending
	next      uint64      // offset of the next record
	producers map[string][]byte
	readers   map[string]*memReaderState
	changed   chan struct{} // closed and replaced whenever records or commits change
	closed    bool
	maxBytes  int64
	retained  int64 // bytes of records held

	appends, corrupt uint64
	blocked          time.Duration
}

func (p *memPartition) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Partitions implements Channel.
func (m *Memory) Partitions() int { return len(m.parts) }

func (m *Memory) part(p int) (*memPartition, error) {
	if p < 0 || p >= len(m.parts) {
		return nil, fmt.Errorf("channel: partition %d out of range [0,%d)", p, len(m.parts))
	}
	return m.parts[p], nil
}

// Append implements Channel.
func (m *Memory) Append(ctx context.Context, p int, producer string, batch []byte, count int, inputPos []byte) (uint64, error) {
	mp, err := m.part(p)
	if err != nil {
		return 0, err
	}
	if err := checkBatch(producer, batch, count); err != nil {
		return 0, err
	}
	size := int64(len(batch) + len(inputPos) + len(producer))
	if mp.maxBytes > 0 && size > mp.maxBytes {
		return 0, fmt.Errorf("channel: record of %d bytes exceeds max_bytes %d", size, mp.maxBytes)
	}
	mp.mu.Lock()
	var waitStart time.Time
	for !mp.closed && mp.maxBytes > 0 && mp.retained+size > mp.maxBytes {
		if waitStart.IsZero() {
			waitStart = time.Now()
		}
		ch := mp.changed
		mp.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			mp.mu.Lock()
			mp.blocked += time.Since(waitStart)
			mp.mu.Unlock()
			return 0, ctx.Err()
		}
		mp.mu.Lock()
	}
	defer mp.mu.Unlock()
	if !waitStart.IsZero() {
		mp.blocked += time.Since(waitStart)
	}
	if mp.closed {
		return 0, ErrClosed
	}
	rec := Record{
		Offset:   mp.next,
		Producer: producer,
		Batch:    append([]byte(nil), batch...),
		Count:    count,
		InputPos: append([]byte(nil), inputPos...),
	}
	mp.next++
	mp.records = append(mp.records, memRecord{rec: rec, size: size})
	mp.retained += size
	mp.producers[producer] = rec.InputPos
	mp.appends++
	mp.notifyLocked()
	return rec.Offset, nil
}

// LastInputPosition implements Channel.
func (m *Memory) LastInputPosition(p int, producer string) ([]byte, bool) {
	mp, err := m.part(p)
	if err != nil {
		return nil, false
	}
	mp.mu.Lock()
	defer mp.mu.Unlock()
	pos, ok := mp.producers[producer]
	return bytes.Clone(pos), ok
}

// Reader implements Channel.
func (m *Memory) Reader(name string, p int) (Reader, error) {
	if err := checkReaderName(name); err != nil {
		return nil, err
	}
	mp, err := m.part(p)
	if err != nil {
		return nil, err
	}
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if mp.closed {
		return nil, ErrClosed
	}
	st, ok := mp.readers[name]
	if !ok {
		st = &memReaderState{committed: mp.firstOffsetLocked() - 1}
		mp.readers[name] = st
	}
	if st.handle != nil {
		st.handle.replaced = true
	}
	h := &memReader{p: mp, name: name, state: st, pos: st.committed}
	st.handle = h
	return h, nil
}

func (p *memPartition) firstOffsetLocked() uint64 {
	if len(p.records) > 0 {
		return p.records[0].rec.Offset
	}
	return p.next
}

// RemoveReader implements Channel.
func (m *Memory) RemoveReader(name string, p int) error {
	mp, err := m.part(p)
	if err != nil {
		return err
	}
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if st, ok := mp.readers[name]; ok {
		if st.handle != nil {
			st.handle.replaced = true
		}
		delete(mp.readers, name)
		mp.retainLocked()
	}
	return nil
}

// retainLocked drops records every registered reader has committed.
func (p *memPartition) retainLocked() {
	if len(p.readers) == 0 {
		return
	}
	minCommitted := ^uint64(0)
	for _, st := range p.readers {
		minCommitted = min(minCommitted, st.committed)
	}
	n := 0
	for n < len(p.records) && p.records[n].rec.Offset <= minCommitted {
		p.retained -= p.records[n].size
		n++
	}
	if n > 0 {
		clear(p.records[:n])
		p.records = p.records[n:]
		p.notifyLocked()
	}
}

// Stats implements Channel.
func (m *Memory) Stats() Stats {
	var s Stats
	for _, mp := range m.parts {
		mp.mu.Lock()
		ps := PartitionStats{
			DiskBytes:      mp.retained,
			Appends:        mp.appends,
			CorruptRecords: mp.corrupt,
			BlockedTime:    mp.blocked,
			NextOffset:     mp.next,
		}
		from := mp.firstOffsetLocked() - 1
		if len(mp.readers) > 0 {
			from = ^uint64(0)
			for _, st := range mp.readers {
				from = min(from, st.committed)
			}
		}
		for i := range mp.records {
			if r := &mp.records[i].rec; r.Offset > from {
				ps.DepthEvents += uint64(r.Count)
				ps.DepthBytes += uint64(len(r.Batch))
			}
		}
		mp.mu.Unlock()
		s.add(ps)
	}
	return s
}

// Close implements Channel; safe twice.
func (m *Memory) Close() error {
	for _, mp := range m.parts {
		mp.mu.Lock()
		if !mp.closed {
			mp.closed = true
			mp.notifyLocked()
		}
		mp.mu.Unlock()
	}
	return nil
}

type memReader struct {
	p        *memPartition
	name     string
	state    *memReaderState
	pos      uint64 // offset of the last record returned (or sought to)
	replaced bool   // guarded by p.mu
}

func (r *memReader) Next(ctx context.Context) (Record, error) {
	for {
		r.p.mu.Lock()
		rec, ok, err := r.tryNextLocked()
		ch := r.p.changed
		r.p.mu.Unlock()
		if err != nil || ok {
			return rec, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

func (r *memReader) TryNext() (Record, bool, error) {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.tryNextLocked()
}

func (r *memReader) tryNextLocked() (Record, bool, error) {
	p := r.p
	if r.replaced {
		return Record{}, false, ErrReaderReplaced
	}
	if p.closed {
		return Record{}, false, ErrClosed
	}
	if len(p.records) == 0 {
		return Record{}, false, nil
	}
	first := p.records[0].rec.Offset
	idx := 0
	if r.pos >= first {
		idx = int(r.pos - first + 1)
	}
	if idx >= len(p.records) {
		return Record{}, false, nil
	}
	rec := p.records[idx].rec
	r.pos = rec.Offset
	return rec, true, nil
}

func (r *memReader) Seek(offset uint64) error {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	if r.replaced {
		return ErrReaderReplaced
	}
	r.pos = offset
	return nil
}

func (r *memReader) Commit(offset uint64) error {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.replaced {
		return ErrReaderReplaced
	}
	if p.closed {
		return ErrClosed
	}
	if offset >= p.next {
		return fmt.Errorf("channel: reader %q commit %d is past the last record %d", r.name, offset, p.next-1)
	}
	if offset <= r.state.committed {
		return nil
	}
	r.state.committed = offset
	p.retainLocked()
	p.notifyLocked()
	return nil
}

func (r *memReader) Committed() uint64 {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.state.committed
}
