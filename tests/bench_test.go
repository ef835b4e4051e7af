package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/internal/testkafka"
)

// TestBenchRuns runs `sluice bench` on a small order file and checks that it
// prints the raw baseline and one measured row per language. Speed itself is
// not asserted here: it is what the command reports.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	out, err := exec.Command(bin, "bench", "--orders", "20000", "--langs", "c,go,native", "--dir", dir+"/bench").Output()
	if err != nil {
		t.Fatalf("sluice bench: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	for _, re := range []string{
		`raw read\+split baseline: \d+ lines/s`,
		`(?m)^c +\d+ +[\d.]+ +[\d.]+ +[\d.]+MiB +[\d.]+$`,
		`(?m)^go +\d+ +[\d.]+ +[\d.]+ +[\d.]+MiB +[\d.]+$`,
		`(?m)^native +\d+ +[\d.]+ +[\d.]+ +[\d.]+MiB +[\d.]+$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("bench output lacks %s", re)
		}
	}
}

// benchEdgeConfig is conf/edge.toml's pipeline (tail → [raw] → kafka) with
// the paths and brokers of one benchmark iteration.
const benchEdgeConfig = `
[agent]
data_dir = "DIR/data"
shutdown_timeout = "10s"
log_level = "info"

[channels.raw]
segment_bytes = "64MiB"
max_bytes = "1GiB"

[sources.log]
type = "tail"
output = "raw"
batch_size = 16384
[sources.log.config]
paths = ["DIR/orders.log"]
start_at = "beginning"
max_batch_bytes = "4MiB"
poll_interval = "10ms"
scan_interval = "10ms"

[sinks.kafka]
type = "kafka"
input = "raw"
[sinks.kafka.config]
brokers = ["BROKERS"]
topic = "edge"
compression = "lz4"
linger = "LINGER"
`

// BenchmarkEdgeAgentVsSarama ships the same order lines into Kafka (kfake,
// in this process) twice per iteration: through an edge agent — `sluice
// run` of conf/edge.toml's pipeline, a separate process tailing a log file
// into its durable channel and the kafka sink — timed from its start until
// every line is in the topic (not counting its start-up); and through a bare sarama async producer loop
// over the same lines with the sink's settings (acks=all, idempotent, lz4,
// the same linger), timed until every message is acknowledged. It reports
// ratio = bare time / agent time (1.0: the agent costs nothing over
// sarama).
//
//	go test -run '^$' -bench EdgeAgentVsSarama -benchtime 3x ./tests
func BenchmarkEdgeAgentVsSarama(b *testing.B) {
	const n = 200_000
	const linger = 1 * time.Millisecond
	dir := b.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, "../agent/cmd/sluice").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	brokers := testkafka.Start(b, 4, "edge", "bare")
	g := orders.NewGenerator(orders.GenConfig{Seed: 3, Step: time.Millisecond})
	var lines []byte
	for i := 0; i < n; i++ {
		lines = g.AppendLine(lines, uint64(i))
	}
	values := bytes.Split(bytes.TrimSuffix(lines, []byte("\n")), []byte("\n"))
	if len(values) != n {
		b.Fatalf("%d lines generated, want %d", len(values), n)
	}

	sc := sarama.NewConfig()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Producer.Retry.Max = 5
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Compression = sarama.CompressionLZ4
	sc.Producer.Flush.Bytes, sc.Producer.Flush.Messages, sc.Producer.Flush.Frequency = 1<<20, 10000, linger
	sc.Producer.MaxMessageBytes = 1 << 20
	sc.Producer.Return.Successes = true
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	bare, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	inTopic := func(topic string) int64 {
		parts, err := client.Partitions(topic)
		if err != nil {
			b.Fatal(err)
		}
		var total int64
		for _, p := range parts {
			off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				b.Fatal(err)
			}
			total += off
		}
		return total
	}

	pathHeader := []byte(filepath.Join(dir, "it0", "orders.log"))
	producerHeader := []byte("0123456789abcdef0123456789abcdef:raw/0/kafka")
	var agentT, bareT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		agentRun := func() {
			b.StopTimer()
			it := filepath.Join(dir, fmt.Sprint("it", i))
			if err := os.MkdirAll(it, 0o755); err != nil {
				b.Fatal(err)
			}
			staged := filepath.Join(dir, "staged.log")
			if err := os.WriteFile(staged, lines, 0o644); err != nil {
				b.Fatal(err)
			}
			cfg := filepath.Join(it, "edge.toml")
			s := strings.NewReplacer("DIR", it, "BROKERS", brokers[0], "LINGER", linger.String()).Replace(benchEdgeConfig)
			if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
				b.Fatal(err)
			}
			want := int64(n * (i + 1))
			// The agent starts on a missing log; the clock starts when
			// the whole log appears (a rename), so process start-up is
			// not counted.
			cmd := exec.Command(bin, "run", "-c", cfg)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			var logged bytes.Buffer
			started := make(chan struct{})
			exited := make(chan struct{})
			go func() {
				defer close(exited)
				sc := bufio.NewScanner(stderr)
				once := false
				for sc.Scan() {
					logged.WriteString(sc.Text() + "\n")
					if !once && strings.Contains(sc.Text(), `msg="agent started"`) {
						once = true
						close(started)
					}
				}
			}()
			select {
			case <-started:
			case <-exited:
				b.Fatalf("edge agent exited at start:\n%s", logged.String())
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-exited
				b.Fatalf("edge agent did not start within a minute:\n%s", logged.String())
			}
			b.StartTimer()
			t0 := time.Now()
			if err := os.Rename(staged, filepath.Join(it, "orders.log")); err != nil {
				b.Fatal(err)
			}
			deadline := time.After(2 * time.Minute)
			for inTopic("edge") < want {
				select {
				case <-deadline:
					cmd.Process.Kill()
					<-exited
					b.Fatalf("edge agent: %d of %d lines in Kafka after 2 minutes:\n%s", inTopic("edge")-want+n, n, logged.String())
				case <-exited:
					b.Fatalf("edge agent exited:\n%s", logged.String())
				case <-time.After(2 * time.Millisecond): // polling the topic's end offsets
				}
			}
			agentT += time.Since(t0)
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			cmd.Wait()
		}
		// Alternate which goes first, so load from elsewhere on the
		// machine falls on both alike.
		if i%2 == 0 {
			agentRun()
		}
		t1 := time.Now()
		err := testkafka.ProduceAll(bare, n, func(j int) *sarama.ProducerMessage {
			// The same records the agent sends: the line and the
			// headers the sink adds (file path, producer, sequence).
			return &sarama.ProducerMessage{Topic: "bare", Value: sarama.ByteEncoder(values[j]), Headers: []sarama.RecordHeader{
				{Key: []byte("path"), Value: pathHeader},
				{Key: []byte("sluice.producer"), Value: producerHeader},
				{Key: []byte("sluice.seq"), Value: strconv.AppendInt(nil, int64(1000+j/8192), 10)},
			}}
		})
		if err != nil {
			b.Fatal(err)
		}
		bareT += time.Since(t1)
		if i%2 == 1 {
			agentRun()
		}
	}
	b.ReportMetric(float64(n*b.N)/agentT.Seconds(), "agent_msgs/s")
	b.ReportMetric(float64(n*b.N)/bareT.Seconds(), "bare_msgs/s")
	b.ReportMetric(bareT.Seconds()/agentT.Seconds(), "ratio")
}
