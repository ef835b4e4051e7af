package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/internal/testkafka"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

func TestSampleConfigsDecodeAndValidate(t *testing.T) {
	sink := DefaultSinkConfig()
	md, err := toml.Decode(SinkSampleConfig, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("sample_sink.toml has unknown keys: %v", und)
	}
	if err := sink.Validate(); err != nil {
		t.Fatal(err)
	}
	src := DefaultSourceConfig()
	md, err = toml.Decode(SourceSampleConfig, &src)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("sample_source.toml has unknown keys: %v", und)
	}
	if err := src.Validate(); err != nil {
		t.Fatal(err)
	}
	if sink.Topic != "orders" || sink.Compression != "lz4" || src.Group != "analysis" || src.MaxWait.D != 100*time.Millisecond {
		t.Fatalf("samples decoded to %+v / %+v", sink, src)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	sink := DefaultSinkConfig()
	toml.Decode(`
brokers = [""]
version = "banana"
compression = "brotli"
retries = 0
linger = "-1s"
[sasl]
mechanism = "GSSAPI"
`, &sink)
	err := sink.Validate()
	for _, want := range []string{"brokers[0]: is empty", "version:", "topic: is required", `compression: "brotli"`,
		"retries: must be at least 1", `linger: "-1s" is negative`, `sasl.mechanism: "GSSAPI"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sink error lacks %q: %v", want, err)
		}
	}
	src := DefaultSourceConfig()
	toml.Decode(`
start_at = "middle"
heartbeat_interval = "20s"
[sasl]
mechanism = "PLAIN"
`, &src)
	err = src.Validate()
	for _, want := range []string{"topics: at least one", "group: is required", `start_at: "middle"`,
		"heartbeat_interval: must be shorter", "sasl.username: is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("source error lacks %q: %v", want, err)
		}
	}
}

func newSink(t testing.TB, brokers []string, topic string, edit func(*SinkConfig)) *Sink {
	t.Helper()
	cfg := DefaultSinkConfig()
	cfg.Brokers, cfg.Topic, cfg.InstanceID = brokers, topic, "edge1"
	cfg.Linger = units.Of(time.Millisecond)
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewSink(cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func newSource(t testing.TB, brokers []string, topic, group string, resume []byte) *Source {
	t.Helper()
	return newSourceIn(t, t.TempDir(), brokers, topic, group, resume)
}

// newSourceIn opens a source whose stage directory (and so group instance
// id) is dir: the same dir is the same agent restarted.
func newSourceIn(t testing.TB, dir string, brokers []string, topic, group string, resume []byte) *Source {
	t.Helper()
	return newSourceWith(t, dir, brokers, topic, group, resume, nil)
}

// newSourceWith is newSourceIn with the config edited before Open.
func newSourceWith(t testing.TB, dir string, brokers []string, topic, group string, resume []byte, edit func(*SourceConfig)) *Source {
	t.Helper()
	cfg := DefaultSourceConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = brokers, []string{topic}, group
	cfg.MaxWait = units.Of(20 * time.Millisecond)
	cfg.SessionTimeout = units.Of(2 * time.Second)
	cfg.HeartbeatInterval = units.Of(100 * time.Millisecond)
	if edit != nil {
		edit(&cfg)
	}
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

func orders(from, n int) []byte {
	var b event.Builder
	for i := from; i < from+n; i++ {
		b.Add(&event.Event{Time: int64(i+1) * 1e9, Key: []byte(fmt.Sprintf("u%d", i%7)), Body: []byte(fmt.Sprintf("order-%d", i)),
			Headers: []event.Header{{Name: "path", Value: "/var/log/orders.log"}}})
	}
	return append([]byte(nil), b.Bytes()...)
}

// readN reads from src until it has n events, acking each batch like the
// runner does, and returns the bodies and the last position.
func readN(t testing.TB, src *Source, n int) ([]string, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []string
	var pos []byte
	for len(got) < n {
		sb, err := src.Read(ctx, 1000)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(got), n, err)
		}
		if len(sb.Events) > 0 {
			event.Iterate(sb.Events, func(i int, e *event.Event) error {
				got = append(got, string(e.Body))
				return nil
			})
		}
		if sb.Position != nil {
			pos = append(pos[:0], sb.Position...)
			src.Ack(ctx, pos)
		}
	}
	return got, pos
}

func TestSinkAcksAndKcatReadsKeysHeadersEveryCompression(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat not found (Debian package kcat; scripts/test installs it): %v", err)
	}
	codecs := []string{"none", "gzip", "snappy", "lz4", "zstd"}
	brokers := testkafka.Start(t, 2, codecs...)
	for _, codec := range codecs {
		s := newSink(t, brokers, codec, func(c *SinkConfig) { c.Compression = codec })
		rej, err := s.Write(context.Background(), orders(0, 20), pipeline.Fence{Stream: "raw/0/kafka", Offset: 7})
		if err != nil || rej != nil {
			t.Fatalf("%s: rejects %v err %v", codec, rej, err)
		}
		out, err := exec.Command("kcat", "-C", "-b", brokers[0], "-t", codec, "-o", "beginning", "-e", "-q",
			"-f", `%k|%s|%h\n`).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: kcat: %v\n%s", codec, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 20 {
			t.Fatalf("%s: kcat read %d messages, want 20:\n%s", codec, len(lines), out)
		}
		sort.Strings(lines)
		want := "u0|order-0|path=/var/log/orders.log,sluice.producer=edge1:raw/0/kafka,sluice.seq=7.0"
		if lines[0] != want {
			t.Fatalf("%s: first line %q, want %q", codec, lines[0], want)
		}
		if got := storedCodecs(t, brokers, codec); len(got) != 1 || got[0] != compressions[codec] {
			t.Fatalf("%s: record batches stored with codecs %v", codec, got)
		}
	}
}

// storedCodecs fetches the raw record batches of a topic's partitions and
// returns the distinct compression codecs they were written with.
func storedCodecs(t *testing.T, brokers []string, topic string) []sarama.CompressionCodec {
	cl, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[sarama.CompressionCodec]bool{}
	parts, err := cl.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		leader, err := cl.Leader(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 10, MinBytes: 1, MaxBytes: 1 << 20}
		req.AddBlock(topic, p, 0, 1<<20, -1)
		resp, err := leader.Fetch(req)
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range resp.GetBlock(topic, p).RecordsSet {
			if rs.RecordBatch != nil {
				seen[rs.RecordBatch.Codec] = true
			}
		}
	}
	var out []sarama.CompressionCodec
	for c := range seen {
		out = append(out, c)
	}
	return out
}

func TestSinkRejectsMessagesThatCanNeverFit(t *testing.T) {
	brokers := testkafka.Start(t, 1, "t")
	s := newSink(t, brokers, "t", func(c *SinkConfig) { c.MaxMessageBytes = units.Bytes(200) })
	var b event.Builder
	b.Add(&event.Event{Body: []byte("small")})
	b.Add(&event.Event{Body: bytes.Repeat([]byte("x"), 500)})
	b.Add(&event.Event{Body: []byte("small too")})
	rej, err := s.Write(context.Background(), b.Bytes(), pipeline.Fence{Stream: "x", Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Index != 1 || !strings.Contains(rej[0].Reason, "larger than") {
		t.Fatalf("rejects %+v", rej)
	}
	src := newSource(t, brokers, "t", "g", nil)
	got, _ := readN(t, src, 2)
	sort.Strings(got)
	if strings.Join(got, ",") != "small,small too" {
		t.Fatalf("read %q", got)
	}
}

func TestSinkWithKafkaDownFailsTheBatch(t *testing.T) {
	s := newSink(t, []string{"127.0.0.1:1"}, "t", func(c *SinkConfig) { c.DialTimeout = units.Of(200 * time.Millisecond) })
	_, err := s.Write(context.Background(), orders(0, 1), pipeline.Fence{Stream: "x", Offset: 1})
	if err == nil || !strings.Contains(err.Error(), "kafka: connect to [127.0.0.1:1]") {
		t.Fatalf("err = %v", err)
	}
}

func TestSourceDropsCopiesTheSinkSentAgain(t *testing.T) {
	brokers := testkafka.Start(t, 3, "t")
	s := newSink(t, brokers, "t", nil)
	ctx := context.Background()
	// Batch 1 twice (a retry after a partial failure, or a replay after a
	// crash), then batch 2, then batch 1 once more.
	for _, off := range []uint64{1, 1, 2} {
		if _, err := s.Write(ctx, orders(int(off-1)*10, 10), pipeline.Fence{Stream: "raw/0/k", Offset: off}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	src := newSourceIn(t, dir, brokers, "t", "g", nil)
	got, pos := readN(t, src, 20)
	if len(got) != 20 || len(uniq(got)) != 20 {
		t.Fatalf("read %d events, %d distinct", len(got), len(uniq(got)))
	}
	src.Close(ctx)
	// After a restart, the marks come back with the position.
	s.Write(ctx, orders(0, 10), pipeline.Fence{Stream: "raw/0/k", Offset: 1})
	s.Write(ctx, orders(20, 5), pipeline.Fence{Stream: "raw/0/k", Offset: 3})
	src2 := newSourceIn(t, dir, brokers, "t", "g", pos)
	got, _ = readN(t, src2, 5)
	if strings.Join(uniq(got), ",") != "order-20,order-21,order-22,order-23,order-24" {
		t.Fatalf("after restart read %q", got)
	}
}

func TestSourceResumesFromItsOwnPositionNotAnOlderGroupCommit(t *testing.T) {
	brokers := testkafka.Start(t, 2, "t")
	s := newSink(t, brokers, "t", nil)
	ctx := context.Background()
	s.Write(ctx, orders(0, 40), pipeline.Fence{Stream: "a", Offset: 1})
	dir := t.TempDir()
	src := newSourceIn(t, dir, brokers, "t", "g", nil)
	// Read everything but commit only the first batch: as if the agent
	// died after the durable append of the rest and before its commit.
	sb, err := src.Read(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	src.Ack(ctx, append([]byte(nil), sb.Position...))
	n, _ := event.Count(sb.Events)
	var durable []byte
	for n < 40 {
		sb, err := src.Read(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := event.Count(sb.Events)
		n += c
		durable = append(durable[:0], sb.Position...)
	}
	src.Close(ctx)
	s.Write(ctx, orders(40, 5), pipeline.Fence{Stream: "a", Offset: 2})
	src2 := newSourceIn(t, dir, brokers, "t", "g", durable)
	got, _ := readN(t, src2, 5)
	sort.Strings(got)
	if strings.Join(got, ",") != "order-40,order-41,order-42,order-43,order-44" {
		t.Fatalf("resumed read %q, want only the five new orders", got)
	}
}

func TestTwoConsumersInOneGroupSplitThePartitions(t *testing.T) {
	brokers := testkafka.Start(t, 4, "t")
	s := newSink(t, brokers, "t", nil)
	a := newSource(t, brokers, "t", "g", nil)
	b := newSource(t, brokers, "t", "g", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	from := map[*Source]map[int32]bool{a: {}, b: {}}
	count := map[*Source]int{}
	var wg sync.WaitGroup
	for _, src := range []*Source{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				sb, err := src.Read(ctx, 100)
				if err != nil {
					return
				}
				p, _ := decodePosition(sb.Position)
				mu.Lock()
				event.Iterate(sb.Events, func(i int, e *event.Event) error {
					seen[string(e.Body)]++
					count[src]++
					return nil
				})
				for tp := range p.Next {
					from[src][tp.Partition] = true
				}
				mu.Unlock()
				if sb.Position != nil {
					src.Ack(ctx, append([]byte(nil), sb.Position...))
				}
			}
		}()
	}
	// Keep producing until both members have received orders, then
	// check that all were read exactly once.
	produced := 0
	for off := uint64(1); ; off++ {
		if _, err := s.Write(ctx, orders(produced, 40), pipeline.Fence{Stream: "a", Offset: off}); err != nil {
			t.Fatal(err)
		}
		produced += 40
		mu.Lock()
		both := count[a] > 0 && count[b] > 0
		mu.Unlock()
		if both && off > 2 {
			break
		}
		if produced > 400000 {
			t.Fatal("the second member never got a partition")
		}
	}
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == produced {
			break
		}
		time.Sleep(5 * time.Millisecond) // waiting for the readers to catch up; the assertion is on content
	}
	cancel()
	wg.Wait()
	for body, c := range seen {
		if c != 1 {
			t.Errorf("%s read %d times", body, c)
		}
	}
	t.Logf("produced %d; member a read %d from partitions %v, b read %d from %v", produced, count[a], from[a], count[b], from[b])
}

func uniq(s []string) []string {
	m := map[string]bool{}
	var out []string
	for _, x := range s {
		if !m[x] {
			m[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func FuzzDecodePosition(f *testing.F) {
	p := newPosition()
	p.Next[topicPart{"orders", 3}] = 42
	p.Marks[markKey{topicPart{"orders", 3}, "edge1:raw/0/kafka"}] = &mark{7, []span{{0, 3}, {5, 9}}}
	f.Add(p.encode(nil))
	// Version 1: one offset, one mark (batch 7, highest index 2).
	f.Add([]byte{1, 0, 0, 0, 1, 0, 1, 't', 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 42,
		0, 0, 0, 1, 0, 1, 't', 0, 0, 0, 3, 0, 1, 'e', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2})
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePosition(b)
		if err != nil {
			return
		}
		enc := p.encode(nil)
		again, err := decodePosition(enc)
		if err != nil || !bytes.Equal(again.encode(nil), enc) {
			t.Fatalf("re-encoded position does not decode the same: %v", err)
		}
	})
}

func FuzzParseSeq(f *testing.F) {
	f.Add([]byte("7.2"))
	f.Add([]byte("18446744073709551615.4294967295"))
	f.Add([]byte("."))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := parseSeq(b)
		if ok && s.String() != string(b) && !strings.ContainsAny(string(b), "+0") {
			t.Fatalf("%q parsed to %v", b, s)
		}
	})
}

func TestSASLPlainAndSCRAM(t *testing.T) {
	brokers := testkafka.StartWith(t, []kfake.Opt{kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain", "p1"),
		kfake.Superuser("SCRAM-SHA-256", "s256", "p2"),
		kfake.Superuser("SCRAM-SHA-512", "s512", "p3"),
	}, 1, "t")
	for _, c := range []struct{ mech, user, pass string }{
		{"PLAIN", "plain", "p1"}, {"SCRAM-SHA-256", "s256", "p2"}, {"SCRAM-SHA-512", "s512", "p3"},
	} {
		s := newSink(t, brokers, "t", func(cfg *SinkConfig) { cfg.SASL = SASL{Mechanism: c.mech, Username: c.user, Password: c.pass} })
		if _, err := s.Write(context.Background(), orders(0, 1), pipeline.Fence{Stream: c.mech, Offset: 1}); err != nil {
			t.Errorf("%s: %v", c.mech, err)
		}
		bad := newSink(t, brokers, "t", func(cfg *SinkConfig) {
			cfg.SASL = SASL{Mechanism: c.mech, Username: c.user, Password: "wrong"}
		})
		if _, err := bad.Write(context.Background(), orders(0, 1), pipeline.Fence{Stream: c.mech, Offset: 1}); err == nil {
			t.Errorf("%s: a wrong password was accepted", c.mech)
		}
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultSinkConfig()
	cfg.Topic, cfg.InstanceID = "t", "x"
	s, err := NewSink(cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil { // without Open
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, orders(0, 1), pipeline.Fence{}); err == nil {
		t.Fatal("Write without Open succeeded")
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Close(ctx) != nil || s.Close(ctx) != nil {
		t.Fatal("Close twice failed")
	}
	// A source opens while Kafka is unreachable and closes promptly.
	scfg := DefaultSourceConfig()
	scfg.Brokers, scfg.Topics, scfg.Group = []string{"127.0.0.1:1"}, []string{"t"}, "g"
	src, err := NewSource(scfg, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(ctx); err != nil { // without Open
		t.Fatal(err)
	}
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := src.Open(ctx, nil); err == nil {
		t.Fatal("second Open succeeded")
	}
	if src.Close(ctx) != nil || src.Close(ctx) != nil {
		t.Fatal("Close twice failed")
	}
	bad, _ := NewSource(scfg, t.TempDir(), nil)
	if err := bad.Open(ctx, []byte{9}); err == nil || !strings.Contains(err.Error(), "malformed source position") {
		t.Fatalf("Open with a damaged position: %v", err)
	}
}

func TestRestartedMemberGetsItsOwnPartitionsBack(t *testing.T) {
	brokers := testkafka.Start(t, 4, "t")
	dirA, dirB := t.TempDir(), t.TempDir()
	// What makes a restart keep the assignment is static membership: the
	// broker holds a member that stopped heartbeating, partitions and all,
	// until its session times out. The restart below (Close, Open, join)
	// must come within that; a session of a minute makes it so however
	// loaded the machine, where the 2 s of the other tests did not.
	long := func(c *SourceConfig) { c.SessionTimeout = units.Of(time.Minute) }
	a := newSourceWith(t, dirA, brokers, "t", "g", nil, long)
	b := newSourceWith(t, dirB, brokers, "t", "g", nil, long)
	// Waits for the balanced assignment — two partitions each, where
	// cooperative-sticky ends with two members and four partitions — by
	// polling the group's state (assignments are made on the broker's
	// schedule); the assertions are on which partitions, not on time.
	settled := func(srcs ...*Source) [][]int32 {
		for {
			var out [][]int32
			balanced := true
			for _, s := range srcs {
				p := s.assigned()["t"]
				sort.Slice(p, func(i, j int) bool { return p[i] < p[j] })
				out = append(out, p)
				balanced = balanced && len(p) == 2
			}
			if balanced {
				return out
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	before := settled(a, b)
	// Read in the same lock as assigned (both set when a session starts).
	claimedByB := fmt.Sprint(b.everClaimed())
	if want := fmt.Sprint([]topicPart{{"t", before[1][0]}, {"t", before[1][1]}}); claimedByB != want {
		// b got other partitions on the way to the balanced state; what
		// it holds now is what must not grow.
		t.Logf("b was given %s before settling on %s", claimedByB, want)
	}
	a.Close(context.Background()) // a static member does not leave: like kill -9
	a2 := newSourceWith(t, dirA, brokers, "t", "g", nil, long)
	after := settled(a2, b)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("assignment before the restart %v, after %v", before, after)
	}
	// The other member was never given the restarted member's partitions
	// (it would have re-read their last uncommitted batch).
	if got := fmt.Sprint(b.everClaimed()); got != claimedByB {
		t.Fatalf("the other member was given %s during the restart (before: %s)", got, claimedByB)
	}
}

func TestBrokerFailuresMidBatchLoseNothingAndDuplicateNothing(t *testing.T) {
	cluster := testkafka.Cluster(t, nil, 3, "t")
	brokers := cluster.ListenAddrs()
	s := newSink(t, brokers, "t", func(c *SinkConfig) {
		c.Retries = 1
		c.FlushMessages = 7 // several produce requests per batch, so a batch can fail part-way
	})
	ctx := context.Background()
	var mu sync.Mutex
	produces, failed := 0, 0
	// Every third produce request from the 4th to the 30th: the broker
	// drops the connection instead of answering.
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		produces++
		if produces >= 4 && produces <= 30 && produces%3 == 0 {
			failed++
			return nil, errors.New("injected: connection dropped"), true
		}
		return nil, nil, false
	})
	const batches, per = 10, 50
	var writeErrors int
	for off := uint64(1); off <= batches; off++ {
		for { // the runner's retry loop
			_, err := s.Write(ctx, orders(int(off-1)*per, per), pipeline.Fence{Stream: "raw/0/k", Offset: off})
			if err == nil {
				break
			}
			writeErrors++
		}
	}
	if writeErrors == 0 || failed == 0 {
		t.Fatalf("no failure reached the sink (%d injected)", failed)
	}
	// The topic holds copies from the re-sent batches ...
	cl, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var stored int64
	for p := int32(0); p < 3; p++ {
		hw, err := cl.GetOffset("t", p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		stored += hw
	}
	if stored <= batches*per {
		t.Fatalf("topic holds %d messages: no batch was re-sent after a partial delivery", stored)
	}
	// ... and the source passes on each order exactly once.
	src := newSource(t, brokers, "t", "g", nil)
	got, _ := readN(t, src, batches*per)
	if u := uniq(got); len(got) != batches*per || len(u) != batches*per {
		t.Fatalf("read %d events, %d distinct, want %d", len(got), len(u), batches*per)
	}
	t.Logf("%d produce requests dropped, %d batch writes retried, %d messages stored for %d orders", failed, writeErrors, stored, batches*per)
}

func TestNoGoroutineOutlivesClose(t *testing.T) {
	brokers := testkafka.Start(t, 2, "t")
	before := goleak.IgnoreCurrent()
	ctx := context.Background()
	s := newSink(t, brokers, "t", nil)
	if _, err := s.Write(ctx, orders(0, 10), pipeline.Fence{Stream: "x", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	src := newSource(t, brokers, "t", "g", nil)
	readN(t, src, 10)
	src.Close(ctx)
	// go-metrics (inside sarama) keeps one process-wide ticker.
	goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

func FuzzDecodeMarks(f *testing.F) {
	f.Add(appendMark(appendMark(nil, "edge1:raw/0/kafka", mark{7, []span{{0, 2}, {4, 6}}}), "edge2:raw/0/kafka", mark{1, []span{{0, 1}}}))
	f.Add([]byte{})
	f.Add([]byte{0, 9, 'x'})
	f.Add([]byte{0, 1, 'e', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2}) // version 1
	f.Add([]byte{0xFF, 2, 0, 1, 'e', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMarks(b)
		if err != nil {
			return
		}
		var again []byte
		for p, v := range m {
			again = appendMark(again, p, v)
		}
		m2, err := decodeMarks(again)
		if err != nil || len(m2) != len(m) {
			t.Fatalf("re-encoded marks do not decode the same: %v", err)
		}
		for p, v := range m {
			if fmt.Sprint(m2[p]) != fmt.Sprint(v) {
				t.Fatalf("%q: %v became %v", p, v, m2[p])
			}
		}
	})
}

// msgAt is a message of producer "e" in partition 0 with sequence batch.ordinal.
func msgAt(offset int64, batch uint64, ordinal uint32) *sarama.ConsumerMessage {
	sq := seq{batch, ordinal}
	return &sarama.ConsumerMessage{Topic: "t", Partition: 0, Offset: offset, Value: []byte(sq.String()),
		Headers: []*sarama.RecordHeader{{Key: []byte(HeaderProducer), Value: []byte("e")},
			{Key: []byte(HeaderSeq), Value: []byte(sq.String())}}}
}

// What the broker-failure test hits now and then, made certain: a produce
// request of batch 2 fails for good (ordinals 2 and 3 lost) while a later
// request of the same batch to the same partition is stored (4, 5); the
// batch is sent again whole. Ordinals 2 and 3 must come through once — also
// when the re-sent copy is read after a restart (marks from the position)
// or by another member (marks from the commit metadata) — and every copy
// must be dropped.
func TestSourcePassesWhatAFailedRequestLeftOutOfABatch(t *testing.T) {
	first := []*sarama.ConsumerMessage{msgAt(0, 1, 0), msgAt(1, 1, 1), // batch 1, whole
		msgAt(2, 2, 0), msgAt(3, 2, 1), msgAt(4, 2, 4), msgAt(5, 2, 5)} // batch 2, a gap at 2–3
	resend := []*sarama.ConsumerMessage{msgAt(6, 1, 1), // a late copy of batch 1
		msgAt(7, 2, 0), msgAt(8, 2, 1), msgAt(9, 2, 2), msgAt(10, 2, 3), msgAt(11, 2, 4), msgAt(12, 2, 5),
		msgAt(13, 2, 3), msgAt(14, 3, 0)}
	want := "1.0,1.1,2.0,2.1,2.4,2.5 | 2.2,2.3,3.0"
	read := func(src *Source, msgs []*sarama.ConsumerMessage) string {
		src.builder.Reset()
		changed := false
		for _, m := range msgs {
			src.add(m, &changed, nil)
		}
		if src.builder.Len() == 0 {
			return ""
		}
		return strings.Join(bodies(t, src.builder.Bytes()), ",")
	}
	fresh := func() *Source {
		cfg := DefaultSourceConfig()
		cfg.Topics, cfg.Group = []string{"t"}, "g"
		src, err := NewSource(cfg, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		src.pos = newPosition()
		return src
	}
	// One member reading both.
	src := fresh()
	if got := read(src, first) + " | " + read(src, resend); got != want {
		t.Fatalf("one member read %q, want %q", got, want)
	}
	// Restarted between the two, from its position.
	src = fresh()
	a := read(src, first)
	p, err := decodePosition(src.pos.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	src = fresh()
	src.pos = p
	if got := a + " | " + read(src, resend); got != want {
		t.Fatalf("after a restart read %q, want %q", got, want)
	}
	// Another member, given the partition with the marks in the commit
	// metadata (resend starts at offset 6, where the commit points).
	src = fresh()
	a = read(src, first)
	meta := appendMark(nil, "e", *src.pos.Marks[markKey{topicPart{"t", 0}, "e"}])
	marks, err := decodeMarks(meta)
	if err != nil {
		t.Fatal(err)
	}
	other := fresh()
	other.inMarks[markKey{topicPart{"t", 0}, "e"}] = marks["e"]
	other.hasMarks.Store(true)
	if got := a + " | " + read(other, resend); got != want {
		t.Fatalf("the next owner read %q, want %q", got, want)
	}
}

func TestMarkSpans(t *testing.T) {
	var m mark
	for _, i := range []uint32{5, 1, 3, 2, 9, 4, 8} {
		if m.Seen != nil && m.copyOf(seq{1, i}) {
			t.Fatalf("%d reported a copy before it was seen", i)
		}
		m.see(seq{1, i})
	}
	if got := fmt.Sprint(m); got != "{1 [{1 6} {8 10}]}" {
		t.Fatalf("mark %s", got)
	}
	for i, want := range []bool{false, true, true, true, true, true, false, false, true, true, false} {
		if m.copyOf(seq{1, uint32(i)}) != want {
			t.Errorf("copyOf(1.%d) = %v", i, !want)
		}
	}
	if !m.copyOf(seq{0, 99}) || m.copyOf(seq{2, 0}) {
		t.Error("older batches are copies, newer ones are not")
	}
	if got := fmt.Sprint(m.merge(mark{1, []span{{0, 1}, {6, 8}}})); got != "{1 [{0 10}]}" {
		t.Errorf("merge: %s", got)
	}
	if got := fmt.Sprint(m.merge(mark{2, []span{{0, 1}}})); got != "{2 [{0 1}]}" {
		t.Errorf("merge with a newer batch: %s", got)
	}
}
