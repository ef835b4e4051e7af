package tail

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

// BenchmarkTailVsRawSplit reads a file of 200-byte order lines with the tail
// source (default config) and, in the same run, with a raw read-and-split
// loop (256 KiB reads, bytes.IndexByte); it reports lines/s of both and the
// tail/raw ratio.
func BenchmarkTailVsRawSplit(b *testing.B) {
	const lines = 200_000
	path := filepath.Join(b.TempDir(), "orders.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < lines; i++ {
		fmt.Fprintf(w, `{"ts":"2026-11-25T12:00:00.123Z","order_id":"o-%07d","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.50,"city":"Hangzhou","status":"paid","pad":"xxxxxxxxxxxxxx"}`+"\n", i)
	}
	w.Flush()
	f.Close()

	var tailTime, rawTime time.Duration
	for b.Loop() {
		start := time.Now()
		if n := rawSplit(b, path); n != lines {
			b.Fatalf("raw split found %d lines", n)
		}
		rawTime += time.Since(start)

		start = time.Now()
		cfg := DefaultConfig()
		cfg.Paths = []string{path}
		src, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Open(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		got := 0
		for got < lines {
			batch, err := src.Read(context.Background(), 8192)
			if err != nil {
				b.Fatal(err)
			}
			if batch.Events != nil {
				n, _ := event.Count(batch.Events)
				got += n
			}
		}
		src.Close(context.Background())
		tailTime += time.Since(start)
	}
	n := float64(b.N) * lines
	b.ReportMetric(n/tailTime.Seconds(), "tail_lines/s")
	b.ReportMetric(n/rawTime.Seconds(), "raw_lines/s")
	b.ReportMetric(rawTime.Seconds()/tailTime.Seconds(), "tail/raw_speed")
}

func rawSplit(b *testing.B, path string) int {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	n, start, end := 0, 0, 0
	for {
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		m, err := f.Read(buf[end:])
		end += m
		for {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			n++
			start += i + 1
		}
		if err == io.EOF || m == 0 {
			return n
		}
	}
}
