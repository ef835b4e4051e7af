package sinkgroup_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/forward"
	"github.com/sluicehq/sluice/plugins/sinkgroup"
)

// BenchmarkAssignmentLogCost measures what persisting each batch's member
// (one 32-byte pwrite + fdatasync before the send) costs a load_balance
// group of two forward members sending to two forward sources on loopback,
// 1024 × 200-byte lines per batch, against the same group without a data
// directory (memory only), interleaved in the same run. Reports lines/s of
// both and the persisted/memory ratio.
func BenchmarkAssignmentLogCost(b *testing.B) {
	const perBatch = 1024
	var bb event.Builder
	line := make([]byte, 199)
	for i := range line {
		line[i] = 'x'
	}
	for i := 0; i < perBatch; i++ {
		bb.Add(&event.Event{Body: line})
	}
	batch := bb.Bytes()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addrs []string
	for i := 0; i < 2; i++ {
		sc := forward.DefaultSourceConfig()
		sc.Listen = "127.0.0.1:0"
		src, err := forward.NewSource(sc, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Open(ctx, nil); err != nil {
			b.Fatal(err)
		}
		defer src.Close(context.Background())
		go func() {
			for {
				sb, err := src.Read(ctx, perBatch)
				if err != nil {
					return
				}
				src.Ack(ctx, sb.Position)
			}
		}()
		addrs = append(addrs, src.Addr().String())
	}
	newGroup := func(dir string) *sinkgroup.Group {
		cfg := sinkgroup.DefaultConfig(stubTypes{})
		cfg.Processor = "load_balance"
		cfg.Members = []sinkgroup.Member{{Name: "c0", Type: "stub"}, {Name: "c1", Type: "stub"}}
		g, err := sinkgroup.New(cfg, dir, func(m *sinkgroup.Member) (pipeline.Sink, error) {
			c := forward.DefaultSinkConfig()
			c.Address = addrs[int(m.Name[1]-'0')]
			return forward.NewSink(c, b.TempDir(), nil)
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Open(ctx); err != nil {
			b.Fatal(err)
		}
		return g
	}
	persisted, memory := newGroup(b.TempDir()), newGroup("")
	defer persisted.Close(context.Background())
	defer memory.Close(context.Background())

	var pTime, mTime time.Duration
	var off uint64
	for b.Loop() {
		off++
		start := time.Now()
		if _, err := persisted.Write(ctx, batch, pipeline.Fence{Stream: "p", Offset: off}); err != nil {
			b.Fatal(err)
		}
		pTime += time.Since(start)
		start = time.Now()
		if _, err := memory.Write(ctx, batch, pipeline.Fence{Stream: "m", Offset: off}); err != nil {
			b.Fatal(err)
		}
		mTime += time.Since(start)
	}
	n := float64(b.N * perBatch)
	b.ReportMetric(n/pTime.Seconds(), "persisted_lines/s")
	b.ReportMetric(n/mTime.Seconds(), "memory_lines/s")
	b.ReportMetric(mTime.Seconds()/pTime.Seconds(), "persisted/memory_speed")
	b.ReportMetric(float64((pTime-mTime).Microseconds())/float64(b.N), "extra_µs/batch")
}
