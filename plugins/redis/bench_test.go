package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/internal/testredis"
	"github.com/sluicehq/sluice/plugins/internal/command"
)

// BenchmarkSinkVsPipeline applies the same 1000 hincrby records per batch
// through the sink (decode, parse, one script call applying the commands
// and the fence) and through a bare go-redis pipelined loop of the same
// commands, both in every iteration against the same redis-server, and reports
// ratio = bare time / sink time (1.0: the sink costs nothing).
func BenchmarkSinkVsPipeline(b *testing.B) {
	srv := testredis.Start(b)
	s := open(b, srv.Addr, "bench")
	rc := client(b, srv.Addr)
	ctx := context.Background()
	const n = 1000
	var bodies []string
	for i := 0; i < n; i++ {
		bodies = append(bodies, fmt.Sprintf(`{"op":"hincrby","key":"rev:cat:2026-11-25T12:%02d","field":"books","value":%d}`, i%60, 1000+i))
	}
	batch := batchOf(bodies...)
	cmds := make([]command.Command, n)
	for i, body := range bodies {
		cmds[i], _ = command.Parse([]byte(body))
	}
	var sinkT, bareT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkRun := func() {
			t0 := time.Now()
			if _, err := s.Write(ctx, batch, pipeline.Fence{Stream: "bench", Offset: uint64(i + 1)}); err != nil {
				b.Fatal(err)
			}
			sinkT += time.Since(t0)
		}
		// Alternate which goes first, so load from elsewhere on the
		// machine falls on both alike.
		if i%2 == 0 {
			sinkRun()
		}
		t1 := time.Now()
		p := rc.Pipeline()
		for j := range cmds {
			p.HIncrBy(ctx, cmds[j].Key, cmds[j].Field, cmds[j].Int)
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		bareT += time.Since(t1)
		if i%2 == 1 {
			sinkRun()
		}
	}
	b.ReportMetric(float64(n*b.N)/sinkT.Seconds(), "sink_cmds/s")
	b.ReportMetric(float64(n*b.N)/bareT.Seconds(), "bare_cmds/s")
	b.ReportMetric(bareT.Seconds()/sinkT.Seconds(), "ratio")
}
