package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ---- small real plugins used by the tests ----

// lineSource emits lines[i] for i from the resume position on, n per Read,
// with the position "index of the next line". failAt makes one Read fail
// once when it reaches that index (to exercise the supervisor).
type lineSource struct {
	lines  []string
	next   int
	failAt *int // shared across restarts; reset to -1 after firing
	mu     *sync.Mutex
	block  bool // block at the end instead of returning (like a tail)
}

func (s *lineSource) Open(_ context.Context, resume []byte) error {
	if resume != nil {
		s.next = int(binary.LittleEndian.Uint64(resume))
	}
	return nil
}

func (s *lineSource) Read(ctx context.Context, max int) (SourceBatch, error) {
	if s.failAt != nil {
		s.mu.Lock()
		fail := *s.failAt >= 0 && s.next >= *s.failAt
		if fail {
			*s.failAt = -1
		}
		s.mu.Unlock()
		if fail {
			return SourceBatch{}, errors.New("injected read failure")
		}
	}
	if s.next >= len(s.lines) {
		<-ctx.Done()
		return SourceBatch{}, ctx.Err()
	}
	var b event.Builder
	for ; s.next < len(s.lines) && b.Len() < max; s.next++ {
		l := s.lines[s.next]
		e := event.Event{Time: int64(s.next), Body: []byte(l)}
		if k, _, ok := strings.Cut(l, ":"); ok {
			e.Key = []byte(k)
			e.Headers = []event.Header{{Name: "group", Value: k}}
		}
		b.Add(&e)
	}
	return SourceBatch{Events: b.Bytes(), Position: binary.LittleEndian.AppendUint64(nil, uint64(s.next))}, nil
}

func (s *lineSource) Ack(context.Context, []byte) error { return nil }
func (s *lineSource) Close(context.Context) error       { return nil }

// funcBolt applies fn to every event; fn returns "" to reject.
type funcBolt struct {
	fn func(e *event.Event) (string, bool)
}

func (b funcBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	var rejects []Reject
	err := event.Iterate(in, func(i int, e *event.Event) error {
		body, ok := b.fn(e)
		if !ok {
			rejects = append(rejects, Reject{Index: i, Reason: "refused " + string(e.Body)})
			return nil
		}
		o := event.Event{Time: e.Time, Key: e.Key, Body: []byte(body), Headers: e.Headers}
		out.Add(&o)
		return nil
	})
	return rejects, err
}
func (funcBolt) Close(context.Context) error { return nil }

// countBolt is stateful: it emits "key=n" where n counts the events of key
// seen so far, keeping the counts in the state store.
type countBolt struct {
	state    StateStore
	instance int
}

func (b *countBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	err := event.Iterate(in, func(i int, e *event.Event) error {
		n := 0
		if v, ok := b.state.Get(e.Key); ok {
			n, _ = strconv.Atoi(string(v))
		}
		n++
		b.state.Put(e.Key, []byte(strconv.Itoa(n)))
		o := event.Event{Key: e.Key, Body: fmt.Appendf(nil, "%s=%d", e.Key, n),
			Headers: []event.Header{{Name: "instance", Value: strconv.Itoa(b.instance)}}}
		out.Add(&o)
		return nil
	})
	return nil, err
}
func (b *countBolt) Close(context.Context) error { return nil }

// collector is a fenced sink shared across restarts: it skips batches at or
// below the last offset it applied per stream, like a real fenced sink.
type collector struct {
	mu     sync.Mutex
	fences map[string]uint64
	lines  []string
	heads  []map[string]string
	failN  int // fail this many writes first
	seenAt map[string]string
	reused []string
	// skipped counts batches at or below the fence (redeliveries).
	skipped int
}

func newCollector() *collector { return &collector{fences: map[string]uint64{}} }

func (c *collector) sink() Sink { return &collectorSink{c} }

type collectorSink struct{ c *collector }

