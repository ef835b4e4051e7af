package pipeline

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

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
	batch := benchBatch(256)
	const batches = 160
	events := float64(batches * 256)
	secs := map[int]float64{}
	for range b.N {
		for _, par := range []int{4, 2, 1} {
			secs[par] += runBenchPipeline(b, mem(4), mem(1), batch, batches, int(events), par, hashBolt{})
		}
	}
	for _, par := range []int{1, 2, 4} {
		b.ReportMetric(events*float64(b.N)/secs[par], fmt.Sprintf("events/s_par%d", par))
		if par != 4 {
			b.ReportMetric(secs[4]/secs[par], fmt.Sprintf("ratio_par%d_to_par4", par))
		}
	}
}
