// Command order-stats is the Go version of the order-stats bolt: the same
// algorithm, state layout and output as the C version in ../c, written with
// the Go SDK so the two can be compared (../README.md has the contract and
// the measured speed of each).
//
// Build: sluice plugin build wasm-examples/order-stats/go
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	sluice "github.com/sluicehq/sluice/sdk/go"
	"github.com/sluicehq/sluice/wasm-examples/internal/orderjson"
)

type agg struct{ cents, orders, units int64 }

// window holds one minute's aggregates per dimension: category, city, sku.
type window struct {
	dims [3]map[string]*agg
}

func newWindow() *window { return &window{dims: [3]map[string]*agg{{}, {}, {}}} }

func (w *window) add(dim int, name []byte, a agg) {
	p := w.dims[dim][string(name)] // no allocation for the lookup
	if p == nil {
		p = &agg{}
		w.dims[dim][string(name)] = p
	}
	p.cents += a.cents
	p.orders += a.orders
	p.units += a.units
}

type orderStats struct {
	latenessMs int64

	// The batch being processed: guest memory holds nothing between calls,
	// Flush moves it into host state before the call returns.
	batch   map[string]*window
	batchWm int64
	f       orderjson.Fields
	buf     []byte
}

func (s *orderStats) Init(cfg *sluice.Config) error {
	l, err := cfg.Int("lateness_ms", 2000)
	if err != nil || l < 0 {
		return errors.New("config lateness_ms: want a non-negative integer (milliseconds)")
	}
	s.latenessMs = l
	s.batch = map[string]*window{}
	s.batchWm = -1
	return nil
}

func (s *orderStats) Process(e *sluice.Event, _ *sluice.Output) error {
	f := &s.f
	if err := orderjson.Parse(e.Body, f); err != nil {
		return sluice.Reject(err.Error())
	}
	w := s.batch[string(f.Minute())]
	if w == nil {
		w = newWindow()
		s.batch[string(f.Minute())] = w
	}
	a := agg{cents: f.Qty * f.PriceCents, orders: 1, units: f.Qty}
	w.add(0, f.Category, a)
	w.add(1, f.City, a)
	w.add(2, f.SKU, a)
	s.batchWm = max(s.batchWm, f.TimeMs)
	return nil
}

