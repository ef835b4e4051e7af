package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// The source's position: for every partition it has consumed, the next
// offset to read, and for every (partition, producer) the mark — the newest
// batch seen and which of its per-partition ordinals — so re-sent copies are
// dropped after a restart too.
//
//	position  := version:u8(2) nOffsets:u32 offset* nMarks:u32 mark*
//	offset    := topic partition:i32 next:i64
//	mark      := topic partition:i32 producerLen:u16 producer batch:u64 spans
//	spans     := nSpans:u32 (lo:u32 hi:u32)*     sorted, disjoint, lo < hi
//	topic     := len:u16 bytes
//
// Version 1 (before 2026-11-25) kept only the highest index seen,
// `batch:u64 index:u32`; it decodes as the span [0, index+1). Integers are
// big-endian. Entries are sorted, so equal state encodes to equal bytes.
const positionVersion = 2

// mark is what the source has passed on of one producer in one partition:
// the newest batch seen, and the ordinals of that batch seen so far as
// half-open spans. Messages of older batches are copies (the sink sends a
// batch only after the previous one was acknowledged whole); a message of
// the newest batch is a copy exactly when its ordinal was seen. The set, not
// just the highest ordinal, because a produce request that fails for good
// leaves a gap that later requests of the same batch do not (docs/adr/0007).
type mark struct {
	Batch uint64
	Seen  []span
}

// span is the ordinals lo … hi-1.
type span struct{ Lo, Hi uint32 }

// copyOf reports whether a message with sequence q is a copy of one seen.
func (m *mark) copyOf(q seq) bool {
	if q.Batch != m.Batch {
		return q.Batch < m.Batch
	}
	i := sort.Search(len(m.Seen), func(i int) bool { return m.Seen[i].Hi > q.Index })
	return i < len(m.Seen) && m.Seen[i].Lo <= q.Index
}

// see records q, which must not be a copy.
func (m *mark) see(q seq) {
	if q.Batch > m.Batch || m.Seen == nil {
		m.Batch, m.Seen = q.Batch, append(m.Seen[:0], span{q.Index, q.Index + 1})
		return
	}
	m.Seen = addSpan(m.Seen, span{q.Index, q.Index + 1})
}

// merge returns the union of m and o (the newer batch wins).
func (m mark) merge(o mark) mark {
	if o.Batch != m.Batch || m.Seen == nil {
		if o.Batch > m.Batch || m.Seen == nil {
			return mark{Batch: o.Batch, Seen: append([]span(nil), o.Seen...)}
		}
		return m
	}
	out := mark{Batch: m.Batch, Seen: append([]span(nil), m.Seen...)}
	for _, sp := range o.Seen {
		out.Seen = addSpan(out.Seen, sp)
	}
	return out
}

// addSpan inserts sp into sorted disjoint spans, joining touching ones.
func addSpan(ss []span, sp span) []span {
	i := sort.Search(len(ss), func(i int) bool { return ss[i].Hi >= sp.Lo })
	j := i
	for j < len(ss) && ss[j].Lo <= sp.Hi {
		sp.Lo, sp.Hi = min(sp.Lo, ss[j].Lo), max(sp.Hi, ss[j].Hi)
		j++
	}
	if i == j {
		ss = append(ss, span{})
		copy(ss[i+1:], ss[i:])
		ss[i] = sp
		return ss
	}
	ss[i] = sp
	return append(ss[:i+1], ss[j:]...)
}

func appendSpans(b []byte, m mark) []byte {
	b = binary.BigEndian.AppendUint64(b, m.Batch)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Seen)))
	for _, sp := range m.Seen {
		b = binary.BigEndian.AppendUint32(b, sp.Lo)
		b = binary.BigEndian.AppendUint32(b, sp.Hi)
	}
	return b
}

// spans reads a mark's batch and spans (version 2), checking they are
// sorted, disjoint and not empty.
func (r *posReader) mark() mark {
	m := mark{Batch: r.u64()}
	n := r.u32()
	if r.err == nil && uint64(n)*8 > uint64(len(r.b)-r.off) {
		r.err = fmt.Errorf("%w: %d spans cannot fit in %d bytes", errPosition, n, len(r.b)-r.off)
	}
	if r.err == nil && n == 0 {
		r.err = fmt.Errorf("%w: a mark without spans at byte %d", errPosition, r.off)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		sp := span{Lo: r.u32(), Hi: r.u32()}
		if r.err == nil && (sp.Lo >= sp.Hi || len(m.Seen) > 0 && sp.Lo <= m.Seen[len(m.Seen)-1].Hi) {
			r.err = fmt.Errorf("%w: span %d–%d out of order at byte %d", errPosition, sp.Lo, sp.Hi, r.off)
		}
		m.Seen = append(m.Seen, sp)
	}
	return m
}

// markV1 reads a version 1 mark (highest index seen) as a span from 0.
func (r *posReader) markV1() mark {
	m := mark{Batch: r.u64()}
	i := r.u32()
	if r.err == nil && i == ^uint32(0) {
		r.err = fmt.Errorf("%w: index %d at byte %d", errPosition, i, r.off)
	}
	m.Seen = []span{{0, i + 1}}
	return m
}

type topicPart struct {
	Topic     string
	Partition int32
}

