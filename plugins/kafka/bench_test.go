package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/internal/testkafka"
)

// BenchmarkSinkVsSarama sends the same 5000 order lines per iteration
// through the kafka sink and through a bare sarama async producer loop with
// the same settings (acks=all, idempotent, lz4, same batching), against the
// same in-process cluster, and reports sink_vs_sarama = bare time / sink
// time (1.0: the sink costs nothing over sarama).
func BenchmarkSinkVsSarama(b *testing.B) {
	brokers := testkafka.Start(b, 4, "sink", "bare")
	s := newSink(b, brokers, "sink", nil)
	const n = 5000
	var bld event.Builder
	for i := 0; i < n; i++ {
		bld.Add(&event.Event{Body: []byte(`{"ts":"2026-11-25T12:00:00.123Z","order_id":"o-000001","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.50,"city":"Hangzhou","status":"paid"}`),
			Headers: []event.Header{{Name: "path", Value: "/var/log/orders/orders.log"}}})
	}
	batch := bld.Bytes()
	// The bare loop: the same producer settings the sink uses.
	if err := s.Open(context.Background()); err == nil {
		b.Fatal("second Open succeeded")
	}
	bare, err := sarama.NewAsyncProducer(brokers, s.sc)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	var evs []event.Event
	evs, _ = event.DecodeBatch(evs, batch)
	ctx := context.Background()
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
		err := testkafka.ProduceAll(bare, n, func(j int) *sarama.ProducerMessage {
			e := &evs[j]
			hs := []sarama.RecordHeader{{Key: []byte(e.Headers[0].Name), Value: []byte(e.Headers[0].Value)}}
			return &sarama.ProducerMessage{Topic: "bare", Value: sarama.ByteEncoder(e.Body), Headers: hs,
				Metadata: msgMeta{batch: uint64(i + 1)}}
		})
		if err != nil {
			b.Fatal(err)
		}
		bareT += time.Since(t1)
		if i%2 == 1 {
			sinkRun()
		}
	}
	b.ReportMetric(float64(n*b.N)/sinkT.Seconds(), "sink_msgs/s")
	b.ReportMetric(float64(n*b.N)/bareT.Seconds(), "bare_msgs/s")
	b.ReportMetric(bareT.Seconds()/sinkT.Seconds(), "sink_vs_sarama")
}
