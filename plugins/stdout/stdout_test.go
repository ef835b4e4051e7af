package stdout

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
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

func TestValidate(t *testing.T) {
	err := Config{Stream: "tty", Format: "xml"}.Validate()
	want := "stream: \"tty\" must be \"stdout\" or \"stderr\"\nformat: \"xml\" must be \"body\" or \"headers\""
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestWrite(t *testing.T) {
	var b event.Builder
	b.Add(&event.Event{Body: []byte("one"), Headers: []event.Header{{Name: "path", Value: "/a b"}}})
	b.Add(&event.Event{Body: []byte("two")})
	tests := []struct{ format, want string }{
		{"body", "one\ntwo\n"},
		{"headers", "path=\"/a b\"\tone\n\ttwo\n"},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		s, err := NewWriter(Config{Stream: "stdout", Format: tc.format}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(context.Background(), b.Bytes(), pipeline.Fence{}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("%s: wrote %q, want %q", tc.format, out.String(), tc.want)
		}
		if _, err := s.Write(context.Background(), []byte{9, 0, 0, 0}, pipeline.Fence{}); !errors.Is(err, event.ErrMalformed) {
			t.Errorf("malformed batch: %v", err)
		}
		s.Close(context.Background())
		s.Close(context.Background())
	}
}
