package sinkgroup_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/plugins/internal/units"
	"github.com/sluicehq/sluice/plugins/sinkgroup"
)

// member is a sink whose answer the test sets: nil, a not-delivered error
// (nothing reached it) or an in-doubt one (no answer).
type member struct {
	name   string
	state  string // "ok", "down", "silent"
	got    []uint64
	closed int
}

type notDelivered struct{ error }

func (notDelivered) NotDelivered() bool { return true }

func (m *member) Open(context.Context) error { return nil }
func (m *member) Close(context.Context) error {
	m.closed++
	return nil
}
func (m *member) Write(_ context.Context, _ []byte, f pipeline.Fence) ([]pipeline.Reject, error) {
	switch m.state {
	case "down":
		return nil, notDelivered{fmt.Errorf("%s: connection refused", m.name)}
	case "silent":
		return nil, fmt.Errorf("%s: no acknowledgement", m.name)
	}
	ackLost := m.state == "stores, ack lost"
	for _, o := range m.got {
		if o == f.Offset {
			return nil, nil // fenced, like a forward receiver
		}
	}
	m.got = append(m.got, f.Offset)
	if ackLost {
		return nil, fmt.Errorf("%s: connection reset before the acknowledgement", m.name)
	}
	return nil, nil
}

// stubTypes lets a Config decode members without the registry.
type stubTypes struct{}

type stubConfig struct {
	Address string `toml:"address"`
}

func (stubTypes) NewSinkConfig(typ string) (any, bool) { return &stubConfig{}, typ == "stub" }
func (stubTypes) SinkTypes() []string                  { return []string{"stub"} }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newGroup(t *testing.T, processor, selector string, prios map[string]int, names ...string) (*sinkgroup.Group, map[string]*member, *clock) {
	t.Helper()
	members := map[string]*member{}
	for _, n := range names {
		members[n] = &member{name: n, state: "ok"}
	}
	g, c := groupOver(t, "", processor, selector, prios, members, names...)
	return g, members, c
}

