package orders

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

// Stats is the native Go reference of wasm-examples/order-stats: the same
// algorithm, state layout and output, byte for byte. See that example's
// README for the contract; in short:
//
//   - Process parses each order line (Parse), aggregates the batch per minute
//     window, and merges it into the window's state entry "w:<minute>"; it
//     emits nothing and rejects lines that are not valid orders. It also
//     keeps the watermark "wm", the latest order time seen.
//   - Tick(now) closes every window whose end plus LatenessMs is at or before
//     max(now, watermark) and emits its totals as command records
//     (docs/command-records.md), then deletes its state.
//
// A late order for a window already closed opens it again; it is emitted at
// a later tick as a further increment, so totals stay exact.
type Stats struct {
	LatenessMs int64

	batch map[string]*window // scratch, reused between calls
}

// window holds the aggregates of one minute, per dimension.
type window struct {
	dims [3]map[string]*agg // category, city, sku
}

type agg struct{ cents, orders, units int64 }

const (
	dimCategory = iota
	dimCity
	dimSKU
)

func newWindow() *window {
	return &window{dims: [3]map[string]*agg{{}, {}, {}}}
}

func (w *window) add(dim int, name []byte, a agg) {
	m := w.dims[dim]
	p := m[string(name)]
	if p == nil {
		p = &agg{}
		m[string(name)] = p
	}
	p.cents += a.cents
	p.orders += a.orders
	p.units += a.units
}

// StateStore is the host's key-value state as order-stats uses it; it has
// the method set of pipeline.StateStore, so any of those will do. (This
// package does not import agent/pipeline: the order-gen example compiles it
// to WebAssembly.)
type StateStore interface {
	Get(key []byte) ([]byte, bool)
	Put(key, value []byte)
	Delete(key []byte)
	Scan(prefix []byte, fn func(key, value []byte) bool)
}

// Reject names an input event refused, as pipeline.Reject does.
type Reject struct {
	Index  int
	Reason string
}

// StateWindowPrefix and StateWatermarkKey are the state keys order-stats
// uses.
const (
	StateWindowPrefix = "w:"
	StateWatermarkKey = "wm"
)

