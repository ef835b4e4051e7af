package tail

import (
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SampleConfig is the documented sample of a [sources.NAME] table for the
// tail source; the README shows it and a test decodes and validates it.
//
//go:embed sample.toml
var SampleConfig string

// Config is the tail source's configuration.
type Config struct {
	// Paths are glob patterns (filepath.Match syntax) of the files to follow.
	Paths []string `toml:"paths"`
	// StartAt says where to start in files that exist when the source starts
	// with no stored position: "beginning" or "end". Files that appear later
	// are always read from their beginning.
	StartAt string `toml:"start_at"`
	// MaxLineBytes bounds one line; a longer line becomes a dead letter with
	// its first MaxLineBytes bytes and the rest of it is skipped.
	MaxLineBytes units.Size `toml:"max_line_bytes"`
	// ReadBufferBytes is the size of one read from a file.
	ReadBufferBytes units.Size `toml:"read_buffer_bytes"`
	// MaxBatchBytes bounds the encoded size of one batch.
	MaxBatchBytes units.Size `toml:"max_batch_bytes"`
	// FingerprintBytes is how many leading bytes identify a file together
	// with its device and inode.
	FingerprintBytes int `toml:"fingerprint_bytes"`
	// PollInterval is how long to wait at the end of every file before
	// looking again.
	PollInterval units.Duration `toml:"poll_interval"`
	// ScanInterval is how often the globs are expanded again to find new files.
	ScanInterval units.Duration `toml:"scan_interval"`
	// QuietPeriod, when not zero, turns a last line without a newline into an
	// event once its file has not grown for this long. Zero waits for the
	// newline forever (except in a rotated or deleted file, see RotateWait).
	QuietPeriod units.Duration `toml:"quiet_period"`
	// RotateWait is how long a file that was renamed away or deleted is still
	// followed after its last growth, for writers that have not reopened yet.
	RotateWait units.Duration `toml:"rotate_wait"`
	// PathHeader names the header that carries the file path; "" omits it.
	PathHeader string `toml:"path_header"`
}

// DefaultConfig returns the defaults that apply to keys a file leaves out.
func DefaultConfig() Config {
	return Config{
		StartAt:          "beginning",
		MaxLineBytes:     units.Bytes(256 << 10),
		ReadBufferBytes:  units.Bytes(256 << 10),
		MaxBatchBytes:    units.Bytes(1 << 20),
		FingerprintBytes: 256,
		PollInterval:     units.Of(100 * time.Millisecond),
		ScanInterval:     units.Of(time.Second),
		RotateWait:       units.Of(5 * time.Second),
		PathHeader:       "path",
	}
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.Paths) == 0 {
		bad("paths", "at least one glob is required (e.g. paths = [\"/var/log/app/*.log\"])")
	}
	for i, p := range c.Paths {
		if p == "" {
			bad(fmt.Sprintf("paths[%d]", i), "is empty")
		} else if _, err := filepath.Match(p, ""); err != nil {
			bad(fmt.Sprintf("paths[%d]", i), "%q is not a valid glob: %v", p, err)
		}
	}
	if c.StartAt != "beginning" && c.StartAt != "end" {
		bad("start_at", "%q must be \"beginning\" or \"end\"", c.StartAt)
	}
	sizes := []struct {
		key string
		v   units.Size
		min int64
	}{
		{"max_line_bytes", c.MaxLineBytes, 1},
		{"read_buffer_bytes", c.ReadBufferBytes, 4096},
		{"max_batch_bytes", c.MaxBatchBytes, 4096},
	}
	for _, s := range sizes {
		if s.v.Err() != nil {
			bad(s.key, "%v", s.v.Err())
		} else if s.v.Bytes < s.min {
			bad(s.key, "%s is below the minimum of %s", units.FormatSize(s.v.Bytes), units.FormatSize(s.min))
		}
	}
	if c.FingerprintBytes < 1 || c.FingerprintBytes > 4096 {
		bad("fingerprint_bytes", "%d must be between 1 and 4096", c.FingerprintBytes)
	}
	durs := []struct {
		key      string
		v        units.Duration
		positive bool
	}{
		{"poll_interval", c.PollInterval, true},
		{"scan_interval", c.ScanInterval, true},
		{"quiet_period", c.QuietPeriod, false},
		{"rotate_wait", c.RotateWait, false},
	}
	for _, d := range durs {
		if d.v.Err() != nil {
			bad(d.key, "%v", d.v.Err())
		} else if d.positive && d.v.D <= 0 {
			bad(d.key, "must be greater than zero")
		}
	}
	return errors.Join(errs...)
}
