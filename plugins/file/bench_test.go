package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// BenchmarkSinkVsRawAppend writes batches of 4096 200-byte lines through the
// sink (fsync on) and, in the same run, with a bare append + fsync; it
// reports lines/s of both and the sink/raw ratio (the fence costs a second
// fsync and a rename per batch).
func BenchmarkSinkVsRawAppend(b *testing.B) {
	const perBatch = 4096
	var bb event.Builder
	line := make([]byte, 199)
	for i := range line {
		line[i] = 'x'
	}
	var rawBuf []byte
	for i := 0; i < perBatch; i++ {
		bb.Add(&event.Event{Body: line})
		rawBuf = append(append(rawBuf, line...), '\n')
	}
	batch := bb.Bytes()
	dir := b.TempDir()
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "sink.log")
	cfg.RotateBytes.Bytes = 0
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	raw, err := os.OpenFile(filepath.Join(dir, "raw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	var sinkTime, rawTime time.Duration
	var off uint64
	for b.Loop() {
		off++
		start := time.Now()
		if _, err := s.Write(context.Background(), batch, pipeline.Fence{Stream: "s", Offset: off}); err != nil {
			b.Fatal(err)
		}
		sinkTime += time.Since(start)
		start = time.Now()
		if _, err := raw.Write(rawBuf); err != nil {
			b.Fatal(err)
		}
		if err := raw.Sync(); err != nil {
			b.Fatal(err)
		}
		rawTime += time.Since(start)
	}
	n := float64(b.N * perBatch)
	b.ReportMetric(n/sinkTime.Seconds(), "sink_lines/s")
	b.ReportMetric(n/rawTime.Seconds(), "raw_lines/s")
	b.ReportMetric(rawTime.Seconds()/sinkTime.Seconds(), "sink/raw_speed")
	_ = fmt.Sprint
}
