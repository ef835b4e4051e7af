package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/client"
	"github.com/sluicehq/sluice/agent/event"
)

func TestReadSSE(t *testing.T) {
	in := ": comment\n" +
		"event: status\ndata: {\"a\":1}\n\n" +
		"data: line1\r\ndata: line2\r\nid: 7\r\n\r\n" + // CRLF, two data lines, no event name
		"event: ignored-without-data\n\n" +
		"data:nospace\n\n" +
		"event: cr\rdata: x\r\r" + // lone CRs end lines too
		"event: last\ndata: unterminated" // no blank line: not dispatched
	var got []client.Message
	err := client.ReadSSE(strings.NewReader(in), func(m client.Message) error { got = append(got, m); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Message{
		{Event: "status", Data: []byte(`{"a":1}`)},
		{Event: "message", Data: []byte("line1\nline2"), ID: "7"},
		{Event: "message", Data: []byte("nospace")},
		{Event: "cr", Data: []byte("x")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d messages %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].Event != want[i].Event || string(got[i].Data) != string(want[i].Data) || got[i].ID != want[i].ID {
			t.Errorf("message %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	stop := errors.New("stop")
	if err := client.ReadSSE(strings.NewReader(in), func(client.Message) error { return stop }); err != stop {
		t.Errorf("fn's error not returned: %v", err)
	}
	long := "data: " + strings.Repeat("x", client.MaxLine+1) + "\n\n"
	if err := client.ReadSSE(strings.NewReader(long), func(client.Message) error { return nil }); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("an over-long line gave %v", err)
	}
}

func FuzzReadSSE(f *testing.F) {
	f.Add([]byte("event: status\ndata: {}\n\n"))
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n:c\n"))
	f.Add([]byte("event\ndata\n\nid:\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = client.ReadSSE(strings.NewReader(string(b)), func(m client.Message) error {
			if m.Event == "" || strings.ContainsAny(m.Event+m.ID, "\r\n") {
				t.Fatalf("dispatched a message with a bad event name or id: %+v", m)
			}
			return nil
		})
	})
}

func TestRenderStatus(t *testing.T) {
	st := &admin.StatusView{
		Status: admin.Status{State: admin.StateRunning, ReloadError: "bad toml",
			Components: []admin.ComponentStatus{
				{Name: "tail", Kind: "source", State: admin.StateRunning, EventsOut: 1000,
					BatchLatency: admin.Histogram{Count: 4, Sum: 0.01}},
				{Name: "parse", Kind: "bolt", State: admin.StateFailed, LastError: "trap", EventsIn: 900, EventsOut: 890, DeadLettered: 10, Restarts: 2},
			},
			Channels: []admin.ChannelStatus{{Name: "raw", DepthEvents: 100, DepthBytes: 2000, DiskBytes: 4096, Appends: 3, LowDisk: true}},
			Plugins:  []admin.PluginStatus{{Component: "parse", MemoryBytes: 131072, GuestTime: 1500 * time.Millisecond}},
		},
		Time:  time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Rates: map[string]admin.Rate{"source/tail": {Out: 250}},
	}
	var sb strings.Builder
	if err := client.RenderStatus(&sb, st); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	lines := strings.Split(out, "\n")
	for i, want := range []string{
		"agent running at 12:00:00 (last reload rejected: bad toml)",
		"COMPONENT KIND STATE IN/s OUT/s IN OUT DEAD-LETTERED RESTARTS BATCH ms",
		"tail source running 0.0 250.0 0 1000 0 0 2.50",
		"parse bolt failed - - 900 890 10 2 -",
		"",
		"CHANNEL DEPTH DEPTH BYTES DISK BYTES APPENDS",
		"raw 100 2000 4096 3 LOW DISK",
		"",
		"WASM PLUGIN MEMORY GUEST s",
		"parse 131072 1.500",
		"failing: parse: trap",
	} {
		if i >= len(lines) || strings.Join(strings.Fields(lines[i]), " ") != want {
			t.Errorf("line %d of the frame is not %q:\n%s", i, want, out)
		}
	}
}

// TestTop runs Top against a real admin server over a status that changes
// between frames.
func TestTop(t *testing.T) {
	a := &countingAgent{}
	s, err := admin.New(a, admin.Config{Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	var sb strings.Builder
	if err := client.Top(context.Background(), &sb, client.New(ts.URL, ""), client.TopOptions{Interval: time.Millisecond, Frames: 3, Clear: true}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(sb.String(), "\x1b[H\x1b[2J"); n != 3 {
		t.Errorf("%d frames, want 3:\n%s", n, sb.String())
	}
	if !strings.Contains(sb.String(), "gen") {
		t.Errorf("no component in the output:\n%s", sb.String())
	}

	bad := client.New(ts.URL, "")
	bad.Base += "/nope"
	if err := client.Top(context.Background(), &sb, bad, client.TopOptions{Frames: 1}); err == nil {
		t.Error("Top against a wrong URL returned nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := client.Top(ctx, &sb, client.New(ts.URL, ""), client.TopOptions{}); err != nil {
		t.Errorf("Top with an ended context: %v", err)
	}
	tokenless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"state":"running","components":[],"channels":[],"time":"2026-11-25T12:00:00Z","rates":{}}`))
	}))
	defer tokenless.Close()
	if _, err := client.New(tokenless.URL, "t").Status(context.Background()); err != nil {
		t.Errorf("the token was not sent: %v", err)
	}
	if _, err := client.New(strings.TrimPrefix(tokenless.URL, "http://"), "").Status(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the token: %v", err)
	}
}

// countingAgent's only component produces more events at every call.
type countingAgent struct{ n atomic.Uint64 }

func (c *countingAgent) Topology() admin.Topology { return admin.Topology{} }
func (c *countingAgent) Status() admin.Status {
	return admin.Status{State: admin.StateRunning, Components: []admin.ComponentStatus{{Name: "gen", Kind: "source", EventsOut: c.n.Add(100)}}}
}
func (c *countingAgent) Results() admin.ResultsReader { return nil }
func (c *countingAgent) Tap(context.Context, string, int, func(event.Event) bool) error {
	return nil
}
func (c *countingAgent) Reload(context.Context) error { return nil }