type markKey struct {
	topicPart
	Producer string
}

type position struct {
	Next  map[topicPart]int64
	Marks map[markKey]*mark
}

func newPosition() position {
	return position{Next: map[topicPart]int64{}, Marks: map[markKey]*mark{}}
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (p position) encode(b []byte) []byte {
	b = append(b, positionVersion)
	tps := make([]topicPart, 0, len(p.Next))
	for tp := range p.Next {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		return tps[i].Topic < tps[j].Topic || tps[i].Topic == tps[j].Topic && tps[i].Partition < tps[j].Partition
	})
	b = binary.BigEndian.AppendUint32(b, uint32(len(tps)))
	for _, tp := range tps {
		b = appendStr(b, tp.Topic)
		b = binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
		b = binary.BigEndian.AppendUint64(b, uint64(p.Next[tp]))
	}
	mks := make([]markKey, 0, len(p.Marks))
	for k := range p.Marks {
		mks = append(mks, k)
	}
	sort.Slice(mks, func(i, j int) bool {
		a, c := mks[i], mks[j]
		if a.Topic != c.Topic {
			return a.Topic < c.Topic
		}
		if a.Partition != c.Partition {
			return a.Partition < c.Partition
		}
		return a.Producer < c.Producer
	})
	b = binary.BigEndian.AppendUint32(b, uint32(len(mks)))
	for _, k := range mks {
		b = appendStr(b, k.Topic)
		b = binary.BigEndian.AppendUint32(b, uint32(k.Partition))
		b = appendStr(b, k.Producer)
		b = appendSpans(b, *p.Marks[k])
	}
	return b
}

var errPosition = errors.New("kafka: malformed source position")

type posReader struct {
	b   []byte
	off int
	err error
}

func (r *posReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w: truncated at byte %d", errPosition, r.off)
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *posReader) u16() int {
	if v := r.take(2); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (r *posReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *posReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *posReader) str() string { return string(r.take(r.u16())) }

// decodePosition reads a position; nil or empty input is a fresh start.
// Counts are checked against the bytes left, so damage never causes a huge
// allocation.
func decodePosition(b []byte) (position, error) {
	p := newPosition()
	if len(b) == 0 {
		return p, nil
	}
	if b[0] != positionVersion && b[0] != 1 {
		return p, fmt.Errorf("%w: version %d (want %d)", errPosition, b[0], positionVersion)
	}
	v1 := b[0] == 1
	r := &posReader{b: b, off: 1}
	n := r.u32()
	if r.err == nil && uint64(n)*14 > uint64(len(b)-r.off) {
		return p, fmt.Errorf("%w: %d offsets cannot fit in %d bytes", errPosition, n, len(b))
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		tp := topicPart{Topic: r.str(), Partition: int32(r.u32())}
		next := int64(r.u64())
		if r.err == nil && next < 0 {
			r.err = fmt.Errorf("%w: negative offset %d for %s/%d", errPosition, next, tp.Topic, tp.Partition)
		}
		p.Next[tp] = next
	}
	m := r.u32()
	if r.err == nil && uint64(m)*20 > uint64(len(b)-r.off) {
		return p, fmt.Errorf("%w: %d marks cannot fit in %d bytes", errPosition, m, len(b))
	}
	for i := uint32(0); i < m && r.err == nil; i++ {
		k := markKey{topicPart: topicPart{Topic: r.str(), Partition: int32(r.u32())}}
		k.Producer = r.str()
		var mk mark
		if v1 {
			mk = r.markV1()
		} else {
			mk = r.mark()
		}
		p.Marks[k] = &mk
	}
	if r.err != nil {
		return newPosition(), r.err
	}
	if r.off != len(b) {
		return newPosition(), fmt.Errorf("%w: %d trailing bytes", errPosition, len(b)-r.off)
	}
	return p, nil
}

// The marks of one partition, as group commit metadata (Kafka keeps up to
// offset.metadata.max.bytes, 4 KiB by default: about 60 producers whose
// newest batch has no gap):
//
//	marks   := 0xFF version:u8(2) (producerLen:u16 producer batch:u64 spans)*
//	marksV1 := (producerLen:u16 producer batch:u64 index:u32)*
//
// A v1 entry cannot start with 0xFF (a producer name of 65280+ bytes).
const marksMagic = 0xFF

func appendMarksHeader(b []byte) []byte { return append(b, marksMagic, positionVersion) }

func appendMark(b []byte, producer string, m mark) []byte {
	if len(b) == 0 {
		b = appendMarksHeader(b)
	}
	b = appendStr(b, producer)
	return appendSpans(b, m)
}

func decodeMarks(b []byte) (map[string]mark, error) {
	out := map[string]mark{}
	r := &posReader{b: b}
	v1 := true
	if len(b) > 0 && b[0] == marksMagic {
		if len(b) < 2 || b[1] != positionVersion {
			return out, fmt.Errorf("%w: commit metadata version %v", errPosition, b[1:min(2, len(b))])
		}
		r.off, v1 = 2, false
	}
	for r.off < len(b) && r.err == nil {
		p := r.str()
		var m mark
		if v1 {
			m = r.markV1()
		} else {
			m = r.mark()
		}
		if r.err == nil {
			out[p] = m
		}
	}
	return out, r.err
}
