package topology

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/registry"
)

// genSource emits n events whose header "color" cycles red, blue, green.
type genSource struct{ n, i int }

func (s *genSource) Open(_ context.Context, resume []byte) error {
	if len(resume) == 8 {
		s.i = int(binary.LittleEndian.Uint64(resume))
	}
	return nil
}
func (s *genSource) Read(ctx context.Context, max int) (pipeline.SourceBatch, error) {
	if s.i >= s.n {
		<-ctx.Done()
		return pipeline.SourceBatch{}, ctx.Err()
	}
	var b event.Builder
	for ; s.i < s.n && b.Len() < max; s.i++ {
		color := []string{"red", "blue", "green"}[s.i%3]
		b.Add(&event.Event{Key: []byte(color), Body: fmt.Appendf(nil, "%s-%d", color, s.i), Headers: []event.Header{{Name: "color", Value: color}}})
	}
	return pipeline.SourceBatch{Events: b.Bytes(), Position: binary.LittleEndian.AppendUint64(nil, uint64(s.i))}, nil
}
func (s *genSource) Ack(context.Context, []byte) error { return nil }
func (s *genSource) Close(context.Context) error       { return nil }

type passBolt struct{}

func (passBolt) Process(_ context.Context, in []byte, out *event.Builder) ([]pipeline.Reject, error) {
	return nil, event.Iterate(in, func(_ int, e *event.Event) error { out.Add(e); return nil })
}
func (passBolt) Close(context.Context) error { return nil }

type bodySink struct {
	mu     *sync.Mutex
	bodies map[string][]string
	name   string
}

func (s bodySink) Open(context.Context) error { return nil }
func (s bodySink) Write(_ context.Context, b []byte, _ pipeline.Fence) ([]pipeline.Reject, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return nil, event.Iterate(b, func(_ int, e *event.Event) error {
		s.bodies[s.name] = append(s.bodies[s.name], string(e.Body))
		return nil
	})
}
func (s bodySink) Close(context.Context) error { return nil }

// TestRouteFromConfig checks that [bolts.X.route] multiplexes by header
// into the configured channels, that values without a route are
// dead-lettered, and that a parallel key-grouped bolt gets its partitions.
func TestRouteFromConfig(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	bodies := map[string][]string{}
	reg := registry.New()
	for _, p := range []registry.Plugin{
		{Kind: config.KindSource, Type: "gen", NewConfig: func() any { return &struct{}{} },
			NewSource: func(any, registry.Env) (pipeline.Source, error) { return &genSource{n: 300}, nil }},
		{Kind: config.KindBolt, Type: "pass", NewConfig: func() any { return &struct{}{} },
			NewBolt: func(any, registry.Env) (pipeline.Bolt, error) { return passBolt{}, nil }},
		{Kind: config.KindSink, Type: "bodies", NewConfig: func() any { return &struct{}{} },
			NewSink: func(_ any, env registry.Env) (pipeline.Sink, error) {
				return bodySink{&mu, bodies, fmt.Sprintf("%s/%d", env.Name, env.Partition)}, nil
			}},
	} {
		if err := reg.Register(p); err != nil {
			t.Fatal(err)
		}
	}
	text := fmt.Sprintf(`
[agent]
data_dir = %q
[channels.all]
[channels.reds]
[channels.blues]
[sources.gen]
type = "gen"
output = "all"
[bolts.split]
type = "pass"
input = "all"
[bolts.split.route]
header = "color"
routes = { red = "reds", blue = "blues" }
[bolts.keyed]
type = "pass"
input = "blues"
output = "reds"
parallelism = 2
grouping = "key"
[sinks.r]
type = "bodies"
input = "reds"
`, filepath.Join(dir, "data"))
	cfg, err := config.Parse("route.toml", []byte(text), reg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Channels["blues"].Partitions != 2 {
		t.Fatalf("blues has %d partitions, want 2 from the key-grouped bolt reading it", cfg.Channels["blues"].Partitions)
	}
	ctx := context.Background()
	a, err := Build(ctx, cfg, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.Start(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(bodies["r/0"])
		mu.Unlock()
		if n >= 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	got := append([]string(nil), bodies["r/0"]...)
	sort.Strings(got)
	var want []string
	for i := 0; i < 300; i++ {
		if c := []string{"red", "blue", "green"}[i%3]; c != "green" {
			want = append(want, fmt.Sprintf("%s-%d", c, i))
		}
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("sink got %d events, want the %d red and blue ones exactly once", len(got), len(want))
	}
	dlq, err := OpenDeadLetter(cfg.Agent.DataDir, "split", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	r, _ := dlq.Reader("t", 0)
	greens := 0
	for {
		rec, ok, err := r.TryNext()
		if err != nil || !ok {
			break
		}
		event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			if reason, _ := e.Header(pipeline.HeaderReason); reason == `no route for color="green"` {
				greens++
			}
			return nil
		})
	}
	if greens != 100 {
		t.Fatalf("%d green events dead-lettered with the no-route reason, want 100", greens)
	}
}
