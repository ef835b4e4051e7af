// Package command decodes command records (docs/command-records.md), the
// JSON objects result bolts emit and result sinks (store, redis) apply with
// the meaning of the Redis command of the same name.
//
// Parse is the one decoder of these bytes, so every sink rejects the same
// records with the same reasons.
package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Ops lists the known ops, in the order the documentation gives them.
var Ops = []string{"hincrby", "hincrbyfloat", "hset", "zincrby", "set", "expire", "xadd", "publish"}

// Command is one decoded, checked command record.
type Command struct {
	Op     string
	Key    string // for publish: the channel
	Field  string // hash field or sorted-set member
	Int    int64  // hincrby value
	Float  float64
	Str    string // hset/set value, publish message
	TTLms  int64
	HasTTL bool
	Fields map[string]string // xadd
	// Raw is the number exactly as the record wrote it (hincrbyfloat,
	// zincrby), so a sink can pass it on without a float round trip.
	Raw string
}

// MaxName bounds keys, fields and members.
const MaxName = 4096

type rawRecord struct {
	Op      *string          `json:"op"`
	Key     *string          `json:"key"`
	Field   *string          `json:"field"`
	Member  *string          `json:"member"`
	Value   json.RawMessage  `json:"value"`
	TTLms   json.RawMessage  `json:"ttl_ms"`
	Fields  *json.RawMessage `json:"fields"`
	Channel *string          `json:"channel"`
	Message *string          `json:"message"`

	// strs backs the fast decoder's strings, so a record costs one
	// allocation for its pointers, not one per field.
	strs [6]string
}

// field bits, for checking which fields an op allows without maps.
const (
	fKey = 1 << iota
	fField
	fMember
	fValue
	fTTL
	fFields
	fChannel
	fMessage
)

var fieldNames = []string{"key", "field", "member", "value", "ttl_ms", "fields", "channel", "message"}

// Parse decodes and checks one record body. The error is the reject reason
// a person reads in the dead-letter channel.
//
// Most records are flat objects of plain strings and numbers; a small
// scanner decodes those without encoding/json (which is most of a result
// sink's CPU time otherwise). Anything else — escapes, nested objects,
// unknown or repeated names — goes through encoding/json, so both paths
// accept and refuse the same records (FuzzFastAgreesWithJSON checks it).
func Parse(body []byte) (Command, error) {
	var r rawRecord
	if fastDecode(body, &r) {
		return check(&r)
	}
	slow := new(rawRecord) // encoding/json needs it on the heap; the fast path keeps r on the stack
	if err := slowDecode(body, slow); err != nil {
		return Command{}, err
	}
	return check(slow)
}

func slowDecode(body []byte, r *rawRecord) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return fmt.Errorf("not a command record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not a command record: data after the JSON object")
	}
	return nil
}

