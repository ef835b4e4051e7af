package redis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/plugins/internal/command"
)

// Mapping is one [[commands]] table: a command built from every event,
// for events that are not command records (mapping mode). Templates take
// "{name}" from the event body's top-level JSON field name and "{@key}" from
// the event key; other text is literal.
type Mapping struct {
	Op string `toml:"op"`
	// Key is the key template (for publish: the channel).
	Key string `toml:"key"`
	// Field is the hash field (hincrby, hincrbyfloat, hset) template.
	Field string `toml:"field"`
	// Member is the sorted-set member (zincrby) template.
	Member string `toml:"member"`
	// Value: the increment (hincrby: an integer; hincrbyfloat, zincrby: a
	// number), the string (hset, set) or the message (publish).
	Value string `toml:"value"`
	// TTLms: set's expiry, or expire's, in milliseconds.
	TTLms int64 `toml:"ttl_ms"`
}

type template []part

type part struct {
	lit   string
	field string // "" for a literal; "@key" for the event key
}

func parseTemplate(s string) (template, error) {
	var t template
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			if strings.IndexByte(s, '}') >= 0 {
				return nil, errors.New(`"}" without "{"`)
			}
			return append(t, part{lit: s}), nil
		}
		if strings.IndexByte(s[:i], '}') >= 0 {
			return nil, errors.New(`"}" without "{"`)
		}
		if i > 0 {
			t = append(t, part{lit: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, errors.New(`"{" without "}"`)
		}
		name := s[i+1 : i+j]
		if name == "" || strings.ContainsAny(name, "{") {
			return nil, fmt.Errorf("bad field name %q", name)
		}
		t = append(t, part{field: name})
		s = s[i+j+1:]
	}
	return t, nil
}

// render fills t from the event; fields are top-level JSON values of body.
func (t template) render(fields map[string]json.RawMessage, key []byte) (string, error) {
	if len(t) == 1 && t[0].field == "" {
		return t[0].lit, nil
	}
	var b strings.Builder
	for _, p := range t {
		switch {
		case p.field == "":
			b.WriteString(p.lit)
		case p.field == "@key":
			b.Write(key)
		default:
			raw, ok := fields[p.field]
			if !ok {
				return "", fmt.Errorf("the event has no field %q", p.field)
			}
			if len(raw) > 0 && raw[0] == '"' {
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return "", fmt.Errorf("field %q: %v", p.field, err)
				}
				b.WriteString(s)
			} else if len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
				b.Write(raw)
			} else {
				return "", fmt.Errorf("field %q is %s, not a string or number", p.field, command.Clip(raw))
			}
		}
	}
	return b.String(), nil
}

// mapper builds commands from events with the configured mappings.
type mapper struct {
	ms  []Mapping
	key []template
	fld []template // field or member
	val []template
}

// validateMappings reports every problem of ms, each with its key path.
func validateMappings(ms []Mapping) []error {
	_, errs := newMapper(ms)
	return errs
}

func newMapper(ms []Mapping) (*mapper, []error) {
	m := &mapper{ms: ms}
	var errs []error
	for i, c := range ms {
		at := fmt.Sprintf("commands[%d]", i)
		need := map[string]bool{}
		switch c.Op {
		case "hincrby", "hincrbyfloat", "hset":
			need["key"], need["field"], need["value"] = true, true, true
		case "zincrby":
			need["key"], need["member"], need["value"] = true, true, true
		case "set":
			need["key"], need["value"] = true, true
		case "expire":
			need["key"] = true
			if c.TTLms <= 0 {
				errs = append(errs, fmt.Errorf("%s.ttl_ms: expire needs a positive ttl_ms", at))
			}
		case "publish":
			need["key"], need["value"] = true, true
		default:
			errs = append(errs, fmt.Errorf("%s.op: %q is not one of hincrby, hincrbyfloat, hset, zincrby, set, expire, publish", at, c.Op))
			continue
		}
		if c.TTLms < 0 || c.TTLms > 0 && c.Op != "set" && c.Op != "expire" {
			errs = append(errs, fmt.Errorf("%s.ttl_ms: only for set (optional) and expire, and positive", at))
		}
		vals := map[string]string{"key": c.Key, "field": c.Field, "member": c.Member, "value": c.Value}
		var tk, tf, tv template
		for _, name := range []string{"key", "field", "member", "value"} {
			v := vals[name]
			if need[name] && v == "" {
				errs = append(errs, fmt.Errorf("%s.%s: is required for %s", at, name, c.Op))
				continue
			}
			if !need[name] && v != "" {
				errs = append(errs, fmt.Errorf("%s.%s: does not belong to %s", at, name, c.Op))
				continue
			}
			t, err := parseTemplate(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %v", at, name, err))
				continue
			}
			switch name {
			case "key":
				tk = t
			case "field", "member":
				if v != "" {
					tf = t
				}
			case "value":
				tv = t
			}
		}
		m.key, m.fld, m.val = append(m.key, tk), append(m.fld, tf), append(m.val, tv)
	}
	return m, errs
}

// commands appends the commands of one event to dst, or returns why the
// event cannot be mapped.
func (m *mapper) commands(dst []command.Command, body, key []byte) ([]command.Command, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return dst, fmt.Errorf("event body is not a JSON object: %s", command.Clip(body))
	}
	for i, mc := range m.ms {
		c := command.Command{Op: mc.Op}
		var err error
		if c.Key, err = m.key[i].render(fields, key); err != nil {
			return dst, fmt.Errorf("commands[%d].key: %v", i, err)
		}
		if c.Key == "" || len(c.Key) > command.MaxName {
			return dst, fmt.Errorf("commands[%d].key: renders to an empty or too long key", i)
		}
		if m.fld[i] != nil {
			if c.Field, err = m.fld[i].render(fields, key); err != nil {
				return dst, fmt.Errorf("commands[%d].field: %v", i, err)
			}
			if c.Field == "" {
				return dst, fmt.Errorf("commands[%d]: field or member renders empty", i)
			}
		}
		var v string
		if m.val[i] != nil {
			if v, err = m.val[i].render(fields, key); err != nil {
				return dst, fmt.Errorf("commands[%d].value: %v", i, err)
			}
		}
		switch mc.Op {
		case "hincrby":
			if c.Int, err = strconv.ParseInt(v, 10, 64); err != nil {
				return dst, fmt.Errorf("commands[%d].value: %q is not an integer", i, v)
			}
		case "hincrbyfloat", "zincrby":
			if c.Float, err = strconv.ParseFloat(v, 64); err != nil || strings.ContainsAny(v, "xXnN_") {
				return dst, fmt.Errorf("commands[%d].value: %q is not a number", i, v)
			}
			c.Raw = v
		case "hset", "set", "publish":
			c.Str = v
		}
		if mc.TTLms > 0 {
			c.TTLms, c.HasTTL = mc.TTLms, true
		}
		dst = append(dst, c)
	}
	return dst, nil
}
