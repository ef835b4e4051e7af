package pipeline

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
)

// batchSource hands out the same pre-encoded batch n times.
type batchSource struct {
	batch []byte
	n, i  int
}

func (s *batchSource) Open(_ context.Context, resume []byte) error {
	if resume != nil {
		s.i = int(binary.LittleEndian.Uint64(resume))
	}
	return nil
}
func (s *batchSource) Read(ctx context.Context, _ int) (SourceBatch, error) {
	if s.i >= s.n {
		<-ctx.Done()
		return SourceBatch{}, ctx.Err()
	}
	s.i++
	return SourceBatch{Events: s.batch, Position: binary.LittleEndian.AppendUint64(nil, uint64(s.i))}, nil
}
func (s *batchSource) Ack(context.Context, []byte) error { return nil }
func (s *batchSource) Close(context.Context) error       { return nil }

type passBolt struct{}

func (passBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	return nil, event.Iterate(in, func(_ int, e *event.Event) error { out.Add(e); return nil })
}
func (passBolt) Close(context.Context) error { return nil }

type countSink struct{ events *int }

func (countSink) Open(context.Context) error { return nil }
func (s countSink) Write(_ context.Context, b []byte, _ Fence) ([]Reject, error) {
	n, _ := event.Count(b)
	*s.events += n
	return nil, nil
}
func (countSink) Close(context.Context) error { return nil }

// benchBatch is one encoded batch of n events with 200-byte bodies.
func benchBatch(n int) []byte {
	var bb event.Builder
	body := make([]byte, 200)
	for i := range n {
		body[0] = byte(i)
		bb.Add(&event.Event{Body: body})
	}
	return append([]byte(nil), bb.Bytes()...)
}

// runBenchPipeline runs source → raw → bolt → out → sink (the bolt with at
// most parallelism instances at once; 0: one per partition), the source
// handing out batch batches times, and returns the seconds from Start until
// the sink has counted events; then it stops the pipeline.
func runBenchPipeline(b *testing.B, raw, out channel.Channel, batch []byte, batches, events, parallelism int, bolt Bolt) float64 {
	b.Helper()
	got := 0
	p, err := New(Spec{
		Sources: []SourceSpec{{Name: "src", Output: Output{Name: "raw", Channel: raw},
			New: func(context.Context) (Source, error) { return &batchSource{batch: batch, n: batches}, nil }}},
		Bolts: []BoltSpec{{Name: "bolt", Parallelism: parallelism, Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
			New: func(context.Context, int, StateStore) (Bolt, error) { return bolt, nil }}},
		Sinks: []SinkSpec{{Name: "snk", Input: Input{"out", out},
			New: func(context.Context, int) (Sink, error) { return countSink{&got}, nil }}},
	})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	p.Start(context.Background())
	for {
		if s, _ := statsOf(p, "snk"); s.EventsIn >= uint64(events) {
			break
		}
		time.Sleep(time.Millisecond) // polling the sink's counter; a benchmark, not a test
	}
	secs := time.Since(start).Seconds()
	p.Stop(context.Background())
	return secs
}

// BenchmarkPipelineFileChannels measures the runner itself: source → file
// channel → pass-through Go bolt → file channel → sink, fsync always, 1,024
// events of 200 B per batch. It reports events/s and the ratio to a raw
// baseline measured in the same run: the same bytes appended (with
// fsync) to two plain files and decoded once, the minimum work of two hops.
func BenchmarkPipelineFileChannels(b *testing.B) {
	batch := benchBatch(1024)
	const batches = 200
	events := float64(batches * 1024)

	var pipeSecs, rawSecs float64
	for range b.N {
		dir := b.TempDir()
		open := func(name string) channel.Channel {
			ch, err := channel.Open(channel.Options{Dir: filepath.Join(dir, name)})
			if err != nil {
				b.Fatal(err)
			}
			return ch
		}
		raw, out := open("raw"), open("out")
		pipeSecs += runBenchPipeline(b, raw, out, batch, batches, int(events), 0, passBolt{})
		raw.Close()
		out.Close()

		start := time.Now()
		for _, name := range []string{"a", "b"} {
			f, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				b.Fatal(err)
			}
			for range batches {
				f.Write(batch)
				f.Sync()
				event.Iterate(batch, func(int, *event.Event) error { return nil })
			}
			f.Close()
		}
		rawSecs += time.Since(start).Seconds()
	}
	rate, rawRate := events*float64(b.N)/pipeSecs, events*float64(b.N)/rawSecs
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rate/rawRate, "ratio_raw")
}

// BenchmarkPipelineMemoryChannels measures the runner's own cost per batch:
// the topology of BenchmarkPipelineFileChannels over memory channels (no
// disk), 64 events of 200 B per batch, so per-batch bookkeeping (counters,
// latency histogram, hop envelopes, goroutine hand-offs) dominates. It
// reports events/s and the ratio to a baseline measured in the same run:
// the same batches decoded and re-encoded twice (the event work of two
// hops, with no runner at all).
func BenchmarkPipelineMemoryChannels(b *testing.B) {
	batch := benchBatch(64)
	const batches = 4000
	events := float64(batches * 64)

	var pipeSecs, rawSecs float64
	for range b.N {
		raw, out := channel.NewMemory(channel.Options{}), channel.NewMemory(channel.Options{})
		pipeSecs += runBenchPipeline(b, raw, out, batch, batches, int(events), 0, passBolt{})

		start := time.Now()
		var a, c event.Builder
		for range batches {
			a.Reset()
			event.Iterate(batch, func(_ int, e *event.Event) error { a.Add(e); return nil })
			c.Reset()
			event.Iterate(a.Bytes(), func(_ int, e *event.Event) error { c.Add(e); return nil })
		}
		rawSecs += time.Since(start).Seconds()
	}
	rate, rawRate := events*float64(b.N)/pipeSecs, events*float64(b.N)/rawSecs
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rate/rawRate, "ratio_raw")
}
