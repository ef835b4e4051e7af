package topoagent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/registry"
)

func openChannel(t *testing.T) channel.Channel {
	t.Helper()
	ch, err := channel.Open(channel.Options{Dir: t.TempDir(), Fsync: channel.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func appendBatch(t *testing.T, ch channel.Channel, prefix string, from, n int) {
	t.Helper()
	var b event.Builder
	for i := from; i < from+n; i++ {
		b.Add(&event.Event{Time: int64(i), Body: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	if _, err := ch.Append(context.Background(), 0, "test", b.Bytes(), b.Len(), nil); err != nil {
		t.Fatal(err)
	}
}

// firstOffsetFor returns the offset a fresh handle of reader starts at: the
// oldest record when the name is not registered.
func firstOffsetFor(t *testing.T, ch channel.Channel, reader string) uint64 {
	t.Helper()
	r, err := ch.Reader(reader, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := r.TryNext()
	if err != nil || !ok {
		t.Fatalf("TryNext: %v %v", ok, err)
	}
	if err := ch.RemoveReader(reader, 0); err != nil {
		t.Fatal(err)
	}
	return rec.Offset
}

// TestTapChannel taps a real file channel: only events appended after the
// tap began arrive, every sample-th one, and the tap's reader is gone
// afterwards.
func TestTapChannel(t *testing.T) {
	ch := openChannel(t)
	appendBatch(t, ch, "before", 0, 50)
	oldest := firstOffsetFor(t, ch, "probe")

	const sample, want = 3, 20
	var got []int
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- topoagent.TapChannel(ctx, ch, topoagent.TapReaderName(0), sample, func(e event.Event) bool {
			var i int
			if _, err := fmt.Sscanf(string(e.Body), "after-%d", &i); err != nil {
				t.Errorf("tapped %q, which was appended before the tap began", e.Body)
				return false
			}
			got = append(got, i)
			return len(got) < want
		})
	}()
	// Keep appending until the tap has what it wants: when it registered
	// its reader is not observable from here, and need not be.
	next := 0
	for finished := false; !finished; {
		appendBatch(t, ch, "after", next, 10)
		next += 10
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
	}
	if len(got) != want {
		t.Fatalf("tapped %d events, want %d", len(got), want)
	}
	for k := 1; k < len(got); k++ {
		if got[k]-got[k-1] != sample {
			t.Fatalf("tapped %v: not every %dth event", got, sample)
		}
	}
	if o := firstOffsetFor(t, ch, topoagent.TapReaderName(0)); o != oldest {
		t.Errorf("the tap's reader is still registered (a fresh handle starts at %d, not %d)", o, oldest)
	}
}

func TestTapStopsWithContext(t *testing.T) {
	ch := openChannel(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- topoagent.TapChannel(ctx, ch, topoagent.TapReaderName(1), 1, func(event.Event) bool { return true })
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRemoveTapReaders simulates a tap reader left by a crash: it holds
// back retention until RemoveTapReaders clears it.
func TestRemoveTapReaders(t *testing.T) {
	ch := openChannel(t)
	appendBatch(t, ch, "x", 0, 5)
	appendBatch(t, ch, "x", 5, 5)
	r, err := ch.Reader(topoagent.TapReaderName(2), 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, _ := r.TryNext()
	if err := r.Commit(rec.Offset); err != nil {
		t.Fatal(err)
	}
	if before := ch.Stats().DepthEvents; before != 5 {
		t.Fatalf("depth with the leftover reader = %d, want 5", before)
	}
	if err := topoagent.RemoveTapReaders(ch); err != nil {
		t.Fatal(err)
	}
	if o := firstOffsetFor(t, ch, topoagent.TapReaderName(2)); o != rec.Offset {
		t.Errorf("leftover tap reader still registered: fresh handle at %d, want %d", o, rec.Offset)
	}
}

// fanOutConfig: one source, one channel read by two sinks. A channel and a
// sink share the name "a", as the demo's "results" do.
const fanOutConfig = `
[agent]
data_dir = "%[1]s/data"
[channels.a]
type = "memory"
[sources.in]
type = "tail"
output = "a"
[sources.in.config]
paths = ["%[1]s/in.log"]
[sinks.a]
type = "file"
input = "a"
[sinks.a.config]
path = "%[1]s/a.out"
[sinks.outb]
type = "stdout"
input = "a"
`

func TestTopologyOf(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse("fanout.toml", fmt.Appendf(nil, fanOutConfig, dir), registry.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	topo := topoagent.TopologyOf(cfg)
	var comps []string
	for _, c := range topo.Components {
		comps = append(comps, c.ID+"="+c.Plugin)
	}
	wantComps := "source/in=tail sink/a=file sink/outb=stdout channel/a=memory"
	if strings.Join(comps, " ") != wantComps {
		t.Errorf("components %v, want %s", comps, wantComps)
	}
	var edges []string
	for _, e := range topo.Edges {
		edges = append(edges, e.From+">"+e.To)
	}
	wantEdges := "source/in>channel/a channel/a>sink/a channel/a>sink/outb"
	if strings.Join(edges, " ") != wantEdges {
		t.Errorf("edges %v, want %s", edges, wantEdges)
	}
	if got := topoagent.TopologyOf(nil); got.Components == nil || got.Edges == nil {
		t.Error("an empty topology must encode as empty lists, not null")
	}
}

// TestStateWithoutTopology checks the adapter before a topology exists:
// lifecycle state, reload error, and the features that need wiring.
func TestStateWithoutTopology(t *testing.T) {
	a := topoagent.New(nil, nil, topoagent.Options{})
	if st := a.Status(); st.State != admin.StateStarting || len(st.Components) != 0 {
		t.Errorf("new agent status %+v", st)
	}
	a.SetState(admin.StateRunning)
	a.SetReloadError(fmt.Errorf("bad"))
	if st := a.Status(); st.State != admin.StateRunning || st.ReloadError != "bad" {
		t.Errorf("status %+v", st)
	}
	if a.Results() != nil {
		t.Error("results without a topology")
	}
	if err := a.Reload(context.Background()); err == nil {
		t.Error("Reload without a reload function succeeded")
	}
	if err := a.Tap(context.Background(), "raw", 1, nil); !errors.Is(err, admin.ErrUnknownChannel) {
		t.Errorf("Tap without a topology: %v, want ErrUnknownChannel", err)
	}
}
