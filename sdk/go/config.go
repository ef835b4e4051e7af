package sluice

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Config is the plugin's own TOML table as the host flattened it
// (sdk/ABI.md §4): dotted keys ("window", "fields.price", "hosts.0") mapped to
// text values, plus the whole table as JSON under the empty key.
type Config struct {
	keys   []string // sorted
	values []string
}

// parseConfig decodes config := count:u32 (key:bytes value:bytes)*count. The
// result owns its strings (the input buffer is reused by the next call).
func parseConfig(b []byte) (*Config, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("malformed config: %d bytes is shorter than the 4-byte count", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n)*8 > uint64(len(b)-4) {
		return nil, fmt.Errorf("malformed config: count %d cannot fit in %d bytes", n, len(b))
	}
	c := &Config{keys: make([]string, 0, n), values: make([]string, 0, n)}
	r := batchReader{buf: b, off: 4}
	for i := uint32(0); i < n; i++ {
		k, ok := r.bytes()
		if !ok {
			return nil, fmt.Errorf("malformed config: key %d at byte %d runs past the end", i, r.off)
		}
		v, ok := r.bytes()
		if !ok {
			return nil, fmt.Errorf("malformed config: value of %q at byte %d runs past the end", k, r.off)
		}
		c.keys = append(c.keys, string(k))
		c.values = append(c.values, string(v))
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("malformed config: %d trailing bytes after %d entries", len(b)-r.off, n)
	}
	if !sort.StringsAreSorted(c.keys) {
		// The ABI promises sorted keys; sort anyway rather than fail.
		sort.Sort(byKey{c})
	}
	return c, nil
}

type byKey struct{ c *Config }

func (s byKey) Len() int           { return len(s.c.keys) }
func (s byKey) Less(i, j int) bool { return s.c.keys[i] < s.c.keys[j] }
func (s byKey) Swap(i, j int) {
	s.c.keys[i], s.c.keys[j] = s.c.keys[j], s.c.keys[i]
	s.c.values[i], s.c.values[j] = s.c.values[j], s.c.values[i]
}

// Keys returns the flattened keys in ascending order, without the JSON key "".
func (c *Config) Keys() []string {
	if len(c.keys) > 0 && c.keys[0] == "" {
		return c.keys[1:]
	}
	return c.keys
}

// Lookup returns the value of key and whether it is present.
func (c *Config) Lookup(key string) (string, bool) {
	i := sort.SearchStrings(c.keys, key)
	if i < len(c.keys) && c.keys[i] == key {
		return c.values[i], true
	}
	return "", false
}

// String returns the value of key, or def when absent.
func (c *Config) String(key, def string) string {
	if v, ok := c.Lookup(key); ok {
		return v
	}
	return def
}

// JSON returns the whole table as JSON ("{}" when the host sent none).
func (c *Config) JSON() string { return c.String("", "{}") }

// Int returns key as an integer, def when absent, and an error naming the key
// when the value is not an integer.
func (c *Config) Int(key string, def int64) (int64, error) {
	v, ok := c.Lookup(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return def, fmt.Errorf("config %q: %q is not an integer", key, v)
	}
	return n, nil
}

// Float returns key as a float, def when absent.
func (c *Config) Float(key string, def float64) (float64, error) {
	v, ok := c.Lookup(key)
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return def, fmt.Errorf("config %q: %q is not a number", key, v)
	}
	return f, nil
}

// Bool returns key as a boolean ("true"/"false"), def when absent.
func (c *Config) Bool(key string, def bool) (bool, error) {
	v, ok := c.Lookup(key)
	if !ok {
		return def, nil
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return def, fmt.Errorf("config %q: %q is not true or false", key, v)
}

// Duration returns key parsed by time.ParseDuration ("10s", "1m"), def when
// absent.
func (c *Config) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := c.Lookup(key)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("config %q: %q is not a duration: %v", key, v, err)
	}
	return d, nil
}
