// Package event is Sluice's data model and its one binary encoding.
//
// An Event is a body, an optional key, a few headers and a time in unix
// nanoseconds (DESIGN §3). Events always move in batches, and a batch has
// exactly one wire form, used unchanged in three places:
//
//   - as the payload of a channel record (agent/channel),
//   - as the input and output of a WASM plugin call (sdk/ABI.md),
//   - between agents over the network.
//
// Using the same bytes everywhere means a batch read from a channel can be
// copied into guest memory without being decoded and encoded again.
//
// Wire form (all integers little-endian):
//
//	batch  := count:u32 event*count
//	event  := time:i64 keyLen:u32 key bodyLen:u32 body nHeaders:u32 header*nHeaders
//	header := nameLen:u32 name valueLen:u32 value
//
// Decoding never trusts a length: every length is checked against the bytes
// that remain, so a damaged or hostile batch yields an error, never a panic or
// an oversized allocation.
package event

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header is one name/value pair attached to an event.
type Header struct {
	Name  string
	Value string
}

// Event is one record flowing through a pipeline.
type Event struct {
	Time    int64 // unix nanoseconds
	Key     []byte
	Body    []byte
	Headers []Header
}

// Header returns the value of the first header with the given name.
func (e *Event) Header(name string) (string, bool) {
	for _, h := range e.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// SetHeader replaces the value of header name, or adds it.
func (e *Event) SetHeader(name, value string) {
	for i := range e.Headers {
		if e.Headers[i].Name == name {
			e.Headers[i].Value = value
			return
		}
	}
	e.Headers = append(e.Headers, Header{Name: name, Value: value})
}

// EncodedSize is the number of bytes e takes in the wire form.
func (e *Event) EncodedSize() int {
	n := 8 + 4 + len(e.Key) + 4 + len(e.Body) + 4
	for _, h := range e.Headers {
		n += 8 + len(h.Name) + len(h.Value)
	}
	return n
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed event batch")

// minEventSize is the size of an event with no key, body or headers; it bounds
// how many events a batch of a given length can claim to hold.
const minEventSize = 8 + 4 + 4 + 4

// AppendBatch appends the wire form of evs to dst and returns the result.
func AppendBatch(dst []byte, evs []Event) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(evs)))
	for i := range evs {
		dst = AppendEvent(dst, &evs[i])
	}
	return dst
}

// AppendEvent appends the wire form of a single event (without the batch
// count) to dst. A Builder uses it to grow a batch one event at a time.
func AppendEvent(dst []byte, e *Event) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.Time))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Key)))
	dst = append(dst, e.Key...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Body)))
	dst = append(dst, e.Body...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Headers)))
	for _, h := range e.Headers {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h.Name)))
		dst = append(dst, h.Name...)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return dst
}

// Builder accumulates events into one encoded batch without an intermediate
// []Event. The zero value is ready to use.
type Builder struct {
	buf   []byte
	count uint32
}

// Add appends one event.
func (b *Builder) Add(e *Event) {
	if len(b.buf) == 0 {
		b.buf = append(b.buf, 0, 0, 0, 0)
	}
	b.buf = AppendEvent(b.buf, e)
	b.count++
}

// Len is the number of events added since the last Reset.
func (b *Builder) Len() int { return int(b.count) }

// Size is the encoded size of the batch so far.
func (b *Builder) Size() int {
	if len(b.buf) == 0 {
		return 4
	}
	return len(b.buf)
}

// Bytes returns the encoded batch. It stays valid until the next Add or Reset.
func (b *Builder) Bytes() []byte {
	if len(b.buf) == 0 {
		b.buf = append(b.buf, 0, 0, 0, 0)
	}
	binary.LittleEndian.PutUint32(b.buf, b.count)
	return b.buf
}

// Reset empties the builder, keeping its memory.
func (b *Builder) Reset() {
	b.buf = b.buf[:0]
	b.count = 0
}

// Count returns the number of events a batch claims to hold, after checking
// that the claim is possible for its length. It does not validate the events.
func Count(batch []byte) (int, error) {
	if len(batch) < 4 {
		return 0, fmt.Errorf("%w: %d bytes is shorter than the 4-byte count", ErrMalformed, len(batch))
	}
	n := binary.LittleEndian.Uint32(batch)
	if uint64(n)*minEventSize > uint64(len(batch)-4) {
		return 0, fmt.Errorf("%w: count %d cannot fit in %d bytes", ErrMalformed, n, len(batch))
	}
	return int(n), nil
}

