// Package pipeline runs a Sluice topology: sources → channels → bolts →
// channels → sinks (DESIGN §2–§4).
//
// This file holds the three plugin interfaces. Built-in connectors
// (plugins/…) implement them directly; a WASM module is adapted to them by
// agent/wasmhost. Nothing in the runner knows which one it is driving.
//
// Every batch crossing these interfaces is in the wire form of agent/event:
// the same bytes a channel stores and a WASM guest reads.
package pipeline

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

// Reject names one event of an input batch that a plugin refused
// permanently. The runner sends that event to the stage's dead-letter channel
// with Reason and the stage name in its headers.
type Reject struct {
	Index  int    // index of the event in the input batch
	Reason string // why, for a person reading the dead-letter channel
}

// SourceBatch is what a Source returns from one Read.
type SourceBatch struct {
	// Events is an encoded batch (agent/event wire form). It may be empty
	// when only DeadLetters or a Position advance are returned.
	Events []byte
	// Position is the source's external position just after the last input
	// it consumed for this batch (e.g. file fingerprint + byte offset). The
	// runner appends it with the batch in one durable write (the hop
	// protocol) and hands it back to Open after a restart.
	Position []byte
	// DeadLetters are inputs that could not become events (an oversized or
	// undecodable line), with the reason in header "sluice.reason".
	DeadLetters []event.Event
}

// Source brings events in from the outside world.
//
// Lifecycle: Open once, then Read and Ack from a single goroutine, then
// Close. Close is safe without Open and safe twice. Read must return promptly
// when ctx is done.
type Source interface {
	// Open prepares the source to continue right after position resume, the
	// Position of the last batch that was durably appended downstream; nil
	// means start fresh from the configured start.
	Open(ctx context.Context, resume []byte) error
	// Read blocks until input is available or ctx is done and returns at
	// most max events. The returned slices stay valid until the next Read.
	Read(ctx context.Context, max int) (SourceBatch, error)
	// Ack reports that every batch up to and including position pos is
	// durable downstream. Sources use it to release resources (a drained,
	// deleted file) or to commit to an external system (a Kafka group); they
	// must never need it for correctness of resumption.
	Ack(ctx context.Context, pos []byte) error
	// Close releases everything the source holds.
	Close(ctx context.Context) error
}

// Bolt transforms batches. A bolt is deterministic when the same input
// batches produce the same output; only those get effectively-once results.
//
// Lifecycle: Process (and Tick, for Tickers) are called from a single
// goroutine per bolt instance; Close is safe twice.
type Bolt interface {
	// Process reads one input batch and adds its output events to out.
	// Rejects name input events refused permanently. An error fails the
	// whole batch; the runner retries it and, past the retry limit, sends it
	// to the dead-letter channel.
	Process(ctx context.Context, in []byte, out *event.Builder) ([]Reject, error)
	Close(ctx context.Context) error
}

// Ticker is implemented by bolts with time windows. The runner calls Tick at
// the configured interval between batches, never concurrently with Process.
type Ticker interface {
	Tick(ctx context.Context, now time.Time, out *event.Builder) error
}

// Fence identifies a batch delivered to a sink: Stream names the channel
// partition and reader it came from, Offset is that batch's channel offset,
// which only grows. A sink that records the last Offset it applied per
// Stream, atomically with the data, can skip replays and so be
// effectively-once.
type Fence struct {
	Stream string
	Offset uint64
}

// Sink delivers batches to the outside world.
//
// Lifecycle: Open once, Write from a single goroutine, Close (safe without
// Open, safe twice). Write returning nil means the batch, minus its rejects,
// is durable in the destination: only then does the runner commit its
// channel position.
type Sink interface {
	Open(ctx context.Context) error
	// Write delivers one batch. An error means nothing may be assumed
	// delivered and the runner will retry the same batch with the same fence
	// (so a transient outage becomes backpressure, not loss).
	//
	// After a restart the runner replays batches from its committed
	// position; it writes the rejects of a batch to the dead-letter channel
	// once, skipping those of batches it already wrote them for. A fenced
	// sink that skips a replayed batch must therefore still return that
	// batch's rejects: the runner may have been stopped between the first
	// Write and their dead-letter append, and cannot know them otherwise
	// (docs/adr/0004 §6).
	Write(ctx context.Context, batch []byte, fence Fence) ([]Reject, error)
	Close(ctx context.Context) error
}

// StateStore is the key-value state of a stateful bolt, owned and persisted by
// the runner together with the channel position it reflects (DESIGN §4).
// Guest memory is never the only copy of state.
type StateStore interface {
	Get(key []byte) ([]byte, bool)
	Put(key, value []byte)
	Delete(key []byte)
	// Scan calls fn for every key with the prefix, in ascending key order,
	// until fn returns false.
	Scan(prefix []byte, fn func(key, value []byte) bool)
}
