package sluice

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
)

// result is a decoded sdk/ABI.md §5 result, for assertions.
type result struct {
	status   uint32
	message  string
	position string
	events   []event.Event
	rejects  []string // "index:reason"
}

func decodeResult(t testing.TB, b []byte) result {
	t.Helper()
	r := batchReader{buf: b}
	var res result
	var ok bool
	if res.status, ok = r.u32(); !ok {
		t.Fatalf("result of %d bytes has no status", len(b))
	}
	m, ok1 := r.bytes()
	p, ok2 := r.bytes()
	if !ok1 || !ok2 {
		t.Fatal("result: message or position runs past the end")
	}
	res.message, res.position = string(m), string(p)
	rest := b[r.off:]
	n, err := event.Count(rest)
	if err != nil {
		t.Fatal(err)
	}
	// Find the end of the batch by decoding it event by event.
	br := batchReader{}
	if err := br.reset(rest); err != nil {
		t.Fatal(err)
	}
	var e Event
	for i := 0; i < n; i++ {
		more, err := br.next(&e)
		if err != nil || !more {
			t.Fatalf("result batch event %d: %v", i, err)
		}
	}
	res.events, err = event.DecodeBatch(nil, rest[:br.off])
	if err != nil {
		t.Fatal(err)
	}
	rr := batchReader{buf: rest, off: br.off}
	nr, ok := rr.u32()
	if !ok {
		t.Fatal("result has no reject count")
	}
	for i := uint32(0); i < nr; i++ {
		idx, ok1 := rr.u32()
		reason, ok2 := rr.bytes()
		if !ok1 || !ok2 {
			t.Fatalf("reject %d runs past the end", i)
		}
		res.rejects = append(res.rejects, fmt.Sprintf("%d:%s", idx, reason))
	}
	if rr.off != len(rest) {
		t.Fatalf("%d trailing bytes after the result", len(rest)-rr.off)
	}
	return res
}

// testBolt exercises the per-event API: echo with headers, reject, fail,
// retry, panic, forward.
type testBolt struct{ ticks int }

func (b *testBolt) Init(cfg *Config) error {
	if cfg.String("fail", "") == "yes" {
		return errors.New("init refused")
	}
	return nil
}

func (b *testBolt) Process(e *Event, out *Output) error {
	switch s := string(e.Body); {
	case strings.HasPrefix(s, "reject:"):
		return Reject(s[7:])
	case strings.HasPrefix(s, "fail:"):
		return errors.New(s[5:])
	case strings.HasPrefix(s, "retry:"):
		return Retry(s[6:])
	case s == "panic":
		panic("boom")
	case s == "forward":
		out.Forward(e)
	default:
		out.Emit(e.Time, e.Key, bytes.ToUpper(e.Body))
		out.CopyHeaders(e)
		out.AddHeaderString("x", "y")
		out.AddHeader("z", []byte("w"))
	}
	return nil
}

func (b *testBolt) Tick(now int64, out *Output) error {
	b.ticks++
	out.EmitString(now, "tick", fmt.Sprint(b.ticks))
	return nil
}

func newGuest(t *testing.T, p Plugin, cfg []byte) *guest {
	t.Helper()
	registered = p
	t.Cleanup(func() { registered = nil })
	g := &guest{}
	if cfg == nil {
		cfg = configBytes()
	}
	res := decodeResult(t, g.init(cfg))
	if res.status != statusOK {
		t.Fatalf("init: %d %q", res.status, res.message)
	}
	return g
}

func configBytes(kv ...string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(kv)/2))
	for _, s := range kv {
		b = appendString(b, s)
	}
	return b
}