func (s *collectorSink) Open(context.Context) error { return nil }
func (s *collectorSink) Write(_ context.Context, batch []byte, f Fence) ([]Reject, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failN > 0 {
		c.failN--
		return nil, errors.New("destination down")
	}
	key := fmt.Sprintf("%s@%d", f.Stream, f.Offset)
	if c.seenAt == nil {
		c.seenAt = map[string]string{}
	}
	if prev, ok := c.seenAt[key]; ok && prev != string(batch) {
		c.reused = append(c.reused, key)
	}
	c.seenAt[key] = string(batch)
	if f.Offset <= c.fences[f.Stream] {
		c.skipped++
		return nil, nil
	}
	c.fences[f.Stream] = f.Offset
	return nil, event.Iterate(batch, func(_ int, e *event.Event) error {
		c.lines = append(c.lines, string(e.Body))
		h := map[string]string{}
		for _, x := range e.Headers {
			h[x.Name] = x.Value
		}
		c.heads = append(c.heads, h)
		return nil
	})
}
func (s *collectorSink) Close(context.Context) error { return nil }

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// waitFor polls cond on the collector's progress, failing after a generous
// bound (this is synchronisation, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mem(parts int) channel.Channel { return channel.NewMemory(channel.Options{Partitions: parts}) }

func lines(n int, keys ...string) []string {
	out := make([]string, n)
	for i := range out {
		k := "k"
		if len(keys) > 0 {
			k = keys[i%len(keys)]
		}
		out[i] = fmt.Sprintf("%s:%06d", k, i)
	}
	return out
}

func sourceOf(name string, ls []string, out channel.Channel, outName string) SourceSpec {
	return SourceSpec{Name: name, BatchSize: 7, Output: Output{Name: outName, Channel: out},
		New: func(context.Context) (Source, error) { return &lineSource{lines: ls}, nil }}
}

func sinkTo(name string, c *collector, in channel.Channel, inName string) SinkSpec {
	return SinkSpec{Name: name, Input: Input{Name: inName, Channel: in},
		New: func(context.Context, int) (Sink, error) { return c.sink(), nil }}
}

func upper() func(context.Context, int, StateStore) (Bolt, error) {
	return func(context.Context, int, StateStore) (Bolt, error) {
		return funcBolt{fn: func(e *event.Event) (string, bool) { return strings.ToUpper(string(e.Body)), true }}, nil
	}
}

func runUntil(t *testing.T, spec Spec, done func() bool) *Pipeline {
	t.Helper()
	p, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pipeline output", done)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func TestLinearPipeline(t *testing.T) {
	raw, out := mem(1), mem(1)
	ls := lines(100)
	c := newCollector()
	runUntil(t, Spec{
		Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")},
		Bolts:   []BoltSpec{{Name: "up", New: upper(), Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}}}},
		Sinks:   []SinkSpec{sinkTo("snk", c, out, "out")},
	}, func() bool { return len(c.snapshot()) >= len(ls) })
	got := c.snapshot()
	if len(got) != len(ls) {
		t.Fatalf("got %d lines, want %d", len(got), len(ls))
	}
	for i := range ls {
		if got[i] != strings.ToUpper(ls[i]) {
			t.Fatalf("line %d = %q, want %q (order must be kept on one partition)", i, got[i], strings.ToUpper(ls[i]))
		}
	}
}

func TestFanInAndReplication(t *testing.T) {
	raw := mem(1)
	a, b := lines(50, "a"), lines(60, "b")
	c1, c2 := newCollector(), newCollector()
	runUntil(t, Spec{
		Sources: []SourceSpec{sourceOf("sa", a, raw, "raw"), sourceOf("sb", b, raw, "raw")},
		Sinks:   []SinkSpec{sinkTo("one", c1, raw, "raw"), sinkTo("two", c2, raw, "raw")},
	}, func() bool { return len(c1.snapshot()) >= 110 && len(c2.snapshot()) >= 110 })
	want := sortedCopy(append(append([]string(nil), a...), b...))
	for _, c := range []*collector{c1, c2} {
		if got := sortedCopy(c.snapshot()); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("a replica got %d lines, want the %d from both sources exactly once", len(got), len(want))
		}
	}
}

