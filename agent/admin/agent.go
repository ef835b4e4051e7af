// Package admin is the agent's HTTP admin surface: health, Prometheus
// metrics, a JSON API (topology, status, results, a live tap of a channel)
// and the embedded dashboard.
//
// The package knows the running agent only through the Agent interface, so
// it depends on neither the pipeline nor the plugins; agent/admin/topoagent
// adapts a built topology to it.
package admin

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

// Agent is what the admin server needs from a running agent. Every method
// must be safe to call from any goroutine at any time, including before the
// agent has started and after it has stopped.
type Agent interface {
	// Topology returns the components and the edges between them.
	Topology() Topology
	// Status returns the state and counters of every component, channel and
	// WASM plugin. It is called about once a second and per /metrics scrape,
	// so it must be cheap and must not block on the pipeline.
	Status() Status
	// Results returns the reader of the results store the dashboard shows,
	// or nil when the pipeline writes none the agent can read.
	Results() ResultsReader
	// Tap calls fn with every sample-th event appended to channel from now
	// on, until fn returns false or ctx ends; it returns nil then. fn must
	// return quickly (the server only copies the event into a bounded
	// buffer). An unknown channel is an error wrapping ErrUnknownChannel.
	Tap(ctx context.Context, channel string, sample int, fn func(event.Event) bool) error
	// Reload re-reads the configuration and applies it; an error leaves the
	// running topology as it was.
	Reload(ctx context.Context) error
}

// Component kinds in a Topology.
const (
	KindSource  = "source"
	KindBolt    = "bolt"
	KindSink    = "sink"
	KindChannel = "channel"
)

// Topology is the graph of the running configuration: stages and channels
// are nodes; an edge goes from a stage to each channel it writes and from a
// channel to each stage that reads it.
type Topology struct {
	Components []Component `json:"components"`
	Edges      []Edge      `json:"edges"`
}

// Component is one node of the topology. A stage and a channel may share a
// name (the demo's "results" sink reads the "results" channel), so edges
// refer to components by ID, which is unique.
type Component struct {
	ID     string `json:"id"` // NodeID(Kind, Name)
	Name   string `json:"name"`
	Kind   string `json:"kind"`             // KindSource, KindBolt, KindSink or KindChannel
	Plugin string `json:"plugin,omitempty"` // built-in type or .wasm path; channel type for channels
}

// NodeID is the ID of the component of kind and name: "kind/name".
func NodeID(kind, name string) string { return kind + "/" + name }

// Edge is a directed edge between two components, by ID.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// State is the lifecycle state of the agent or of one component.
type State string

// States. Healthy means StateRunning (a stopped component after a clean
// drain is not a failure, but the agent reports draining until it is gone).
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateFailed   State = "failed"
	StateDraining State = "draining"
	StateStopped  State = "stopped"
)

// Status is a snapshot of the agent's state and counters. Counters only
// grow for the life of the process.
type Status struct {
	State       State             `json:"state"`
	Components  []ComponentStatus `json:"components"`
	Channels    []ChannelStatus   `json:"channels"`
	Plugins     []PluginStatus    `json:"plugins,omitempty"`
	ReloadError string            `json:"reload_error,omitempty"` // the last failed reload's error, "" after a good one
	// ReloadsApplied and ReloadsRejected count the reloads since the agent
	// started, whatever triggered them (file, SIGHUP, API, remote config).
	ReloadsApplied  uint64 `json:"reloads_applied"`
	ReloadsRejected uint64 `json:"reloads_rejected"`
}

// ComponentStatus are the state and counters of one stage (summed over its
// instances).
type ComponentStatus struct {
	Name         string    `json:"name"`
	Kind         string    `json:"kind"`
	State        State     `json:"state"`
	LastError    string    `json:"last_error,omitempty"`
	Restarts     uint64    `json:"restarts"`
	EventsIn     uint64    `json:"events_in"`
	EventsOut    uint64    `json:"events_out"`
	EventsFailed uint64    `json:"events_failed"`
	DeadLettered uint64    `json:"dead_lettered"`
	BytesIn      uint64    `json:"bytes_in"`
	BytesOut     uint64    `json:"bytes_out"`
	BatchLatency Histogram `json:"batch_latency"`
}

// Histogram is a cumulative histogram in seconds, in Prometheus' form:
// Cumulative[i] counts observations <= Bounds[i]; Count counts all.
type Histogram struct {
	Bounds     []float64 `json:"bounds,omitempty"`
	Cumulative []uint64  `json:"cumulative,omitempty"`
	Count      uint64    `json:"count"`
	Sum        float64   `json:"sum"`
}

// ChannelStatus are the gauges and counters of one channel.
type ChannelStatus struct {
	Name        string `json:"name"`
	DepthEvents uint64 `json:"depth_events"`
	DepthBytes  uint64 `json:"depth_bytes"`
	DiskBytes   int64  `json:"disk_bytes"`
	Appends     uint64 `json:"appends"`
	LowDisk     bool   `json:"low_disk"`
}

// PluginStatus are the resource figures of one WASM plugin (all instances
// of one stage).
type PluginStatus struct {
	Component   string           `json:"component"`
	MemoryBytes uint64           `json:"memory_bytes"`
	GuestTime   time.Duration    `json:"guest_time_ns"`
	Counters    map[string]int64 `json:"counters,omitempty"` // the plugin's own counters (metrics capability)
}

// ResultsReader reads the results the pipeline wrote, with Redis' meaning:
// the embedded store or a Redis server.
type ResultsReader interface {
	// Name says where the results come from ("store", "redis"), for display.
	Name() string
	// HGetAll returns every field of a hash; an absent key gives an empty map.
	HGetAll(key string) (map[string]string, error)
	// ZTop returns the n members of a sorted set with the highest scores,
	// highest first.
	ZTop(key string, n int) ([]ScoredMember, error)
	// Keys returns up to limit keys starting with prefix, sorted.
	Keys(prefix string, limit int) ([]string, error)
}

// ScoredMember is one member of a sorted set.
type ScoredMember struct {
	Member string  `json:"member"`
	Score  float64 `json:"score"`
}
