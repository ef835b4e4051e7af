package sluice

import (
	"encoding/binary"
	"runtime"
)

// Result status codes (sdk/ABI.md §5).
const (
	statusOK    = 0
	statusError = 1
	statusRetry = 2
)

// headroom is the space kept in front of the output batch so the result
// header (status, message, position) can be written there once its size is
// known, without moving the batch. Results whose header is larger (a long
// message or position) are moved once.
const headroom = 256

// Output collects the events a call emits. Events are encoded straight into
// the result buffer the host reads, which is reused between calls.
type Output struct {
	buf       []byte // headroom, then the batch being built
	count     uint32
	lastHdrAt int // offset of the header count of the last emitted event, or -1

	rejects     []byte // (index:u32 reason:bytes)*
	rejectCount uint32
	final       []byte // used only when the header does not fit in headroom
}

// bigBuffer is the size from which replacing a buffer is followed by a
// garbage collection. A guest's linear memory never shrinks and is capped by
// the host (max_memory), so a large buffer left for the next automatic
// collection can push the guest over its cap while the new one fills: an
// 8 MiB batch in a 64 MiB guest did. Growing past a new maximum is rare, so
// the collection costs nothing in the steady state.
const bigBuffer = 1 << 20

// reset empties o for the next call, keeping its memory, with room for at
// least sizeHint bytes of output (the input's size, for bolts: most output
// about as much as they read).
func (o *Output) reset(sizeHint ...int) {
	if cap(o.buf) < headroom+4 {
		o.buf = make([]byte, headroom+4, 64<<10)
	}
	o.buf = o.buf[:headroom+4] // batch count placeholder
	if len(sizeHint) > 0 {
		o.ensure(sizeHint[0])
	}
	o.count = 0
	o.lastHdrAt = -1
	o.rejects = o.rejects[:0]
	o.rejectCount = 0
}

// ensure makes room for n more bytes without append's implicit growth, so
// that replacing a big buffer is followed by a collection (see bigBuffer).
func (o *Output) ensure(n int) {
	if cap(o.buf)-len(o.buf) >= n {
		return
	}
	c := 2 * cap(o.buf)
	if c < len(o.buf)+n {
		c = len(o.buf) + n
	}
	nb := make([]byte, len(o.buf), c)
	copy(nb, o.buf)
	old := cap(o.buf)
	o.buf = nb
	if old >= bigBuffer {
		runtime.GC()
	}
}

// Len is the number of events emitted so far in this call.
func (o *Output) Len() int { return int(o.count) }

// Emit appends an event with no headers. Add headers to it with AddHeader.
// key and body are copied.
//
// Emit, EmitString and Forward write by index, with the capacity checked
// once, not with append and not through helpers: in a Go-built WebAssembly
// guest every call that is not inlined, and every branch, costs several ns,
// per event (sdk/go/README.md, "Cost per event").
func (o *Output) Emit(time int64, key, body []byte) {
	at := len(o.buf)
	n := 20 + len(key) + len(body)
	if cap(o.buf)-at < n {
		o.ensure(n)
	}
	o.buf = o.buf[:at+n]
	b := o.buf[at:]
	binary.LittleEndian.PutUint64(b, uint64(time))
	binary.LittleEndian.PutUint32(b[8:], uint32(len(key)))
	k := 12 + copy(b[12:], key)
	binary.LittleEndian.PutUint32(b[k:], uint32(len(body)))
	k += 4 + copy(b[k+4:], body)
	binary.LittleEndian.PutUint32(b[k:], 0)
	o.lastHdrAt = at + k
	o.count++
}

// EmitString is Emit for string key and body.
func (o *Output) EmitString(time int64, key, body string) {
	at := len(o.buf)
	n := 20 + len(key) + len(body)
	if cap(o.buf)-at < n {
		o.ensure(n)
	}
	o.buf = o.buf[:at+n]
	b := o.buf[at:]
	binary.LittleEndian.PutUint64(b, uint64(time))
	binary.LittleEndian.PutUint32(b[8:], uint32(len(key)))
	k := 12 + copy(b[12:], key)
	binary.LittleEndian.PutUint32(b[k:], uint32(len(body)))
	k += 4 + copy(b[k+4:], body)
	binary.LittleEndian.PutUint32(b[k:], 0)
	o.lastHdrAt = at + k
	o.count++
}

