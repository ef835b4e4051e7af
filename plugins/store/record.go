package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// command is one decoded command record (docs/command-records.md).
type command struct {
	Op     string
	Key    string // for publish: the channel
	Field  string // hash field or sorted-set member
	Int    int64
	Float  float64
	Str    string // hset/set value, publish message
	TTLms  int64
	HasTTL bool
	Fields map[string]string
}

// maxName bounds keys, fields and members (bbolt keys must stay small).
const maxName = 4096

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

// parseCommand decodes and checks one record. The error is the reject
// reason a person reads in the dead-letter channel.
func parseCommand(body []byte) (command, error) {
	var r rawRecord
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return command{}, fmt.Errorf("not a command record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return command{}, errors.New("not a command record: data after the JSON object")
	}
	if r.Op == nil {
		return command{}, errors.New(`missing "op"`)
	}
	c := command{Op: *r.Op}
	var need []string
	str := func(name string, p *string, dst *string) {
		if p == nil {
			need = append(need, name)
		} else {
			*dst = *p
		}
	}
	allowed := map[string]bool{"op": true}
	switch c.Op {
	case "hincrby", "hincrbyfloat", "hset":
		str("key", r.Key, &c.Key)
		str("field", r.Field, &c.Field)
		allowed["key"], allowed["field"], allowed["value"] = true, true, true
	case "zincrby":
		str("key", r.Key, &c.Key)
		str("member", r.Member, &c.Field)
		allowed["key"], allowed["member"], allowed["value"] = true, true, true
	case "set":
		str("key", r.Key, &c.Key)
		allowed["key"], allowed["value"], allowed["ttl_ms"] = true, true, true
	case "expire":
		str("key", r.Key, &c.Key)
		allowed["key"], allowed["ttl_ms"] = true, true
	case "xadd":
		str("key", r.Key, &c.Key)
		allowed["key"], allowed["fields"] = true, true
	case "publish":
		str("channel", r.Channel, &c.Key)
		str("message", r.Message, &c.Str)
		allowed["channel"], allowed["message"] = true, true
	default:
		return command{}, fmt.Errorf("unknown op %q (known: hincrby, hincrbyfloat, hset, zincrby, set, expire, xadd, publish)", c.Op)
	}
	present := map[string]bool{"key": r.Key != nil, "field": r.Field != nil, "member": r.Member != nil,
		"value": r.Value != nil, "ttl_ms": r.TTLms != nil, "fields": r.Fields != nil,
		"channel": r.Channel != nil, "message": r.Message != nil}
	for _, name := range []string{"key", "field", "member", "value", "ttl_ms", "fields", "channel", "message"} {
		if present[name] && !allowed[name] {
			return command{}, fmt.Errorf("%s: field %q does not belong to this op", c.Op, name)
		}
	}
	var err error
	switch c.Op {
	case "hincrby":
		if r.Value == nil {
			need = append(need, "value")
		} else if c.Int, err = strconv.ParseInt(string(r.Value), 10, 64); err != nil {
			return command{}, fmt.Errorf("hincrby: value %s is not an integer", clip(r.Value))
		}
	case "hincrbyfloat", "zincrby":
		if r.Value == nil {
			need = append(need, "value")
		} else if c.Float, err = number(r.Value); err != nil {
			return command{}, fmt.Errorf("%s: value %s is not a number", c.Op, clip(r.Value))
		}
	case "hset", "set":
		if r.Value == nil {
			need = append(need, "value")
		} else if err := json.Unmarshal(r.Value, &c.Str); err != nil || string(r.Value) == "null" {
			return command{}, fmt.Errorf("%s: value %s is not a string", c.Op, clip(r.Value))
		}
	case "xadd":
		if r.Fields == nil {
			need = append(need, "fields")
		} else if err := json.Unmarshal(*r.Fields, &c.Fields); err != nil || c.Fields == nil {
			return command{}, fmt.Errorf("xadd: fields %s is not an object of strings", clip(*r.Fields))
		} else if len(c.Fields) == 0 {
			return command{}, errors.New("xadd: fields is empty")
		}
	}
	if c.Op == "set" || c.Op == "expire" {
		if r.TTLms == nil {
			if c.Op == "expire" {
				need = append(need, "ttl_ms")
			}
		} else if c.TTLms, err = strconv.ParseInt(string(r.TTLms), 10, 64); err != nil {
			return command{}, fmt.Errorf("%s: ttl_ms %s is not an integer", c.Op, clip(r.TTLms))
		} else {
			c.HasTTL = true
			if c.Op == "set" && c.TTLms <= 0 {
				return command{}, fmt.Errorf("set: ttl_ms %d must be positive", c.TTLms)
			}
		}
	}
	if len(need) > 0 {
		return command{}, fmt.Errorf("%s: missing %q", c.Op, need)
	}
	if c.Op != "publish" {
		if c.Key == "" {
			return command{}, fmt.Errorf("%s: key is empty", c.Op)
		}
		if len(c.Key) > maxName || len(c.Field) > maxName {
			return command{}, fmt.Errorf("%s: key, field or member longer than %d bytes", c.Op, maxName)
		}
		if c.Field == "" && (c.Op == "hincrby" || c.Op == "hincrbyfloat" || c.Op == "hset" || c.Op == "zincrby") {
			return command{}, fmt.Errorf("%s: field or member is empty", c.Op)
		}
	}
	return c, nil
}

func number(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, errors.New("not a number")
	}
	return strconv.ParseFloat(string(raw), 64)
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
