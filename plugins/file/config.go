package file

import (
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SampleConfig is the documented sample of a [sinks.NAME] table for the file
// sink; the README shows it and a test decodes and validates it.
//
//go:embed sample.toml
var SampleConfig string

// Config is the file sink's configuration.
type Config struct {
	// Path is the file lines are appended to. Beside it the sink keeps
	// Path+".fence" (what has been applied) and rotated files Path+".NNNNNN".
	Path string `toml:"path"`
	// RotateBytes starts a new file when the current one would grow past
	// it; zero never rotates.
	RotateBytes units.Size `toml:"rotate_bytes"`
	// Fsync makes every Write durable before it returns. Without it a power
	// failure can lose (never duplicate) the last batches.
	Fsync bool `toml:"fsync"`
}

// DefaultConfig returns the defaults that apply to keys a file leaves out.
func DefaultConfig() Config {
	return Config{RotateBytes: units.Bytes(100 << 20), Fsync: true}
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: is required (e.g. path = \"/var/lib/sluice/out/orders.log\")"))
	} else if filepath.Base(c.Path) == "." || filepath.Base(c.Path) == string(filepath.Separator) {
		errs = append(errs, fmt.Errorf("path: %q names a directory, not a file", c.Path))
	}
	if err := c.RotateBytes.Err(); err != nil {
		errs = append(errs, fmt.Errorf("rotate_bytes: %v", err))
	} else if c.RotateBytes.Bytes != 0 && c.RotateBytes.Bytes < 4096 {
		errs = append(errs, fmt.Errorf("rotate_bytes: %s is below the minimum of 4KiB (0 disables rotation)", units.FormatSize(c.RotateBytes.Bytes)))
	}
	return errors.Join(errs...)
}
