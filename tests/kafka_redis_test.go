package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/internal/testkafka"
	"github.com/sluicehq/sluice/internal/testredis"
)

const edgeConfig = `
[agent]
data_dir = "DIR/edge"
shutdown_timeout = "30s"
` + rawChannelConfig + orderLogSourceConfig + `
[sinks.kafka]
type = "kafka"
input = "raw"
[sinks.kafka.config]
brokers = ["BROKERS"]
topic = "orders"
compression = "lz4"
linger = "2ms"
`

const analysisConfig = `
[agent]
data_dir = "DIR/NAME"
shutdown_timeout = "30s"
` + rawChannelConfig + ordersChannelConfig + `
[channels.results]

[sources.kafka]
type = "kafka"
output = "raw"
batch_size = 2048
[sources.kafka.config]
brokers = ["BROKERS"]
topics = ["orders"]
group = "analysis"
max_wait = "50ms"
session_timeout = "20s"
heartbeat_interval = "500ms"
[sources.kafka.config.claims]
addrs = ["REDIS"]
` + orderBoltsConfig + `
[sinks.redis]
type = "redis"
input = "results"
[sinks.redis.config]
addrs = ["REDIS"]
`

// TestKafkaRedisScenarioKill9 is the scenario of DESIGN §1 across processes:
// one edge agent tails a rotating order log (with malformed lines) into
// Kafka (kfake, in this process, on a loopback port); two analysis agents in
// one consumer group parse and aggregate the orders and apply the results
// to a real redis-server. Each agent is killed with SIGKILL ten times at
// random moments and restarted. At the end the Redis totals per category,
// city and minute equal the ground truth exactly (to the cent), and the
// dead-letter channels hold exactly the malformed lines.
//
// The two analysis agents share the partitions; when one is killed between
// its durable append and its group commit and its partition moves, the
// claim ledger (docs/adr/0007) keeps the new owner from counting that
// batch again.
//
// SLUICE_SCENARIO_ORDERS sets the number of orders (default 1,000,000).
func TestKafkaRedisScenarioKill9(t *testing.T) {
	if os.Getenv("SLUICE_TEST_SHORT") != "" {
		t.Skip("SLUICE_TEST_SHORT set: long end-to-end test skipped")
	}
	kafkaRedisScenario(t, 2)
}