func TestProcessEchoRejectForward(t *testing.T) {
	g := newGuest(t, &testBolt{}, nil)
	in := event.AppendBatch(nil, []event.Event{
		{Time: 1, Key: []byte("k"), Body: []byte("abc"), Headers: []event.Header{{Name: "h", Value: "v"}}},
		{Time: 2, Body: []byte("reject:bad")},
		{Time: 3, Body: []byte("forward"), Headers: []event.Header{{Name: "keep", Value: "me"}}},
		{Time: 4, Body: []byte("reject:")},
	})
	res := decodeResult(t, g.process(in))
	if res.status != statusOK {
		t.Fatalf("status %d %q", res.status, res.message)
	}
	want := []event.Event{
		{Time: 1, Key: []byte("k"), Body: []byte("ABC"), Headers: []event.Header{{Name: "h", Value: "v"}, {Name: "x", Value: "y"}, {Name: "z", Value: "w"}}},
		{Time: 3, Body: []byte("forward"), Headers: []event.Header{{Name: "keep", Value: "me"}}},
	}
	if fmt.Sprint(res.events) != fmt.Sprint(want) {
		t.Fatalf("events\n got %+v\nwant %+v", res.events, want)
	}
	if fmt.Sprint(res.rejects) != "[1:bad 3:]" {
		t.Fatalf("rejects %v", res.rejects)
	}
}

func TestProcessFailRetryPanic(t *testing.T) {
	g := newGuest(t, &testBolt{}, nil)
	for _, tc := range []struct {
		body   string
		status uint32
		msg    string
	}{
		{"fail:it broke", statusError, "it broke"},
		{"retry:later", statusRetry, "later"},
		{"panic", statusError, "panic in *sluice.testBolt.Process: boom"},
	} {
		in := event.AppendBatch(nil, []event.Event{{Body: []byte("ok first")}, {Body: []byte("reject:r")}, {Body: []byte(tc.body)}})
		res := decodeResult(t, g.process(in))
		if res.status != tc.status || res.message != tc.msg || len(res.events) != 0 || len(res.rejects) != 0 {
			t.Errorf("%s: got %+v, want status %d %q with no events or rejects", tc.body, res, tc.status, tc.msg)
		}
	}
	// Still usable afterwards.
	res := decodeResult(t, g.process(event.AppendBatch(nil, []event.Event{{Body: []byte("x")}})))
	if res.status != statusOK || len(res.events) != 1 {
		t.Fatalf("after failures: %+v", res)
	}
}

func TestLongMessageMovesTheResult(t *testing.T) {
	g := newGuest(t, &testBolt{}, nil)
	long := strings.Repeat("m", 3*headroom)
	res := decodeResult(t, g.process(event.AppendBatch(nil, []event.Event{{Body: []byte("fail:" + long)}})))
	if res.status != statusError || res.message != long {
		t.Fatalf("long message: status %d, %d bytes", res.status, len(res.message))
	}
}

func TestMalformedBatchIsAnErrorResult(t *testing.T) {
	g := newGuest(t, &testBolt{}, nil)
	good := event.AppendBatch(nil, []event.Event{{Body: []byte("a")}, {Body: []byte("b")}})
	for name, in := range map[string][]byte{
		"short":    {1, 0},
		"count":    {9, 0, 0, 0},
		"truncate": good[:len(good)-1],
		"trailing": append(append([]byte{}, good...), 0),
	} {
		res := decodeResult(t, g.process(in))
		if res.status != statusError || !strings.Contains(res.message, "malformed batch") {
			t.Errorf("%s: %+v, want a malformed-batch error", name, res)
		}
	}
}

func TestInitErrorsAndOrder(t *testing.T) {
	registered = &testBolt{}
	t.Cleanup(func() { registered = nil })
	g := &guest{}
	if res := decodeResult(t, g.process(event.AppendBatch(nil, nil))); res.status != statusError || !strings.Contains(res.message, "before a successful sluice_init") {
		t.Fatalf("process before init: %+v", res)
	}
	if res := decodeResult(t, g.init(configBytes("fail", "yes"))); res.status != statusError || res.message != "init refused" {
		t.Fatalf("failing init: %+v", res)
	}
	if res := decodeResult(t, g.init([]byte{1, 0, 0, 0, 9})); res.status != statusError || !strings.Contains(res.message, "malformed config") {
		t.Fatalf("bad config: %+v", res)
	}
	registered = nil
	if res := decodeResult(t, g.init(configBytes())); res.status != statusError || !strings.Contains(res.message, "no plugin registered") {
		t.Fatalf("nothing registered: %+v", res)
	}
}