// AddHeader adds a header to the event emitted last. It panics when nothing
// has been emitted yet in this call, or after Forward.
func (o *Output) AddHeader(name string, value []byte) {
	o.bumpHeaders()
	o.ensure(8 + len(name) + len(value))
	b := binary.LittleEndian.AppendUint32(o.buf, uint32(len(name)))
	b = append(b, name...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	o.buf = append(b, value...)
}

// AddHeaderString is AddHeader for a string value.
func (o *Output) AddHeaderString(name, value string) {
	o.bumpHeaders()
	o.ensure(8 + len(name) + len(value))
	b := binary.LittleEndian.AppendUint32(o.buf, uint32(len(name)))
	b = append(b, name...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	o.buf = append(b, value...)
}

// CopyHeaders adds every header of e to the event emitted last.
func (o *Output) CopyHeaders(e *Event) {
	if e.nHeaders == 0 {
		return
	}
	if o.lastHdrAt < 0 {
		panic("sluice: Output.CopyHeaders before Emit")
	}
	at := o.buf[o.lastHdrAt:]
	binary.LittleEndian.PutUint32(at, binary.LittleEndian.Uint32(at)+uint32(e.nHeaders))
	o.ensure(len(e.headers))
	o.buf = append(o.buf, e.headers...)
}

func (o *Output) bumpHeaders() {
	if o.lastHdrAt < 0 {
		panic("sluice: Output.AddHeader before Emit")
	}
	at := o.buf[o.lastHdrAt:]
	binary.LittleEndian.PutUint32(at, binary.LittleEndian.Uint32(at)+1)
}

// Forward emits e unchanged (time, key, body and headers) with one copy.
func (o *Output) Forward(e *Event) {
	at := len(o.buf)
	if cap(o.buf)-at < len(e.raw) {
		o.ensure(len(e.raw))
	}
	o.buf = o.buf[:at+len(e.raw)]
	copy(o.buf[at:], e.raw)
	o.lastHdrAt = -1
	o.count++
}

// reject records a rejection of input event index.
func (o *Output) reject(index int, reason string) {
	o.rejects = binary.LittleEndian.AppendUint32(o.rejects, uint32(index))
	o.rejects = binary.LittleEndian.AppendUint32(o.rejects, uint32(len(reason)))
	o.rejects = append(o.rejects, reason...)
	o.rejectCount++
}

// finish encodes the result (sdk/ABI.md §5) and returns it. The returned
// slice stays valid until the next reset.
//
// An ok result is the header written into the headroom right before the
// batch, then the batch, then the rejects. Any other status carries only its
// message: the events emitted and rejects recorded before the failure are
// dropped, because the host retries or dead-letters the whole batch.
func (o *Output) finish(status uint32, message string, position []byte) []byte {
	if status != statusOK {
		o.buf = o.buf[:headroom+4]
		o.count = 0
		o.rejects = o.rejects[:0]
		o.rejectCount = 0
	}
	binary.LittleEndian.PutUint32(o.buf[headroom:], o.count)
	o.ensure(4 + len(o.rejects))
	o.buf = binary.LittleEndian.AppendUint32(o.buf, o.rejectCount)
	o.buf = append(o.buf, o.rejects...)
	hdr := 4 + 4 + len(message) + 4 + len(position)
	if hdr <= headroom {
		b := o.buf[headroom-hdr:]
		putHeader(b, status, message, position)
		return b
	}
	// Rare: a header too large for the headroom. Build the result once more.
	need := hdr + len(o.buf) - headroom
	if cap(o.final) < need {
		o.final = make([]byte, need)
	}
	o.final = o.final[:need]
	putHeader(o.final, status, message, position)
	copy(o.final[hdr:], o.buf[headroom:])
	return o.final
}

func putHeader(b []byte, status uint32, message string, position []byte) {
	binary.LittleEndian.PutUint32(b, status)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(message)))
	n := 8 + copy(b[8:], message)
	binary.LittleEndian.PutUint32(b[n:], uint32(len(position)))
	copy(b[n+4:], position)
}
