package sluice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
)

// Plugin is what every plugin implements. Init receives the plugin's config
// once, before any other call; an error makes the plugin fail to load.
type Plugin interface {
	Init(cfg *Config) error
}

// Bolt transforms events. Process is called once per input event, in order;
// it emits any number of output events into out. Return Reject(reason) to
// dead-letter this event, Retry(msg) to have the host retry the whole batch
// later, or any other error to fail the whole batch.
type Bolt interface {
	Plugin
	Process(e *Event, out *Output) error
}

// Ticker is implemented by bolts with time windows: the host calls Tick
// periodically with the current time in unix nanoseconds, and the events it
// emits (closed windows) flow on like Process output.
type Ticker interface {
	Tick(nowNs int64, out *Output) error
}

// Source brings events in. Open is called once after Init with the position
// the host recovered after a restart (nil on a fresh start): resume right
// after it. Poll emits at most max events and returns the position just after
// them (opaque bytes the host stores with the batch). Ack reports a position
// the host has made durable downstream.
type Source interface {
	Plugin
	Open(resume []byte) error
	Poll(max int, out *Output) (position []byte, err error)
	Ack(position []byte) error
}

// Sink delivers events. Write is called once per event of a batch, in order;
// Reject(reason) dead-letters that event, Retry(msg) makes the host retry
// the whole batch later (backend down), any other error fails the batch.
type Sink interface {
	Plugin
	Write(e *Event) error
}

// Flusher is implemented by sinks that buffer and by bolts that work per
// batch: Flush is called after the last Write (sink) or Process (bolt) of
// every batch. A sink's batch counts as delivered only when it returns nil; a
// bolt uses it to move what it gathered into host state before the call ends
// (wasm-examples/order-stats), so the state is persisted with the batch.
type Flusher interface {
	Flush() error
}

// Reject returns an error that rejects the current event with reason.
func Reject(reason string) error { return &rejectError{reason} }

// Retry returns an error that asks the host to retry the whole batch later,
// without counting it as a failure (a backend is temporarily down).
func Retry(message string) error { return &retryError{message} }

type rejectError struct{ reason string }

func (e *rejectError) Error() string { return "rejected: " + e.reason }

type retryError struct{ message string }

func (e *retryError) Error() string { return "retry: " + e.message }

var registered Plugin

// Register installs p as this module's plugin. Call it from an init function
// (a reactor runs package initialisation in _initialize, before the host's
// first call; main is never run). Registering twice panics.
func Register(p Plugin) {
	if registered != nil {
		panic("sluice: Register called twice")
	}
	registered = p
}

// guest holds everything the exports share. There is exactly one per module:
// the host never calls one instance concurrently.
type guest struct {
	plugin Plugin
	bolt   Bolt
	ticker Ticker
	source Source
	sink   Sink
	flush  Flusher
	ready  bool
	opened bool // the source's Open has run

	in  []byte // input buffer handed out by sluice_buffer
	out Output
	rd  batchReader
	ev  Event
}

// buffer returns an input region of at least size bytes, reusing the last
// one when large enough. The host asks for the exact size of each input, so
// a new region is that size (rounded up to 64 KiB, and at least 5/4 of the
// old one so that slowly growing batches do not reallocate every time). The
// old region is dropped first, and collected at once when big (bigBuffer).
func (g *guest) buffer(size int) []byte {
	if size < 0 {
		return nil
	}
	if cap(g.in) < size || cap(g.in) == 0 {
		c := (size + 64<<10 - 1) &^ (64<<10 - 1)
		if c == 0 {
			c = 64 << 10
		}
		if grown := cap(g.in) + cap(g.in)/4; c < grown {
			c = grown
		}
		old := cap(g.in)
		g.in = nil
		if old >= bigBuffer {
			runtime.GC()
		}
		g.in = make([]byte, c)
	}
	return g.in[:size]
}