func TestWrongKindAndTick(t *testing.T) {
	g := newGuest(t, &testBolt{}, nil)
	if res := decodeResult(t, g.write(event.AppendBatch(nil, nil))); res.status != statusError || !strings.Contains(res.message, "not a sink") {
		t.Fatalf("write on a bolt: %+v", res)
	}
	if res := decodeResult(t, g.poll(10)); res.status != statusError || !strings.Contains(res.message, "not a source") {
		t.Fatalf("poll on a bolt: %+v", res)
	}
	res := decodeResult(t, g.tick(99))
	if res.status != statusOK || len(res.events) != 1 || res.events[0].Time != 99 || string(res.events[0].Body) != "1" {
		t.Fatalf("tick: %+v", res)
	}
}

type testSource struct {
	next, total int
	opened      []string
	acked       []string
}

func (s *testSource) Init(*Config) error { return nil }
func (s *testSource) Open(resume []byte) error {
	s.opened = append(s.opened, fmt.Sprintf("%q", resume))
	if resume != nil {
		fmt.Sscan(string(resume), &s.next)
	}
	return nil
}
func (s *testSource) Poll(max int, out *Output) ([]byte, error) {
	for n := 0; n < max && s.next < s.total; n++ {
		out.EmitString(int64(s.next), "", fmt.Sprint("e", s.next))
		s.next++
	}
	return []byte(fmt.Sprint(s.next)), nil
}
func (s *testSource) Ack(pos []byte) error {
	s.acked = append(s.acked, string(pos))
	return nil
}

func TestSourceOpenPollAck(t *testing.T) {
	src := &testSource{total: 3}
	g := newGuest(t, src, nil)
	if res := decodeResult(t, g.ack([]byte("1"))); res.status != statusOK {
		t.Fatal(res)
	}
	res := decodeResult(t, g.poll(5))
	if res.status != statusOK || res.position != "3" || len(res.events) != 2 || string(res.events[0].Body) != "e1" {
		t.Fatalf("poll: %+v", res)
	}
	g.ack([]byte("3"))
	if fmt.Sprint(src.opened, src.acked) != `["1"] [3]` {
		t.Fatalf("open %v ack %v", src.opened, src.acked)
	}
	// A long position takes the slow path and survives intact.
	long := strings.Repeat("p", 2*headroom)
	src2 := &longPosSource{pos: long}
	g2 := newGuest(t, src2, nil)
	g2.ack(nil)
	if res := decodeResult(t, g2.poll(1)); res.position != long || len(res.events) != 1 {
		t.Fatalf("long position: %d bytes, %d events", len(res.position), len(res.events))
	}
}

type longPosSource struct{ pos string }

func (s *longPosSource) Init(*Config) error   { return nil }
func (s *longPosSource) Open([]byte) error    { return nil }
func (s *longPosSource) Ack(pos []byte) error { return nil }
func (s *longPosSource) Poll(max int, out *Output) ([]byte, error) {
	out.EmitString(1, "k", "v")
	return []byte(s.pos), nil
}

type overPoll struct{ longPosSource }

func (s *overPoll) Poll(max int, out *Output) ([]byte, error) {
	for i := 0; i <= max; i++ {
		out.EmitString(1, "", "x")
	}
	return nil, nil
}

func TestPollMoreThanAskedIsAnError(t *testing.T) {
	g := newGuest(t, &overPoll{}, nil)
	g.ack(nil)
	if res := decodeResult(t, g.poll(2)); res.status != statusError || !strings.Contains(res.message, "more than the 2") {
		t.Fatalf("%+v", res)
	}
}

type testSink struct {
	got     []string
	flushes int
	failOn  string
}

func (s *testSink) Init(*Config) error { return nil }
func (s *testSink) Write(e *Event) error {
	if string(e.Body) == "bad" {
		return Reject("bad body")
	}
	if string(e.Body) == "down" {
		return Retry("backend down")
	}
	s.got = append(s.got, string(e.Body))
	return nil
}
func (s *testSink) Flush() error {
	s.flushes++
	if s.failOn != "" {
		return Retry(s.failOn)
	}
	return nil
}

