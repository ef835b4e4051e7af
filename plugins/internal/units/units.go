// Package units holds the size and duration types that built-in plugin
// configs decode from TOML strings ("64KiB", "250ms").
//
// Decoding never fails: a value that does not parse keeps its error, and the
// plugin's Validate reports it with its key path next to every other problem,
// so one typo does not hide the rest.
package units

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/agent/config"
)

// Size is a byte count written with a unit: "64KiB", "100MiB", "4096".
type Size struct {
	Bytes int64
	err   error
}

// Bytes returns a Size of n bytes, for building configs in Go.
func Bytes(n int64) Size { return Size{Bytes: n} }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	s.Bytes, s.err = ParseSize(string(b))
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(FormatSize(s.Bytes)), nil }

// Err is the parse error of the text the size was decoded from, if any.
func (s Size) Err() error { return s.err }

// ParseSize parses "64MiB", "1.5GB", "4096". The units and the arithmetic
// are the agent config's (config.ParseSize), so a size means the same in
// either file; only the wording of the error is the plugins' own.
func ParseSize(s string) (int64, error) {
	n, err := config.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (write e.g. \"64KiB\", \"100MiB\", \"4096\")", s)
	}
	return n, nil
}

// FormatSize writes n with the largest binary unit that divides it.
func FormatSize(n int64) string { return config.FormatSize(n) }

// Duration is a time.Duration written as a Go duration string: "250ms", "5s".
type Duration struct {
	D   time.Duration
	err error
}

// Of returns a Duration of d, for building configs in Go.
func Of(d time.Duration) Duration { return Duration{D: d} }

// UnmarshalText implements encoding.TextUnmarshaler. It is time.ParseDuration
// and a sign check, as in agent/config, written out here because the agent's
// Duration words its two errors differently and does not expose which one.
func (d *Duration) UnmarshalText(b []byte) error {
	d.D, d.err = time.ParseDuration(strings.TrimSpace(string(b)))
	if d.err != nil {
		d.err = fmt.Errorf("%q is not a duration (write e.g. \"250ms\", \"5s\", \"1m\")", string(b))
	} else if d.D < 0 {
		d.err = fmt.Errorf("%q is negative", string(b))
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.D.String()), nil }

// Err is the parse error of the text the duration was decoded from, if any.
func (d Duration) Err() error { return d.err }

// Positive reports the duration under key if it did not parse or is not
// greater than zero (a timeout or backoff of zero would spin or never
// wait); nil otherwise.
func (d Duration) Positive(key string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %v", key, d.err)
	}
	if d.D <= 0 {
		return fmt.Errorf("%s: must be greater than zero", key)
	}
	return nil
}
