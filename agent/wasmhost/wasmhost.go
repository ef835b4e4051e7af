// Package wasmhost runs Sluice plugins compiled to WebAssembly (sdk/ABI.md,
// version 1) on wazero, and adapts them to the pipeline.Source, pipeline.Bolt
// and pipeline.Sink interfaces that built-in plugins implement.
//
// A Runtime owns the compilation cache shared by every plugin. Load compiles a
// module once, checks it against the ABI and the capabilities granted to it,
// and initialises one instance so that config errors surface at load time.
// Calls then run on a pool of instances. A fault (trap, timeout, memory
// exhaustion, proc_exit, invalid result) discards the instance; the call is
// retried on a fresh one up to MaxRetries times. Every error is a
// *PluginError naming the plugin and the operation.
//
// Untrusted plugins run with wazero's close-on-context-done guard so that a
// looping guest stops at its deadline and never holds up a Go garbage
// collection; see docs/adr/0002-wasm-guard.md for the measured cost and why
// this was chosen.
package wasmhost

import (
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/agent/pipeline"
)

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	// CacheDir holds wazero's compilation cache on disk, so a restarted
	// agent does not compile its modules again. "" keeps it in memory.
	CacheDir string
	// Logger receives plugin logs and WASI stdout/stderr; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Kind is the kind of a plugin, from the config section it is declared in.
type Kind string

// The three plugin kinds.
const (
	KindSource Kind = "source"
	KindBolt   Kind = "bolt"
	KindSink   Kind = "sink"
)

// Capability names accepted in PluginConfig.Capabilities (ABI.md §6).
const (
	CapLog     = "log"
	CapClock   = "clock"
	CapRandom  = "random"
	CapMetrics = "metrics"
	CapState   = "state"
	CapHTTP    = "http"
)

// PluginConfig describes one plugin to load.
type PluginConfig struct {
	Name string // the name in config, used in every log line and error
	Kind Kind

	// Exactly one of Path and Wasm is set.
	Path string
	Wasm []byte

	// SHA256 optionally pins the module: the hex sha256 of its bytes. A
	// mismatch is a load error.
	SHA256 string

	// Config is the plugin's own TOML table, passed to sluice_init flattened
	// as ABI.md §4 describes.
	Config map[string]any

	// Capabilities granted to the plugin (CapLog, ...). Anything not granted
	// cannot even be imported.
	Capabilities []string
	// HTTPHosts lists the host:port pairs the http capability may reach.
	HTTPHosts []string

	// MaxMemoryBytes caps the guest's linear memory, rounded up to 64 KiB
	// pages; 0 means DefaultMaxMemoryBytes.
	MaxMemoryBytes uint64
	// CallTimeout is the deadline of one call into the guest; 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// Instances is the size of the instance pool (parallel calls); 0 means 1.
	// Sources always have exactly one instance.
	Instances int
	// MaxRetries is how many times a faulted call is retried on a fresh
	// instance before it fails.
	MaxRetries int

	// Trusted skips the runaway-loop guard: calls are faster, but a guest
	// stuck in a loop is never stopped and can freeze the agent. Only for
	// modules you wrote.
	Trusted bool

	// State backs the state capability; required if and only if "state" is
	// granted.
	State pipeline.StateStore

	// Logger overrides the Runtime's logger for this plugin.
	Logger *slog.Logger
}

// Defaults applied by Load to zero-valued limits.
const (
	DefaultMaxMemoryBytes = 64 << 20
	DefaultCallTimeout    = 5 * time.Second
)

// Status is the status word of a plugin result (ABI.md §5).
type Status uint32

// Result statuses.
const (
	StatusOK    Status = 0
	StatusError Status = 1
	StatusRetry Status = 2
)

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusError:
		return "error"
	case StatusRetry:
		return "retry"
	}
	return "unknown"
}

// Reject names one event of the input batch refused by the plugin.
type Reject struct {
	Index  int
	Reason string
}

// Result is a validated plugin result, copied out of guest memory: it stays
// valid after the next call, until Release.
type Result struct {
	Status   Status
	Message  string
	Position []byte // sources only
	Batch    []byte // the output batch in agent/event wire form; never nil
	Rejects  []Reject

	buf *[]byte // the copy Position and Batch alias, from resultBuffers
}

// resultBuffers recycles the memory results are copied into: allocating a
// fresh buffer of a few hundred KiB per batch costs more than the copy
// itself (page faults and GC; see the ADR's figures).
var resultBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Release hands the memory behind Batch and Position back to the host for
// reuse. Optional: a Result never released is simply garbage collected.
// After Release the Result's slices must not be used. Safe twice.
func (r *Result) Release() {
	if r == nil || r.buf == nil {
		return
	}
	buf := r.buf
	r.buf, r.Batch, r.Position = nil, nil, nil
	resultBuffers.Put(buf)
}

// PluginError is the error of every failed load or call: which plugin, what
// the host was doing (Op: "load", "init", "process", "tick", "poll", "ack",
// "write", "close") and what went wrong.
type PluginError struct {
	Plugin string
	Op     string
	Err    error
}

func (e *PluginError) Error() string {
	return "plugin " + strconv.Quote(e.Plugin) + ": " + e.Op + ": " + e.Err.Error()
}

func (e *PluginError) Unwrap() error { return e.Err }
