package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// BenchmarkStoreVsRawBolt applies batches of 1000 hincrby/zincrby records
// (order-stats output) and, in the same run, commits the same number of raw
// bbolt puts per transaction; it reports records/s of both and the ratio.
func BenchmarkStoreVsRawBolt(b *testing.B) {
	const perBatch = 1000
	var bb event.Builder
	for i := 0; i < perBatch; i++ {
		if i%2 == 0 {
			bb.Add(&event.Event{Body: fmt.Appendf(nil, `{"op":"hincrby","key":"rev:cat:2026-11-25T12:%02d","field":"c%d","value":%d}`, i%60, i%12, i)})
		} else {
			bb.Add(&event.Event{Body: fmt.Appendf(nil, `{"op":"zincrby","key":"top:sku","member":"sku-%d","value":1}`, i%500)})
		}
	}
	batch := bb.Bytes()
	dir := b.TempDir()
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "results.db")
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	raw, err := bolt.Open(filepath.Join(dir, "raw.db"), 0o644, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()

	var storeTime, rawTime time.Duration
	var off uint64
	for b.Loop() {
		off++
		start := time.Now()
		if _, err := s.Write(context.Background(), batch, pipeline.Fence{Stream: "s", Offset: off}); err != nil {
			b.Fatal(err)
		}
		storeTime += time.Since(start)
		start = time.Now()
		err := raw.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for i := 0; i < perBatch; i++ {
				if err := bk.Put(fmt.Appendf(nil, "k%d", i%560), binary.BigEndian.AppendUint64(nil, off)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		rawTime += time.Since(start)
	}
	n := float64(b.N * perBatch)
	b.ReportMetric(n/storeTime.Seconds(), "store_records/s")
	b.ReportMetric(n/rawTime.Seconds(), "raw_puts/s")
	b.ReportMetric(rawTime.Seconds()/storeTime.Seconds(), "store/raw_speed")
}