func TestKeyGroupingAndParallelism(t *testing.T) {
	raw, keyed, out := mem(1), mem(3), mem(1)
	ls := lines(300, "x", "y", "z", "w", "v")
	c := newCollector()
	runUntil(t, Spec{
		Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")},
		Bolts: []BoltSpec{
			{Name: "pass", New: upper(), Input: Input{"raw", raw}, Outputs: []Output{{Name: "keyed", Channel: keyed, Grouping: ByKey}}},
			{Name: "count", Stateful: true, Input: Input{"keyed", keyed}, Outputs: []Output{{Name: "out", Channel: out}},
				New: func(_ context.Context, i int, st StateStore) (Bolt, error) {
					return &countBolt{state: st, instance: i}, nil
				}},
		},
		Sinks:    []SinkSpec{sinkTo("snk", c, out, "out")},
		StateDir: t.TempDir(),
	}, func() bool { return len(c.snapshot()) >= len(ls) })
	c.mu.Lock()
	defer c.mu.Unlock()
	instanceOf := map[string]string{}
	instances := map[string]bool{}
	for i, l := range c.lines {
		k, _, _ := strings.Cut(l, "=")
		inst := c.heads[i]["instance"]
		instances[inst] = true
		if prev, ok := instanceOf[k]; ok && prev != inst {
			t.Fatalf("key %s reached instances %s and %s; key grouping must pin it to one", k, prev, inst)
		}
		instanceOf[k] = inst
	}
	if len(instances) < 2 {
		t.Errorf("5 keys over 3 partitions used only instances %v", instances)
	}
	// Each key counted 1..60 exactly once.
	want := map[string]int{}
	for _, l := range c.lines {
		k, n, _ := strings.Cut(l, "=")
		want[k]++
		if strconv.Itoa(want[k]) != n {
			t.Fatalf("key %s: count %s arrived as event %d", k, n, want[k])
		}
	}
}

func TestRouteByHeaderAndDeadLetter(t *testing.T) {
	raw, xs, ys, dlq := mem(1), mem(1), mem(1), mem(1)
	ls := append(lines(20, "x", "y", "q"), "x:bad")
	cx, cy := newCollector(), newCollector()
	spec := Spec{
		Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")},
		Bolts: []BoltSpec{{
			Name: "route", Input: Input{"raw", raw}, DeadLetter: dlq,
			Outputs: []Output{{Name: "xs", Channel: xs}, {Name: "ys", Channel: ys}},
			Route:   &Route{Header: "group", To: map[string]int{"x": 0, "y": 1}, Default: -1},
			New: func(context.Context, int, StateStore) (Bolt, error) {
				return funcBolt{fn: func(e *event.Event) (string, bool) { return string(e.Body), !bytes.Contains(e.Body, []byte("bad")) }}, nil
			},
		}},
		Sinks: []SinkSpec{sinkTo("sx", cx, xs, "xs"), sinkTo("sy", cy, ys, "ys")},
	}
	runUntil(t, spec, func() bool { return len(cx.snapshot()) >= 7 && len(cy.snapshot()) >= 7 })
	for _, l := range cx.snapshot() {
		if !strings.HasPrefix(l, "x:") {
			t.Fatalf("xs got %q", l)
		}
	}
	for _, l := range cy.snapshot() {
		if !strings.HasPrefix(l, "y:") {
			t.Fatalf("ys got %q", l)
		}
	}
	// Dead letters: 6 q-lines (no route) and x:bad (rejected), with reason and stage.
	r, err := dlq.Reader("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	var dead []string
	for {
		rec, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			reason, _ := e.Header(HeaderReason)
			stage, _ := e.Header(HeaderStage)
			origin, _ := e.Header(HeaderOrigin)
			dead = append(dead, fmt.Sprintf("%s|%s|%s|%t", e.Body, reason, stage, strings.HasPrefix(origin, "raw/0@")))
			return nil
		})
	}
	sort.Strings(dead)
	want := []string{}
	for _, l := range ls {
		if strings.HasPrefix(l, "q:") {
			want = append(want, l+`|no route for group="q"|route|true`)
		}
	}
	want = append(want, "x:bad|refused x:bad|route|true")
	sort.Strings(want)
	if strings.Join(dead, "\n") != strings.Join(want, "\n") {
		t.Fatalf("dead letters:\n%s\nwant:\n%s", strings.Join(dead, "\n"), strings.Join(want, "\n"))
	}
}

func TestSupervisorRestartsFailedSource(t *testing.T) {
	raw := mem(1)
	ls := lines(100)
	failAt := 40
	var mu sync.Mutex
	c := newCollector()
	c.failN = 2 // the sink's destination is down for two writes: retried, not lost
	p := runUntil(t, Spec{
		MinBackoff: time.Millisecond,
		Sources: []SourceSpec{{Name: "src", BatchSize: 10, Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &lineSource{lines: ls, failAt: &failAt, mu: &mu}, nil }}},
		Sinks: []SinkSpec{sinkTo("snk", c, raw, "raw")},
	}, func() bool { return len(c.snapshot()) >= len(ls) })
	if got := c.snapshot(); strings.Join(got, ",") != strings.Join(ls, ",") {
		t.Fatalf("after a source restart got %d lines, want each of %d once in order", len(got), len(ls))
	}
	for _, s := range p.Stats() {
		if s.Name == "src" && (s.Restarts != 1 || !strings.Contains(s.LastError, "injected read failure")) {
			t.Fatalf("source stats %+v, want one restart after the injected failure", s)
		}
	}
}