func (g *guest) init(cfgBytes []byte) (res []byte) {
	g.out.reset()
	defer g.recoverInto(&res, "init")
	if registered == nil {
		return g.out.finish(statusError, "no plugin registered: call sluice.Register from an init function", nil)
	}
	cfg, err := parseConfig(cfgBytes)
	if err != nil {
		return g.out.finish(statusError, err.Error(), nil)
	}
	g.plugin = registered
	g.bolt, _ = registered.(Bolt)
	g.ticker, _ = registered.(Ticker)
	g.source, _ = registered.(Source)
	g.sink, _ = registered.(Sink)
	g.flush, _ = registered.(Flusher)
	if err := g.plugin.Init(cfg); err != nil {
		return g.fail(err)
	}
	g.ready = true
	return g.out.finish(statusOK, "", nil)
}

func (g *guest) notReady(what string) []byte {
	if !g.ready {
		return g.out.finish(statusError, what+" called before a successful sluice_init", nil)
	}
	return nil
}

func (g *guest) process(batch []byte) (res []byte) {
	g.out.reset(len(batch))
	defer g.recoverInto(&res, "Process")
	if r := g.notReady("sluice_process"); r != nil {
		return r
	}
	if g.bolt == nil {
		return g.out.finish(statusError, fmt.Sprintf("plugin %T is not a bolt: it has no Process(*sluice.Event, *sluice.Output) error method", g.plugin), nil)
	}
	return g.perEvent(batch, g.bolt, nil)
}

func (g *guest) write(batch []byte) (res []byte) {
	g.out.reset()
	defer g.recoverInto(&res, "Write")
	if r := g.notReady("sluice_write"); r != nil {
		return r
	}
	if g.sink == nil {
		return g.out.finish(statusError, fmt.Sprintf("plugin %T is not a sink: it has no Write(*sluice.Event) error method", g.plugin), nil)
	}
	return g.perEvent(batch, nil, g.sink)
}

// perEvent runs bolt.Process or sink.Write (whichever is not nil) over every
// event of batch.
//
// The events are decoded here, in the loop, not by a helper: in a Go-built
// WebAssembly guest every call that is not inlined costs ~10 ns (the Go
// stack lives in linear memory, each function is a resumable state machine),
// and calls per event were most of the SDK's cost (figures: sdk/go/README.md,
// "Cost per event"). Each length is checked against what is left before it is
// used; FuzzProcess checks this decoder against batchReader.
func (g *guest) perEvent(batch []byte, bolt Bolt, sink Sink) []byte {
	if err := g.rd.reset(batch); err != nil {
		return g.out.finish(statusError, err.Error(), nil)
	}
	b, off, count := g.rd.buf, g.rd.off, g.rd.count
	e, out := &g.ev, &g.out
	for i := 0; i < count; i++ {
		start := off
		// time:u64 keyLen:u32 — the smallest event is minEventSize bytes.
		if len(b)-off < minEventSize {
			return g.malformed(i, off, "truncated event")
		}
		e.Time = int64(binary.LittleEndian.Uint64(b[off:]))
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		off += 12
		if n > len(b)-off-8 { // body length and header count follow the key
			return g.malformed(i, off, "key length runs past the end")
		}
		e.Key = nil
		if n > 0 {
			e.Key = b[off : off+n : off+n]
		}
		off += n
		n = int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n > len(b)-off-4 { // the header count follows the body
			return g.malformed(i, off, "body length runs past the end")
		}
		e.Body = b[off : off+n : off+n]
		off += n
		nh := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		hstart := off
		if nh != 0 {
			if uint64(nh)*8 > uint64(len(b)-off) {
				return g.malformed(i, off, fmt.Sprintf("%d headers cannot fit in the %d bytes left", nh, len(b)-off))
			}
			var ok bool
			if off, ok = skipHeaders(b, off, nh); !ok {
				return g.malformed(i, off, "header runs past the end")
			}
		}
		e.headers = b[hstart:off:off]
		e.nHeaders = nh
		e.raw = b[start:off:off]
		var err error
		if bolt != nil {
			err = bolt.Process(e, out)
		} else {
			err = sink.Write(e)
		}
		if err != nil {
			if rej, ok := err.(*rejectError); ok {
				out.reject(i, rej.reason)
				continue
			}
			var rej *rejectError
			if errors.As(err, &rej) {
				out.reject(i, rej.reason)
				continue
			}
			return g.fail(err)
		}
	}
	if off != len(b) {
		return g.out.finish(statusError, fmt.Sprintf("%v: %d trailing bytes after %d events", errMalformed, len(b)-off, count), nil)
	}
	if g.flush != nil {
		if err := g.flush.Flush(); err != nil {
			return g.fail(err)
		}
	}
	return g.out.finish(statusOK, "", nil)
}