// Process runs one batch. It returns the rejects; an error means the batch
// itself could not be decoded.
func (s *Stats) Process(in []byte, st StateStore) ([]Reject, error) {
	if s.batch == nil {
		s.batch = map[string]*window{}
	}
	clear(s.batch)
	var rejects []Reject
	var f Fields
	wm := int64(-1)
	err := event.Iterate(in, func(i int, e *event.Event) error {
		if err := Parse(e.Body, &f); err != nil {
			rejects = append(rejects, Reject{Index: i, Reason: err.Error()})
			return nil
		}
		w := s.batch[string(f.Minute())]
		if w == nil {
			w = newWindow()
			s.batch[string(f.Minute())] = w
		}
		a := agg{cents: f.RevenueCents(), orders: 1, units: f.Qty}
		w.add(dimCategory, f.Category, a)
		w.add(dimCity, f.City, a)
		w.add(dimSKU, f.SKU, a)
		wm = max(wm, f.TimeMs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for minute, w := range s.batch {
		key := []byte(StateWindowPrefix + minute)
		if old, ok := st.Get(key); ok {
			if err := decodeWindow(old, w); err != nil {
				return nil, fmt.Errorf("state %s: %w", key, err)
			}
		}
		st.Put(key, encodeWindow(nil, w))
	}
	if wm >= 0 {
		old, ok := st.Get([]byte(StateWatermarkKey))
		if !ok || len(old) != 8 || int64(binary.LittleEndian.Uint64(old)) < wm {
			st.Put([]byte(StateWatermarkKey), binary.LittleEndian.AppendUint64(nil, uint64(wm)))
		}
	}
	return rejects, nil
}

// Tick closes the windows that are due at now and appends their command
// records to out.
func (s *Stats) Tick(now time.Time, st StateStore, out *event.Builder) error {
	t := now.UnixMilli()
	if v, ok := st.Get([]byte(StateWatermarkKey)); ok && len(v) == 8 {
		t = max(t, int64(binary.LittleEndian.Uint64(v)))
	}
	last := t - s.LatenessMs - 60000 // start of the newest window that may close
	if last < 0 {
		return nil
	}
	cutoff := AppendMinute([]byte(StateWindowPrefix), last)
	type due struct{ key, val []byte }
	var closing []due
	st.Scan([]byte(StateWindowPrefix), func(k, v []byte) bool {
		if bytes.Compare(k, cutoff) > 0 {
			return false
		}
		closing = append(closing, due{bytes.Clone(k), bytes.Clone(v)})
		return true
	})
	var rec []byte
	for _, d := range closing {
		minute := string(d.key[len(StateWindowPrefix):])
		w := newWindow()
		if err := decodeWindow(d.val, w); err != nil {
			return fmt.Errorf("state %s: %w", d.key, err)
		}
		ms, err := parseTS([]byte(minute + ":00Z"))
		if err != nil {
			return fmt.Errorf("state key %s: %w", d.key, err)
		}
		ev := event.Event{Time: ms * int64(time.Millisecond)}
		emit := func(op, key, name string, v int64) {
			rec = AppendCommand(rec[:0], op, key, name, v)
			ev.Key = []byte(key)
			ev.Body = rec
			out.Add(&ev)
		}
		for _, name := range sortedNames(w.dims[dimCategory]) {
			a := w.dims[dimCategory][name]
			emit("hincrby", "rev:cat:"+minute, name, a.cents)
			emit("hincrby", "cnt:cat:"+minute, name, a.orders)
		}
		for _, name := range sortedNames(w.dims[dimCity]) {
			a := w.dims[dimCity][name]
			emit("hincrby", "rev:city:"+minute, name, a.cents)
			emit("hincrby", "cnt:city:"+minute, name, a.orders)
		}
		for _, name := range sortedNames(w.dims[dimSKU]) {
			a := w.dims[dimSKU][name]
			emit("zincrby", "top:sku:"+minute, name, a.units)
			emit("zincrby", "top:sku", name, a.units)
		}
		st.Delete(d.key)
	}
	return nil
}

// AppendCommand appends one command record: hincrby uses "field", zincrby
// "member". name is JSON string content as written in the order line.
func AppendCommand(dst []byte, op, key, name string, v int64) []byte {
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

// encodeWindow writes a window's state value: for each dimension (category,
// city, sku) count:u32 then, by name ascending, name:bytes cents:i64
// orders:i64 units:i64.
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

// decodeWindow adds the aggregates in a window's state value to w.
func decodeWindow(b []byte, w *window) error {
	off := 0
	u32 := func() (uint32, bool) {
		if len(b)-off < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(b[off:])
		off += 4
		return v, true
	}
	for dim := range w.dims {
		n, ok := u32()
		if !ok {
			return fmt.Errorf("window value truncated at byte %d", off)
		}
		for j := uint32(0); j < n; j++ {
			l, ok := u32()
			if !ok || uint64(len(b)-off) < uint64(l)+24 {
				return fmt.Errorf("window value truncated at byte %d", off)
			}
			name := b[off : off+int(l)]
			off += int(l)
			a := agg{
				cents:  int64(binary.LittleEndian.Uint64(b[off:])),
				orders: int64(binary.LittleEndian.Uint64(b[off+8:])),
				units:  int64(binary.LittleEndian.Uint64(b[off+16:])),
			}
			off += 24
			w.add(dim, name, a)
		}
	}
	if off != len(b) {
		return fmt.Errorf("window value has %d trailing bytes", len(b)-off)
	}
	return nil
}

// Totals is what a results store holds after applying order-stats' command
// records: hashes (key → field → integer) and sorted sets (key → member →
// score). It is also the ground truth computed from generated orders.
type Totals struct {
	Hashes map[string]map[string]int64
	ZSets  map[string]map[string]int64
}

// NewTotals returns empty totals.
func NewTotals() *Totals {
	return &Totals{Hashes: map[string]map[string]int64{}, ZSets: map[string]map[string]int64{}}
}

func incr(m map[string]map[string]int64, key, field string, v int64) {
	h := m[key]
	if h == nil {
		h = map[string]int64{}
		m[key] = h
	}
	h[field] += v
}

// AddOrder adds one order the way order-stats accounts for it.
func (t *Totals) AddOrder(o *Order) {
	minute := string(AppendMinute(nil, o.TimeMs))
	rev := o.Qty * o.PriceCents
	incr(t.Hashes, "rev:cat:"+minute, o.Category, rev)
	incr(t.Hashes, "cnt:cat:"+minute, o.Category, 1)
	incr(t.Hashes, "rev:city:"+minute, o.City, rev)
	incr(t.Hashes, "cnt:city:"+minute, o.City, 1)
	incr(t.ZSets, "top:sku:"+minute, o.SKU, o.Qty)
	incr(t.ZSets, "top:sku", o.SKU, o.Qty)
}

// GroundTruth is the totals of the well-formed orders among lines [from, to)
// of g, computed from the generator's orders without parsing any line. keep,
// if not nil, selects the orders counted (e.g. only status "paid", for a
// pipeline with the filter example in front of order-stats).
func GroundTruth(g *Generator, from, to uint64, keep func(*Order) bool) *Totals {
	t := NewTotals()
	for i := from; i < to; i++ {
		if g.Malformed(i) {
			continue
		}
		o := g.Order(i)
		if keep == nil || keep(&o) {
			t.AddOrder(&o)
		}
	}
	return t
}

// ApplyCommand applies one command record of the ops order-stats emits
// (hincrby, zincrby).
func (t *Totals) ApplyCommand(body []byte) error {
	var c struct {
		Op, Key, Field, Member string
		Value                  *int64
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("command record %q: %w", body, err)
	}
	if c.Value == nil || c.Key == "" {
		return fmt.Errorf("command record %q: missing key or value", body)
	}
	switch c.Op {
	case "hincrby":
		incr(t.Hashes, c.Key, c.Field, *c.Value)
	case "zincrby":
		incr(t.ZSets, c.Key, c.Member, *c.Value)
	default:
		return fmt.Errorf("command record %q: op %q is not one order-stats emits", body, c.Op)
	}
	return nil
}

// ApplyBatch applies every command record of an encoded batch.
func (t *Totals) ApplyBatch(batch []byte) error {
	return event.Iterate(batch, func(_ int, e *event.Event) error { return t.ApplyCommand(e.Body) })
}

// Diff lists the differences between t (got) and want, at most max of them;
// nil means equal.
func (t *Totals) Diff(want *Totals, max int) []string {
	var out []string
	cmp := func(kind string, got, want map[string]map[string]int64) {
		for _, key := range union(got, want) {
			for _, f := range union(got[key], want[key]) {
				if g, w := got[key][f], want[key][f]; g != w && len(out) < max {
					out = append(out, fmt.Sprintf("%s %s %s: got %d, want %d", kind, key, f, g, w))
				}
			}
		}
	}
	cmp("hash", t.Hashes, want.Hashes)
	cmp("zset", t.ZSets, want.ZSets)
	return out
}

func union[V any](a, b map[string]V) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
