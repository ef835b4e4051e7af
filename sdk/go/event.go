package sluice

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Event is one input event. Key, Body and the headers alias the SDK's input
// buffer: they are valid only until the method that received the event
// returns. Copy what you keep.
type Event struct {
	Time int64  // unix nanoseconds
	Key  []byte // nil when the event has no key
	Body []byte

	headers  []byte // header* (without the count), aliases the input
	nHeaders int
	raw      []byte // the whole encoded event, for Output.Forward
}

// HeaderCount is the number of headers of e.
func (e *Event) HeaderCount() int { return e.nHeaders }

// Header returns the value of the first header called name.
func (e *Event) Header(name string) ([]byte, bool) {
	b := e.headers
	for i := 0; i < e.nHeaders; i++ {
		// Lengths were checked when the event was decoded.
		n := int(binary.LittleEndian.Uint32(b))
		hn := b[4 : 4+n]
		b = b[4+n:]
		m := int(binary.LittleEndian.Uint32(b))
		if string(hn) == name {
			return b[4 : 4+m], true
		}
		b = b[4+m:]
	}
	return nil, false
}

// EachHeader calls fn for every header in order until fn returns false.
func (e *Event) EachHeader(fn func(name, value []byte) bool) {
	b := e.headers
	for i := 0; i < e.nHeaders; i++ {
		// Lengths were checked when the event was decoded.
		n := int(binary.LittleEndian.Uint32(b))
		name := b[4 : 4+n]
		b = b[4+n:]
		m := int(binary.LittleEndian.Uint32(b))
		value := b[4 : 4+m]
		b = b[4+m:]
		if !fn(name, value) {
			return
		}
	}
}

var errMalformed = errors.New("malformed batch")

// minEventSize is time + key length + body length + header count.
const minEventSize = 8 + 4 + 4 + 4

// batchReader walks an encoded batch (sdk/ABI.md §3) one event at a time
// without allocating. It never trusts a length.
type batchReader struct {
	buf   []byte
	off   int
	count int
	index int // index of the next event
}

func (r *batchReader) reset(batch []byte) error {
	r.buf, r.off, r.count, r.index = batch, 0, 0, 0
	if len(batch) < 4 {
		return fmt.Errorf("%w: %d bytes is shorter than the 4-byte count", errMalformed, len(batch))
	}
	n := binary.LittleEndian.Uint32(batch)
	if uint64(n)*minEventSize > uint64(len(batch)-4) {
		return fmt.Errorf("%w: count %d cannot fit in %d bytes", errMalformed, n, len(batch))
	}
	r.off, r.count = 4, int(n)
	return nil
}

// next decodes the next event into e. It returns false at the end of the
// batch; a malformed event is an error naming its index and byte offset.
func (r *batchReader) next(e *Event) (bool, error) {
	if r.index == r.count {
		if r.off != len(r.buf) {
			return false, fmt.Errorf("%w: %d trailing bytes after %d events", errMalformed, len(r.buf)-r.off, r.count)
		}
		return false, nil
	}
	start := r.off
	b := r.buf
	if len(b)-r.off < 8 {
		return false, r.fail("truncated time")
	}
	e.Time = int64(binary.LittleEndian.Uint64(b[r.off:]))
	r.off += 8
	var ok bool
	if e.Key, ok = r.bytes(); !ok {
		return false, r.fail("key length runs past the end")
	}
	if len(e.Key) == 0 {
		e.Key = nil
	}
	if e.Body, ok = r.bytes(); !ok {
		return false, r.fail("body length runs past the end")
	}
	nh, ok := r.u32()
	if !ok {
		return false, r.fail("truncated header count")
	}
	if uint64(nh)*8 > uint64(len(b)-r.off) {
		return false, r.fail(fmt.Sprintf("%d headers cannot fit in the %d bytes left", nh, len(b)-r.off))
	}
	hstart := r.off
	for j := uint32(0); j < nh; j++ {
		if _, ok := r.bytes(); !ok {
			return false, r.fail("header name runs past the end")
		}
		if _, ok := r.bytes(); !ok {
			return false, r.fail("header value runs past the end")
		}
	}
	e.headers = b[hstart:r.off:r.off]
	e.nHeaders = int(nh)
	e.raw = b[start:r.off:r.off]
	r.index++
	return true, nil
}

func (r *batchReader) fail(what string) error {
	return fmt.Errorf("%w: event %d at byte %d: %s", errMalformed, r.index, r.off, what)
}

func (r *batchReader) u32() (uint32, bool) {
	if len(r.buf)-r.off < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v, true
}

func (r *batchReader) bytes() ([]byte, bool) {
	n, ok := r.u32()
	if !ok || uint64(n) > uint64(len(r.buf)-r.off) {
		return nil, false
	}
	v := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return v, true
}
