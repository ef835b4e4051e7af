package store

import (
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SampleConfig is the documented sample of a [sinks.NAME] table for the
// store sink; the README shows it and a test decodes and validates it.
//
//go:embed sample.toml
var SampleConfig string

// Config is the store sink's configuration.
type Config struct {
	// Path is the bbolt database file. A relative path is relative to the
	// agent's data directory (the runner joins them before New).
	Path string `toml:"path"`
	// SweepInterval is how often expired keys are deleted for good; reads
	// never return an expired key in between.
	SweepInterval units.Duration `toml:"sweep_interval"`
	// Fsync commits every batch to disk before acknowledging it. Without it
	// a power failure can lose (never double-count) the last batches.
	Fsync bool `toml:"fsync"`
}

// DefaultConfig returns the defaults that apply to keys a file leaves out.
func DefaultConfig() Config {
	return Config{Path: "results.db", SweepInterval: units.Of(10 * time.Second), Fsync: true}
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: is required (e.g. path = \"results.db\")"))
	}
	if err := c.SweepInterval.Err(); err != nil {
		errs = append(errs, fmt.Errorf("sweep_interval: %v", err))
	} else if c.SweepInterval.D <= 0 {
		errs = append(errs, errors.New("sweep_interval: must be greater than zero"))
	}
	return errors.Join(errs...)
}
