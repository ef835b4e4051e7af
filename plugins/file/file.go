// Package file is the file sink: it appends each event's body as one line to
// a file, rotates by size, and is effectively-once under replays.
//
// Effectively-once: after the lines of a batch are written (and fsynced),
// the sink replaces a sidecar file, Path+".fence", that records the size of
// the data file and the batch's fence (pipeline.Fence) per stream. A batch
// at or below the recorded fence of its stream is skipped. On Open, bytes of
// the data file past the recorded size are the lines of a batch whose fence
// was never recorded (a crash between the two writes): they are cut off, and
// the runner's replay of that batch writes them again, once.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

var _ pipeline.Sink = (*Sink)(nil)

// Sink is the file sink. It implements pipeline.Sink.
//
// Lifecycle: New, Open once, Write from one goroutine, Close. Close is safe
// without Open and safe twice.
type Sink struct {
	cfg Config
	log *slog.Logger

	f      *os.File
	state  fenceState
	buf    []byte
	broken bool // a failed Write left the files to be checked again

	// crashAt, set by tests, makes Write stop dead at a point ("after-data",
	// "after-rename") as if the process were killed there.
	crashAt string
}

var errSimulatedCrash = errors.New("file sink: simulated crash")

// New returns a file sink for cfg, which must be valid. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg, log: logger}, nil
}

func (s *Sink) fencePath() string { return s.cfg.Path + ".fence" }

// RotatedPath is the name a data file of generation seq gets when rotated.
func RotatedPath(path string, seq uint64) string { return fmt.Sprintf("%s.%06d", path, seq) }

// Open creates the directory and files if needed and repairs the effects of
// a crash: it cuts the data file back to the size the fence file records,
// or finishes a rotation that was interrupted.
func (s *Sink) Open(ctx context.Context) error {
	if s.f != nil {
		return errors.New("file sink: Open called twice")
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o755); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	return s.recover()
}

func (s *Sink) recover() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	raw, err := os.ReadFile(s.fencePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// First use. Lines already in the file (from before the sink
		// managed it) are kept and appended after.
		s.state = fenceState{Seq: 1, Streams: map[string]uint64{}}
		if fi, err := os.Stat(s.cfg.Path); err == nil {
			s.state.Size = uint64(fi.Size())
		}
		if err := s.writeFence(); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("file sink: %w", err)
	default:
		if s.state, err = decodeFence(raw); err != nil {
			return fmt.Errorf("%s: %w (it records which batches are in %s; delete both to start over)", s.fencePath(), err, s.cfg.Path)
		}
	}
	fi, err := os.Stat(s.cfg.Path)
	if errors.Is(err, fs.ErrNotExist) && s.state.Size > 0 {
		// Killed between renaming the full file away and recording the new
		// generation: finish that rotation.
		rotated := RotatedPath(s.cfg.Path, s.state.Seq)
		if err := cutTo(rotated, s.state.Size); err != nil {
			return fmt.Errorf("file sink: %s is missing and %s cannot complete the interrupted rotation: %w", s.cfg.Path, rotated, err)
		}
		s.log.Warn("file sink: finished a rotation interrupted by a crash", "rotated", rotated)
		s.state.Seq++
		s.state.Size = 0
		if err := s.writeFence(); err != nil {
			return err
		}
	} else if err == nil {
		size := uint64(fi.Size())
		if size < s.state.Size {
			return fmt.Errorf("file sink: %s has %d bytes but %s says %d were written: the file was changed outside the sink (delete both to start over)",
				s.cfg.Path, size, s.fencePath(), s.state.Size)
		}
		if size > s.state.Size {
			s.log.Warn("file sink: cutting lines of a batch whose fence was not recorded; the replay writes them again",
				"path", s.cfg.Path, "bytes", size-s.state.Size)
			if err := cutTo(s.cfg.Path, s.state.Size); err != nil {
				return fmt.Errorf("file sink: %w", err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file sink: %w", err)
	}
	s.f, err = os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.broken = false
	return nil
}

// Write appends the bodies of batch, one line each, unless fence shows the
// batch was already applied.
func (s *Sink) Write(ctx context.Context, batch []byte, fence pipeline.Fence) ([]pipeline.Reject, error) {
	if s.f == nil && !s.broken {
		return nil, errors.New("file sink: Write without Open")
	}
	if s.broken {
		if err := s.recover(); err != nil {
			return nil, err
		}
	}
	if last, ok := s.state.Streams[fence.Stream]; ok && fence.Offset <= last {
		return nil, nil // a replay of a batch already in the file
	}
	s.buf = s.buf[:0]
	if err := event.Iterate(batch, func(_ int, e *event.Event) error {
		s.buf = append(s.buf, e.Body...)
		s.buf = append(s.buf, '\n')
		return nil
	}); err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	if err := s.apply(fence); err != nil {
		if err != errSimulatedCrash {
			s.broken = true
		}
		return nil, err
	}
	return nil, nil
}

func (s *Sink) apply(fence pipeline.Fence) error {
	limit := uint64(s.cfg.RotateBytes.Bytes)
	if limit > 0 && s.state.Size > 0 && s.state.Size+uint64(len(s.buf)) > limit {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if len(s.buf) > 0 {
		if _, err := s.f.Write(s.buf); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
		if s.cfg.Fsync {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("file sink: %w", err)
			}
		}
	}
	if s.crashAt == "after-data" {
		return errSimulatedCrash
	}
	prevSize := s.state.Size
	s.state.Size += uint64(len(s.buf))
	prev, had := s.state.Streams[fence.Stream]
	s.state.Streams[fence.Stream] = fence.Offset
	if err := s.writeFence(); err != nil {
		s.state.Size = prevSize
		if had {
			s.state.Streams[fence.Stream] = prev
		} else {
			delete(s.state.Streams, fence.Stream)
		}
		return err
	}
	return nil
}

func (s *Sink) rotate() error {
	rotated := RotatedPath(s.cfg.Path, s.state.Seq)
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.f = nil
	if err := os.Rename(s.cfg.Path, rotated); err != nil {
		return fmt.Errorf("file sink: rotating: %w", err)
	}
	if err := syncDir(filepath.Dir(s.cfg.Path)); err != nil {
		return err
	}
	if s.crashAt == "after-rename" {
		return errSimulatedCrash
	}
	s.state.Seq++
	s.state.Size = 0
	if err := s.writeFence(); err != nil {
		return err
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.f = f
	s.log.Info("file sink: rotated", "to", rotated)
	return nil
}

// writeFence replaces the fence file atomically and durably.
func (s *Sink) writeFence() error {
	tmp := s.fencePath() + ".tmp"
	if err := os.WriteFile(tmp, s.state.encode(), 0o644); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	if s.cfg.Fsync {
		f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	if err := os.Rename(tmp, s.fencePath()); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	if s.cfg.Fsync {
		return syncDir(filepath.Dir(s.cfg.Path))
	}
	return nil
}

// Close closes the data file. It is safe without Open and safe twice.
func (s *Sink) Close(ctx context.Context) error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func cutTo(path string, size uint64) error {
	if err := os.Truncate(path, int64(size)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("file sink: sync %s: %w", dir, err)
	}
	return nil
}
