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
func Parse(body []byte) (Command, error) { return parse(body, false) }

// ParseAliased is Parse, except that the command's strings may share
// memory with body instead of being copied: the caller must not change
// body while it uses the command, nor keep the strings beyond that. A sink
// that hands the command to a client within one Write saves a copy of
// every key and field.
func ParseAliased(body []byte) (Command, error) { return parse(body, true) }

func parse(body []byte, alias bool) (Command, error) {
	var r record
	if fastDecode(body, &r, alias) {
		return check(&r)
	}
	r = record{}
	if err := slowDecode(body, &r); err != nil {
		return Command{}, err
	}
	return check(&r)
}

// record is a decoded record before checking: which names were present
// (bits f*), their string values, and the raw JSON of the others.
type record struct {
	has                                      int
	op, key, field, member, channel, message string
	value, ttl, fields                       []byte
}

func slowDecode(body []byte, out *record) error {
	var r rawRecord
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("not a command record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not a command record: data after the JSON object")
	}
	str := func(p *string, bit int, dst *string) {
		if p != nil {
			out.has |= bit
			*dst = *p
		}
	}
	str(r.Op, fOp, &out.op)
	str(r.Key, fKey, &out.key)
	str(r.Field, fField, &out.field)
	str(r.Member, fMember, &out.member)
	str(r.Channel, fChannel, &out.channel)
	str(r.Message, fMessage, &out.message)
	if r.Value != nil {
		out.has |= fValue
		out.value = r.Value
	}
	if r.TTLms != nil {
		out.has |= fTTL
		out.ttl = r.TTLms
	}
	if r.Fields != nil {
		out.has |= fFields
		out.fields = *r.Fields
	}
	return nil
}

func check(r *record) (Command, error) {
	if r.has&fOp == 0 {
		return Command{}, errors.New(`missing "op"`)
	}
	c := Command{Op: r.op}
	var need []string
	// take copies a required field into dst, or notes it as missing.
	take := func(flag int, name, value string, dst *string) {
		if r.has&flag == 0 {
			need = append(need, name)
		} else {
			*dst = value
		}
	}
	var allowed int
	switch c.Op {
	case "hincrby", "hincrbyfloat", "hset":
		take(fKey, "key", r.key, &c.Key)
		take(fField, "field", r.field, &c.Field)
		allowed = fKey | fField | fValue
	case "zincrby":
		take(fKey, "key", r.key, &c.Key)
		take(fMember, "member", r.member, &c.Field)
		allowed = fKey | fMember | fValue
	case "set":
		take(fKey, "key", r.key, &c.Key)
		allowed = fKey | fValue | fTTL
	case "expire":
		take(fKey, "key", r.key, &c.Key)
		allowed = fKey | fTTL
	case "xadd":
		take(fKey, "key", r.key, &c.Key)
		allowed = fKey | fFields
	case "publish":
		take(fChannel, "channel", r.channel, &c.Key)
		take(fMessage, "message", r.message, &c.Str)
		allowed = fChannel | fMessage
	default:
		return Command{}, fmt.Errorf("unknown op %q (known: hincrby, hincrbyfloat, hset, zincrby, set, expire, xadd, publish)", c.Op)
	}
	present := []bool{r.has&fKey != 0, r.has&fField != 0, r.has&fMember != 0, r.value != nil,
		r.ttl != nil, r.fields != nil, r.has&fChannel != 0, r.has&fMessage != 0}
	for i, p := range present {
		if p && allowed&(1<<i) == 0 {
			return Command{}, fmt.Errorf("%s: field %q does not belong to this op", c.Op, fieldNames[i])
		}
	}
	var err error
	switch c.Op {
	case "hincrby":
		if r.value == nil {
			need = append(need, "value")
		} else if c.Int, err = parseInt(r.value); err != nil {
			return Command{}, fmt.Errorf("hincrby: value %s is not an integer", Clip(r.value))
		}
	case "hincrbyfloat", "zincrby":
		if r.value == nil {
			need = append(need, "value")
		} else if c.Float, err = parseNumber(r.value); err != nil {
			return Command{}, fmt.Errorf("%s: value %s is not a number", c.Op, Clip(r.value))
		} else {
			c.Raw = string(r.value)
		}
	case "hset", "set":
		if r.value == nil {
			need = append(need, "value")
		} else if str, err := jsonString(r.value); err != nil || string(r.value) == "null" {
			return Command{}, fmt.Errorf("%s: value %s is not a string", c.Op, Clip(r.value))
		} else {
			c.Str = str
		}
	case "xadd":
		if r.fields == nil {
			need = append(need, "fields")
		} else if fields, err := jsonFields(r.fields); err != nil || fields == nil {
			return Command{}, fmt.Errorf("xadd: fields %s is not an object of strings", Clip(r.fields))
		} else if len(fields) == 0 {
			return Command{}, errors.New("xadd: fields is empty")
		} else {
			c.Fields = fields
		}
	}
	if c.Op == "set" || c.Op == "expire" {
		if r.ttl == nil {
			if c.Op == "expire" {
				need = append(need, "ttl_ms")
			}
		} else if c.TTLms, err = parseInt(r.ttl); err != nil {
			return Command{}, fmt.Errorf("%s: ttl_ms %s is not an integer", c.Op, Clip(r.ttl))
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

// jsonString and jsonFields decode into their own variables, so the
// Command being built does not escape to the heap through encoding/json.
func jsonString(raw []byte) (string, error) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func jsonFields(raw []byte) (map[string]string, error) {
	var m map[string]string
	err := json.Unmarshal(raw, &m)
	return m, err
}

// parseInt is strconv.ParseInt(string(b), 10, 64) with a short cut for
// the usual up to 18 plain digits, which cannot overflow.
func parseInt(b []byte) (int64, error) {
	d := b
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 {
		return strconv.ParseInt(string(b), 10, 64)
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return strconv.ParseInt(string(b), 10, 64)
		}
		n = n*10 + int64(c-'0')
	}
	if len(d) < len(b) {
		n = -n
	}
	return n, nil
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