// groupOver builds a group over existing members (the collectors, which
// outlive an edge's restart) with data directory dir.
func groupOver(t *testing.T, dir, processor, selector string, prios map[string]int, members map[string]*member, names ...string) (*sinkgroup.Group, *clock) {
	t.Helper()
	cfg := sinkgroup.DefaultConfig(stubTypes{})
	cfg.Processor, cfg.Selector = processor, selector
	cfg.InDoubtTimeout = units.Of(time.Minute)
	for _, n := range names {
		cfg.Members = append(cfg.Members, sinkgroup.Member{Name: n, Type: "stub", Priority: prios[n]})
	}
	g, err := sinkgroup.New(cfg, dir, func(m *sinkgroup.Member) (pipeline.Sink, error) { return members[m.Name], nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	sinkgroup.SetClock(g, c.now)
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return g, c
}

func write(g *sinkgroup.Group, off uint64) error {
	_, err := g.Write(context.Background(), []byte{0, 0, 0, 0}, pipeline.Fence{Stream: "s", Offset: off})
	return err
}

func TestFailoverOrderAndGrowingPenalty(t *testing.T) {
	g, m, c := newGroup(t, "failover", "round_robin", map[string]int{"low": 1, "high": 10, "mid": 5}, "low", "high", "mid")
	must(t, write(g, 1))
	if len(m["high"].got) != 1 {
		t.Fatalf("priority 10 did not take the first batch: %+v", m)
	}
	m["high"].state = "down"
	must(t, write(g, 2)) // high fails (penalty 1s), mid takes it
	m["high"].state = "ok"
	must(t, write(g, 3)) // high still sits out
	if fmt.Sprint(m["mid"].got) != "[2 3]" {
		t.Fatalf("mid got %v, want [2 3]", m["mid"].got)
	}
	c.t = c.t.Add(time.Second)
	m["high"].state = "down"
	must(t, write(g, 4)) // high tried again, fails again: penalty now 2s
	c.t = c.t.Add(time.Second + time.Millisecond)
	m["high"].state = "ok"
	must(t, write(g, 5)) // 1s later: still out (the penalty grew)
	c.t = c.t.Add(time.Second)
	must(t, write(g, 6)) // 2s later: back, and preferred
	if fmt.Sprint(m["high"].got, m["mid"].got, m["low"].got) != "[1 6] [2 3 4 5] []" {
		t.Errorf("high %v mid %v low %v", m["high"].got, m["mid"].got, m["low"].got)
	}
	m["high"].state, m["mid"].state = "down", "down"
	must(t, write(g, 7))
	if fmt.Sprint(m["low"].got) != "[7]" {
		t.Errorf("low got %v, want [7]", m["low"].got)
	}
	m["low"].state = "down"
	if err := write(g, 8); err == nil || !strings.Contains(err.Error(), "no member took the batch") {
		t.Errorf("all down: %v", err)
	}
	g.Close(context.Background())
	g.Close(context.Background())
	if m["low"].closed != 2 {
		t.Errorf("members closed %d times, want 2", m["low"].closed)
	}
}

func TestLoadBalanceSpread(t *testing.T) {
	g, m, c := newGroup(t, "load_balance", "round_robin", nil, "a", "b", "c")
	for i := uint64(1); i <= 30; i++ {
		must(t, write(g, i))
	}
	for _, n := range []string{"a", "b", "c"} {
		if len(m[n].got) != 10 {
			t.Errorf("round_robin: %s got %d of 30", n, len(m[n].got))
		}
	}
	m["b"].state = "down"
	for i := uint64(31); i <= 60; i++ {
		must(t, write(g, i))
	}
	if len(m["b"].got) != 10 || len(m["a"].got)+len(m["c"].got) != 50 {
		t.Errorf("with b down: a %d b %d c %d", len(m["a"].got), len(m["b"].got), len(m["c"].got))
	}
	m["b"].state = "ok"
	c.t = c.t.Add(time.Minute)
	for i := uint64(61); i <= 90; i++ {
		must(t, write(g, i))
	}
	if len(m["b"].got) <= 10 {
		t.Errorf("b did not get batches again after its backoff")
	}

	g, m, _ = newGroup(t, "load_balance", "random", nil, "a", "b")
	for i := uint64(1); i <= 200; i++ {
		must(t, write(g, i))
	}
	if len(m["a"].got) == 0 || len(m["b"].got) == 0 || len(m["a"].got)+len(m["b"].got) != 200 {
		t.Errorf("random: a %d b %d", len(m["a"].got), len(m["b"].got))
	}
}

// A batch that got no answer from a is retried on a only — even while a
// refuses connections — so it is never in two places; new batches (after
// it) go to a healthy member. Past in_doubt_timeout it moves on.
func TestInDoubtBatchStaysOnItsMember(t *testing.T) {
	g, m, c := newGroup(t, "load_balance", "round_robin", nil, "a", "b")
	m["a"].state = "silent"
	if err := write(g, 1); err == nil || !strings.Contains(err.Error(), "in doubt") {
		t.Fatalf("want in doubt, got %v", err)
	}
	m["a"].state = "down" // a crashed
	for i := 0; i < 3; i++ {
		if err := write(g, 1); err == nil || !strings.Contains(err.Error(), "retrying there only") {
			t.Fatalf("retry %d: %v", i, err)
		}
		c.t = c.t.Add(10 * time.Second)
	}
	if len(m["b"].got) != 0 {
		t.Fatalf("the in-doubt batch went to b: %v", m["b"].got)
	}
	m["a"].state = "ok" // a is back: the batch lands there
	must(t, write(g, 1))
	must(t, write(g, 2))
	if fmt.Sprint(m["a"].got, m["b"].got) != "[1] [2]" {
		t.Errorf("a %v b %v, want [1] [2]", m["a"].got, m["b"].got)
	}

	m["a"].state = "silent"
	off := uint64(3)
	for write(g, off) == nil { // until round robin reaches a
		off++
	}
	m["a"].state = "down"
	c.t = c.t.Add(time.Minute + time.Second)
	must(t, write(g, off)) // past in_doubt_timeout: b takes it
	if got := m["b"].got; got[len(got)-1] != off || fmt.Sprint(m["a"].got) != "[1]" {
		t.Errorf("a %v b %v, want b to end with %d", m["a"].got, got, off)
	}
}

// An edge killed right after sending batches replays them from its last
// committed channel position with a fresh group (a new process). Each
// replayed batch must go back to the member it was sent to, whose fence
// acknowledges it without storing it again — the load_balance duplicate of
// TestForwardLoadBalanceKill9, where a fresh round robin sent it elsewhere.
func TestReplayAfterRestartGoesToTheSameMember(t *testing.T) {
	dir := t.TempDir()
	m := map[string]*member{"a": {name: "a", state: "ok"}, "b": {name: "b", state: "ok"}}
	g1, _ := groupOver(t, dir, "load_balance", "round_robin", nil, m, "a", "b")
	must(t, write(g1, 1)) // a
	must(t, write(g1, 2)) // b
	m["a"].state = "stores, ack lost"
	if err := write(g1, 3); err == nil || !strings.Contains(err.Error(), "in doubt") {
		t.Fatalf("batch 3: want in doubt, got %v", err)
	}
	// kill -9: g1 is never closed, and the runner had committed offset 1
	// only (it commits every CommitEvery), so it replays 2 and 3.
	m["a"].state = "ok"
	g2, _ := groupOver(t, dir, "load_balance", "round_robin", nil, m, "a", "b")
	defer g2.Close(context.Background())
	for off := uint64(2); off <= 6; off++ {
		must(t, write(g2, off))
	}
	seen := map[uint64]int{}
	for _, n := range []string{"a", "b"} {
		for _, o := range m[n].got {
			seen[o]++
		}
	}
	for off := uint64(1); off <= 6; off++ {
		if seen[off] != 1 {
			t.Errorf("batch %d stored %d times (a %v, b %v)", off, seen[off], m["a"].got, m["b"].got)
		}
	}

	// A replayed batch whose member is down waits for it (in doubt: it
	// may hold the batch) until in_doubt_timeout, then moves on.
	g2.Close(context.Background())
	m["b"].state = "down"
	g3, c := groupOver(t, dir, "load_balance", "round_robin", nil, m, "b", "a") // reordered: ids are names
	defer g3.Close(context.Background())
	var lastB uint64
	for _, o := range m["b"].got {
		lastB = max(lastB, o)
	}
	if err := write(g3, lastB); err == nil || !strings.Contains(err.Error(), "retrying there only") {
		t.Fatalf("replay of %d with b down: want it pinned to b, got %v", lastB, err)
	}
	c.t = c.t.Add(time.Minute + time.Second)
	must(t, write(g3, lastB))
	if fmt.Sprint(m["a"].got[len(m["a"].got)-1]) != fmt.Sprint(lastB) {
		t.Errorf("past in_doubt_timeout batch %d did not move to a: a %v", lastB, m["a"].got)
	}
}

// groupPrelude is a config whose sink "out" is a group; the text that
// follows it is the group's [sinks.out.config] table.
const groupPrelude = `
[channels.c]
[sources.s]
type = "tail"
output = "c"
config = { paths = ["/tmp/x.log"] }
[sinks.out]
type = "group"
input = "c"
[sinks.out.config]
`

// Member configs are decoded into the member plugin's own Config through
// the registry, and their errors carry the full path.
func TestMemberConfigErrorsHaveTheirPath(t *testing.T) {
	text := groupPrelude + `
processor = "load_balance"
selector = "sideways"
[[sinks.out.config.members]]
name = "one"
type = "forward"
[sinks.out.config.members.config]
adress = "c1:7070"
ack_timeout = "soon"
[[sinks.out.config.members]]
name = "one"
type = "forward"
config = { address = "c2" }
[[sinks.out.config.members]]
name = "three"
type = "carrier-pigeon"
`
	_, err := config.Parse("edge.toml", []byte(text), registry.Builtin())
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`selector: "sideways" is not one of round_robin, random`,
		"members[0].config.adress: unknown key",
		"members[0].config.ack_timeout",
		"members[0].config.address: is required",
		`members[1].name: "one" is also members[0]`,
		`members[1].config.address: "c2" is not host:port`,
		`members[2].type: unknown sink type "carrier-pigeon" (known: `,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if !strings.Contains(err.Error(), "sinks.out.config") {
		t.Errorf("errors do not name the stage: %v", err)
	}
}

func TestValidGroupBuildsRealMembers(t *testing.T) {
	dir := t.TempDir()
	text := fmt.Sprintf("[agent]\ndata_dir = %q\n"+groupPrelude+`
processor = "failover"
[[sinks.out.config.members]]
name = "primary"
type = "forward"
priority = 2
config = { address = "127.0.0.1:1" }
[[sinks.out.config.members]]
name = "spill"
type = "file"
priority = 1
config = { path = %q }
`, dir, dir+"/spill.log")
	f, err := config.Parse("edge.toml", []byte(text), registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := registry.Builtin().Lookup(config.KindSink, "group")
	s, err := p.NewSink(f.Sinks["out"].Plugin, registry.Env{Name: "out", DataDir: dir + "/out", AgentDataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must(t, s.Open(ctx))
	defer s.Close(ctx)
	// The forward member cannot connect (not delivered), so failover moves
	// the batch to the file member at once.
	if _, err := s.Write(ctx, []byte{0, 0, 0, 0}, pipeline.Fence{Stream: "c/0", Offset: 1}); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A reload restarts a stage only if its decoded config changed
// (reflect.DeepEqual): two parses of the same group config must be equal.
func TestSameConfigDecodesEqual(t *testing.T) {
	text := groupPrelude + `
processor = "load_balance"
[[sinks.out.config.members]]
name = "a"
type = "forward"
config = { address = "c1:7070", ack_timeout = "5s" }
`
	a, err := config.Parse("a.toml", []byte(text), registry.Builtin())
	must(t, err)
	b, err := config.Parse("b.toml", []byte(text), registry.Builtin())
	must(t, err)
	if !reflect.DeepEqual(a.Sinks["out"].Plugin, b.Sinks["out"].Plugin) {
		t.Errorf("two parses of one group config differ: %+v vs %+v", a.Sinks["out"].Plugin, b.Sinks["out"].Plugin)
	}
	c, err := config.Parse("c.toml", []byte(strings.Replace(text, `"5s"`, `"6s"`, 1)), registry.Builtin())
	must(t, err)
	if reflect.DeepEqual(a.Sinks["out"].Plugin, c.Sinks["out"].Plugin) {
		t.Errorf("a changed member config compares equal")
	}
}
