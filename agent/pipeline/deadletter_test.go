package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
)

// Dead letters follow the hop protocol: each input's dead letters are
// written exactly once whichever append a crash interrupts (docs/adr/0004,
// "Dead letters and the hop protocol"). These tests cut a stage at each of
// the appends of a batch with dead letters — just before it (nothing
// written) and just after it (written, then the stage fails, as if killed)
// — let the supervisor restart it, and check the dead-letter channel and
// the output hold every event exactly once.

var errInjectedCrash = errors.New("injected crash")

// crashingChannel fails one Append: the first whose batch satisfies match
// once armed. With after, the record is appended first, then the error is
// returned (a crash right after a durable append); otherwise nothing is
// appended. onCrash runs at that moment, before the error is returned.
type crashingChannel struct {
	channel.Channel
	mu      sync.Mutex
	match   func(batch []byte) bool
	after   bool
	onCrash func()
	crashes int
}

func (c *crashingChannel) Append(ctx context.Context, p int, producer string, batch []byte, count int, inputPos []byte) (uint64, error) {
	c.mu.Lock()
	crash := c.crashes == 0 && c.match != nil && c.match(batch)
	if crash {
		c.crashes++
	}
	c.mu.Unlock()
	if !crash {
		return c.Channel.Append(ctx, p, producer, batch, count, inputPos)
	}
	if c.after {
		if _, err := c.Channel.Append(ctx, p, producer, batch, count, inputPos); err != nil {
			return 0, err
		}
	}
	if c.onCrash != nil {
		c.onCrash()
	}
	return 0, errInjectedCrash
}

func (c *crashingChannel) crashed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashes
}

// containing matches batches holding an event whose body contains s.
func containing(s string) func([]byte) bool {
	return func(b []byte) bool {
		found := false
		event.Iterate(b, func(_ int, e *event.Event) error {
			found = found || bytes.Contains(e.Body, []byte(s))
			return nil
		})
		return found
	}
}

// bodies returns the event bodies in partition 0 of ch, in order.
func bodies(t *testing.T, ch channel.Channel) []string {
	t.Helper()
	r, err := ch.Reader("check", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.RemoveReader("check", 0)
	var out []string
	for {
		rec, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			out = append(out, string(e.Body))
			return nil
		})
	}
}

func appendBodies(t *testing.T, ch channel.Channel, bs ...string) {
	t.Helper()
	var b event.Builder
	for _, s := range bs {
		b.Add(&event.Event{Body: []byte(s)})
	}
	if _, err := ch.Append(context.Background(), 0, "upstream", b.Bytes(), b.Len(), nil); err != nil {
		t.Fatal(err)
	}
}

func eventCount(ch channel.Channel) uint64 {
	var n uint64
	for _, p := range ch.Stats().Partitions {
		n += p.DepthEvents
	}
	return n
}

// crashPoints are the four places a crash can cut a batch with dead
// letters: before or after the dead-letter append, before or after the
// output append.
var crashPoints = []struct {
	name       string
	deadLetter bool // crash at the dead-letter append (else the output's)
	after      bool
}{
	{"before dead-letter append", true, false},
	{"after dead-letter append", true, true},
	{"before output append", false, false},
	{"after output append", false, true},
}

func stopPipeline(t *testing.T, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func checkExactly(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %q, want each exactly once: %q", what, got, want)
	}
}

// TestBoltDeadLettersExactlyOnceAcrossCrashes: a bolt with one output
// partition groups the records waiting in its input. A crash cuts the
// group {a} (the first batch, {a0}, is complete); when the bolt restarts, a
// further record {b} is waiting. The redo must cover exactly {a}: grouping
// {a, b} under the same batch number made b's dead letter look written
// already, and it was lost (the scenario's 986 of 1,003 dead letters).
func TestBoltDeadLettersExactlyOnceAcrossCrashes(t *testing.T) {
	for _, cp := range crashPoints {
		t.Run(cp.name, func(t *testing.T) {
			raw := mem(1)
			out := &crashingChannel{Channel: mem(1)}
			dlq := &crashingChannel{Channel: mem(1)}
			crashAt := out
			if cp.deadLetter {
				crashAt = dlq
			}
			crashAt.after = cp.after
			// b arrives while the bolt is down.
			crashAt.onCrash = func() { appendBodies(t, raw, "b1", "bad-b", "b2") }
			p, err := New(Spec{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
				Bolts: []BoltSpec{{
					Name: "parse", Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}}, DeadLetter: dlq,
					New: func(context.Context, int, StateStore) (Bolt, error) {
						return funcBolt{fn: func(e *event.Event) (string, bool) {
							return string(e.Body), !bytes.HasPrefix(e.Body, []byte("bad"))
						}}, nil
					},
				}}})
			if err != nil {
				t.Fatal(err)
			}
			appendBodies(t, raw, "a0", "bad-a0")
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the first batch", func() bool { return eventCount(out) == 1 })
			if cp.deadLetter {
				dlq.mu.Lock()
				dlq.match = containing("bad-a1")
				dlq.mu.Unlock()
			} else {
				out.mu.Lock()
				out.match = containing("a1")
				out.mu.Unlock()
			}
			appendBodies(t, raw, "a1", "bad-a1")
			waitFor(t, "every record through the bolt", func() bool { return eventCount(out) >= 4 })
			stopPipeline(t, p)
			if crashAt.crashed() != 1 {
				t.Fatalf("the crash was not injected")
			}
			checkExactly(t, "output", bodies(t, out), []string{"a0", "a1", "b1", "b2"})
			checkExactly(t, "dead letters", bodies(t, dlq), []string{"bad-a0", "bad-a1", "bad-b"})
			if st, _ := statsOf(p, "parse"); st.Restarts != 1 {
				t.Fatalf("restarts %d, want 1", st.Restarts)
			}
		})
	}
}