func TestSinkWriteFlush(t *testing.T) {
	sink := &testSink{}
	g := newGuest(t, sink, nil)
	res := decodeResult(t, g.write(event.AppendBatch(nil, []event.Event{{Body: []byte("a")}, {Body: []byte("bad")}, {Body: []byte("b")}})))
	if res.status != statusOK || fmt.Sprint(res.rejects) != "[1:bad body]" || fmt.Sprint(sink.got) != "[a b]" || sink.flushes != 1 {
		t.Fatalf("write: %+v got %v flushes %d", res, sink.got, sink.flushes)
	}
	res = decodeResult(t, g.write(event.AppendBatch(nil, []event.Event{{Body: []byte("down")}})))
	if res.status != statusRetry || res.message != "backend down" {
		t.Fatalf("retry: %+v", res)
	}
	sink.failOn = "flush failed"
	res = decodeResult(t, g.write(event.AppendBatch(nil, []event.Event{{Body: []byte("c")}})))
	if res.status != statusRetry || res.message != "flush failed" {
		t.Fatalf("flush retry: %+v", res)
	}
}

func TestConfig(t *testing.T) {
	c, err := parseConfig(configBytes("", `{"a":1}`, "a", "1", "b", "true", "d", "1m", "f", "0.5", "s", "text"))
	if err != nil {
		t.Fatal(err)
	}
	if c.JSON() != `{"a":1}` || fmt.Sprint(c.Keys()) != "[a b d f s]" || c.String("s", "") != "text" || c.String("zz", "def") != "def" {
		t.Fatalf("config %+v", c)
	}
	if n, err := c.Int("a", 0); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if _, err := c.Int("s", 0); err == nil || !strings.Contains(err.Error(), `config "s"`) {
		t.Fatalf("Int of text: %v", err)
	}
	if b, err := c.Bool("b", false); !b || err != nil {
		t.Fatal(b, err)
	}
	if d, err := c.Duration("d", 0); d.Minutes() != 1 || err != nil {
		t.Fatal(d, err)
	}
	if f, err := c.Float("f", 0); f != 0.5 || err != nil {
		t.Fatal(f, err)
	}
	// Unsorted input is sorted rather than refused.
	c, err = parseConfig(configBytes("z", "1", "a", "2"))
	if err != nil || c.String("a", "") != "2" || c.String("z", "") != "1" {
		t.Fatalf("unsorted: %v %+v", err, c)
	}
}

func TestHTTPEncoding(t *testing.T) {
	req := appendHTTPRequest(nil, &HTTPRequest{Method: "POST", URL: "http://h:1/x", Headers: []Header{{"a", "b"}}, Body: []byte("body")})
	want := appendString(appendString(nil, "POST"), "http://h:1/x")
	want = binary.LittleEndian.AppendUint32(want, 1)
	want = appendString(appendString(want, "a"), "b")
	want = appendString(want, "body")
	if !bytes.Equal(req, want) {
		t.Fatalf("request %x, want %x", req, want)
	}
	resp := binary.LittleEndian.AppendUint32(nil, 201)
	resp = binary.LittleEndian.AppendUint32(resp, 1)
	resp = appendString(appendString(resp, "Content-Type"), "text/plain")
	resp = appendString(resp, "hi")
	r, err := parseHTTPResponse(resp)
	if err != nil || r.Status != 201 || string(r.Body) != "hi" || fmt.Sprint(r.Headers) != "[{Content-Type text/plain}]" {
		t.Fatalf("response %+v %v", r, err)
	}
	if _, err := parseHTTPResponse(resp[:len(resp)-1]); err == nil {
		t.Fatal("truncated response accepted")
	}
}