// DecodeBatch decodes a batch, appending its events to dst. Keys, bodies and
// header values alias batch: copy them if batch will be reused. The whole
// input must be consumed; trailing bytes are an error.
func DecodeBatch(dst []Event, batch []byte) ([]Event, error) {
	n, err := Count(batch)
	if err != nil {
		return dst, err
	}
	r := reader{buf: batch, off: 4}
	for i := 0; i < n; i++ {
		var e Event
		if err := r.event(&e); err != nil {
			return dst, fmt.Errorf("%w: event %d: %v", ErrMalformed, i, err)
		}
		dst = append(dst, e)
	}
	if r.off != len(batch) {
		return dst, fmt.Errorf("%w: %d trailing bytes after %d events", ErrMalformed, len(batch)-r.off, n)
	}
	return dst, nil
}

// Iterate calls fn for every event of batch in order without allocating a
// slice of events; e is reused between calls and aliases batch. It stops at
// the first error from decoding or from fn.
func Iterate(batch []byte, fn func(i int, e *Event) error) error {
	n, err := Count(batch)
	if err != nil {
		return err
	}
	r := reader{buf: batch, off: 4}
	var e Event
	for i := 0; i < n; i++ {
		e.Headers = e.Headers[:0]
		if err := r.event(&e); err != nil {
			return fmt.Errorf("%w: event %d: %v", ErrMalformed, i, err)
		}
		if err := fn(i, &e); err != nil {
			return err
		}
	}
	if r.off != len(batch) {
		return fmt.Errorf("%w: %d trailing bytes after %d events", ErrMalformed, len(batch)-r.off, n)
	}
	return nil
}

type reader struct {
	buf []byte
	off int
}

func (r *reader) u32() (uint32, error) {
	if len(r.buf)-r.off < 4 {
		return 0, fmt.Errorf("truncated at byte %d", r.off)
	}
	v := binary.LittleEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) bytes() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(r.buf)-r.off) {
		return nil, fmt.Errorf("length %d at byte %d runs past the end", n, r.off-4)
	}
	b := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

func (r *reader) event(e *Event) error {
	if len(r.buf)-r.off < 8 {
		return fmt.Errorf("truncated time at byte %d", r.off)
	}
	e.Time = int64(binary.LittleEndian.Uint64(r.buf[r.off:]))
	r.off += 8
	var err error
	if e.Key, err = r.bytes(); err != nil {
		return err
	}
	if len(e.Key) == 0 {
		e.Key = nil
	}
	if e.Body, err = r.bytes(); err != nil {
		return err
	}
	nh, err := r.u32()
	if err != nil {
		return err
	}
	if uint64(nh)*8 > uint64(len(r.buf)-r.off) {
		return fmt.Errorf("%d headers cannot fit in the %d bytes left", nh, len(r.buf)-r.off)
	}
	for j := uint32(0); j < nh; j++ {
		name, err := r.bytes()
		if err != nil {
			return err
		}
		value, err := r.bytes()
		if err != nil {
			return err
		}
		e.Headers = append(e.Headers, Header{Name: string(name), Value: string(value)})
	}
	return nil
}

// AddEncoded appends every event of an already-encoded batch, after checking
// that it is well formed, without decoding and re-encoding each event. It is
// how a bolt adapter passes a WASM guest's output batch on.
func (b *Builder) AddEncoded(batch []byte) error {
	n, err := Count(batch)
	if err != nil {
		return err
	}
	r := reader{buf: batch, off: 4}
	for i := 0; i < n; i++ {
		if err := r.skipEvent(); err != nil {
			return fmt.Errorf("%w: event %d: %v", ErrMalformed, i, err)
		}
	}
	if r.off != len(batch) {
		return fmt.Errorf("%w: %d trailing bytes after %d events", ErrMalformed, len(batch)-r.off, n)
	}
	if len(b.buf) == 0 {
		b.buf = append(b.buf, 0, 0, 0, 0)
	}
	b.buf = append(b.buf, batch[4:]...)
	b.count += uint32(n)
	return nil
}

// skipEvent checks one event's framing and moves past it.
func (r *reader) skipEvent() error {
	if len(r.buf)-r.off < 8 {
		return fmt.Errorf("truncated time at byte %d", r.off)
	}
	r.off += 8
	if _, err := r.bytes(); err != nil {
		return err
	}
	if _, err := r.bytes(); err != nil {
		return err
	}
	nh, err := r.u32()
	if err != nil {
		return err
	}
	if uint64(nh)*8 > uint64(len(r.buf)-r.off) {
		return fmt.Errorf("%d headers cannot fit in the %d bytes left", nh, len(r.buf)-r.off)
	}
	for j := uint32(0); j < 2*nh; j++ {
		if _, err := r.bytes(); err != nil {
			return err
		}
	}
	return nil
}
