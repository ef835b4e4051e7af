package stdout

import (
	_ "embed"
	"fmt"
)

// SampleConfig is the documented sample of a [sinks.NAME] table for the
// stdout sink; the README shows it and a test decodes and validates it.
//
//go:embed sample.toml
var SampleConfig string

// Config is the stdout sink's configuration.
type Config struct {
	// Stream is "stdout" or "stderr".
	Stream string `toml:"stream"`
	// Format is "body" (the body as one line) or "headers" (the headers as
	// name=value pairs, a tab, then the body).
	Format string `toml:"format"`
}

// DefaultConfig returns the defaults that apply to keys a file leaves out.
func DefaultConfig() Config { return Config{Stream: "stdout", Format: "body"} }

// Validate reports every problem of c at once, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	if c.Stream != "stdout" && c.Stream != "stderr" {
		errs = append(errs, fmt.Errorf("stream: %q must be \"stdout\" or \"stderr\"", c.Stream))
	}
	if c.Format != "body" && c.Format != "headers" {
		errs = append(errs, fmt.Errorf("format: %q must be \"body\" or \"headers\"", c.Format))
	}
	return joinErrs(errs)
}
