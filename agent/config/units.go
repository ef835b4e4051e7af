package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count written as a string with a unit: "64MiB", "2GiB",
// "500KB", "4096". Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB)
// units are both accepted; "B" or no unit means bytes.
//
// Decoding never fails: a value that does not parse is kept with its error
// and reported by Validate, so one bad value does not hide the others.
type Size struct {
	Bytes int64
	raw   string
	err   error
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	s.raw = string(b)
	s.Bytes, s.err = ParseSize(s.raw)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(FormatSize(s.Bytes)), nil }

// IsSet reports whether the value was given in the file.
func (s Size) IsSet() bool { return s.raw != "" }

// Or returns the size, or def when the value was not given.
func (s Size) Or(def int64) int64 {
	if !s.IsSet() || s.err != nil {
		return def
	}
	return s.Bytes
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses "64MiB", "1.5GB", "4096". The built-in plugins' configs
// parse sizes with it too (plugins/internal/units), in their own words.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	if t == "" {
		return 0, fmt.Errorf("size %q has no number (write e.g. \"64MiB\")", s)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("size %q is negative", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("size %q is not a size (write e.g. \"64MiB\", \"2GiB\", \"500KB\")", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatSize writes n with the largest binary unit that divides it.
func FormatSize(n int64) string {
	for i := 3; i >= 0; i-- {
		u := sizeUnits[i]
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Duration is a time.Duration written as a Go duration string: "500ms",
// "10s", "1m30s". Like Size, decoding keeps errors for Validate.
type Duration struct {
	D   time.Duration
	raw string
	err error
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	d.raw = string(b)
	d.D, d.err = time.ParseDuration(strings.TrimSpace(d.raw))
	if d.err != nil {
		d.err = fmt.Errorf("duration %q is not a duration (write e.g. \"500ms\", \"10s\", \"1m\")", d.raw)
	} else if d.D < 0 {
		d.err = fmt.Errorf("duration %q is negative", d.raw)
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.D.String()), nil }

// IsSet reports whether the value was given in the file.
func (d Duration) IsSet() bool { return d.raw != "" }

// Or returns the duration, or def when the value was not given.
func (d Duration) Or(def time.Duration) time.Duration {
	if !d.IsSet() || d.err != nil {
		return def
	}
	return d.D
}
