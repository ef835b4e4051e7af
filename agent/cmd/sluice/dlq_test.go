package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/topology"
)

func TestDLQListAndReplayOnce(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "m.wasm")
	os.WriteFile(mod, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "a.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[agent]
data_dir = %q
[channels.raw]
[channels.out]
[sources.log]
type = "tail"
output = "raw"
config = { paths = ["/tmp/none/*.log"] }
[bolts.parse]
wasm = %q
input = "raw"
output = "out"
[sinks.s]
wasm = %q
input = "out"
`, data, mod, mod)), 0o644)

	// Three dead letters of stage parse, as the runner writes them.
	dlq, err := topology.OpenDeadLetter(data, "parse", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b event.Builder
	for i, body := range []string{"{bad json", "not an order", "{}"} {
		b.Add(&event.Event{Body: []byte(body), Headers: []event.Header{
			{Name: "path", Value: "/var/log/o.log"},
			{Name: pipeline.HeaderReason, Value: fmt.Sprintf("reason %d", i)},
			{Name: pipeline.HeaderStage, Value: "parse"},
			{Name: pipeline.HeaderOrigin, Value: fmt.Sprintf("raw/0@%d", i+1)},
		}})
	}
	if _, err := dlq.Append(context.Background(), 0, "parse#0", b.Bytes(), b.Len(), nil); err != nil {
		t.Fatal(err)
	}
	dlq.Close()

	code, out, errs := run(t, "dlq", "list", "-c", cfg, "parse")
	want := `parse@1	reason="reason 0"	origin=raw/0@1	{bad json
parse@1	reason="reason 1"	origin=raw/0@2	not an order
parse@1	reason="reason 2"	origin=raw/0@3	{}
parse: 3 dead letters
`
	if code != exitOK || out != want {
		t.Fatalf("dlq list: exit %d\n%s\nstderr %s\nwant:\n%s", code, out, errs, want)
	}
	for i, wantOut := range []string{"parse: replayed 3 events into channel raw\n", "parse: replayed 0 events into channel raw\n"} {
		code, out, errs = run(t, "dlq", "replay", "-c", cfg, "parse")
		if code != exitOK || out != wantOut {
			t.Fatalf("replay %d: exit %d, %q, stderr %s", i+1, code, out, errs)
		}
	}
	raw, err := channel.Open(channel.Options{Dir: topology.ChannelDir(data, "raw")})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	r, _ := raw.Reader("t", 0)
	var got []string
	for {
		rec, ok, err := r.TryNext()
		if err != nil || !ok {
			break
		}
		event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			var hs []string
			for _, h := range e.Headers {
				hs = append(hs, h.Name)
			}
			got = append(got, string(e.Body)+" "+strings.Join(hs, ","))
			return nil
		})
	}
	if strings.Join(got, "|") != "{bad json path|not an order path|{} path" {
		t.Fatalf("replayed events: %q (want bodies once, sluice.* headers removed)", got)
	}
	if code, _, _ := run(t, "dlq", "replay", "-c", cfg, "log"); code != exitUsage {
		t.Errorf("replaying a source's dead letters: exit %d, want %d", code, exitUsage)
	}
}