// skipHeaders returns the offset after nh headers (name:bytes value:bytes)
// starting at off, or false when one runs past the end of b.
func skipHeaders(b []byte, off, nh int) (int, bool) {
	for j := 0; j < 2*nh; j++ {
		if len(b)-off < 4 {
			return off, false
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if n > len(b)-off {
			return off, false
		}
		off += n
	}
	return off, true
}

func (g *guest) malformed(index, off int, what string) []byte {
	return g.out.finish(statusError, fmt.Sprintf("%v: event %d at byte %d: %s", errMalformed, index, off, what), nil)
}

func (g *guest) tick(now int64) (res []byte) {
	g.out.reset()
	defer g.recoverInto(&res, "Tick")
	if r := g.notReady("sluice_tick"); r != nil {
		return r
	}
	if g.ticker != nil {
		if err := g.ticker.Tick(now, &g.out); err != nil {
			return g.fail(err)
		}
	}
	return g.out.finish(statusOK, "", nil)
}

func (g *guest) poll(max int) (res []byte) {
	g.out.reset()
	defer g.recoverInto(&res, "Poll")
	if r := g.notReady("sluice_poll"); r != nil {
		return r
	}
	if g.source == nil {
		return g.out.finish(statusError, fmt.Sprintf("plugin %T is not a source: it has no Poll(int, *sluice.Output) ([]byte, error) method", g.plugin), nil)
	}
	pos, err := g.source.Poll(max, &g.out)
	if err != nil {
		return g.fail(err)
	}
	if g.out.count > uint32(max) {
		return g.out.finish(statusError, fmt.Sprintf("Poll emitted %d events, more than the %d asked for", g.out.count, max), nil)
	}
	return g.out.finish(statusOK, "", pos)
}

func (g *guest) ack(pos []byte) (res []byte) {
	g.out.reset()
	defer g.recoverInto(&res, "Ack")
	if r := g.notReady("sluice_ack"); r != nil {
		return r
	}
	if g.source == nil {
		return g.out.finish(statusError, fmt.Sprintf("plugin %T is not a source", g.plugin), nil)
	}
	var err error
	if !g.opened {
		g.opened = true
		if len(pos) == 0 {
			pos = nil
		}
		err = g.source.Open(pos)
	} else {
		err = g.source.Ack(pos)
	}
	if err != nil {
		return g.fail(err)
	}
	return g.out.finish(statusOK, "", nil)
}

// fail turns an error from plugin code into an error or retry result. A
// Reject outside a per-event method has no event to name, so it fails the
// call.
func (g *guest) fail(err error) []byte {
	var retry *retryError
	if errors.As(err, &retry) {
		return g.out.finish(statusRetry, retry.message, nil)
	}
	return g.out.finish(statusError, err.Error(), nil)
}

// recoverInto turns a panic in plugin code into an error result. Letting a
// panic unwind out of a wasmexport corrupts the Go runtime of the instance.
func (g *guest) recoverInto(res *[]byte, method string) {
	if r := recover(); r != nil {
		g.out.reset()
		*res = g.out.finish(statusError, fmt.Sprintf("panic in %T.%s: %v", g.plugin, method, r), nil)
	}
}

func badInputMessage(p, n int32, capacity int) string {
	return fmt.Sprintf("input region (%d, %d) is not the buffer sluice_buffer returned (capacity %d)", p, n, capacity)
}
