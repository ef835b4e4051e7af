// Package sluice is the Go SDK for Sluice WASM plugins (sdk/ABI.md, version 1).
//
// A plugin author writes a type with a per-event API and registers it from an
// init function; the SDK owns the batched ABI underneath (input and output
// buffers, batch framing, results, rejects) so the author never sees it:
//
//	package main
//
//	import sluice "github.com/sluicehq/sluice/sdk/go"
//
//	type upper struct{}
//
//	func (upper) Init(cfg *sluice.Config) error { return nil }
//	func (upper) Process(e *sluice.Event, out *sluice.Output) error {
//		out.Emit(e.Time, e.Key, bytes.ToUpper(e.Body))
//		return nil
//	}
//
//	func init() { sluice.Register(upper{}) }
//	func main() {}
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o upper.wasm .
//
// A plugin implements Plugin plus the interface of its kind: Bolt (and
// optionally Ticker), Source, or Sink (and optionally Flusher). One module may
// implement several kinds; the host's config decides which one it runs as.
//
// Per-event outcomes are errors returned from the per-event method:
// Reject(reason) sends that one event to the dead-letter channel, Retry(msg)
// asks the host to retry the whole batch later without counting a failure,
// and any other error fails the whole batch. A panic in plugin code is
// recovered in every export and reported as a failed batch, because a Go
// guest that unwinds a panic through an export corrupts its runtime.
//
// Host functions (Log, Now, Random, CounterAdd, State*, HTTPDo) work only
// inside a wasm guest and only with the matching capability granted in the
// plugin's config; a module imports only the host functions it actually
// calls, so an unused capability never needs granting. Outside a wasm guest
// they panic with an explanation. Everything else (batch decoding, result
// encoding, config) builds and is tested on the host.
//
// Hot-path allocations: none per event. Input and output buffers are reused
// between calls; Event fields alias the input buffer and are valid only until
// the per-event method returns.
package sluice
