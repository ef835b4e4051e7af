package pipeline

import (
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// Histogram is a cumulative histogram of durations in seconds, in
// Prometheus' shape (the same as admin.Histogram): Cumulative[i] counts the
// observations <= Bounds[i], Count counts all of them and Sum adds them up.
type Histogram struct {
	Bounds     []float64
	Cumulative []uint64
	Count      uint64
	Sum        float64
}

// latencyBounds spans a fast Go bolt's batch (well under a millisecond) to
// a sink write stuck behind retries (seconds).
var latencyBounds = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram is the lock-free recorder behind Histogram: one atomic add per
// bucket and one for the sum per observation, so instances of a stage can
// share it on the hot path.
type histogram struct {
	buckets  [len(latencyBounds) + 1]atomic.Uint64 // the last is +Inf
	sumNanos atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	// The first bound >= d: Prometheus buckets are "less than or equal".
	i := sort.SearchFloat64s(latencyBounds[:], d.Seconds())
	h.buckets[i].Add(1)
	h.sumNanos.Add(uint64(d))
}

// snapshot reads the buckets (not atomically as a whole; Count is the sum
// of the buckets read, so the result is always self-consistent).
func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: slices.Clone(latencyBounds[:]), Cumulative: make([]uint64, len(latencyBounds))}
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
		if i < len(latencyBounds) {
			out.Cumulative[i] = n
		}
	}
	out.Count = n
	out.Sum = time.Duration(h.sumNanos.Load()).Seconds()
	return out
}