func kafkaRedisScenario(t *testing.T, analysisAgents int) {
	began := time.Now()
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	buildOrderPlugins(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	brokers := testkafka.Start(t, 4, "orders")
	redisSrv := testredis.Start(t)
	write := func(name, tmpl string) string {
		p := filepath.Join(dir, name+".toml")
		s := strings.NewReplacer("DIR", dir, "NAME", name, "BROKERS", brokers[0], "REDIS", redisSrv.Addr).Replace(tmpl)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgs := []string{write("edge", edgeConfig)}
	for i := 1; i <= analysisAgents; i++ {
		cfgs = append(cfgs, write(fmt.Sprintf("a%d", i), analysisConfig))
	}

	total := envInt(t, "SLUICE_SCENARIO_ORDERS", 1_000_000)
	rotateEvery := total / 6 // 5 rotations
	g := orders.NewGenerator(orders.GenConfig{Seed: 7, Step: time.Millisecond, MalformedEvery: 997})
	var written atomic.Int64
	genDone := make(chan error, 1)
	go func() { genDone <- writeOrderLog(dir, g, total, rotateEvery, 20*time.Millisecond, &written) }()

	start := func(cfg string) *agentProcess {
		a := startAgent(t, bin, cfg, strings.TrimSuffix(cfg, ".toml")+".log")
		select {
		case <-a.started:
		case <-a.done:
			t.Fatalf("agent %s exited at start:\n%s", cfg, a.log)
		}
		return a
	}
	agents := make([]*agentProcess, len(cfgs))
	for i, c := range cfgs {
		agents[i] = start(c)
	}
	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	const killsEach = 10
	kills := 0
	for round := 0; round < killsEach; round++ {
		for _, i := range rng.Perm(len(agents)) {
			time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond) // a random moment
			kill9(t, agents[i], cfgs[i]+" before its kill")
			kills++
			agents[i] = start(cfgs[i])
		}
		t.Logf("round %d: %d kills, %d lines written", round+1, kills, written.Load())
	}
	if err := <-genDone; err != nil {
		t.Fatal(err)
	}

	want := orders.GroundTruth(g, 0, uint64(total), nil)
	rc := goredis.NewClient(&goredis.Options{Addr: redisSrv.Addr, DisableIdentity: true})
	defer rc.Close()
	deadline := time.Now().Add(3 * time.Minute)
	var got *orders.Totals
	stable := 0
	for {
		prev := got
		got = redisTotals(t, rc)
		if len(got.Diff(want, 1)) == 0 || time.Now().After(deadline) {
			break
		}
		// Duplicates would keep the totals from ever equalling the truth:
		// stop waiting once nothing is short and the totals stopped moving.
		if len(shortfalls(got, want, 1)) == 0 && prev != nil && len(got.Diff(prev, 1)) == 0 {
			if stable++; stable == 8 {
				break
			}
		} else {
			stable = 0
		}
		time.Sleep(250 * time.Millisecond) // polling Redis, which other processes fill
	}
	for i, a := range agents {
		if err := terminate(a); err != nil {
			t.Errorf("agent %s did not stop cleanly on SIGTERM: %v\n%s", cfgs[i], err, a.log)
		}
	}
	malformed := int(g.MalformedCount(uint64(total)))
	dead := 0
	for _, c := range cfgs[1:] {
		dead += deadLetters(t, bin, c, "parse")
	}
	lost, dup := lostAndDuplicated(got, want)
	// How often the claim ledger mattered: a member skipping a range
	// another had claimed, a restarted member putting back its own.
	skipped, recovered := 0, 0
	for _, c := range cfgs[1:] {
		b, _ := os.ReadFile(strings.TrimSuffix(c, ".toml") + ".log")
		skipped += strings.Count(string(b), "skipping offsets another member claimed")
		recovered += strings.Count(string(b), "recovered a claimed range")
	}
	t.Logf("kafka/redis scenario: %d lines (%d malformed), %d rotations, %d analysis agents, %d SIGKILLs (%d per agent): orders counted %d of %d — lost %d, duplicated %d; dead letters %d of %d malformed; claimed ranges skipped by a new owner %d, recovered by their claimer %d; wall time %s",
		total, malformed, 5, analysisAgents, kills, killsEach, orderCount(got), orderCount(want), lost, dup, dead, malformed, skipped, recovered, time.Since(began).Round(time.Second))
	if lost != 0 || dup != 0 {
		t.Errorf("%d orders lost, %d duplicated", lost, dup)
	}
	if d := got.Diff(want, 5); len(d) > 0 {
		t.Errorf("Redis totals differ from the ground truth: %v", d)
		for _, c := range cfgs[1:] {
			b, _ := os.ReadFile(strings.TrimSuffix(c, ".toml") + ".log")
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "kafka source: partition") || strings.Contains(line, "agent started") {
					t.Logf("%s: %s", filepath.Base(c), line)
				}
			}
		}
	}
	if dead != malformed {
		t.Errorf("dead letters %d, malformed lines %d", dead, malformed)
	}
}

// lostAndDuplicated compares the per-category order counts: an order short
// somewhere is lost, one too many is duplicated.
func lostAndDuplicated(got, want *orders.Totals) (lost, dup int) {
	for k, h := range want.Hashes {
		if !strings.HasPrefix(k, "cnt:cat:") {
			continue
		}
		for f, w := range h {
			g := got.Hashes[k][f]
			lost += int(max(w-g, 0))
			dup += int(max(g-w, 0))
		}
	}
	for k, h := range got.Hashes {
		if strings.HasPrefix(k, "cnt:cat:") {
			for f, g := range h {
				if _, ok := want.Hashes[k][f]; !ok {
					dup += int(g)
				}
			}
		}
	}
	return lost, dup
}

// redisTotals reads every hash and sorted set in Redis, leaving out
// Sluice's own keys (fences, the claim ledger: "sluice:…").
func redisTotals(t *testing.T, rc *goredis.Client) *orders.Totals {
	t.Helper()
	ctx := context.Background()
	tot := orders.NewTotals()
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasPrefix(k, "sluice:") {
			continue
		}
		switch rc.Type(ctx, k).Val() {
		case "hash":
			m := map[string]int64{}
			for f, v := range rc.HGetAll(ctx, k).Val() {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("redis %s %s = %q: %v", k, f, v, err)
				}
				m[f] = n
			}
			tot.Hashes[k] = m
		case "zset":
			m := map[string]int64{}
			for _, z := range rc.ZRangeWithScores(ctx, k, 0, -1).Val() {
				m[z.Member.(string)] = int64(z.Score)
			}
			tot.ZSets[k] = m
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return tot
}

