package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/testkafka"
)

const unreachableKafkaConfig = `
[agent]
data_dir = "DIR/data"
admin_addr = "ADMIN"
shutdown_timeout = "10s"

[channels.raw]

[sources.kafka]
type = "kafka"
output = "raw"
[sources.kafka.config]
brokers = ["BROKER"]
topics = ["orders"]
group = "health"
max_wait = "50ms"
heartbeat_interval = "200ms"

[sinks.out]
type = "file"
input = "raw"
[sinks.out.config]
path = "DIR/out/events.jsonl"
`

// TestKafkaUnreachableAtStart starts an agent whose Kafka source points at
// a loopback port where nothing listens (issue 5, "Bad input and faults"):
// the agent runs but is not ready — /healthz answers 503 naming the source
// — and its log says once per retry window, in one kind of line, which
// broker it cannot reach. Then a Kafka cluster (kfake) comes up on that
// port: /healthz turns 200 and the events produced there reach the sink.
func TestKafkaUnreachableAtStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	kafkaPort, adminAddr := freePort(t), freeAddr(t)
	broker := net.JoinHostPort("127.0.0.1", strconv.Itoa(kafkaPort))
	cfgPath := filepath.Join(dir, "health.toml")
	cfg := strings.NewReplacer("DIR", dir, "ADMIN", adminAddr, "BROKER", broker).Replace(unreachableKafkaConfig)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bin, cfgPath, "")
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			a.cmd.Process.Signal(syscall.SIGTERM)
			<-a.done
			a.cmd.Wait()
		}
	})
	select {
	case <-a.started:
	case <-a.done:
		t.Fatalf("agent exited before it started:\n%s", a.log)
	case <-ctx.Done():
		t.Fatalf("agent did not start:\n%s", a.log)
	}
	base := "http://" + adminAddr

	// Wait for two retry windows in the log, then the agent must say it
	// is not ready, naming the source.
	brokerLines := func() []string {
		var out []string
		for _, l := range strings.Split(a.log.String(), "\n") {
			if strings.Contains(l, broker) {
				out = append(out, l)
			}
		}
		return out
	}
	waitFor(t, ctx, a, "two log lines naming the unreachable broker", func() bool { return len(brokerLines()) >= 2 })
	code, reasons := healthz(t, base)
	if code != http.StatusServiceUnavailable || !strings.Contains(reasons, "source kafka failed") || !strings.Contains(reasons, broker) {
		t.Fatalf("healthz with Kafka unreachable: %d %q; want 503 naming source kafka and broker %s\nlog:\n%s", code, reasons, broker, a.log)
	}
	// One kind of line per retry window: every line naming the broker is
	// the same message, not a retry line plus echoes of it.
	lines := brokerLines()
	msgs := map[string]bool{}
	msgRE := regexp.MustCompile(`msg=("[^"]*"|\S+)`)
	for _, l := range lines {
		msgs[msgRE.FindString(l)] = true
	}
	if len(msgs) != 1 {
		t.Fatalf("%d kinds of log line name the broker, want one per retry window:\n%s", len(msgs), strings.Join(lines, "\n"))
	}

	// The cluster comes up on that port; the agent recovers by itself.
	testkafka.Cluster(t, []kfake.Opt{kfake.Ports(kafkaPort)}, 1, "orders")
	const events = 50
	produce(t, broker, "orders", events)
	waitFor(t, ctx, a, "healthz 200 once Kafka is reachable", func() bool {
		code, _ := healthz(t, base)
		return code == http.StatusOK
	})
	waitFor(t, ctx, a, fmt.Sprintf("%d events in the file sink", events), func() bool {
		return countLines(t, filepath.Join(dir, "out")) == events
	})
	t.Logf("%d log lines naming %s while it was down, all %s", len(lines), broker, msgRE.FindString(lines[0]))

	// Stopped while Kafka is still up, the agent drains and exits cleanly.
	stopped = true
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("agent did not stop cleanly on SIGTERM: %v\n%s", err, a.log)
	}
}

// healthz returns /healthz's status code and its reasons joined, or 0
// while the admin server does not answer yet.
func healthz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body struct{ Reasons []string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("healthz body: %v", err)
	}
	return resp.StatusCode, strings.Join(body.Reasons, "; ")
}

// waitFor polls cond until it holds; it fails the test when ctx ends or
// the agent exits first.
func waitFor(t *testing.T, ctx context.Context, a *agentProcess, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; agent log:\n%s", what, a.log)
		case <-a.done:
			t.Fatalf("agent exited while waiting for %s; log:\n%s", what, a.log)
		case <-tick.C:
		}
	}
}

func produce(t *testing.T, broker, topic string, n int) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer([]string{broker}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range n {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("event %d", i))}); err != nil {
			t.Fatal(err)
		}
	}
}

// countLines counts the lines of every file in dir.
func countLines(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "\n")
	}
	return n
}
