package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// The source's position: for every partition it has consumed, the next
// offset to read, and for every (partition, producer) the highest sluice.seq
// seen, so re-sent copies are dropped after a restart too.
//
//	position  := version:u8(1) nOffsets:u32 offset* nMarks:u32 mark*
//	offset    := topic partition:i32 next:i64
//	mark      := topic partition:i32 producerLen:u16 producer batch:u64 index:u32
//	topic     := len:u16 bytes
//
// Integers are big-endian. Entries are sorted, so equal state encodes to
// equal bytes.
const positionVersion = 1

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
	Marks map[markKey]seq
}

func newPosition() position {
	return position{Next: map[topicPart]int64{}, Marks: map[markKey]seq{}}
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
		s := p.Marks[k]
		b = binary.BigEndian.AppendUint64(b, s.Batch)
		b = binary.BigEndian.AppendUint32(b, s.Index)
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
	if b[0] != positionVersion {
		return p, fmt.Errorf("%w: version %d (want %d)", errPosition, b[0], positionVersion)
	}
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
		p.Marks[k] = seq{Batch: r.u64(), Index: r.u32()}
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
// offset.metadata.max.bytes, 4 KiB by default: about 100 producers):
//
//	marks := (producerLen:u16 producer batch:u64 index:u32)*
func appendMark(b []byte, producer string, s seq) []byte {
	b = appendStr(b, producer)
	b = binary.BigEndian.AppendUint64(b, s.Batch)
	return binary.BigEndian.AppendUint32(b, s.Index)
}

func decodeMarks(b []byte) (map[string]seq, error) {
	out := map[string]seq{}
	r := &posReader{b: b}
	for r.off < len(b) && r.err == nil {
		p := r.str()
		v := seq{Batch: r.u64(), Index: r.u32()}
		if r.err == nil {
			out[p] = v
		}
	}
	return out, r.err
}
