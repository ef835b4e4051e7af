package orders

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

func TestGeneratorIsDeterministicAndAbout200Bytes(t *testing.T) {
	g1 := NewGenerator(GenConfig{Seed: 7})
	g2 := NewGenerator(GenConfig{Seed: 7})
	g3 := NewGenerator(GenConfig{Seed: 8})
	var a, b, c []byte
	total := 0
	const n = 2000
	for i := uint64(0); i < n; i++ {
		start := len(a)
		a = g1.AppendLine(a, i)
		total += len(a) - start
		b = g2.AppendLine(b, i)
		c = g3.AppendLine(c, i)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two generators with the same config produced different lines")
	}
	if bytes.Equal(a, c) {
		t.Fatal("generators with different seeds produced the same lines")
	}
	if avg := total / n; avg < 180 || avg > 220 {
		t.Fatalf("average line is %d bytes, want about 200", avg)
	}
	// Random access gives the same line as sequential generation.
	if got := g1.AppendLine(nil, 1234); !bytes.Contains(a, got) {
		t.Fatalf("line 1234 generated alone differs: %s", got)
	}
}

func TestGeneratedLinesParseToTheirOrders(t *testing.T) {
	g := NewGenerator(GenConfig{Seed: 1, MalformedEvery: 10})
	var f Fields
	malformed := 0
	for i := uint64(0); i < 5000; i++ {
		line := g.AppendLine(nil, i)
		err := Parse(line, &f)
		if g.Malformed(i) {
			malformed++
			if err == nil {
				t.Fatalf("malformed line %d was accepted: %s", i, line)
			}
			continue
		}
		if err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		o := g.Order(i)
		got := fmt.Sprint(f.TimeMs, string(f.OrderID), f.UserID, string(f.SKU), string(f.Category), f.Qty, f.PriceCents, string(f.City), string(f.Status))
		want := fmt.Sprint(o.TimeMs, o.OrderID, o.UserID, o.SKU, o.Category, o.Qty, o.PriceCents, o.City, o.Status)
		if got != want {
			t.Fatalf("line %d parsed to %s, want %s", i, got, want)
		}
	}
	if want := int(g.MalformedCount(5000)); malformed != want || want != 500 {
		t.Fatalf("%d malformed lines, MalformedCount says %d, want 500", malformed, want)
	}
}

func TestParse(t *testing.T) {
	const good = `{"ts":"2026-11-25T12:00:00.123Z","order_id":"o-1","user_id":42,"sku":"sku-17","category":"books","qty":2,"price":12.50,"city":"Hangzhou","status":"paid"}`
	ok := []struct{ name, line, canonical string }{
		{"design example", good, good},
		{"whitespace, CRLF, unknown fields, other order", " {\"status\" : \"paid\", \"x\":{\"a\":[1,2,{\"b\":null}]},\"city\":\"Hangzhou\",\"price\":\"12.5\",\"qty\":2,\"category\":\"books\",\"sku\":\"sku-17\",\"user_id\":42,\"order_id\":\"o-1\",\"ts\":\"2026-11-25T12:00:00.1234Z\",\"y\":-1.5e3,\"z\":true}\r\n",
			strings.Replace(good, ".123Z", ".123Z", 1)},
		{"no fraction, integer price, escapes kept", `{"ts":"2026-11-25T12:00:00Z","order_id":"o-1","user_id":0,"sku":"s\"1","category":"b\u00e9","qty":1,"price":3,"city":"X","status":"paid"}`,
			`{"ts":"2026-11-25T12:00:00.000Z","order_id":"o-1","user_id":0,"sku":"s\"1","category":"b\u00e9","qty":1,"price":3.00,"city":"X","status":"paid"}`},
	}
	for _, tc := range ok {
		var f Fields
		if err := Parse([]byte(tc.line), &f); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.name == "whitespace, CRLF, unknown fields, other order" {
			tc.canonical = good
		}
		if got := string(AppendCanonical(nil, &f)); got != tc.canonical {
			t.Errorf("%s: canonical\n got %s\nwant %s", tc.name, got, tc.canonical)
		}
	}
	bad := []struct{ edit, reason string }{
		{`garbage`, "not a JSON object"},
		{good[:60], "truncated"},
		{strings.Replace(good, `"qty":2`, `"qty":"2"`, 1), "field qty is not an integer"},
		{strings.Replace(good, `"qty":2`, `"qty":0`, 1), "field qty is out of range"},
		{strings.Replace(good, `"qty":2`, `"qty":2.5`, 1), "field qty is not an integer"},
		{strings.Replace(good, `"price":12.50`, `"price":12.505`, 1), "field price has more than two decimals"},
		{strings.Replace(good, `"price":12.50`, `"price":-1`, 1), "field price is not a non-negative decimal"},
		{strings.Replace(good, `"price":12.50`, `"price":1e3`, 1), "field price is not a non-negative decimal"},
		{strings.Replace(good, `"price":12.50`, `"price":12.`, 1), "field price is not a non-negative decimal"},
		{strings.Replace(good, `"category":"books"`, `"category":""`, 1), "field category is empty"},
		{strings.Replace(good, `"category":"books"`, `"category":7`, 1), "field category is not a string"},
		{strings.Replace(good, `"city":"Hangzhou",`, ``, 1), "missing field city"},
		{strings.Replace(good, `"city":"Hangzhou"`, `"city":"a","city":"b"`, 1), "duplicate field city"},
		{strings.Replace(good, `2026-11-25T12:00:00.123Z`, `2026-02-30T12:00:00Z`, 1), "field ts is not a UTC time like 2026-11-25T12:00:00.123Z"},
		{strings.Replace(good, `2026-11-25T12:00:00.123Z`, `2026-11-25T12:00:00+08:00`, 1), "field ts is not a UTC time like 2026-11-25T12:00:00.123Z"},
		{strings.Replace(good, `"sku-17"`, `"sku\q"`, 1), "invalid escape in a string"},
		{strings.Replace(good, `"sku-17"`, "\"sku\x01\"", 1), "control character in a string"},
		{good + `x`, "trailing bytes after the object"},
		{strings.Replace(good, `,"city"`, ` "city"`, 1), "expected ',' or '}' after field price"},
	}
	for _, tc := range bad {
		var f Fields
		err := Parse([]byte(tc.edit), &f)
		if err == nil || err.Error() != tc.reason {
			t.Errorf("Parse(%s) = %v, want %q", tc.edit, err, tc.reason)
		}
	}
}

