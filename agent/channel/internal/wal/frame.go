// Package wal holds the byte formats of the file channel: record frames,
// the channel metadata file and reader position files. It is the only code
// that decodes bytes read from a channel directory; every decoder checks
// every length against the bytes present and never panics on damaged input.
// The layout is described in docs/adr/0001-channel-format.md.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Frame layout (little-endian):
//
//	magic:u32 bodyLen:u32 crc:u32 body[bodyLen]
//	body := kind:u8 offset:u64 payload
//
// crc is CRC32C (Castagnoli) of body. A frame is valid only when the magic
// matches, bodyLen fits in the bytes present and the checksum matches, so the
// end of the last complete frame is found without guessing.
const (
	Magic      uint32 = 0x31434c53 // "SLC1"
	HeaderSize        = 12         // magic, bodyLen, crc
	minBody           = 9          // kind, offset
	// MaxBody bounds one frame's body so a damaged length never makes a
	// reader allocate gigabytes.
	MaxBody = 1 << 30
	// Version is the segment format version, stored in every segment header.
	Version uint16 = 1
)

// Kind says what a frame holds.
type Kind uint8

const (
	KindData    Kind = 1 // one appended batch; offset = the record's offset
	KindSegment Kind = 2 // first frame of every segment; offset = base (first record's offset)
	KindSeal    Kind = 3 // last frame of a finished segment; offset = next segment's base
	KindSync    Kind = 4 // written after each flushed group; offset = next record's offset
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadFrame is wrapped by every frame decoding error.
var ErrBadFrame = errors.New("bad frame")

// Data is the payload of a data frame.
type Data struct {
	Offset       uint64
	EventsBefore uint64 // events in the partition before this record
	BytesBefore  uint64 // batch bytes in the partition before this record
	Count        uint32
	Producer     []byte
	InputPos     []byte
	Batch        []byte
}

// ProducerPos is one row of a segment header's producer table.
type ProducerPos struct {
	Producer string
	Pos      []byte
}

// Segment is the payload of a segment header frame.
type Segment struct {
	Base         uint64 // offset of the first record in the segment
	Version      uint16
	Partition    uint32
	EventsBefore uint64
	BytesBefore  uint64
	// Producers holds each producer's last input position in the records
	// before this segment, so recovery scans only the last segment.
	Producers []ProducerPos
}

// Frame is a decoded frame; Body aliases the decoded bytes.
type Frame struct {
	Kind   Kind
	Offset uint64
	Body   []byte // payload after kind and offset
	Size   int    // bytes the frame takes, header included
}

func begin(dst []byte, kind Kind, offset uint64, payload int) ([]byte, int) {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, Magic)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(minBody+payload))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // crc, filled by finish
	dst = append(dst, byte(kind))
	dst = binary.LittleEndian.AppendUint64(dst, offset)
	return dst, start
}

func finish(dst []byte, start int) []byte {
	sum := crc32.Checksum(dst[start+HeaderSize:], castagnoli)
	binary.LittleEndian.PutUint32(dst[start+8:], sum)
	return dst
}

// DataSize is the encoded size of a data frame.
func DataSize(producer string, inputPos, batch []byte) int {
	return HeaderSize + minBody + 8 + 8 + 4 + 2 + len(producer) + 4 + len(inputPos) + len(batch)
}

// AppendData appends an encoded data frame to dst.
func AppendData(dst []byte, d *Data) []byte {
	n := 8 + 8 + 4 + 2 + len(d.Producer) + 4 + len(d.InputPos) + len(d.Batch)
	dst, start := begin(dst, KindData, d.Offset, n)
	dst = binary.LittleEndian.AppendUint64(dst, d.EventsBefore)
	dst = binary.LittleEndian.AppendUint64(dst, d.BytesBefore)
	dst = binary.LittleEndian.AppendUint32(dst, d.Count)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(d.Producer)))
	dst = append(dst, d.Producer...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(d.InputPos)))
	dst = append(dst, d.InputPos...)
	dst = append(dst, d.Batch...)
	return finish(dst, start)
}

// AppendSegment appends an encoded segment header frame to dst.
func AppendSegment(dst []byte, s *Segment) []byte {
	n := 2 + 4 + 8 + 8 + 4
	for _, p := range s.Producers {
		n += 2 + len(p.Producer) + 4 + len(p.Pos)
	}
	dst, start := begin(dst, KindSegment, s.Base, n)
	dst = binary.LittleEndian.AppendUint16(dst, s.Version)
	dst = binary.LittleEndian.AppendUint32(dst, s.Partition)
	dst = binary.LittleEndian.AppendUint64(dst, s.EventsBefore)
	dst = binary.LittleEndian.AppendUint64(dst, s.BytesBefore)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s.Producers)))
	for _, p := range s.Producers {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(p.Producer)))
		dst = append(dst, p.Producer...)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.Pos)))
		dst = append(dst, p.Pos...)
	}
	return finish(dst, start)
}

