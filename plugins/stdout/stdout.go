// Package stdout is the stdout sink: it prints every event as one line.
// It is at-least-once: a terminal cannot be fenced, so a batch replayed
// after a crash is printed again.
package stdout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

var _ pipeline.Sink = (*Sink)(nil)

// Sink is the stdout sink. It implements pipeline.Sink.
//
// Lifecycle: Open, Write from one goroutine, Close; Close is safe without
// Open and safe twice.
type Sink struct {
	cfg Config
	out io.Writer
	buf []byte
}

// New returns a stdout sink for cfg, which must be valid. logger may be nil
// (the sink logs nothing).
func New(cfg Config, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var out io.Writer = os.Stdout
	if cfg.Stream == "stderr" {
		out = os.Stderr
	}
	return &Sink{cfg: cfg, out: out}, nil
}

// NewWriter returns a sink that writes to w instead, for tests and tools.
func NewWriter(cfg Config, w io.Writer) (*Sink, error) {
	s, err := New(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.out = w
	return s, nil
}

// Open does nothing; the stream is always there.
func (s *Sink) Open(ctx context.Context) error { return nil }

// Write prints the batch with one write call.
func (s *Sink) Write(ctx context.Context, batch []byte, _ pipeline.Fence) ([]pipeline.Reject, error) {
	s.buf = s.buf[:0]
	err := event.Iterate(batch, func(_ int, e *event.Event) error {
		if s.cfg.Format == "headers" {
			for i, h := range e.Headers {
				if i > 0 {
					s.buf = append(s.buf, ' ')
				}
				s.buf = fmt.Appendf(s.buf, "%s=%q", h.Name, h.Value)
			}
			s.buf = append(s.buf, '\t')
		}
		s.buf = append(s.buf, e.Body...)
		s.buf = append(s.buf, '\n')
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stdout sink: %w", err)
	}
	if _, err := s.out.Write(s.buf); err != nil {
		return nil, fmt.Errorf("stdout sink: %w", err)
	}
	return nil, nil
}

// Close does nothing and is safe twice.
func (s *Sink) Close(ctx context.Context) error { return nil }

func joinErrs(errs []error) error { return errors.Join(errs...) }