// growingSource reads lines[next:avail] per Read (blocking while there is
// nothing new); lines starting with "bad" become dead letters. avail grows
// from outside, so a re-read after a crash cuts its batch differently, as a
// tail finding more lines does.
type growingSource struct {
	lines []string
	next  int
	avail *availLines
}

type availLines struct {
	mu   sync.Mutex
	n    int
	more chan struct{}
}

func (a *availLines) get() (int, chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n, a.more
}

func (a *availLines) set(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n = n
	close(a.more)
	a.more = make(chan struct{})
}

func (s *growingSource) Open(_ context.Context, resume []byte) error {
	if resume != nil {
		s.next = int(binary.LittleEndian.Uint64(resume))
	}
	return nil
}

func (s *growingSource) Read(ctx context.Context, _ int) (SourceBatch, error) {
	for {
		n, more := s.avail.get()
		if s.next < n {
			var b SourceBatch
			var evs event.Builder
			for ; s.next < n; s.next++ {
				e := event.Event{Body: []byte(s.lines[s.next])}
				if strings.HasPrefix(s.lines[s.next], "bad") {
					e.SetHeader(HeaderReason, "malformed")
					b.DeadLetters = append(b.DeadLetters, e)
				} else {
					evs.Add(&e)
				}
			}
			b.Events = evs.Bytes()
			b.Position = binary.LittleEndian.AppendUint64(nil, uint64(s.next))
			return b, nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return SourceBatch{}, ctx.Err()
		}
	}
}

func (s *growingSource) Ack(context.Context, []byte) error { return nil }
func (s *growingSource) Close(context.Context) error       { return nil }

// TestSourceDeadLettersExactlyOnceAcrossCrashes: a source's redo after a
// crash reads from the last durable position and may cut its batch
// differently, so its dead letters cannot be told apart from the first
// attempt's. Written before the output (as they were), a crash between the
// two appends wrote them twice.
func TestSourceDeadLettersExactlyOnceAcrossCrashes(t *testing.T) {
	for _, cp := range crashPoints {
		t.Run(cp.name, func(t *testing.T) {
			ls := []string{"x0", "bad0", "x1", "bad1", "x2"}
			avail := &availLines{n: 2, more: make(chan struct{})}
			out := &crashingChannel{Channel: mem(1)}
			dlq := &crashingChannel{Channel: mem(1)}
			crashAt := out
			if cp.deadLetter {
				crashAt = dlq
				dlq.match = containing("bad0")
			} else {
				out.match = containing("x0")
			}
			crashAt.after = cp.after
			crashAt.onCrash = func() { avail.set(len(ls)) } // more lines while it is down
			p, err := New(Spec{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
				Sources: []SourceSpec{{Name: "tail", Output: Output{Name: "out", Channel: out}, DeadLetter: dlq, BatchSize: 100,
					New: func(context.Context) (Source, error) { return &growingSource{lines: ls, avail: avail}, nil }}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "every line read", func() bool { return eventCount(out) >= 3 && eventCount(dlq) >= 2 })
			stopPipeline(t, p)
			if crashAt.crashed() != 1 {
				t.Fatalf("the crash was not injected")
			}
			checkExactly(t, "output", bodies(t, out), []string{"x0", "x1", "x2"})
			checkExactly(t, "dead letters", bodies(t, dlq), []string{"bad0", "bad1"})
		})
	}
}

// TestSinkDeadLettersExactlyOnceAcrossCrashes: a restarted sink replays
// from its committed offset, and a replayed batch yields its rejects again
// (here, as in the Redis sink's malformed commands, before the fence is
// consulted). A crash after the dead-letter append wrote them twice.
func TestSinkDeadLettersExactlyOnceAcrossCrashes(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("after=%t", after), func(t *testing.T) {
			raw := mem(1)
			dlq := &crashingChannel{Channel: mem(1), match: containing("bad-1"), after: after}
			c := newCollector()
			p, err := New(Spec{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
				Sinks: []SinkSpec{{Name: "picky", Input: Input{"raw", raw}, DeadLetter: dlq,
					New: func(context.Context, int) (Sink, error) { return pickySink{c}, nil }}}})
			if err != nil {
				t.Fatal(err)
			}
			appendBodies(t, raw, "k0", "bad-0")
			appendBodies(t, raw, "k1", "bad-1")
			appendBodies(t, raw, "k2", "bad-2")
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "every batch written", func() bool { return len(c.snapshot()) >= 3 && eventCount(dlq) >= 3 })
			stopPipeline(t, p)
			if dlq.crashed() != 1 {
				t.Fatalf("the crash was not injected")
			}
			checkExactly(t, "sink", c.snapshot(), []string{"k0", "k1", "k2"})
			checkExactly(t, "dead letters", bodies(t, dlq), []string{"bad-0", "bad-1", "bad-2"})
		})
	}
}