// Flush runs after the last event of every batch: merge into host state.
func (s *orderStats) Flush() error {
	defer s.reset()
	for minute, w := range s.batch {
		key := []byte("w:" + minute)
		if old, ok := sluice.StateGet(key); ok {
			if err := decodeWindow(old, w); err != nil {
				return fmt.Errorf("state %s: %w", key, err)
			}
		}
		s.buf = encodeWindow(s.buf[:0], w)
		if err := sluice.StatePut(key, s.buf); err != nil {
			return err
		}
	}
	if s.batchWm >= 0 {
		old, ok := sluice.StateGet([]byte("wm"))
		if !ok || len(old) != 8 || int64(binary.LittleEndian.Uint64(old)) < s.batchWm {
			if err := sluice.StatePut([]byte("wm"), binary.LittleEndian.AppendUint64(nil, uint64(s.batchWm))); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *orderStats) reset() {
	clear(s.batch)
	s.batchWm = -1
}

// Tick closes the windows due at now and emits their command records.
func (s *orderStats) Tick(nowNs int64, out *sluice.Output) error {
	s.reset()
	t := nowNs / 1e6
	if v, ok := sluice.StateGet([]byte("wm")); ok && len(v) == 8 {
		t = max(t, int64(binary.LittleEndian.Uint64(v)))
	}
	last := t - s.latenessMs - 60000
	if last < 0 {
		return nil
	}
	cutoff := append([]byte("w:"), orderjson.AppendMinute(nil, last)...)
	type due struct{ key, val []byte }
	var closing []due
	err := sluice.StateScan([]byte("w:"), func(k, v []byte) bool {
		if bytes.Compare(k, cutoff) > 0 {
			return false
		}
		closing = append(closing, due{bytes.Clone(k), bytes.Clone(v)})
		return true
	})
	if err != nil {
		return err
	}
	for _, d := range closing {
		minute := string(d.key[2:])
		ms, err := orderjson.MinuteMs(d.key[2:])
		if err != nil {
			return fmt.Errorf("state key %s: %w", d.key, err)
		}
		w := newWindow()
		if err := decodeWindow(d.val, w); err != nil {
			return fmt.Errorf("state %s: %w", d.key, err)
		}
		time := ms * 1e6
		emit := func(op, key, name string, v int64) {
			s.buf = appendCommand(s.buf[:0], op, key, name, v)
			out.Emit(time, []byte(key), s.buf)
		}
		for _, name := range sortedNames(w.dims[0]) {
			a := w.dims[0][name]
			emit("hincrby", "rev:cat:"+minute, name, a.cents)
			emit("hincrby", "cnt:cat:"+minute, name, a.orders)
		}
		for _, name := range sortedNames(w.dims[1]) {
			a := w.dims[1][name]
			emit("hincrby", "rev:city:"+minute, name, a.cents)
			emit("hincrby", "cnt:city:"+minute, name, a.orders)
		}
		for _, name := range sortedNames(w.dims[2]) {
			a := w.dims[2][name]
			emit("zincrby", "top:sku:"+minute, name, a.units)
			emit("zincrby", "top:sku", name, a.units)
		}
		sluice.StateDelete(d.key)
	}
	return nil
}

func appendCommand(dst []byte, op, key, name string, v int64) []byte {
	dst = append(dst, `{"op":"`...)
	dst = append(dst, op...)
	dst = append(dst, `","key":"`...)
	dst = append(dst, key...)
	if op == "zincrby" {
		dst = append(dst, `","member":"`...)
	} else {
		dst = append(dst, `","field":"`...)
	}
	dst = append(dst, name...)
	dst = append(dst, `","value":`...)
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '}')
}

func sortedNames(m map[string]*agg) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// encodeWindow writes a window's state value: per dimension count:u32 then,
// by name ascending, name:bytes cents:i64 orders:i64 units:i64.
func encodeWindow(dst []byte, w *window) []byte {
	for _, m := range w.dims {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m)))
		for _, name := range sortedNames(m) {
			a := m[name]
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(name)))
			dst = append(dst, name...)
			dst = binary.LittleEndian.AppendUint64(dst, uint64(a.cents))
			dst = binary.LittleEndian.AppendUint64(dst, uint64(a.orders))
			dst = binary.LittleEndian.AppendUint64(dst, uint64(a.units))
		}
	}
	return dst
}

// decodeWindow adds the aggregates of a window's state value to w.
func decodeWindow(b []byte, w *window) error {
	off := 0
	for dim := range w.dims {
		if len(b)-off < 4 {
			return errors.New("window value truncated")
		}
		n := binary.LittleEndian.Uint32(b[off:])
		off += 4
		for j := uint32(0); j < n; j++ {
			if len(b)-off < 4 {
				return errors.New("window value truncated")
			}
			l := binary.LittleEndian.Uint32(b[off:])
			off += 4
			if uint64(len(b)-off) < uint64(l)+24 {
				return errors.New("window value truncated")
			}
			name := b[off : off+int(l)]
			off += int(l)
			w.add(dim, name, agg{
				cents:  int64(binary.LittleEndian.Uint64(b[off:])),
				orders: int64(binary.LittleEndian.Uint64(b[off+8:])),
				units:  int64(binary.LittleEndian.Uint64(b[off+16:])),
			})
			off += 24
		}
	}
	if off != len(b) {
		return errors.New("window value has trailing bytes")
	}
	return nil
}

func init() { sluice.Register(&orderStats{}) }

// main is never run: the module is a reactor whose exports the host calls.
func main() {}
