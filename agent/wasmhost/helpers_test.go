package wasmhost

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost/wasmbuild"
	"github.com/sluicehq/sluice/internal/orders"
)

// modules caches test plugins built from testdata during one test run.
var modules sync.Map // source path -> []byte

// module builds testdata/<src> (a .c file) and returns its bytes. Sources
// under testdata are freestanding unless they need WASI.
func module(tb testing.TB, src string) []byte {
	tb.Helper()
	if b, ok := modules.Load(src); ok {
		return b.([]byte)
	}
	target := wasmbuild.Freestanding
	if src == "wasihello.c" || src == "bad/procexit.c" {
		target = wasmbuild.WASI
	}
	b := wasmbuild.MustC(tb, wasmbuild.Options{Target: target}, filepath.Join("testdata", src))
	modules.Store(src, b)
	return b
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestRuntime(tb testing.TB) (*Runtime, *logBuffer) {
	tb.Helper()
	logs := &logBuffer{}
	r, err := NewRuntime(tb.Context(), RuntimeConfig{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close(tb.Context()) })
	return r, logs
}

// batchOf encodes one event per body; key "k<i>" unless keys are given as
// "key:body".
func batchOf(bodies ...string) []byte {
	evs := make([]event.Event, len(bodies))
	for i, b := range bodies {
		key, body, ok := strings.Cut(b, ":")
		if !ok {
			key, body = "", b
		}
		evs[i] = event.Event{Time: int64(i + 1), Key: []byte(key), Body: []byte(body)}
	}
	return event.AppendBatch(nil, evs)
}

func bodiesOf(tb testing.TB, batch []byte) []string {
	tb.Helper()
	evs, err := event.DecodeBatch(nil, batch)
	if err != nil {
		tb.Fatalf("output batch: %v", err)
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.Body)
	}
	return out
}

// newMemState gives a plugin a real, map-backed pipeline.StateStore.
var newMemState = orders.NewMemState

// counts decodes the 8-byte counters the stateful test plugin stores.
func counts(s *orders.MemState) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range s.Dump() {
		out[k] = binary.LittleEndian.Uint64([]byte(v))
	}
	return out
}