// orderCount is the number of orders the totals account for.
func orderCount(t *orders.Totals) int {
	n := 0
	for k, h := range t.Hashes {
		if strings.HasPrefix(k, "cnt:cat:") {
			for _, v := range h {
				n += int(v)
			}
		}
	}
	return n
}

var deadCount = regexp.MustCompile(`(?m)^(\S+): (\d+) dead letters$`)

// deadLetters runs `sluice dlq list` on a stopped agent's config and
// returns the number of dead letters of stage.
func deadLetters(t *testing.T, bin, cfg, stage string) int {
	t.Helper()
	out, err := exec.Command(bin, "dlq", "list", "-c", cfg, stage).Output()
	if err != nil {
		t.Fatalf("sluice dlq list -c %s %s: %v\n%s", cfg, stage, err, out)
	}
	for _, m := range deadCount.FindAllStringSubmatch(string(out), -1) {
		if m[1] == stage {
			n, _ := strconv.Atoi(m[2])
			return n
		}
	}
	t.Fatalf("sluice dlq list printed no count for %s:\n%s", stage, out)
	return 0
}

// shortfalls lists, at most max, the fields whose total in got is below want:
// lost orders, whatever duplicates elsewhere add.
func shortfalls(got, want *orders.Totals, max int) []string {
	var out []string
	for kind, pair := range map[string][2]map[string]map[string]int64{"hash": {got.Hashes, want.Hashes}, "zset": {got.ZSets, want.ZSets}} {
		for key, fields := range pair[1] {
			for f, w := range fields {
				if g := pair[0][key][f]; g < w && len(out) < max {
					out = append(out, fmt.Sprintf("%s %s %s: got %d, want %d", kind, key, f, g, w))
				}
			}
		}
	}
	return out
}

// TestRedisSinkDeadLettersBadCommands runs an agent (tail → redis sink) over
// command records of which one is malformed and one is refused by Redis
// (HINCRBY on a string): both end in the sink's dead-letter channel with
// the reason, and every other record is applied.
func TestRedisSinkDeadLettersBadCommands(t *testing.T) {
	if os.Getenv("SLUICE_TEST_SHORT") != "" {
		t.Skip("SLUICE_TEST_SHORT set: end-to-end test skipped")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	redisSrv := testredis.Start(t)
	rc := goredis.NewClient(&goredis.Options{Addr: redisSrv.Addr, DisableIdentity: true})
	defer rc.Close()
	ctx := context.Background()
	if err := rc.Set(ctx, "plain", "text", 0).Err(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Join([]string{
		`{"op":"hincrby","key":"cnt","field":"a","value":1}`,
		`{"op":"hincrby","key":"cnt","field":"a"`,              // malformed: cut short
		`{"op":"hincrby","key":"plain","field":"a","value":1}`, // WRONGTYPE
		`{"op":"hincrby","key":"cnt","field":"b","value":2}`,
		`{"op":"zincrby","key":"top","member":"x","value":3}`,
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "cmds.log"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(cfg, []byte(strings.NewReplacer("DIR", dir, "REDIS", redisSrv.Addr).Replace(`
[agent]
data_dir = "DIR/data"
[channels.raw]
[sources.cmds]
type = "tail"
output = "raw"
[sources.cmds.config]
paths = ["DIR/cmds.log"]
poll_interval = "20ms"
[sinks.redis]
type = "redis"
input = "raw"
[sinks.redis.config]
addrs = ["REDIS"]
`)), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bin, cfg, "")
	for {
		h := rc.HGetAll(ctx, "cnt").Val()
		if h["a"] == "1" && h["b"] == "2" && rc.ZScore(ctx, "top", "x").Val() == 3 {
			break
		}
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log)
		case <-time.After(20 * time.Millisecond): // polling Redis, which the agent fills
		}
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("agent did not stop cleanly: %v\n%s", err, a.log)
	}
	if n := deadLetters(t, bin, cfg, "redis"); n != 2 {
		t.Fatalf("redis sink dead letters: %d, want 2 (the malformed record and the refused command)", n)
	}
	out, err := exec.Command(bin, "dlq", "list", "-c", cfg, "redis").CombinedOutput()
	if err != nil {
		t.Fatalf("sluice dlq list: %v\n%s", err, out)
	}
	for _, want := range []string{"WRONGTYPE", "not a command record"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dead letters lack %q:\n%s", want, out)
		}
	}
	if v := rc.Get(ctx, "plain").Val(); v != "text" {
		t.Errorf("the refused command changed its key: %q", v)
	}
}
