package admin_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/event"
)

// fakeAgent is a stand-in for the running agent, for tests of the HTTP
// layer only; the browser test runs a real pipeline.
type fakeAgent struct {
	mu        sync.Mutex
	topo      admin.Topology
	status    admin.Status
	results   admin.ResultsReader
	tapEvents []event.Event // what Tap delivers, then it waits for ctx
	reloadErr error
	reloads   int

	tapStarted, tapEnded chan struct{} // closed when Tap begins and returns, if set
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{
		topo: admin.Topology{
			Components: []admin.Component{
				{ID: "source/orders_log", Name: "orders_log", Kind: admin.KindSource, Plugin: "tail"},
				{ID: "channel/raw", Name: "raw", Kind: admin.KindChannel, Plugin: "file"},
				{ID: "sink/out", Name: "out", Kind: admin.KindSink, Plugin: "file"},
			},
			Edges: []admin.Edge{{From: "source/orders_log", To: "channel/raw"}, {From: "channel/raw", To: "sink/out"}},
		},
		status: admin.Status{
			State:          admin.StateRunning,
			ReloadsApplied: 4, ReloadsRejected: 1,
			Components: []admin.ComponentStatus{
				{Name: "orders_log", Kind: admin.KindSource, State: admin.StateRunning, EventsOut: 100, BytesOut: 2000},
				{Name: "out", Kind: admin.KindSink, State: admin.StateRunning, EventsIn: 90, EventsFailed: 3, DeadLettered: 2, BytesIn: 1800,
					BatchLatency: admin.Histogram{Bounds: []float64{0.001, 0.01}, Cumulative: []uint64{4, 9}, Count: 10, Sum: 0.25}},
			},
			Channels: []admin.ChannelStatus{{Name: "raw", DepthEvents: 10, DepthBytes: 200, DiskBytes: 4096, Appends: 7}},
			Plugins:  []admin.PluginStatus{{Component: "out", MemoryBytes: 1 << 20, GuestTime: 1500000000, Counters: map[string]int64{"bad_lines": 5}}},
		},
	}
}

func (f *fakeAgent) set(fn func(*fakeAgent)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAgent) Topology() admin.Topology {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.topo
}

func (f *fakeAgent) Status() admin.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.Components = append([]admin.ComponentStatus(nil), st.Components...)
	return st
}

func (f *fakeAgent) Results() admin.ResultsReader {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.results
}

func (f *fakeAgent) Tap(ctx context.Context, channel string, sample int, fn func(event.Event) bool) error {
	if channel != "raw" {
		return fmt.Errorf("channel %q: %w", channel, admin.ErrUnknownChannel)
	}
	if f.tapStarted != nil {
		close(f.tapStarted)
		defer close(f.tapEnded)
	}
	for i, e := range f.tapEvents {
		if (i+1)%sample != 0 {
			continue
		}
		if !fn(e) {
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func (f *fakeAgent) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadErr
}

// mapResults is an in-memory ResultsReader.
type mapResults struct {
	hashes map[string]map[string]string
	zsets  map[string][]admin.ScoredMember
}

func (m mapResults) Name() string { return "map" }

func (m mapResults) HGetAll(key string) (map[string]string, error) {
	if h, ok := m.hashes[key]; ok {
		return h, nil
	}
	return map[string]string{}, nil
}

func (m mapResults) ZTop(key string, n int) ([]admin.ScoredMember, error) {
	z := m.zsets[key]
	if len(z) > n {
		z = z[:n]
	}
	return z, nil
}

func (m mapResults) Keys(prefix string, limit int) ([]string, error) {
	var out []string
	for k := range m.hashes {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

var errBroken = errors.New("broken")

type brokenResults struct{ mapResults }

func (brokenResults) Keys(string, int) ([]string, error) { return nil, errBroken }
