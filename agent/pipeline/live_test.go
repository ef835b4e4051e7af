package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
)

// Tests of bolt parallelism and of adding and removing stages while the
// pipeline runs (docs/adr/0010).

// gate lets a test release a source's input in steps, so that stage changes
// happen while data is known to be in flight.
type gate struct {
	mu      sync.Mutex
	allowed int
	wake    chan struct{}
}

func newGate() *gate { return &gate{wake: make(chan struct{})} }

func (g *gate) allow(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allowed = n
	close(g.wake)
	g.wake = make(chan struct{})
}

// wait blocks until more than next lines are allowed or ctx ends, and
// returns how many are allowed.
func (g *gate) wait(ctx context.Context, next int) (int, error) {
	for {
		g.mu.Lock()
		n, wake := g.allowed, g.wake
		g.mu.Unlock()
		if n > next {
			return n, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// gatedSource emits events "key:number" (numbers 0..n-1, keys cycling
// through keys) as far as its gate allows, resuming after its position.
type gatedSource struct {
	g    *gate
	n    int
	keys []string
	next int
}

func (s *gatedSource) Open(_ context.Context, resume []byte) error {
	if resume != nil {
		s.next = int(binary.LittleEndian.Uint64(resume))
	}
	return nil
}

func (s *gatedSource) Read(ctx context.Context, max int) (SourceBatch, error) {
	if s.next >= s.n {
		<-ctx.Done()
		return SourceBatch{}, ctx.Err()
	}
	allowed, err := s.g.wait(ctx, s.next)
	if err != nil {
		return SourceBatch{}, err
	}
	var b event.Builder
	for ; s.next < min(s.n, allowed) && b.Len() < max; s.next++ {
		k := s.keys[s.next%len(s.keys)]
		b.Add(&event.Event{Key: []byte(k), Body: fmt.Appendf(nil, "%s:%d", k, s.next)})
	}
	return SourceBatch{Events: b.Bytes(), Position: binary.LittleEndian.AppendUint64(nil, uint64(s.next))}, nil
}

func (s *gatedSource) Ack(context.Context, []byte) error { return nil }
func (s *gatedSource) Close(context.Context) error       { return nil }

// tagBolt is stateless: it passes events on with header "p" naming its
// instance (the input partition), and counts closes.
type tagBolt struct {
	instance int
	closed   *atomic.Int64
}

func (b tagBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	return nil, event.Iterate(in, func(_ int, e *event.Event) error {
		o := event.Event{Key: e.Key, Body: e.Body, Headers: append(e.Headers, event.Header{Name: "p", Value: strconv.Itoa(b.instance)})}
		out.Add(&o)
		return nil
	})
}

func (b tagBolt) Close(context.Context) error { b.closed.Add(1); return nil }

// totalBolt is stateful: it stamps every event with header "n", the running
// count of its key, kept in the state store.
type totalBolt struct{ state StateStore }

func (b totalBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	return nil, event.Iterate(in, func(_ int, e *event.Event) error {
		n := 0
		if v, ok := b.state.Get(e.Key); ok {
			n, _ = strconv.Atoi(string(v))
		}
		n++
		b.state.Put(e.Key, []byte(strconv.Itoa(n)))
		o := event.Event{Key: e.Key, Body: e.Body, Headers: append(e.Headers, event.Header{Name: "n", Value: strconv.Itoa(n)})}
		out.Add(&o)
		return nil
	})
}

func (totalBolt) Close(context.Context) error { return nil }

// lockedBuffer is a log destination shared by the pipeline's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openFile(t *testing.T, dir, name string, parts int) channel.Channel {
	t.Helper()
	ch, err := channel.Open(channel.Options{Dir: filepath.Join(dir, name), Partitions: parts, SegmentBytes: 64 << 10, Fsync: channel.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func statsOf(p *Pipeline, name string) (StageStats, bool) {
	for _, s := range p.Stats() {
		if s.Name == name {
			return s, true
		}
	}
	return StageStats{}, false
}

func removeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// TestRemoveAndAddStagesMidFlow changes the stage set many times while a
// source produces a known sequence through a stateless bolt (3 partitions),
// a stateful bolt (2 partitions, keys grouped) and a sink, over file
// channels: bolts and the sink are removed and re-added (with the same and
// with other parallelism, alone and together), and a second sink comes and
// goes. Every event must reach the final sink exactly once, in order per
// key and tag instance, with exact stateful counts — and the sink's
// counters must carry on across its removals.
func TestRemoveAndAddStagesMidFlow(t *testing.T) {
	dir := t.TempDir()
	raw, mid, out := openFile(t, dir, "raw", 3), openFile(t, dir, "mid", 2), openFile(t, dir, "out", 1)
	const n = 4200
	keys := []string{"a", "b", "c", "d", "e"}
	g := newGate()
	var tagClosed atomic.Int64
	final, extra := newCollector(), newCollector()

	tagSpec := func(par int) BoltSpec {
		return BoltSpec{Name: "tag", Parallelism: par, Input: Input{"raw", raw},
			Outputs: []Output{{Name: "mid", Channel: mid, Grouping: ByKey}},
			New: func(_ context.Context, i int, _ StateStore) (Bolt, error) {
				return tagBolt{instance: i, closed: &tagClosed}, nil
			}}
	}
	totalSpec := func(par int) BoltSpec {
		return BoltSpec{Name: "total", Parallelism: par, Stateful: true, Input: Input{"mid", mid},
			Outputs: []Output{{Name: "out", Channel: out}},
			New:     func(_ context.Context, _ int, st StateStore) (Bolt, error) { return totalBolt{state: st}, nil }}
	}
	finalSpec := sinkTo("final", final, out, "out")
	logs := &lockedBuffer{}
	p, err := New(Spec{
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
		StateDir:      filepath.Join(dir, "state"),
		SnapshotEvery: 5 * time.Millisecond, // restores mix snapshots and deltas
		CommitEvery:   time.Millisecond,
		Sources: []SourceSpec{{Name: "src", BatchSize: 7, Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &gatedSource{g: g, n: n, keys: keys}, nil }}},
		Bolts: []BoltSpec{tagSpec(0), totalSpec(0)},
		Sinks: []SinkSpec{finalSpec},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	remove := func(names ...string) {
		t.Helper()
		ctx, cancel := removeCtx()
		defer cancel()
		if err := p.Remove(ctx, names...); err != nil {
			t.Fatal(err)
		}
	}
	add := func(spec Spec) {
		t.Helper()
		if err := p.Add(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
	}

	const rounds = 12
	var sinkInBefore uint64
	for r := range rounds {
		g.allow((r + 1) * n / (rounds + 1))
		// Wait until the source has appended this step, so that every
		// change below happens with its events in flight downstream.
		want := uint64((r + 1) * n / (rounds + 1))
		waitFor(t, "source step", func() bool { s, _ := statsOf(p, "src"); return s.EventsOut >= want })
		switch r % 6 {
		case 0: // stateless bolt, other parallelism
			closedBefore := tagClosed.Load()
			remove("tag")
			if got := tagClosed.Load() - closedBefore; got != 3 {
				t.Fatalf("Remove returned after %d of 3 tag instances closed their bolt", got)
			}
			add(Spec{Bolts: []BoltSpec{tagSpec(1 + r/6)}})
		case 1: // stateful bolt, same spec
			remove("total")
			add(Spec{Bolts: []BoltSpec{totalSpec(0)}})
		case 2: // the final sink
			s, _ := statsOf(p, "final")
			sinkInBefore = s.EventsIn
			remove("final")
			if _, ok := statsOf(p, "final"); ok {
				t.Fatal("a removed stage is still listed in Stats")
			}
			add(Spec{Sinks: []SinkSpec{finalSpec}})
			if s, _ := statsOf(p, "final"); s.EventsIn < sinkInBefore {
				t.Fatalf("sink counter went back from %d to %d across Remove+Add", sinkInBefore, s.EventsIn)
			}
		case 3: // a second sink comes
			add(Spec{Sinks: []SinkSpec{sinkTo("extra", extra, out, "out")}})
		case 4: // both bolts at once, the stateful one with parallelism 1
			remove("tag", "total")
			add(Spec{Bolts: []BoltSpec{totalSpec(1), tagSpec(0)}})
		case 5: // the second sink goes (its reader stays registered: remove it)
			waitFor(t, "the extra sink", func() bool { return len(extra.snapshot()) > 0 })
			remove("extra")
			if err := out.RemoveReader("extra", 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	g.allow(n)
	waitFor(t, "the source to finish", func() bool { s, _ := statsOf(p, "src"); return s.EventsOut >= n })
	// Stop drains the stage set as it is now.
	ctx, cancel := removeCtx()
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	final.mu.Lock()
	defer final.mu.Unlock()
	if l := logs.String(); strings.Contains(l, "did not halt") {
		t.Errorf("a Remove had to cancel a stage instead of halting it:\n%s", l)
	}
	if final.skipped > 0 {
		t.Errorf("%d batches redelivered to the final sink: a halt at a batch boundary commits what was written", final.skipped)
	}
	if len(final.reused) > 0 {
		t.Errorf("channel offsets delivered twice with different content: %v", head(final.reused))
	}
	seen := make([]int, n)
	last := map[string]int{}  // key/tag instance → last number
	count := map[string]int{} // key → events so far
	for i, l := range final.lines {
		k, num, _ := strings.Cut(l, ":")
		x, err := strconv.Atoi(num)
		if err != nil || x < 0 || x >= n {
			t.Fatalf("unexpected event %q", l)
		}
		seen[x]++
		h := final.heads[i]
		order := k + "/" + h["p"]
		if prev, ok := last[order]; ok && prev >= x {
			t.Fatalf("event %d of key %s from tag instance %s arrived after %d", x, k, h["p"], prev)
		}
		last[order] = x
		count[k]++
		if h["n"] != strconv.Itoa(count[k]) {
			t.Fatalf("event %q carries count %s; it is event %d of key %s", l, h["n"], count[k], k)
		}
	}
	var lost, dup []string
	for x, c := range seen {
		if c == 0 {
			lost = append(lost, strconv.Itoa(x))
		} else if c > 1 {
			dup = append(dup, strconv.Itoa(x))
		}
	}
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("%d events at the final sink for %d produced; lost %v; duplicated %v", len(final.lines), n, head(lost), head(dup))
	}
	for _, k := range keys {
		if count[k] != n/len(keys) {
			t.Errorf("key %s: final count %d, want %d", k, count[k], n/len(keys))
		}
	}
	if s, _ := statsOf(p, "final"); s.EventsIn != n || s.EventsOut != n {
		t.Errorf("final sink counters in %d out %d across its removals; want %d each", s.EventsIn, s.EventsOut, n)
	}
	if s, _ := statsOf(p, "tag"); s.Parallelism != 3 {
		t.Errorf("tag parallelism %d after the last Add with 0; want 3 (one per partition)", s.Parallelism)
	}
}

// busyBolt counts how many of its instances are inside Process and keeps
// them there until the test lets them go.
type busyBolt struct{ m *busyMeter }

type busyMeter struct {
	active atomic.Int64
	peak   atomic.Int64
	hold   chan struct{}
	once   sync.Once
}

func (m *busyMeter) release() { m.once.Do(func() { close(m.hold) }) }

func (b busyBolt) Process(ctx context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	m := b.m
	now := m.active.Add(1)
	defer m.active.Add(-1)
	for p := m.peak.Load(); now > p && !m.peak.CompareAndSwap(p, now); p = m.peak.Load() {
	}
	select {
	case <-m.hold:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return passBolt{}.Process(ctx, in, out)
}

func (busyBolt) Close(context.Context) error { return nil }

// waitingFor is how many instances of stage name wait for a processing
// token.
func waitingFor(p *Pipeline, name string) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.stages {
		if st.name == name {
			return st.waiting.Load()
		}
	}
	return -1
}

// TestParallelismBoundsConcurrentInstances runs a bolt over 4 partitions
// with parallelism 2, then re-adds it with parallelism 3. While the
// instances inside Process are held there, exactly N of them get in and the
// other 4-N wait for a token (every partition has input).
func TestParallelismBoundsConcurrentInstances(t *testing.T) {
	dir := t.TempDir()
	raw, out := openFile(t, dir, "raw", 4), openFile(t, dir, "out", 1)
	const n = 2400
	g := newGate()
	c := newCollector()
	boltSpec := func(par int, m *busyMeter) BoltSpec {
		return BoltSpec{Name: "busy", Parallelism: par, Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
			New: func(context.Context, int, StateStore) (Bolt, error) { return busyBolt{m}, nil }}
	}
	m2 := &busyMeter{hold: make(chan struct{})}
	p, err := New(Spec{
		Sources: []SourceSpec{{Name: "src", BatchSize: 5, Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &gatedSource{g: g, n: n, keys: []string{"k"}}, nil }}},
		Bolts: []BoltSpec{boltSpec(2, m2)},
		Sinks: []SinkSpec{sinkTo("snk", c, out, "out")},
	})
	if err != nil {
		t.Fatal(err)
	}
	m3 := &busyMeter{hold: make(chan struct{})}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		m2.release() // a failed test must not leave instances held
		m3.release()
		ctx, cancel := removeCtx()
		defer cancel()
		p.Stop(ctx)
	}()
	saturated := func(m *busyMeter, par int32) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d instances processing and %d waiting", par, 4-par), func() bool {
			if a := m.active.Load(); a > int64(par) {
				t.Fatalf("parallelism %d: %d instances processing at once", par, a)
			}
			return m.active.Load() == int64(par) && waitingFor(p, "busy") == 4-par
		})
		if a := m.active.Load(); a != int64(par) {
			t.Fatalf("parallelism %d: %d instances processing at once", par, a)
		}
		m.release()
	}
	g.allow(n / 2)
	saturated(m2, 2)
	waitFor(t, "half the events", func() bool { return len(c.snapshot()) >= n/2 })
	if s, _ := statsOf(p, "busy"); s.Parallelism != 2 {
		t.Errorf("Stats parallelism %d, want 2", s.Parallelism)
	}
	ctx, cancel := removeCtx()
	defer cancel()
	if err := p.Remove(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, Spec{Bolts: []BoltSpec{boltSpec(3, m3)}}); err != nil {
		t.Fatal(err)
	}
	g.allow(n)
	saturated(m3, 3)
	waitFor(t, "all events", func() bool { return len(c.snapshot()) >= n })
	if m2.peak.Load() != 2 || m3.peak.Load() != 3 {
		t.Errorf("peaks of instances processing at once: %d with parallelism 2, %d with 3", m2.peak.Load(), m3.peak.Load())
	}
	if got := len(c.snapshot()); got != n {
		t.Errorf("%d events at the sink, want %d", got, n)
	}
}

// TestAddRemoveLifecycle covers the edges of Add and Remove.
func TestAddRemoveLifecycle(t *testing.T) {
	raw, out := mem(2), mem(1)
	c := newCollector()
	ls := lines(40)
	bolt := BoltSpec{Name: "up", New: upper(), Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}}}
	p, err := New(Spec{Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Before Start, Add extends the spec and Remove drops from it.
	if err := p.Add(ctx, Spec{Bolts: []BoltSpec{bolt}, Sinks: []SinkSpec{sinkTo("snk", c, out, "out")}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(ctx, Spec{Sinks: []SinkSpec{sinkTo("gone", newCollector(), out, "out")}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	bad := bolt
	bad.Name, bad.Parallelism = "bad", 3
	if err := p.Add(ctx, Spec{Bolts: []BoltSpec{bad}}); err == nil || !strings.Contains(err.Error(), "parallelism 3") {
		t.Errorf("Add of a bolt with parallelism 3 over 2 partitions: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all lines", func() bool { return len(c.snapshot()) >= len(ls) })

	if err := p.Remove(ctx, "nosuch"); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("Remove of an unknown stage: %v", err)
	}
	if err := p.Remove(ctx, "up", "nosuch"); err == nil {
		t.Error("Remove of a known and an unknown stage did not fail")
	}
	if _, ok := statsOf(p, "up"); !ok {
		t.Error("a failed Remove removed a stage")
	}
	if err := p.Add(ctx, Spec{Bolts: []BoltSpec{bolt}}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("Add of a running stage: %v", err)
	}
	if err := p.Add(ctx, Spec{Sinks: []SinkSpec{sinkTo("x", c, out, "out"), sinkTo("x", c, out, "out")}}); err == nil {
		t.Error("Add of two stages with one name did not fail")
	}
	if _, ok := statsOf(p, "x"); ok {
		t.Error("a failed Add added a stage")
	}
	if err := p.Remove(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	// Remove then Stop, Stop twice, Remove and Add after Stop.
	for range 2 {
		if err := p.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Remove(ctx, "snk"); err != nil {
		t.Errorf("Remove after Stop: %v", err)
	}
	if err := p.Remove(ctx, "up"); err == nil {
		t.Error("Remove of an already removed stage did not fail")
	}
	if err := p.Add(ctx, Spec{Bolts: []BoltSpec{bolt}}); err == nil {
		t.Error("Add after Stop did not fail")
	}
	if got := len(c.snapshot()); got != len(ls) {
		t.Errorf("%d lines, want %d", got, len(ls))
	}
}

// TestRemoveFinishesTheBatchInFlight removes a bolt while an instance is
// inside Process: Remove waits, the batch completes and its output reaches
// the sink although the bolt is never re-added.
func TestRemoveFinishesTheBatchInFlight(t *testing.T) {
	raw, out := mem(1), mem(1)
	c := newCollector()
	g := newGate()
	m := &busyMeter{hold: make(chan struct{})}
	defer m.release()
	p, err := New(Spec{
		Sources: []SourceSpec{{Name: "src", BatchSize: 5, Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &gatedSource{g: g, n: 100, keys: []string{"k"}}, nil }}},
		Bolts: []BoltSpec{{Name: "busy", Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
			New: func(context.Context, int, StateStore) (Bolt, error) { return busyBolt{m}, nil }}},
		Sinks: []SinkSpec{sinkTo("snk", c, out, "out")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	g.allow(5)
	waitFor(t, "the bolt inside Process", func() bool { return m.active.Load() == 1 })
	removed := make(chan error, 1)
	go func() { removed <- p.Remove(context.Background(), "busy") }()
	waitFor(t, "Remove to halt the bolt", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, st := range p.stages {
			if st.name == "busy" {
				return st.halting
			}
		}
		return false
	})
	m.release()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the batch in flight at the sink", func() bool { return len(c.snapshot()) == 5 })
}

// stuckBolt blocks in its first Process until its context ends.
type stuckBolt struct {
	entered chan struct{}
	once    sync.Once
}

func (b *stuckBolt) Process(ctx context.Context, _ []byte, _ *event.Builder) ([]Reject, error) {
	b.once.Do(func() { close(b.entered) })
	<-ctx.Done()
	return nil, ctx.Err()
}

func (*stuckBolt) Close(context.Context) error { return nil }

// TestRemoveAtDeadlineCancelsHard removes a bolt stuck inside Process: at
// the deadline its instance is cancelled, Remove returns, and a re-added
// bolt redoes the cut batch.
func TestRemoveAtDeadlineCancelsHard(t *testing.T) {
	raw, out := mem(1), mem(1)
	c := newCollector()
	ls := lines(30)
	stuck := make(chan struct{})
	spec := BoltSpec{Name: "b", Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
		New: func(context.Context, int, StateStore) (Bolt, error) { return &stuckBolt{entered: stuck}, nil }}
	p, err := New(Spec{Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")}, Bolts: []BoltSpec{spec},
		Sinks: []SinkSpec{sinkTo("snk", c, out, "out")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	<-stuck
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // deadline already passed: cancel at once
	if err := p.Remove(ctx, "b"); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "b did not halt") {
		t.Fatalf("Remove past its deadline: %v; want the stage named and context.Canceled", err)
	}
	if _, ok := statsOf(p, "b"); ok {
		t.Fatal("a stage cancelled at the deadline is still in the pipeline")
	}
	if err := p.Add(context.Background(), Spec{Bolts: []BoltSpec{{Name: "b", New: upper(), Input: Input{"raw", raw},
		Outputs: []Output{{Name: "out", Channel: out}}}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all lines", func() bool { return len(c.snapshot()) >= len(ls) })
	if got := c.snapshot(); len(got) != len(ls) || got[0] != strings.ToUpper(ls[0]) {
		t.Fatalf("after a hard cancel and re-add: %d lines starting %q", len(got), head(got))
	}
}

// TestStatsBytesLatencyAndFailing checks the byte and latency counters
// after traffic, and that Failing follows a bolt that cannot start and a
// sink whose destination is down, and clears when they recover.
func TestStatsBytesLatencyAndFailing(t *testing.T) {
	dir := t.TempDir()
	raw, out := openFile(t, dir, "raw", 2), openFile(t, dir, "out", 1)
	g := newGate()
	c := newCollector()
	var broken atomic.Bool
	broken.Store(true)
	p, err := New(Spec{
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Sources: []SourceSpec{{Name: "src", BatchSize: 10, Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &gatedSource{g: g, n: 200, keys: []string{"k"}}, nil }}},
		Bolts: []BoltSpec{{Name: "b", Parallelism: 1, Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
			New: func(context.Context, int, StateStore) (Bolt, error) {
				if broken.Load() {
					return nil, errors.New("plugin will not load")
				}
				return passBolt{}, nil
			}}},
		Sinks: []SinkSpec{sinkTo("snk", c, out, "out")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	waitFor(t, "the bolt to fail", func() bool { s, _ := statsOf(p, "b"); return s.Failing })
	broken.Store(false)
	waitFor(t, "the bolt to recover", func() bool { s, _ := statsOf(p, "b"); return !s.Failing })
	g.allow(100)
	waitFor(t, "100 events", func() bool { return len(c.snapshot()) >= 100 })

	// The destination goes down: the sink retries, failing.
	c.mu.Lock()
	c.failN = 1 << 30
	c.mu.Unlock()
	g.allow(200)
	waitFor(t, "the sink to fail", func() bool { s, _ := statsOf(p, "snk"); return s.Failing })
	c.mu.Lock()
	c.failN = 0
	c.mu.Unlock()
	waitFor(t, "200 events", func() bool { return len(c.snapshot()) >= 200 })
	waitFor(t, "the sink to recover", func() bool { s, _ := statsOf(p, "snk"); return !s.Failing })

	for _, s := range p.Stats() {
		h := s.BatchLatency
		if s.BytesIn == 0 || s.BytesOut == 0 || h.Count == 0 || h.Sum <= 0 {
			t.Errorf("%s: bytes in %d out %d, latency count %d sum %g; want all non-zero", s.Name, s.BytesIn, s.BytesOut, h.Count, h.Sum)
		}
		if len(h.Bounds) != len(h.Cumulative) || h.Cumulative[len(h.Cumulative)-1] > h.Count {
			t.Errorf("%s: histogram not in cumulative shape: %+v", s.Name, h)
		}
		for i := 1; i < len(h.Cumulative); i++ {
			if h.Cumulative[i] < h.Cumulative[i-1] || h.Bounds[i] <= h.Bounds[i-1] {
				t.Errorf("%s: histogram not cumulative at %d: %+v", s.Name, i, h)
			}
		}
		want := map[string]int{"src": 1, "b": 1, "snk": 1}[s.Name]
		if s.Parallelism != want {
			t.Errorf("%s: parallelism %d, want %d", s.Name, s.Parallelism, want)
		}
	}
	if s, _ := statsOf(p, "b"); s.Restarts == 0 || !strings.Contains(s.LastError, "will not load") {
		t.Errorf("bolt stats %+v, want restarts and the load error", s)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{0, 500 * time.Microsecond, 700 * time.Microsecond, time.Second, time.Minute} {
		h.observe(d)
	}
	s := h.snapshot()
	// <=0.0005: 0 and 0.0005; <=0.001: +0.0007; <=1: +1s; +Inf only: 1m.
	if s.Count != 5 || s.Cumulative[0] != 2 || s.Cumulative[1] != 3 || s.Cumulative[len(s.Cumulative)-1] != 4 {
		t.Fatalf("histogram %+v", s)
	}
	if want := (61*time.Second + 1200*time.Microsecond).Seconds(); s.Sum < want-1e-9 || s.Sum > want+1e-9 {
		t.Fatalf("sum %g, want %g", s.Sum, want)
	}
}
