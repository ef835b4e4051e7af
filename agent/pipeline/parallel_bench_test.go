package pipeline

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

// hashBolt is CPU-bound: it hashes every event's body 8 times and passes
// the event on.
type hashBolt struct{}

func (hashBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]Reject, error) {
	return nil, event.Iterate(in, func(_ int, e *event.Event) error {
		sum := sha256.Sum256(e.Body)
		for range 7 {
			sum = sha256.Sum256(sum[:])
		}
		e.Headers = append(e.Headers, event.Header{Name: "h", Value: string(sum[:4])})
		out.Add(e)
		return nil
	})
}
func (hashBolt) Close(context.Context) error { return nil }

// BenchmarkBoltParallelism runs a CPU-bound bolt over 4 partitions (memory
// channels, so only the runner and the bolt cost) with parallelism 1, 2 and
// 4, and reports each one's events/s and its ratio to parallelism 4 (one
// instance per partition: no token at all) measured in the same run.
func BenchmarkBoltParallelism(b *testing.B) {
	var bb event.Builder
	body := make([]byte, 200)
	for i := range 256 {
		body[0] = byte(i)
		bb.Add(&event.Event{Body: body})
	}
	batch := append([]byte(nil), bb.Bytes()...)
	const batches = 160
	events := float64(batches * 256)
	secs := map[int]float64{}
	for range b.N {
		for _, par := range []int{4, 2, 1} {
			raw, out := mem(4), mem(1)
			got := 0
			p, err := New(Spec{
				Sources: []SourceSpec{{Name: "src", Output: Output{Name: "raw", Channel: raw},
					New: func(context.Context) (Source, error) { return &batchSource{batch: batch, n: batches}, nil }}},
				Bolts: []BoltSpec{{Name: "hash", Parallelism: par, Input: Input{"raw", raw}, Outputs: []Output{{Name: "out", Channel: out}},
					New: func(context.Context, int, StateStore) (Bolt, error) { return hashBolt{}, nil }}},
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
				time.Sleep(time.Millisecond)
			}
			secs[par] += time.Since(start).Seconds()
			p.Stop(context.Background())
		}
	}
	for _, par := range []int{1, 2, 4} {
		b.ReportMetric(events*float64(b.N)/secs[par], fmt.Sprintf("events/s_par%d", par))
		if par != 4 {
			b.ReportMetric(secs[4]/secs[par], fmt.Sprintf("ratio_par%d_to_par4", par))
		}
	}
}
