package sinkgroup

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SampleConfig is the documented sample of a group sink's config table; the
// README shows it and a test decodes and validates it.
//
//go:embed sample.toml
var SampleConfig string

// MemberTypes is how a group reaches the sink plugins its members are built
// from. The registry provides it when it registers the group, so the group
// uses the same plugin API as any third-party sink.
type MemberTypes interface {
	// NewSinkConfig returns a pointer to the default config of sink type
	// typ, or false if there is no such type.
	NewSinkConfig(typ string) (any, bool)
	// SinkTypes lists the known sink types, for error messages.
	SinkTypes() []string
}

// Config is the group sink's configuration.
type Config struct {
	// Processor is "failover" or "load_balance" (Flume's sink processors).
	Processor string `toml:"processor"`
	// Selector, for load_balance: "round_robin" or "random".
	Selector string `toml:"selector"`
	// Backoff is the first penalty of a failed member: it is not chosen
	// again for that long. Each further failure in a row doubles it, up to
	// MaxBackoff; a success resets it.
	Backoff    units.Duration `toml:"backoff"`
	MaxBackoff units.Duration `toml:"max_backoff"`
	// InDoubtTimeout is how long a batch whose write to a member ended
	// without an answer is retried on that same member only. Past it the
	// group logs a warning and sends the batch to another member: a copy
	// may then exist in both (at-least-once for that batch only).
	InDoubtTimeout units.Duration `toml:"in_doubt_timeout"`
	Members        []Member       `toml:"members"`

	types MemberTypes
}

// Member is one [[members]] table.
type Member struct {
	// Name identifies the member in logs and names its data directory.
	Name string `toml:"name"`
	// Type is a sink plugin type ("forward", "kafka", "file", …).
	Type string `toml:"type"`
	// Priority orders failover members: the highest healthy one is used.
	Priority int `toml:"priority"`
	// Config is the member's own config table, decoded into the plugin's
	// Config by Validate.
	Config Table `toml:"config"`

	decoded any
}

// Decoded is the member's config decoded into its plugin's Config (a
// pointer), once Validate has succeeded.
func (m *Member) Decoded() any { return m.decoded }

// Table holds a TOML table as decoded values until the member's type is
// known. It takes the table whole, so the agent's unknown-key check leaves
// it to the member plugin's own decoding.
type Table struct{ raw map[string]any }

// UnmarshalTOML implements toml.Unmarshaler.
func (t *Table) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("config must be a table, not %T", v)
	}
	t.raw = m
	return nil
}

// DefaultConfig returns the defaults that apply to keys a file leaves out;
// types builds the member configs.
func DefaultConfig(types MemberTypes) Config {
	return Config{
		Processor: "failover", Selector: "round_robin",
		Backoff: units.Of(time.Second), MaxBackoff: units.Of(30 * time.Second), InDoubtTimeout: units.Of(time.Minute),
		types: types,
	}
}

// Validate reports every problem of c at once, each prefixed with its key
// (members[1].config.path: …), and decodes each member's config into its
// plugin's Config, validated by that plugin.
func (c *Config) Validate() error {
	var errs []error
	switch c.Processor {
	case "failover", "load_balance":
	default:
		errs = append(errs, fmt.Errorf("processor: %q is not one of failover, load_balance", c.Processor))
	}
	if c.Selector != "round_robin" && c.Selector != "random" {
		errs = append(errs, fmt.Errorf("selector: %q is not one of round_robin, random", c.Selector))
	}
	for _, err := range []error{c.Backoff.Positive("backoff"), c.MaxBackoff.Positive("max_backoff"), c.InDoubtTimeout.Positive("in_doubt_timeout")} {
		if err != nil {
			errs = append(errs, err) // only errors: an empty errs marks the members decoded
		}
	}
	if c.MaxBackoff.D < c.Backoff.D {
		errs = append(errs, fmt.Errorf("max_backoff: %v is below backoff (%v)", c.MaxBackoff.D, c.Backoff.D))
	}
	if len(c.Members) == 0 {
		errs = append(errs, errors.New("members: at least one [[members]] table is required"))
	}
	seen := map[string]int{}
	for i := range c.Members {
		m := &c.Members[i]
		p := fmt.Sprintf("members[%d]", i)
		if m.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: is required", p))
		} else if strings.ContainsAny(m.Name, `/\`) || m.Name == "." || m.Name == ".." {
			errs = append(errs, fmt.Errorf("%s.name: %q must not contain a path separator (it names a directory)", p, m.Name))
		} else if m.Name == assignDir {
			errs = append(errs, fmt.Errorf("%s.name: %q is reserved (the group's assignment logs live there)", p, m.Name))
		} else if j, dup := seen[m.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is also members[%d]", p, m.Name, j))
		} else {
			seen[m.Name] = i
		}
		if err := c.decodeMember(m); err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("%s.%v", p, e))
			}
		}
	}
	if len(errs) == 0 {
		// Every member is decoded: the catalogue is no longer needed, and
		// dropping it keeps two equal configs deeply equal (a reload
		// compares decoded configs to decide what to restart).
		c.types = nil
	}
	return errors.Join(errs...)
}

func (c *Config) decodeMember(m *Member) error {
	if m.Type == "" {
		return errors.New("type: is required (a sink type, e.g. \"forward\")")
	}
	if c.types == nil {
		if m.decoded != nil {
			return nil // decoded by an earlier Validate
		}
		return errors.New("type: no sink types available (the group was not built through the registry)")
	}
	cfg, ok := c.types.NewSinkConfig(m.Type)
	if !ok {
		return fmt.Errorf("type: unknown sink type %q (known: %s)", m.Type, strings.Join(c.types.SinkTypes(), ", "))
	}
	// The table was decoded generically; encode it back and decode it
	// into the plugin's own Config, so its field types, text unmarshalers
	// and unknown keys are handled exactly as for a top-level sink.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(m.Config.raw); err != nil {
		return fmt.Errorf("config: %v", err)
	}
	md, err := toml.NewDecoder(&buf).Decode(cfg)
	if err != nil {
		return fmt.Errorf("config: %v", strings.TrimPrefix(err.Error(), "toml: "))
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("config.%s: unknown key", k))
	}
	errs = append(errs, unitErrors("config", reflect.ValueOf(cfg))...)
	if v, ok := cfg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("config.%v", e))
			}
		}
	}
	if len(errs) == 0 {
		m.decoded = cfg
	}
	return errors.Join(errs...)
}

// unitErrors finds sizes and durations that failed to parse (they keep the
// error instead of failing the decode).
func unitErrors(path string, v reflect.Value) []error {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.CanInterface() {
		if e, ok := v.Interface().(interface{ Err() error }); ok {
			if err := e.Err(); err != nil {
				return []error{fmt.Errorf("%s: %v", path, err)}
			}
			return nil
		}
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var errs []error
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		p := path
		if !f.Anonymous {
			if name == "" {
				name = f.Name
			}
			p = path + "." + name
		}
		errs = append(errs, unitErrors(p, v.Field(i))...)
	}
	return errs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