func TestEachPair(t *testing.T) {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	b = appendString(appendString(b, "k1"), "v1")
	b = appendString(appendString(b, "k2"), "v2")
	var got []string
	if err := eachPair(b, func(k, v []byte) bool { got = append(got, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[k1=v1 k2=v2]" {
		t.Fatal(got)
	}
	if err := eachPair(b[:len(b)-1], func(k, v []byte) bool { return true }); err == nil {
		t.Fatal("truncated scan answer accepted")
	}
}

func TestEventHeader(t *testing.T) {
	in := event.AppendBatch(nil, []event.Event{{Body: []byte("x"), Headers: []event.Header{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}})
	var r batchReader
	var e Event
	if err := r.reset(in); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.next(&e); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if v, ok := e.Header("b"); !ok || string(v) != "2" {
		t.Fatalf("Header(b) = %q %v", v, ok)
	}
	if _, ok := e.Header("c"); ok {
		t.Fatal("Header(c) found")
	}
	var names []string
	e.EachHeader(func(n, v []byte) bool { names = append(names, string(n)); return true })
	if fmt.Sprint(names) != "[a b]" || e.HeaderCount() != 2 {
		t.Fatal(names)
	}
}

// TestProcessDoesNotAllocatePerEvent: once buffers have grown, a batch of
// echoes allocates nothing.
func TestProcessDoesNotAllocatePerEvent(t *testing.T) {
	g := newGuest(t, &forwarder{}, nil)
	evs := make([]event.Event, 1000)
	for i := range evs {
		evs[i] = event.Event{Time: int64(i), Body: bytes.Repeat([]byte("x"), 200)}
	}
	in := event.AppendBatch(nil, evs)
	g.process(in)
	allocs := testing.AllocsPerRun(20, func() { g.process(in) })
	if allocs > 2 { // the method value bound per batch, at most
		t.Fatalf("%.1f allocations per batch of 1000 events", allocs)
	}
}

type forwarder struct{}

func (forwarder) Init(*Config) error { return nil }
func (forwarder) Process(e *Event, out *Output) error {
	out.Emit(e.Time, e.Key, e.Body)
	return nil
}

func BenchmarkProcess1000x200B(b *testing.B) {
	registered = forwarder{}
	defer func() { registered = nil }()
	g := &guest{}
	g.init(configBytes())
	evs := make([]event.Event, 1000)
	for i := range evs {
		evs[i] = event.Event{Time: int64(i), Body: bytes.Repeat([]byte("x"), 200)}
	}
	in := event.AppendBatch(nil, evs)
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.process(in)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// flushingBolt gathers per batch and flushes after the last event.
type flushingBolt struct {
	seen, flushed int
	fail          bool
}

func (b *flushingBolt) Init(*Config) error { return nil }
func (b *flushingBolt) Process(e *Event, out *Output) error {
	b.seen++
	return nil
}
func (b *flushingBolt) Flush() error {
	b.flushed++
	if b.fail {
		return errors.New("flush failed")
	}
	return nil
}

func TestBoltFlushAfterEachBatch(t *testing.T) {
	fb := &flushingBolt{}
	g := newGuest(t, fb, nil)
	in := event.AppendBatch(nil, []event.Event{{Body: []byte("a")}, {Body: []byte("b")}})
	if res := decodeResult(t, g.process(in)); res.status != statusOK || fb.seen != 2 || fb.flushed != 1 {
		t.Fatalf("%+v seen %d flushed %d", res, fb.seen, fb.flushed)
	}
	fb.fail = true
	if res := decodeResult(t, g.process(in)); res.status != statusError || res.message != "flush failed" {
		t.Fatalf("failing flush: %+v", res)
	}
}

// TestBuffersGrowPastBigBuffer: outputs much larger than the input (so the
// pre-sizing does not cover them) and inputs that grow across bigBuffer
// come out intact.
func TestBuffersGrowPastBigBuffer(t *testing.T) {
	g := newGuest(t, &testBolt{}, nil)
	for _, n := range []int{10, 5000, 40000} {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = event.Event{Time: int64(i), Body: bytes.Repeat([]byte("ab"), 20)}
		}
		in := event.AppendBatch(nil, evs)
		buf := g.buffer(len(in))
		copy(buf, in)
		res := decodeResult(t, g.process(buf))
		if res.status != statusOK || len(res.events) != n {
			t.Fatalf("%d events: status %d %q, %d out", n, res.status, res.message, len(res.events))
		}
		last := res.events[n-1]
		if last.Time != int64(n-1) || string(last.Body) != strings.Repeat("AB", 20) || len(last.Headers) != 2 {
			t.Fatalf("%d events: last output %+v", n, last)
		}
	}
}
