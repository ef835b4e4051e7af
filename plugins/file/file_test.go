package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

func TestSampleConfigDecodesAndValidates(t *testing.T) {
	cfg := DefaultConfig()
	md, err := toml.Decode(SampleConfig, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("sample.toml has keys the config does not know: %v", und)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	if _, err := toml.Decode(`rotate_bytes = "1KiB"`, &cfg); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	want := "path: is required (e.g. path = \"/var/lib/sluice/out/orders.log\")\nrotate_bytes: 1KiB is below the minimum of 4KiB (0 disables rotation)"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v\nwant %s", err, want)
	}
	cfg = DefaultConfig()
	if _, err := toml.Decode("path = \"x\"\nrotate_bytes = \"big\"", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `rotate_bytes: "big" is not a size`) {
		t.Fatalf("Validate() = %v", err)
	}
}

func batch(prefix string, from, to int) []byte {
	var b event.Builder
	for i := from; i < to; i++ {
		b.Add(&event.Event{Body: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	return append([]byte(nil), b.Bytes()...)
}

func lines(prefix string, from, to int) string {
	var s strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&s, "%s-%d\n", prefix, i)
	}
	return s.String()
}

func openSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func write(t *testing.T, s *Sink, b []byte, stream string, off uint64) {
	t.Helper()
	rej, err := s.Write(context.Background(), b, pipeline.Fence{Stream: stream, Offset: off})
	if err != nil || rej != nil {
		t.Fatalf("Write: %v %v", rej, err)
	}
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testCfg(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "out", "orders.log")
	return cfg
}

func TestReplaysAreSkippedPerStream(t *testing.T) {
	cfg := testCfg(t)
	s := openSink(t, cfg)
	write(t, s, batch("a", 0, 2), "raw/0", 10)
	write(t, s, batch("b", 0, 2), "raw/1", 3)
	write(t, s, batch("a", 0, 2), "raw/0", 10) // replay
	write(t, s, batch("a", 2, 3), "raw/0", 11)
	write(t, s, batch("b", 0, 2), "raw/1", 2) // older than the fence
	s.Close(context.Background())
	s.Close(context.Background())

	s = openSink(t, cfg) // the fence survives a restart
	write(t, s, batch("a", 2, 3), "raw/0", 11)
	write(t, s, batch("b", 2, 3), "raw/1", 4)
	want := lines("a", 0, 2) + lines("b", 0, 2) + lines("a", 2, 3) + lines("b", 2, 3)
	if got := content(t, cfg.Path); got != want {
		t.Fatalf("file holds\n%s\nwant\n%s", got, want)
	}
}

func TestCrashBetweenDataAndFenceDoesNotDuplicate(t *testing.T) {
	cfg := testCfg(t)
	s := openSink(t, cfg)
	write(t, s, batch("a", 0, 3), "raw/0", 1)
	s.crashAt = "after-data"
	if _, err := s.Write(context.Background(), batch("a", 3, 6), pipeline.Fence{Stream: "raw/0", Offset: 2}); err != errSimulatedCrash {
		t.Fatalf("Write = %v, want the simulated crash", err)
	}
	if got := content(t, cfg.Path); got != lines("a", 0, 6) {
		t.Fatalf("the crash should leave the unfenced lines in the file, got\n%s", got)
	}
	// The process is gone; a new one opens the sink and the runner replays.
	s2 := openSink(t, cfg)
	if got := content(t, cfg.Path); got != lines("a", 0, 3) {
		t.Fatalf("Open should cut the unfenced lines, got\n%s", got)
	}
	write(t, s2, batch("a", 3, 6), "raw/0", 2)
	write(t, s2, batch("a", 3, 6), "raw/0", 2)
	if got := content(t, cfg.Path); got != lines("a", 0, 6) {
		t.Fatalf("after replay:\n%s", got)
	}
}

func TestTornWriteIsCut(t *testing.T) {
	cfg := testCfg(t)
	s := openSink(t, cfg)
	write(t, s, batch("a", 0, 2), "s", 1)
	s.Close(context.Background())
	f, err := os.OpenFile(cfg.Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a-2\na-") // half a batch, as a kill -9 mid-write leaves it
	f.Close()
	s = openSink(t, cfg)
	write(t, s, batch("a", 2, 4), "s", 2)
	if got := content(t, cfg.Path); got != lines("a", 0, 4) {
		t.Fatalf("file holds\n%s", got)
	}
}

func TestRotation(t *testing.T) {
	cfg := testCfg(t)
	cfg.RotateBytes = units.Bytes(4096)
	s := openSink(t, cfg)
	const batches = 100 // 100 × 20 lines × ~6.5 bytes ≈ 13 KB: at least two rotations
	for i := 0; i < batches; i++ {
		write(t, s, batch("r", i*20, i*20+20), "s", uint64(i))
		if i == 45 {
			// Crash in the middle of a rotation, after the rename.
			s.crashAt = "after-rename"
			for j := i + 1; ; j++ {
				_, err := s.Write(context.Background(), batch("r", j*20, j*20+20), pipeline.Fence{Stream: "s", Offset: uint64(j)})
				if err == errSimulatedCrash {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				i = j
			}
			s = openSink(t, cfg) // restart; the runner replays from the last fence
		}
	}
	s.Close(context.Background())
	var all strings.Builder
	var n int
	for seq := uint64(1); ; seq++ {
		b, err := os.ReadFile(RotatedPath(cfg.Path, seq))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 4096 {
			t.Fatalf("rotated file %d has %d bytes, over rotate_bytes", seq, len(b))
		}
		all.Write(b)
		n++
	}
	all.WriteString(content(t, cfg.Path))
	if n < 2 {
		t.Fatalf("%d rotated files, want at least 2", n)
	}
	if all.String() != lines("r", 0, batches*20) {
		t.Fatalf("lines across the rotated files differ from what was written")
	}
}

func TestChangedFilesAreReportedNotGuessed(t *testing.T) {
	cfg := testCfg(t)
	s := openSink(t, cfg)
	write(t, s, batch("a", 0, 3), "s", 1)
	s.Close(context.Background())
	if err := os.Truncate(cfg.Path, 2); err != nil {
		t.Fatal(err)
	}
	s2, _ := New(cfg, nil)
	err := s2.Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "has 2 bytes but") || !strings.Contains(err.Error(), cfg.Path) {
		t.Fatalf("Open after outside truncation: %v", err)
	}
	if err := os.WriteFile(cfg.Path+".fence", []byte("SLFF\x01garbage!"), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, _ := New(cfg, nil)
	err = s3.Open(context.Background())
	if !errors.Is(err, ErrBadFence) || !strings.Contains(err.Error(), cfg.Path+".fence") {
		t.Fatalf("Open with a damaged fence file: %v", err)
	}
}

func TestMalformedBatchWritesNothing(t *testing.T) {
	cfg := testCfg(t)
	s := openSink(t, cfg)
	good := batch("a", 0, 2)
	if _, err := s.Write(context.Background(), good[:len(good)-1], pipeline.Fence{Stream: "s", Offset: 1}); !errors.Is(err, event.ErrMalformed) {
		t.Fatalf("Write of a damaged batch: %v", err)
	}
	write(t, s, good, "s", 1)
	if got := content(t, cfg.Path); got != lines("a", 0, 2) {
		t.Fatalf("file holds %q", got)
	}
}

func TestCloseWithoutOpen(t *testing.T) {
	s, err := New(testCfg(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeFence(f *testing.F) {
	f.Add((&fenceState{Seq: 1, Streams: map[string]uint64{}}).encode())
	f.Add((&fenceState{Seq: 7, Size: 12345, Streams: map[string]uint64{"raw/0": 99, "raw/1": 1 << 40}}).encode())
	f.Add([]byte("SLFF\x01\x00\x00\xff\xff\xff\xff\x0f\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeFence(b)
		if err != nil {
			if !errors.Is(err, ErrBadFence) {
				t.Fatalf("error %v does not wrap ErrBadFence", err)
			}
			return
		}
		st2, err := decodeFence(st.encode())
		if err != nil {
			t.Fatalf("re-encoded fence does not decode: %v", err)
		}
		if fmt.Sprint(st) != fmt.Sprint(st2) {
			t.Fatalf("round trip changed %+v into %+v", st, st2)
		}
	})
}