func TestStopWithoutStartAndTwice(t *testing.T) {
	p, err := New(Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	for range 2 {
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHopProtocolRestartsWithoutDuplicates kills the whole pipeline (no
// drain: its context is cancelled mid-flight) many times over durable file
// channels, reopening them each time, and checks that the sink saw every
// line exactly once and that stateful counts never double.
func TestHopProtocolRestartsWithoutDuplicates(t *testing.T) {
	dir := t.TempDir()
	ls := lines(3000, "a", "b", "c", "d", "e", "f", "g")
	c := newCollector()
	open := func(name string, parts int) channel.Channel {
		ch, err := channel.Open(channel.Options{Dir: filepath.Join(dir, name), Partitions: parts, SegmentBytes: 64 << 10, Fsync: channel.FsyncNever})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	for round := 0; ; round++ {
		raw, keyed, out, dlq := open("raw", 1), open("keyed", 2), open("out", 1), open("dlq", 1)
		spec := Spec{
			StateDir:      filepath.Join(dir, "state"),
			SnapshotEvery: time.Millisecond, // snapshot often so restore mixes snapshot and deltas
			CommitEvery:   time.Millisecond,
			Sources:       []SourceSpec{sourceOf("src", ls, raw, "raw")},
			Bolts: []BoltSpec{
				{Name: "pass", New: upper(), Input: Input{"raw", raw}, DeadLetter: dlq,
					Outputs: []Output{{Name: "keyed", Channel: keyed, Grouping: ByKey}}},
				{Name: "count", Stateful: true, Input: Input{"keyed", keyed}, Outputs: []Output{{Name: "out", Channel: out}},
					New: func(_ context.Context, i int, st StateStore) (Bolt, error) {
						return &countBolt{state: st, instance: i}, nil
					}},
			},
			Sinks: []SinkSpec{sinkTo("snk", c, out, "out")},
		}
		p, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		before := len(c.snapshot())
		if round < 8 {
			// Let it make some progress, then cut it off without a drain.
			waitFor(t, "progress", func() bool { return len(c.snapshot()) > before+150 || len(c.snapshot()) == len(ls) })
			cancel()
			<-p.Done()
		} else {
			waitFor(t, "all lines", func() bool { return len(c.snapshot()) >= len(ls) })
			sctx, c2 := context.WithTimeout(context.Background(), 30*time.Second)
			err := p.Stop(sctx)
			c2()
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, ch := range []channel.Channel{raw, keyed, out, dlq} {
			ch.Close()
		}
		if round >= 8 {
			break
		}
	}
	got := c.snapshot()
	seen := map[string]int{}
	for _, l := range got {
		seen[l]++
	}
	var dups, lost []string
	for l, n := range seen {
		if n > 1 {
			dups = append(dups, l)
		}
	}
	want := map[string]int{}
	for _, l := range ls {
		k, _, _ := strings.Cut(l, ":") // the key stays as the source set it
		want[k]++
		if key := fmt.Sprintf("%s=%d", k, want[k]); seen[key] == 0 {
			lost = append(lost, key)
		}
	}
	if len(c.reused) > 0 {
		t.Errorf("channel offsets delivered twice with different content: %v", head(c.reused))
	}
	if len(dups) > 0 || len(lost) > 0 || len(got) != len(ls) {
		t.Fatalf("after 8 kills: %d events for %d lines; duplicated %v; missing %v", len(got), len(ls), head(dups), head(lost))
	}
}

func head(s []string) []string {
	sort.Strings(s)
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add((&envelope{kind: kindTick, seq: 7, tickNow: 9, pos: []byte("p"), delta: []byte{1, 0, 0, 0, 0, 1, 0, 0, 0, 'k', 0, 0, 0, 0}}).encode(nil))
	f.Add((&envelope{kind: kindInput, seq: 3, pos: []byte("p"), dead: []byte{0, 0, 0, 0}}).encode(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if !bytes.Equal(e.encode(nil), b) {
			t.Fatalf("re-encoding changed the bytes")
		}
		_ = newMemState().applyDelta(e.delta)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	st := newMemState()
	st.Put([]byte("a"), []byte("1"))
	f.Add(st.encodeSnapshot(3, 4))
	f.Add([]byte("SLST"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = decodeSnapshot(b)
	})
}

// gateSink blocks every Write until its gate is opened.
type gateSink struct {
	gate chan struct{}
	c    *collector
}

func (s *gateSink) Open(context.Context) error { return nil }
func (s *gateSink) Write(ctx context.Context, b []byte, f Fence) ([]Reject, error) {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return (&collectorSink{s.c}).Write(ctx, b, f)
}
func (s *gateSink) Close(context.Context) error { return nil }

// countingSource wraps lineSource and counts the events it has read.
type countingSource struct {
	lineSource
	read *atomic.Int64
}

func (s *countingSource) Read(ctx context.Context, max int) (SourceBatch, error) {
	sb, err := s.lineSource.Read(ctx, max)
	if err == nil {
		n, _ := event.Count(sb.Events)
		s.read.Add(int64(n))
	}
	return sb, err
}

// TestBackpressureReachesSource blocks the sink: the bounded channels fill
// up, the bolt blocks on its append and the source stops reading, far short
// of its input. Opening the sink lets everything through exactly once.
func TestBackpressureReachesSource(t *testing.T) {
	const maxBytes = 16 << 10
	raw := channel.NewMemory(channel.Options{MaxBytes: maxBytes})
	out := channel.NewMemory(channel.Options{MaxBytes: maxBytes})
	ls := lines(20000)
	var read atomic.Int64
	c := newCollector()
	gate := make(chan struct{})
	p, err := New(Spec{
		Sources: []SourceSpec{{Name: "src", BatchSize: 10, Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &countingSource{lineSource{lines: ls}, &read}, nil }}},
		Bolts: []BoltSpec{{Name: "up", New: upper(), Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}}}},
		Sinks: []SinkSpec{{Name: "snk", Input: Input{"out", out},
			New: func(context.Context, int) (Sink, error) { return &gateSink{gate: gate, c: c}, nil }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	// Wait until the source is blocked: its count stops moving while
	// the raw channel is full.
	waitFor(t, "raw channel to fill", func() bool { return raw.Stats().DepthBytes > maxBytes/2 })
	stable := read.Load()
	waitFor(t, "source to stall", func() bool {
		time.Sleep(50 * time.Millisecond)
		n := read.Load()
		defer func() { stable = n }()
		return n == stable
	})
	if got := read.Load(); got >= int64(len(ls))/2 {
		t.Fatalf("with the sink blocked the source still read %d of %d lines", got, len(ls))
	}
	close(gate)
	waitFor(t, "all lines", func() bool { return len(c.snapshot()) >= len(ls) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.snapshot(); len(got) != len(ls) {
		t.Fatalf("got %d lines, want %d", len(got), len(ls))
	}
}

// slowBolt delays every batch so that a backlog builds up.
type slowBolt struct{ funcBolt }

func (b slowBolt) Process(ctx context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	time.Sleep(2 * time.Millisecond)
	return b.funcBolt.Process(ctx, in, out)
}

// TestStopDrainsBacklog stops the pipeline while the bolt has a backlog:
// Stop returns only after everything the source had appended reached the
// sink.
func TestStopDrainsBacklog(t *testing.T) {
	raw, out := mem(1), mem(1)
	ls := lines(3000)
	c := newCollector()
	p, err := New(Spec{
		Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")},
		Bolts: []BoltSpec{{Name: "slow", Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
			New: func(context.Context, int, StateStore) (Bolt, error) {
				return slowBolt{funcBolt{fn: func(e *event.Event) (string, bool) { return string(e.Body), true }}}, nil
			}}},
		Sinks: []SinkSpec{sinkTo("snk", c, out, "out")},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	waitFor(t, "the source to finish", func() bool { return raw.Stats().Appends > 0 && p.Stats()[0].EventsOut == uint64(len(ls)) })
	if n := len(c.snapshot()); n == len(ls) {
		t.Fatalf("no backlog to drain: the sink already has everything")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.snapshot(); len(got) != len(ls) {
		t.Fatalf("after a drained stop the sink has %d of %d lines", len(got), len(ls))
	}
}

// tickBolt emits, on each tick, one event per key with the tick time.
type tickBolt struct{ keys []string }

func (tickBolt) Process(context.Context, []byte, *event.Builder) ([]Reject, error) { return nil, nil }
func (tickBolt) Close(context.Context) error                                       { return nil }
func (b tickBolt) Tick(_ context.Context, now time.Time, out *event.Builder) error {
	for _, k := range b.keys {
		out.Add(&event.Event{Key: []byte(k), Body: fmt.Appendf(nil, "%s@%d", k, now.UnixNano())})
	}
	return nil
}

// TestPartialTickIsRedoneWithItsTime sets up the state a crash leaves when
// a tick's output reached one of two output partitions only: on start the
// bolt redoes that tick with its recorded time and writes only the missing
// partition.
func TestPartialTickIsRedoneWithItsTime(t *testing.T) {
	in, out := mem(1), mem(2)
	// Two keys that land in different partitions.
	part := func(k string) int { h := fnv.New32a(); h.Write([]byte(k)); return int(h.Sum32() % 2) }
	keys := make([]string, 2) // keys[i] lands in partition i
	for c := 'a'; keys[0] == "" || keys[1] == ""; c++ {
		if keys[part(string(c))] == "" {
			keys[part(string(c))] = string(c)
		}
	}
	const tickNow = int64(1_700_000_000_123)
	// Before the "crash": partition of keys[0] got its part of tick batch 1.
	var b event.Builder
	b.Add(&event.Event{Key: []byte(keys[0]), Body: fmt.Appendf(nil, "%s@%d", keys[0], tickNow)})
	env := (&envelope{kind: kindTick, seq: 1, tickNow: tickNow, pos: offsetPos(0)}).encode(nil)
	if _, err := out.Append(context.Background(), 0, "t#0", b.Bytes(), 1, env); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	p, err := New(Spec{
		Bolts: []BoltSpec{{Name: "t", Input: Input{"in", in}, Outputs: []Output{{Name: "out", Channel: out, Grouping: ByKey}},
			Tick: time.Hour, New: func(context.Context, int, StateStore) (Bolt, error) { return tickBolt{keys: keys}, nil }}},
		Sinks: []SinkSpec{sinkTo("s", c, out, "out")},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	waitFor(t, "the redone tick", func() bool { return len(c.snapshot()) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	got := sortedCopy(c.snapshot())
	want := sortedCopy([]string{fmt.Sprintf("%s@%d", keys[0], tickNow), fmt.Sprintf("%s@%d", keys[1], tickNow)})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after the redo the partitions hold %v, want each key's part of the tick at %d once: %v", got, tickNow, want)
	}
}

// pickySink refuses events whose body contains "bad", permanently.
type pickySink struct{ c *collector }

func (s pickySink) Open(context.Context) error { return nil }
func (s pickySink) Write(ctx context.Context, b []byte, f Fence) ([]Reject, error) {
	var rejects []Reject
	var keep event.Builder
	event.Iterate(b, func(i int, e *event.Event) error {
		if bytes.Contains(e.Body, []byte("bad")) {
			rejects = append(rejects, Reject{Index: i, Reason: "destination refuses " + string(e.Body)})
		} else {
			keep.Add(e)
		}
		return nil
	})
	_, err := (&collectorSink{s.c}).Write(ctx, keep.Bytes(), f)
	return rejects, err
}
func (s pickySink) Close(context.Context) error { return nil }

func TestSinkRejectsGoToDeadLetters(t *testing.T) {
	raw, dlq := mem(1), mem(1)
	ls := append(lines(10), "k:bad-1", "k:bad-2")
	c := newCollector()
	runUntil(t, Spec{
		Sources: []SourceSpec{sourceOf("src", ls, raw, "raw")},
		Sinks: []SinkSpec{{Name: "picky", Input: Input{"raw", raw}, DeadLetter: dlq,
			New: func(context.Context, int) (Sink, error) { return pickySink{c}, nil }}},
	}, func() bool { return len(c.snapshot()) >= 10 && dlq.Stats().Appends >= 1 })
	r, _ := dlq.Reader("t", 0)
	var dead []string
	for {
		rec, ok, err := r.TryNext()
		if err != nil || !ok {
			break
		}
		event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			reason, _ := e.Header(HeaderReason)
			stage, _ := e.Header(HeaderStage)
			dead = append(dead, string(e.Body)+"|"+reason+"|"+stage)
			return nil
		})
	}
	want := "k:bad-1|destination refuses k:bad-1|picky,k:bad-2|destination refuses k:bad-2|picky"
	if strings.Join(dead, ",") != want {
		t.Fatalf("dead letters %q, want %q", dead, want)
	}
	if got := len(c.snapshot()); got != 10 {
		t.Fatalf("sink kept %d events, want 10", got)
	}
}
