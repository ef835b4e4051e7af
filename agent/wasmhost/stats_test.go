package wasmhost

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// liveMemory sums the memory sizes of p's idle instances, as wazero sees
// them: what Stats must report for p when no call is running.
func liveMemory(p *Plugin) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n uint64
	for _, inst := range p.idle {
		n += uint64(inst.mem.Size())
	}
	return n
}

func statsOf(t *testing.T, r *Runtime, name string) PluginStats {
	t.Helper()
	for _, s := range r.Stats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no stats for plugin %q in %+v", name, r.Stats())
	return PluginStats{}
}

// TestStatsSumPluginsOfOneName: a stage runs one plugin per partition;
// Stats sums them, and what a closed plugin counted stays counted.
func TestStatsSumPluginsOfOneName(t *testing.T) {
	r, _ := newTestRuntime(t)
	part0 := loadEcho(t, r, "parse")
	part1 := loadEcho(t, r, "parse")
	other := loadEcho(t, r, "enrich")
	big := batchOf(strings.Repeat("x", 300_000)) // makes the guest grow its memory
	for _, step := range []struct {
		p     *Plugin
		batch []byte
	}{{part0, batchOf("a", "b")}, {part0, big}, {part1, batchOf("c")}} {
		res, err := step.p.Process(t.Context(), step.batch)
		if err != nil {
			t.Fatal(err)
		}
		res.Release()
	}

	stats := r.Stats()
	if len(stats) != 2 || stats[0].Name != "enrich" || stats[1].Name != "parse" {
		t.Fatalf("stats %+v, want enrich and parse in that order", stats)
	}
	parse := stats[1]
	if want := liveMemory(part0) + liveMemory(part1); parse.MemoryBytes != want || want <= 2*pageSize {
		t.Fatalf("parse memory %d, want the instances' %d (more than two pages: one grew)", parse.MemoryBytes, want)
	}
	if parse.Counters["calls"] != 3 || parse.Counters["inits"] != 2 {
		t.Fatalf("parse counters %v, want 3 calls and 2 inits over both plugins", parse.Counters)
	}
	if parse.GuestTime <= 0 || stats[0].GuestTime <= 0 {
		t.Fatalf("guest time parse %v, enrich %v; both ran guest code", parse.GuestTime, stats[0].GuestTime)
	}
	if got := stats[0].MemoryBytes; got != liveMemory(other) {
		t.Fatalf("enrich memory %d, want %d", got, liveMemory(other))
	}

	// A closed plugin's memory is gone, its time and counters are not.
	if err := part0.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := statsOf(t, r, "parse")
	if after.MemoryBytes != liveMemory(part1) {
		t.Fatalf("memory %d after closing partition 0, want partition 1's %d", after.MemoryBytes, liveMemory(part1))
	}
	if after.GuestTime < parse.GuestTime || after.Counters["calls"] != 3 || after.Counters["inits"] != 2 {
		t.Fatalf("after close: %+v, was %+v; counters and time must not go backwards", after, parse)
	}

	// A replacement under the same name (a restart, a reload) adds to them.
	part0 = loadEcho(t, r, "parse")
	res, err := part0.Process(t.Context(), batchOf("d"))
	if err != nil {
		t.Fatal(err)
	}
	res.Release()
	if c := statsOf(t, r, "parse").Counters; c["calls"] != 4 || c["inits"] != 3 {
		t.Fatalf("counters %v after a replacement, want 4 calls and 3 inits", c)
	}

	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Stats() {
		if s.MemoryBytes != 0 {
			t.Fatalf("%s: %d bytes of memory after the runtime closed", s.Name, s.MemoryBytes)
		}
	}
}

// TestStatsDuringCalls reads Stats while several instances run and fault;
// run with -race, it checks that Stats needs no help from the call path.
func TestStatsDuringCalls(t *testing.T) {
	r, _ := newTestRuntime(t)
	p := loadEcho(t, r, "busy", func(c *PluginConfig) { c.Instances = 3; c.MaxRetries = 1 })
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			r.Stats()
		}
	})
	var calls sync.WaitGroup
	for w := range 3 {
		calls.Go(func() {
			for i := range 50 {
				body := "ok"
				if (w+i)%7 == 0 {
					body = "fail" // discards the instance: its memory leaves the sum
				}
				res, err := p.Process(t.Context(), batchOf(body))
				if err != nil {
					t.Error(err)
					return
				}
				res.Release()
			}
		})
	}
	calls.Wait()
	cancel()
	wg.Wait()
	s := statsOf(t, r, "busy")
	if want := liveMemory(p); s.MemoryBytes != want {
		t.Fatalf("memory %d with every call finished, want the idle instances' %d", s.MemoryBytes, want)
	}
	if s.Counters["calls"] < 150 {
		t.Fatalf("calls %d, want at least 150", s.Counters["calls"])
	}
}

// BenchmarkStatsCost is what Stats costs the call path: the guest-time
// accounting (two clock reads and an atomic add per guest call) measured
// on its own, as a ratio to a whole no-op bolt call on the benchmark batch
// measured in the same run. Memory is accounted only when a guest grows
// its memory, and counters were already atomics, so this is all of it.
func BenchmarkStatsCost(b *testing.B) {
	r, _ := newTestRuntime(b)
	p := benchPlugin(b, r, "noop.c", false)
	batch := benchBatch()
	var call, account time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := p.Process(b.Context(), batch)
		call += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		res.Release()
		start = time.Now()
		for range 100 {
			p.totals.addGuestTime(time.Now())
		}
		account += time.Since(start) / 100
	}
	b.ReportMetric(float64(account.Nanoseconds())/float64(b.N), "accounting-ns/call")
	b.ReportMetric(float64(call.Nanoseconds())/float64(b.N), "call-ns")
	b.ReportMetric(float64(account)/float64(call), "accounting/call")
}
