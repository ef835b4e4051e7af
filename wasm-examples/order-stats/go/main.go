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

// table maps names to aggregates. It is a small open-addressing table rather
// than a Go map: in a wasm guest, map lookups with string keys hash in
// software and cost several times what this does.
type table struct {
	slots []slot // a power of two long
	count int
	names []byte // the names, back to back
}

type slot struct {
	off, n uint32 // the name in names; n == 0: empty (names are never empty)
	hash   uint32
	agg
}

func hashName(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

func (t *table) name(s *slot) []byte { return t.names[s.off : s.off+s.n] }

func (t *table) add(name []byte, a agg) {
	if (t.count+1)*2 > len(t.slots) {
		t.grow()
	}
	h := hashName(name)
	mask := uint32(len(t.slots) - 1)
	for j := h & mask; ; j = (j + 1) & mask {
		s := &t.slots[j]
		if s.n == 0 {
			*s = slot{off: uint32(len(t.names)), n: uint32(len(name)), hash: h, agg: a}
			t.names = append(t.names, name...)
			t.count++
			return
		}
		if s.hash == h && bytes.Equal(t.name(s), name) {
			s.cents += a.cents
			s.orders += a.orders
			s.units += a.units
			return
		}
	}
}

func (t *table) grow() {
	old := t.slots
	t.slots = make([]slot, max(256, 2*len(old)))
	mask := uint32(len(t.slots) - 1)
	for _, s := range old {
		if s.n == 0 {
			continue
		}
		j := s.hash & mask
		for t.slots[j].n != 0 {
			j = (j + 1) & mask
		}
		t.slots[j] = s
	}
}

func (t *table) reset() {
	if t.count > 0 {
		clear(t.slots)
	}
	t.count = 0
	t.names = t.names[:0]
}

// sorted returns the entries by name, ascending.
func (t *table) sorted(dst []*slot) []*slot {
	dst = dst[:0]
	for i := range t.slots {
		if t.slots[i].n != 0 {
			dst = append(dst, &t.slots[i])
		}
	}
	slices.SortFunc(dst, func(a, b *slot) int { return bytes.Compare(t.name(a), t.name(b)) })
	return dst
}

// window holds one minute's aggregates per dimension: category, city, sku.
type window struct {
	minute [16]byte
	dims   [3]table
}

type orderStats struct {
	latenessMs int64

	// The batch being processed: guest memory holds nothing between calls,
	// Flush moves it into host state before the call returns.
	wins    []*window
	nwins   int
	batchWm int64
	f       orderjson.Fields
	buf     []byte
	order   []*slot
}

func (s *orderStats) Init(cfg *sluice.Config) error {
	l, err := cfg.Int("lateness_ms", 2000)
	if err != nil || l < 0 {
		return errors.New("config lateness_ms: want a non-negative integer (milliseconds)")
	}
	s.latenessMs = l
	s.batchWm = -1
	return nil
}

// window returns the batch's window for minute, reusing the memory of
// earlier batches.
func (s *orderStats) window(minute []byte) *window {
	for i := s.nwins - 1; i >= 0; i-- {
		if string(s.wins[i].minute[:]) == string(minute) {
			return s.wins[i]
		}
	}
	if s.nwins == len(s.wins) {
		s.wins = append(s.wins, &window{})
	}
	w := s.wins[s.nwins]
	s.nwins++
	copy(w.minute[:], minute)
	return w
}

func (s *orderStats) reset() {
	for _, w := range s.wins[:s.nwins] {
		for d := range w.dims {
			w.dims[d].reset()
		}
	}
	s.nwins = 0
	s.batchWm = -1
}

func (s *orderStats) Process(e *sluice.Event, _ *sluice.Output) error {
	f := &s.f
	if err := orderjson.Parse(e.Body, f); err != nil {
		return sluice.Reject(err.Error())
	}
	w := s.window(f.Minute())
	a := agg{cents: f.Qty * f.PriceCents, orders: 1, units: f.Qty}
	w.dims[0].add(f.Category, a)
	w.dims[1].add(f.City, a)
	w.dims[2].add(f.SKU, a)
	s.batchWm = max(s.batchWm, f.TimeMs)
	return nil
}

// Flush runs after the last event of every batch: merge into host state.
func (s *orderStats) Flush() error {
	defer s.reset()
	var key [18]byte
	copy(key[:], "w:")
	for _, w := range s.wins[:s.nwins] {
		copy(key[2:], w.minute[:])
		if old, ok := sluice.StateGet(key[:]); ok {
			if err := decodeWindow(old, w); err != nil {
				return fmt.Errorf("state %s: %w", key, err)
			}
		}
		s.buf = s.encodeWindow(s.buf[:0], w)
		if err := sluice.StatePut(key[:], s.buf); err != nil {
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

// Tick closes the windows due at now and emits their command records.
func (s *orderStats) Tick(nowNs int64, out *sluice.Output) error {
	s.reset()
	defer s.reset()
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
		if len(d.key) != 18 {
			return fmt.Errorf("state key %q is not w:<minute>", d.key)
		}
		ms, err := orderjson.MinuteMs(d.key[2:])
		if err != nil {
			return fmt.Errorf("state key %s: %w", d.key, err)
		}
		minute := string(d.key[2:])
		w := s.window(d.key[2:])
		if err := decodeWindow(d.val, w); err != nil {
			return fmt.Errorf("state %s: %w", d.key, err)
		}
		time := ms * 1e6
		emit := func(op, key string, name []byte, v int64) {
			s.buf = appendCommand(s.buf[:0], op, key, name, v)
			out.Emit(time, []byte(key), s.buf)
		}
		t := &w.dims[0]
		for _, e := range t.sorted(s.order) {
			emit("hincrby", "rev:cat:"+minute, t.name(e), e.cents)
			emit("hincrby", "cnt:cat:"+minute, t.name(e), e.orders)
		}
		t = &w.dims[1]
		for _, e := range t.sorted(s.order) {
			emit("hincrby", "rev:city:"+minute, t.name(e), e.cents)
			emit("hincrby", "cnt:city:"+minute, t.name(e), e.orders)
		}
		t = &w.dims[2]
		for _, e := range t.sorted(s.order) {
			emit("zincrby", "top:sku:"+minute, t.name(e), e.units)
			emit("zincrby", "top:sku", t.name(e), e.units)
		}
		sluice.StateDelete(d.key)
	}
	return nil
}

func appendCommand(dst []byte, op, key string, name []byte, v int64) []byte {
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

// encodeWindow writes a window's state value: per dimension count:u32 then,
// by name ascending, name:bytes cents:i64 orders:i64 units:i64.
func (s *orderStats) encodeWindow(dst []byte, w *window) []byte {
	for d := range w.dims {
		t := &w.dims[d]
		s.order = t.sorted(s.order)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s.order)))
		for _, e := range s.order {
			dst = binary.LittleEndian.AppendUint32(dst, e.n)
			dst = append(dst, t.name(e)...)
			dst = binary.LittleEndian.AppendUint64(dst, uint64(e.cents))
			dst = binary.LittleEndian.AppendUint64(dst, uint64(e.orders))
			dst = binary.LittleEndian.AppendUint64(dst, uint64(e.units))
		}
	}
	return dst
}

// decodeWindow adds the aggregates of a window's state value to w.
func decodeWindow(b []byte, w *window) error {
	off := 0
	for d := range w.dims {
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
			if l == 0 || uint64(len(b)-off) < uint64(l)+24 {
				return errors.New("window value truncated or has an empty name")
			}
			name := b[off : off+int(l)]
			off += int(l)
			w.dims[d].add(name, agg{
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
