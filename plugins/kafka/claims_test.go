package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/internal/testkafka"
	"github.com/sluicehq/sluice/internal/testredis"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

// newClaimingSource opens a source with the claim ledger on redisAddr whose
// stage directory (and so ledger owner id) is dir. It leaves the group on
// Close (no static membership), so the partition moves at once: the kill
// -9 of an agent that then stays down past its session timeout.
func newClaimingSource(t testing.TB, dir string, brokers []string, redisAddr string, resume []byte) *Source {
	t.Helper()
	cfg := DefaultSourceConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = brokers, []string{"t"}, "g"
	cfg.MaxWait = units.Of(20 * time.Millisecond)
	cfg.SessionTimeout = units.Of(2 * time.Second)
	cfg.HeartbeatInterval = units.Of(100 * time.Millisecond)
	cfg.StaticMembership = false
	cfg.Claims.Addrs = []string{redisAddr}
	s, err := NewSource(cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), resume); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func bodies(t testing.TB, batch []byte) []string {
	t.Helper()
	var out []string
	if len(batch) == 0 {
		return nil
	}
	if err := event.Iterate(batch, func(i int, e *event.Event) error {
		out = append(out, string(e.Body))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// readOne reads until a batch with events arrives and returns its bodies
// and position.
func readOne(t testing.TB, src *Source) ([]string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		sb, err := src.Read(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodies(t, sb.Events); len(b) > 0 {
			return b, append([]byte(nil), sb.Position...)
		}
	}
}

// The window of docs/adr/0007: member A appends a batch durably and is
// killed before its group commit; it had also claimed the next batch and
// was killed before appending it. The partition moves to B, which fetches
// from the older commit. With the ledger B passes on neither batch (A
// claimed both), and A, restarted, puts back the one it had not appended:
// every order exactly once.
func TestClaimLedgerClosesTheRebalanceWindow(t *testing.T) {
	brokers := testkafka.Start(t, 1, "t")
	rs := testredis.Start(t)
	sink := newSink(t, brokers, "t", nil)
	ctx := context.Background()
	if _, err := sink.Write(ctx, orders(0, 40), pipeline.Fence{Stream: "a", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := newClaimingSource(t, dirA, brokers, rs.Addr, nil)
	first, pos1 := readOne(t, a)
	if err := a.Ack(ctx, pos1); err != nil { // durable and committed
		t.Fatal(err)
	}
	durable, pos2 := readOne(t, a)  // durable, not committed
	claimedOnly, _ := readOne(t, a) // claimed, never appended
	a.Close(ctx)

	seenByA := map[string]bool{}
	for _, b := range append(append(append([]string{}, first...), durable...), claimedOnly...) {
		seenByA[b] = true
	}
	var wantB []string
	for i := 0; i < 40; i++ {
		if o := fmt.Sprintf("order-%d", i); !seenByA[o] {
			wantB = append(wantB, o)
		}
	}
	b := newClaimingSource(t, dirB, brokers, rs.Addr, nil)
	var gotB []string
	if len(wantB) > 0 {
		gotB, _ = readN(t, b, len(wantB))
	}
	if strings.Join(gotB, ",") != strings.Join(wantB, ",") {
		t.Fatalf("the new owner passed on %q, want only %q (the rest was claimed by the killed member)", gotB, wantB)
	}

	a2 := newClaimingSource(t, dirA, brokers, rs.Addr, pos2)
	got, _ := readOne(t, a2)
	if strings.Join(got, ",") != strings.Join(claimedOnly, ",") {
		t.Fatalf("restarted member recovered %q, want its claimed batch %q", got, claimedOnly)
	}
	// And the stream goes on, each new order once, whoever owns the partition.
	if _, err := sink.Write(ctx, orders(40, 5), pipeline.Fence{Stream: "a", Offset: 2}); err != nil {
		t.Fatal(err)
	}
	more, _ := readN(t, b, 5)
	sort.Strings(more)
	if strings.Join(more, ",") != "order-40,order-41,order-42,order-43,order-44" {
		t.Fatalf("after the recovery the owner read %q", more)
	}
}

// The ledger's script: the first claimer owns a range, a later one only
// what lies above it, and a claim sent again (reply lost) gets the same
// answer rather than nothing.
func TestClaimScriptOwnsEachOffsetOnce(t *testing.T) {
	rs := testredis.Start(t)
	ctx := context.Background()
	ledger := func(owner string) *claimLedger {
		l, err := newClaimLedger(ClaimsConfig{Addrs: []string{rs.Addr}, KeyPrefix: "c:"}, "g", owner)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.close() })
		return l
	}
	a, b := ledger("a"), ledger("b")
	p0, p1 := topicPart{"t", 0}, topicPart{"t", 1}
	claim := func(l *claimLedger, rs ...claimRange) string {
		los, err := l.claim(ctx, rs)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(los)
	}
	for _, c := range []struct {
		l    *claimLedger
		rs   []claimRange
		want string
	}{
		{a, []claimRange{{p0, 0, 10}, {p1, 100, 110}}, "[0 100]"},
		{b, []claimRange{{p0, 5, 15}}, "[10]"}, // 5..9 are a's
		{a, []claimRange{{p0, 0, 10}}, "[0]"},  // a's claim sent again
		{b, []claimRange{{p0, 0, 10}}, "[15]"}, // all taken: owns nothing
		{b, []claimRange{{p1, 120, 130}}, "[120]"},
		{a, []claimRange{{p1, 110, 125}}, "[130]"},
	} {
		if got := claim(c.l, c.rs...); got != c.want {
			t.Fatalf("%s claims %v: first owned offsets %s, want %s", c.l.owner, c.rs, got, c.want)
		}
	}
	pend, err := a.pending(ctx, []topicPart{p0, p1, {"t", 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(pend[p0].From, pend[p0].To, pend[p1].From, pend[p1].To, len(pend)); got != "0 10 100 110 2" {
		t.Fatalf("a's pending claims: %s", got)
	}
}

func FuzzParsePending(f *testing.F) {
	for _, s := range []string{"0 10", "5 5", "", "10 5", "-1 3", "1e3 4", "1  2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parsePending(s)
		if err == nil && (r.From < 0 || r.To < r.From || fmt.Sprintf("%d %d", r.From, r.To) != s) {
			t.Fatalf("parsePending(%q) = %+v, accepted", s, r)
		}
	})
}

// BenchmarkClaimLedgerCost reads the same 100,000 messages (4 partitions)
// through a source with the claim ledger (one Lua call per batch to a real
// redis-server) and through one without, each as a new group every
// iteration, timing the Reads after the first (the first waits for the
// group join). It reports ratio = time without / time with (1.0: the
// ledger costs nothing) and the ledger's cost per batch.
//
//	go test -run '^$' -bench ClaimLedgerCost -benchtime 5x ./plugins/kafka
func BenchmarkClaimLedgerCost(b *testing.B) {
	brokers := testkafka.Start(b, 4, "t")
	rs := testredis.Start(b)
	sink := newSink(b, brokers, "t", nil)
	const n = 100_000
	for i := 0; i < n; i += 5000 {
		if _, err := sink.Write(context.Background(), orders(i, 5000), pipeline.Fence{Stream: "a", Offset: uint64(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
	readAll := func(claims bool, group string) (time.Duration, int) {
		cfg := DefaultSourceConfig()
		cfg.Brokers, cfg.Topics, cfg.Group = brokers, []string{"t"}, group
		cfg.MaxWait = units.Of(20 * time.Millisecond)
		cfg.StaticMembership = false
		if claims {
			cfg.Claims.Addrs = []string{rs.Addr}
		}
		src, err := NewSource(cfg, b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := src.Open(ctx, nil); err != nil {
			b.Fatal(err)
		}
		defer src.Close(ctx)
		got, batches := 0, 0
		var t0 time.Time
		for got < n {
			sb, err := src.Read(ctx, 2048)
			if err != nil {
				b.Fatal(err)
			}
			c, _ := event.Count(sb.Events)
			if got == 0 && c > 0 {
				t0 = time.Now()
			} else {
				batches++
			}
			got += c
			src.Ack(ctx, sb.Position)
		}
		return time.Since(t0), batches
	}
	var with, without time.Duration
	batches := 0
	for i := 0; i < b.N; i++ {
		d, nb := readAll(true, fmt.Sprint("with-", i))
		with += d
		batches += nb
		d, _ = readAll(false, fmt.Sprint("without-", i))
		without += d
	}
	b.ReportMetric(without.Seconds()/with.Seconds(), "ratio")
	b.ReportMetric(float64((with-without).Microseconds())/float64(max(batches, 1)), "ledger_us/batch")
	b.ReportMetric(float64(n*b.N)/float64(max(batches, 1)), "msgs/batch")
}

// logSignal is an io.Writer for a slog handler that closes seen the first
// time a log line contains want.
type logSignal struct {
	want string
	once sync.Once
	seen chan struct{}
}

func (l *logSignal) Write(p []byte) (int, error) {
	if strings.Contains(string(p), l.want) {
		l.once.Do(func() { close(l.seen) })
	}
	return len(p), nil
}

// Redis down: the batch waits for its claim (nothing passed on unclaimed),
// one log line per attempt, and goes on whole once Redis is back.
func TestClaimLedgerDownMakesTheBatchWait(t *testing.T) {
	brokers := testkafka.Start(t, 1, "t")
	rs := testredis.Start(t)
	sink := newSink(t, brokers, "t", nil)
	ctx := context.Background()
	if _, err := sink.Write(ctx, orders(0, 10), pipeline.Fence{Stream: "a", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	sig := &logSignal{want: "retrying", seen: make(chan struct{})}
	cfg := DefaultSourceConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = brokers, []string{"t"}, "g"
	cfg.MaxWait = units.Of(20 * time.Millisecond)
	cfg.StaticMembership = false
	cfg.Claims.Addrs = []string{rs.Addr}
	src, err := NewSource(cfg, t.TempDir(), slog.New(slog.NewTextHandler(sig, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	// The first Read recovers (nothing pending) and then claims: both need
	// Redis, so it waits inside until Redis is back.
	type result struct {
		got []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var got []string
		for len(got) < 10 {
			sb, err := src.Read(ctx, 100)
			if err != nil {
				done <- result{got, err}
				return
			}
			got = append(got, bodies(t, sb.Events)...)
		}
		done <- result{got, nil}
	}()
	<-sig.seen
	select {
	case r := <-done:
		t.Fatalf("Read returned %q, %v while Redis was down", r.got, r.err)
	default:
	}
	rs.Restart()
	r := <-done
	if r.err != nil || len(r.got) != 10 {
		t.Fatalf("after Redis came back: %d events, %v", len(r.got), r.err)
	}
	claimed, err := goredis.NewClient(&goredis.Options{Addr: rs.Addr}).HGet(ctx, "sluice:claims:{g}:t:0", "claimed").Result()
	if err != nil || claimed != "10" {
		t.Fatalf("ledger claimed = %q, %v; want 10", claimed, err)
	}
}
