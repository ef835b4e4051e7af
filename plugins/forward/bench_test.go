package forward

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// BenchmarkForwardVsRawTCP sends batches of 1024 200-byte lines over
// loopback through the forward sink and source (framing, CRC, event
// validation, fence table, ack after Read+Ack) and, in the same run, as bare
// bytes over TCP with a one-byte reply per batch (the same stop-and-wait
// round trip, no protocol). No disk on either side: it measures what the
// protocol costs over the network round trip. Reports lines/s of both and
// the forward/raw ratio.
func BenchmarkForwardVsRawTCP(b *testing.B) {
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

	src, err := NewSource(testSourceConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Open(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	defer src.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			sb, err := src.Read(ctx, perBatch)
			if err != nil {
				return
			}
			src.Ack(ctx, sb.Position)
		}
	}()
	c := DefaultSinkConfig()
	c.Address = src.Addr().String()
	sink, err := NewSink(c, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	sink.Open(context.Background())
	defer sink.Close(context.Background())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, len(batch))
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			conn.Write([]byte{1})
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	one := make([]byte, 1)

	var fwdTime, rawTime time.Duration
	var off uint64
	for b.Loop() {
		off++
		start := time.Now()
		if _, err := sink.Write(context.Background(), batch, pipeline.Fence{Stream: "s", Offset: off}); err != nil {
			b.Fatal(err)
		}
		fwdTime += time.Since(start)
		start = time.Now()
		if _, err := raw.Write(batch); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(raw, one); err != nil {
			b.Fatal(err)
		}
		rawTime += time.Since(start)
	}
	n := float64(b.N * perBatch)
	b.ReportMetric(n/fwdTime.Seconds(), "forward_lines/s")
	b.ReportMetric(n/rawTime.Seconds(), "raw_lines/s")
	b.ReportMetric(rawTime.Seconds()/fwdTime.Seconds(), "forward/raw_speed")
}