func TestAppendMinute(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 11, 25, 12, 7, 30, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 1, 0, 0, time.UTC),
	} {
		if got, want := string(AppendMinute(nil, tm.UnixMilli())), tm.Format("2006-01-02T15:04"); got != want {
			t.Errorf("AppendMinute(%v) = %s, want %s", tm, got, want)
		}
		ms, err := parseTS([]byte(tm.Format("2006-01-02T15:04:05.000Z")))
		if err != nil || ms != tm.UnixMilli() {
			t.Errorf("parseTS(%v) = %d, %v; want %d", tm, ms, err, tm.UnixMilli())
		}
	}
}

// batches encodes lines [from, to) of g into batches of size n.
func batches(g *Generator, from, to uint64, n int) [][]byte {
	var out [][]byte
	var b event.Builder
	for i := from; i < to; i++ {
		b.Add(&event.Event{Time: int64(i), Body: g.AppendLine(nil, i)})
		if b.Len() == n || i == to-1 {
			out = append(out, bytes.Clone(b.Bytes()))
			b.Reset()
		}
	}
	return out
}

func TestStatsMatchesGroundTruth(t *testing.T) {
	g := NewGenerator(GenConfig{Seed: 3, MalformedEvery: 97, Step: 7 * time.Millisecond})
	const n = 30000 // 3.5 minutes of orders
	st := NewMemState()
	s := &Stats{LatenessMs: 2000}
	got := NewTotals()
	var out event.Builder
	rejected := 0
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for k, b := range batches(g, 0, n, 1000) {
		rj, err := s.Process(b, st)
		if err != nil {
			t.Fatal(err)
		}
		rejected += len(rj)
		// A tick with a wall clock far behind the data: windows close by the
		// watermark only.
		out.Reset()
		if err := s.Tick(start.Add(-time.Hour+time.Duration(k)*time.Second), st, &out); err != nil {
			t.Fatal(err)
		}
		if err := got.ApplyBatch(out.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if open := st.Len(); open < 2 {
		t.Fatalf("%d state keys before the final tick, want the last window(s) still open", open)
	}
	out.Reset()
	if err := s.Tick(start.Add(time.Hour), st, &out); err != nil {
		t.Fatal(err)
	}
	if err := got.ApplyBatch(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if want := int(g.MalformedCount(n)); rejected != want {
		t.Fatalf("%d rejects, want %d", rejected, want)
	}
	if d := got.Diff(GroundTruth(g, 0, n, nil), 5); d != nil {
		t.Fatalf("totals differ from the ground truth:\n%s", strings.Join(d, "\n"))
	}
	if st.Len() != 1 { // only the watermark remains
		t.Fatalf("%d state keys after closing every window, want 1", st.Len())
	}
}

func TestStatsLateOrderReopensWindow(t *testing.T) {
	g := NewGenerator(GenConfig{Seed: 4, Step: time.Second})
	st := NewMemState()
	s := &Stats{}
	got := NewTotals()
	far := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var out event.Builder
	for _, rng := range [][2]uint64{{0, 100}, {10, 20}} { // 10..19 arrive twice, the second time late
		for _, b := range batches(g, rng[0], rng[1], 30) {
			if _, err := s.Process(b, st); err != nil {
				t.Fatal(err)
			}
		}
		out.Reset()
		if err := s.Tick(far, st, &out); err != nil {
			t.Fatal(err)
		}
		if err := got.ApplyBatch(out.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	want := GroundTruth(g, 0, 100, nil)
	for i := uint64(10); i < 20; i++ {
		o := g.Order(i)
		want.AddOrder(&o)
	}
	if d := got.Diff(want, 5); d != nil {
		t.Fatalf("late orders not counted exactly:\n%s", strings.Join(d, "\n"))
	}
}

func TestStatsOutputIsDeterministic(t *testing.T) {
	g := NewGenerator(GenConfig{Seed: 5, MalformedEvery: 13})
	run := func() []byte {
		st := NewMemState()
		s := &Stats{}
		var out event.Builder
		for _, b := range batches(g, 0, 20000, 500) {
			if _, err := s.Process(b, st); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Tick(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), st, &out); err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(out.Bytes())
	}
	a, b := run(), run()
	if !bytes.Equal(a, b) {
		t.Fatal("two runs over the same batches and ticks gave different output")
	}
	var first event.Event
	evs, err := event.DecodeBatch(nil, a)
	if err != nil || len(evs) == 0 {
		t.Fatalf("decode output: %v (%d events)", err, len(evs))
	}
	first = evs[0]
	if want := `{"op":"hincrby","key":"rev:cat:2026-11-25T12:00","field":"beauty","value":`; !bytes.HasPrefix(first.Body, []byte(want)) || string(first.Key) != "rev:cat:2026-11-25T12:00" {
		t.Fatalf("first record %s key %s, want prefix %s", first.Body, first.Key, want)
	}
}

func TestNormalise(t *testing.T) {
	g := NewGenerator(GenConfig{Seed: 6, MalformedEvery: 5})
	var out event.Builder
	in := batches(g, 0, 50, 50)[0]
	rj, err := Normalise(in, &out)
	if err != nil || len(rj) != 10 || rj[0].Index != 4 {
		t.Fatalf("Normalise: %v, rejects %v", err, rj)
	}
	evs, err := event.DecodeBatch(nil, out.Bytes())
	if err != nil || len(evs) != 40 {
		t.Fatalf("decode: %v, %d events", err, len(evs))
	}
	o := g.Order(0)
	if string(evs[0].Key) != o.Category || evs[0].Time != o.TimeMs*1e6 {
		t.Fatalf("event 0 key %q time %d, want %q %d", evs[0].Key, evs[0].Time, o.Category, o.TimeMs*1e6)
	}
}

func FuzzParse(f *testing.F) {
	g := NewGenerator(GenConfig{Seed: 9, MalformedEvery: 2})
	for i := uint64(0); i < 16; i++ {
		f.Add(g.AppendLine(nil, i))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var a, b Fields
		if Parse(line, &a) != nil {
			return
		}
		canon := AppendCanonical(nil, &a)
		if err := Parse(canon, &b); err != nil {
			t.Fatalf("canonical form %s of %q does not parse: %v", canon, line, err)
		}
		if again := AppendCanonical(nil, &b); !bytes.Equal(canon, again) {
			t.Fatalf("canonical form is not stable: %s then %s", canon, again)
		}
	})
}

func FuzzDecodeWindow(f *testing.F) {
	w := newWindow()
	w.add(dimCategory, []byte("books"), agg{1, 2, 3})
	w.add(dimSKU, []byte("sku-1"), agg{4, 5, 6})
	f.Add(encodeWindow(nil, w))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := newWindow()
		if decodeWindow(b, w) != nil {
			return
		}
		w2 := newWindow()
		if err := decodeWindow(encodeWindow(nil, w), w2); err != nil {
			t.Fatalf("re-encoded window does not decode: %v", err)
		}
	})
}

func TestWriteLines(t *testing.T) {
	g := NewGenerator(GenConfig{Seed: 10, MalformedEvery: 100})
	var buf bytes.Buffer
	if err := g.WriteLines(&buf, 5, 12000); err != nil {
		t.Fatal(err)
	}
	if want := g.AppendLines(nil, 5, 12000); !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("WriteLines and AppendLines disagree")
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 12000-5 {
		t.Fatalf("%d lines, want %d", n, 12000-5)
	}
}
