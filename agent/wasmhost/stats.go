package wasmhost

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"
)

// PluginStats are the resource figures of every plugin loaded under one
// name (a pipeline stage: one plugin per partition), for metrics.
type PluginStats struct {
	Name string
	// MemoryBytes is the current linear memory of the live instances.
	MemoryBytes uint64
	// GuestTime is the wall time spent inside the guest's entry points
	// (sluice_process, _poll, _write, _tick, _ack, _init) since the name
	// was first loaded. The host's copies of batches in and results out are
	// not included.
	GuestTime time.Duration
	// Counters are the counters the plugins added to through the metrics
	// capability, summed over every plugin of the name, closed ones
	// included.
	Counters map[string]int64
}

// pluginTotals are the figures of one plugin name. The atomics are updated
// on the call path; retired is guarded by Runtime.mu.
type pluginTotals struct {
	memory     atomic.Int64 // bytes of live instances' linear memories
	guestNanos atomic.Int64
	retired    map[string]int64 // counters of plugins already closed
}

// addGuestTime adds the time since start: one clock read per guest call,
// which is per batch, against the tens of microseconds a batch takes.
func (t *pluginTotals) addGuestTime(start time.Time) {
	t.guestNanos.Add(int64(time.Since(start)))
}

func (r *Runtime) totalsOf(name string) *pluginTotals {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.totals[name]
	if t == nil {
		t = &pluginTotals{retired: map[string]int64{}}
		r.totals[name] = t
	}
	return t
}

// Stats returns the figures of every plugin name this runtime has loaded,
// sorted by name. A name whose plugins are all closed stays listed with
// zero memory, so that its guest time and counters never go backwards.
// Safe for concurrent use with everything, after Close too; it takes one
// lock and reads atomics, never waiting for a call.
func (r *Runtime) Stats() []PluginStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	byName := make(map[string]*PluginStats, len(r.totals))
	for name, t := range r.totals {
		byName[name] = &PluginStats{Name: name, MemoryBytes: uint64(max(t.memory.Load(), 0)),
			GuestTime: time.Duration(t.guestNanos.Load()), Counters: maps.Clone(t.retired)}
	}
	for p := range r.plugins {
		c := byName[p.name].Counters
		for name, v := range p.Counters() {
			c[name] += v
		}
	}
	out := make([]PluginStats, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, *byName[name])
	}
	return out
}
