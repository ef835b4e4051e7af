package topoagent_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
)

// BenchmarkTapOverhead measures what an open tap costs a writer: appends
// of 1,024-event batches to a file channel, first with no tap, then with a
// tap sampling 1 in 100 and discarding, in the same run. It reports
// tap/no-tap as the ratio of time per append (1.0: free).
func BenchmarkTapOverhead(b *testing.B) {
	var bld event.Builder
	for range 1024 {
		bld.Add(&event.Event{Time: 1, Body: []byte(`{"ts":"2026-11-25T12:00:00.123Z","order_id":"o-000001","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.50,"city":"Hangzhou","status":"paid"}`)})
	}
	batch := bld.Bytes()
	run := func(tap bool) time.Duration {
		ch, err := channel.Open(channel.Options{Dir: b.TempDir(), Fsync: channel.FsyncNever, SegmentBytes: 64 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer ch.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		if tap {
			go func() {
				done <- topoagent.TapChannel(ctx, ch, topoagent.TapReaderName(0), 100, func(event.Event) bool { return true })
			}()
		}
		start := time.Now()
		for range b.N {
			if _, err := ch.Append(ctx, 0, "bench", batch, bld.Len(), nil); err != nil {
				b.Fatal(err)
			}
		}
		d := time.Since(start)
		cancel()
		if tap {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		return d
	}
	base := run(false)
	withTap := run(true)
	b.ReportMetric(float64(withTap)/float64(base), "tap/no-tap")
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "ns/append-no-tap")
}