func check(r *rawRecord) (Command, error) {
	if r.Op == nil {
		return Command{}, errors.New(`missing "op"`)
	}
	c := Command{Op: *r.Op}
	var need []string
	var allowed int
	switch c.Op {
	case "hincrby", "hincrbyfloat", "hset":
		if r.Key == nil {
			need = append(need, "key")
		} else {
			c.Key = *r.Key
		}
		if r.Field == nil {
			need = append(need, "field")
		} else {
			c.Field = *r.Field
		}
		allowed = fKey | fField | fValue
	case "zincrby":
		if r.Key == nil {
			need = append(need, "key")
		} else {
			c.Key = *r.Key
		}
		if r.Member == nil {
			need = append(need, "member")
		} else {
			c.Field = *r.Member
		}
		allowed = fKey | fMember | fValue
	case "set":
		if r.Key == nil {
			need = append(need, "key")
		} else {
			c.Key = *r.Key
		}
		allowed = fKey | fValue | fTTL
	case "expire":
		if r.Key == nil {
			need = append(need, "key")
		} else {
			c.Key = *r.Key
		}
		allowed = fKey | fTTL
	case "xadd":
		if r.Key == nil {
			need = append(need, "key")
		} else {
			c.Key = *r.Key
		}
		allowed = fKey | fFields
	case "publish":
		if r.Channel == nil {
			need = append(need, "channel")
		} else {
			c.Key = *r.Channel
		}
		if r.Message == nil {
			need = append(need, "message")
		} else {
			c.Str = *r.Message
		}
		allowed = fChannel | fMessage
	default:
		return Command{}, fmt.Errorf("unknown op %q (known: hincrby, hincrbyfloat, hset, zincrby, set, expire, xadd, publish)", c.Op)
	}
	present := []bool{r.Key != nil, r.Field != nil, r.Member != nil, r.Value != nil,
		r.TTLms != nil, r.Fields != nil, r.Channel != nil, r.Message != nil}
	for i, p := range present {
		if p && allowed&(1<<i) == 0 {
			return Command{}, fmt.Errorf("%s: field %q does not belong to this op", c.Op, fieldNames[i])
		}
	}
	var err error
	switch c.Op {
	case "hincrby":
		if r.Value == nil {
			need = append(need, "value")
		} else if c.Int, err = strconv.ParseInt(string(r.Value), 10, 64); err != nil {
			return Command{}, fmt.Errorf("hincrby: value %s is not an integer", Clip(r.Value))
		}
	case "hincrbyfloat", "zincrby":
		if r.Value == nil {
			need = append(need, "value")
		} else if c.Float, err = parseNumber(r.Value); err != nil {
			return Command{}, fmt.Errorf("%s: value %s is not a number", c.Op, Clip(r.Value))
		} else {
			c.Raw = string(r.Value)
		}
	case "hset", "set":
		if r.Value == nil {
			need = append(need, "value")
		} else if err := json.Unmarshal(r.Value, &c.Str); err != nil || string(r.Value) == "null" {
			return Command{}, fmt.Errorf("%s: value %s is not a string", c.Op, Clip(r.Value))
		}
	case "xadd":
		if r.Fields == nil {
			need = append(need, "fields")
		} else if err := json.Unmarshal(*r.Fields, &c.Fields); err != nil || c.Fields == nil {
			return Command{}, fmt.Errorf("xadd: fields %s is not an object of strings", Clip(*r.Fields))
		} else if len(c.Fields) == 0 {
			return Command{}, errors.New("xadd: fields is empty")
		}
	}
	if c.Op == "set" || c.Op == "expire" {
		if r.TTLms == nil {
			if c.Op == "expire" {
				need = append(need, "ttl_ms")
			}
		} else if c.TTLms, err = strconv.ParseInt(string(r.TTLms), 10, 64); err != nil {
			return Command{}, fmt.Errorf("%s: ttl_ms %s is not an integer", c.Op, Clip(r.TTLms))
		} else {
			c.HasTTL = true
			if c.Op == "set" && c.TTLms <= 0 {
				return Command{}, fmt.Errorf("set: ttl_ms %d must be positive", c.TTLms)
			}
		}
	}
	if len(need) > 0 {
		return Command{}, fmt.Errorf("%s: missing %q", c.Op, need)
	}
	if c.Op != "publish" {
		if c.Key == "" {
			return Command{}, fmt.Errorf("%s: key is empty", c.Op)
		}
		if len(c.Key) > MaxName || len(c.Field) > MaxName {
			return Command{}, fmt.Errorf("%s: key, field or member longer than %d bytes", c.Op, MaxName)
		}
		if c.Field == "" && (c.Op == "hincrby" || c.Op == "hincrbyfloat" || c.Op == "hset" || c.Op == "zincrby") {
			return Command{}, fmt.Errorf("%s: field or member is empty", c.Op)
		}
	}
	return c, nil
}

func parseNumber(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, errors.New("not a number")
	}
	return strconv.ParseFloat(string(raw), 64)
}

// Clip shortens b for an error message.
func Clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