// MarkerSize is the size of a seal or sync frame.
const MarkerSize = HeaderSize + minBody

// AppendMarker appends a seal or sync frame carrying offset next.
func AppendMarker(dst []byte, kind Kind, next uint64) []byte {
	dst, start := begin(dst, kind, next, 0)
	return finish(dst, start)
}

// PeekSize returns the total size of the frame starting at b, or ok=false if
// b does not start with a plausible frame header. It lets a reader learn how
// many bytes to fetch before calling Decode.
func PeekSize(b []byte) (int, bool) {
	if len(b) < HeaderSize || binary.LittleEndian.Uint32(b) != Magic {
		return 0, false
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n < minBody || n > MaxBody {
		return 0, false
	}
	return HeaderSize + int(n), true
}

// Decode decodes the frame at the start of b. It fails (wrapping
// ErrBadFrame) when the magic, length or checksum is wrong or the frame is
// cut short.
func Decode(b []byte) (Frame, error) {
	size, ok := PeekSize(b)
	if !ok {
		if len(b) < HeaderSize {
			return Frame{}, fmt.Errorf("%w: %d bytes, header needs %d", ErrBadFrame, len(b), HeaderSize)
		}
		return Frame{}, fmt.Errorf("%w: no frame header (magic %#x, length %d)", ErrBadFrame,
			binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]))
	}
	if size > len(b) {
		return Frame{}, fmt.Errorf("%w: frame of %d bytes cut short at %d", ErrBadFrame, size, len(b))
	}
	body := b[HeaderSize:size]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[8:]); got != want {
		return Frame{}, fmt.Errorf("%w: checksum %#x, want %#x", ErrBadFrame, got, want)
	}
	k := Kind(body[0])
	if k < KindData || k > KindSync {
		return Frame{}, fmt.Errorf("%w: unknown kind %d", ErrBadFrame, k)
	}
	return Frame{Kind: k, Offset: binary.LittleEndian.Uint64(body[1:]), Body: body[minBody:], Size: size}, nil
}

type cursor struct {
	b   []byte
	err error
}

func (c *cursor) take(n int, what string) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || n > len(c.b) {
		c.err = fmt.Errorf("%w: %s needs %d bytes, %d left", ErrBadFrame, what, n, len(c.b))
		return nil
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) u16(what string) int {
	if v := c.take(2, what); v != nil {
		return int(binary.LittleEndian.Uint16(v))
	}
	return 0
}

func (c *cursor) u32(what string) uint32 {
	if v := c.take(4, what); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (c *cursor) u64(what string) uint64 {
	if v := c.take(8, what); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// DecodeData decodes the payload of a KindData frame. Slices alias f.Body.
func DecodeData(f Frame) (Data, error) {
	if f.Kind != KindData {
		return Data{}, fmt.Errorf("%w: kind %d is not data", ErrBadFrame, f.Kind)
	}
	c := cursor{b: f.Body}
	d := Data{Offset: f.Offset}
	d.EventsBefore = c.u64("events before")
	d.BytesBefore = c.u64("bytes before")
	d.Count = c.u32("count")
	d.Producer = c.take(c.u16("producer length"), "producer")
	d.InputPos = c.take(int(c.u32("input position length")), "input position")
	d.Batch = c.b
	return d, c.err
}

// DecodeSegment decodes the payload of a KindSegment frame.
func DecodeSegment(f Frame) (Segment, error) {
	if f.Kind != KindSegment {
		return Segment{}, fmt.Errorf("%w: kind %d is not a segment header", ErrBadFrame, f.Kind)
	}
	c := cursor{b: f.Body}
	s := Segment{Base: f.Offset}
	s.Version = uint16(c.u16("version"))
	s.Partition = c.u32("partition")
	s.EventsBefore = c.u64("events before")
	s.BytesBefore = c.u64("bytes before")
	n := c.u32("producer count")
	if c.err == nil && int64(n)*6 > int64(len(c.b)) {
		return Segment{}, fmt.Errorf("%w: %d producers cannot fit in %d bytes", ErrBadFrame, n, len(c.b))
	}
	for range n {
		name := c.take(c.u16("producer length"), "producer")
		pos := c.take(int(c.u32("position length")), "position")
		if c.err != nil {
			break
		}
		s.Producers = append(s.Producers, ProducerPos{Producer: string(name), Pos: append([]byte(nil), pos...)})
	}
	if c.err == nil && len(c.b) != 0 {
		c.err = fmt.Errorf("%w: %d stray bytes after segment header", ErrBadFrame, len(c.b))
	}
	return s, c.err
}
