// Command conformance is the Go version of the Sluice conformance plugin:
// the behaviour described in sdk/conformance/README.md, written once per SDK
// and checked by the same suite (go test ./sdk/conformance/).
package main

import (
	"bytes"
	"strconv"

	sluice "github.com/sluicehq/sluice/sdk/go"
)

type conformance struct {
	prefix  []byte
	echoed  int64 // echoed events since the last tick
	total   int64 // source: events to produce
	next    int64 // source: index of the next event
	written int64 // sink: bodies stored so far
	posBuf  []byte
	numBuf  []byte
	body    []byte
}

func (c *conformance) Init(cfg *sluice.Config) error {
	if fail, err := cfg.Bool("fail_init", false); err != nil {
		return err
	} else if fail {
		return errorString("fail_init requested")
	}
	c.prefix = []byte(cfg.String("prefix", ""))
	total, err := cfg.Int("events", 0)
	if err != nil {
		return err
	}
	c.total = total
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func cut(b []byte, prefix string) ([]byte, bool) {
	if len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix {
		return b[len(prefix):], true
	}
	return nil, false
}

// Process implements the per-event commands of the conformance behaviour.
func (c *conformance) Process(e *sluice.Event, out *sluice.Output) error {
	b := e.Body
	if r, ok := cut(b, "reject:"); ok {
		return sluice.Reject(string(r))
	}
	if m, ok := cut(b, "fail:"); ok {
		return errorString(m)
	}
	if m, ok := cut(b, "retry:"); ok {
		return sluice.Retry(string(m))
	}
	if m, ok := cut(b, "panic:"); ok {
		panic(string(m))
	}
	if kv, ok := cut(b, "put:"); ok {
		k, v, _ := bytes.Cut(kv, []byte("="))
		return sluice.StatePut(k, v)
	}
	if kv, ok := cut(b, "big:"); ok {
		k, n, _ := bytes.Cut(kv, []byte("="))
		size, err := strconv.Atoi(string(n))
		if err != nil {
			return sluice.Reject("big: bad size")
		}
		v := make([]byte, size)
		for i := range v {
			v[i] = byte('a' + i%26)
		}
		return sluice.StatePut(k, v)
	}
	if k, ok := cut(b, "get:"); ok {
		v, found := sluice.StateGet(k)
		if !found {
			return sluice.Reject("no state for " + string(k))
		}
		out.Emit(e.Time, k, v)
		return nil
	}
	if k, ok := cut(b, "del:"); ok {
		sluice.StateDelete(k)
		return nil
	}
	if p, ok := cut(b, "scan:"); ok {
		return sluice.StateScan(p, func(k, v []byte) bool {
			out.Emit(e.Time, k, v)
			return true
		})
	}
	if m, ok := cut(b, "log:"); ok {
		sluice.Log(sluice.LevelInfo, string(m))
		return nil
	}
	if m, ok := cut(b, "count:"); ok {
		sluice.CounterAdd(string(m), 1)
		return nil
	}
	if string(b) == "now" {
		c.numBuf = strconv.AppendInt(c.numBuf[:0], sluice.Now(), 10)
		out.Emit(e.Time, e.Key, c.numBuf)
		return nil
	}
	if n, ok := cut(b, "random:"); ok {
		size, err := strconv.Atoi(string(n))
		if err != nil {
			return sluice.Reject("random: bad size")
		}
		v := make([]byte, size)
		sluice.Random(v)
		out.Emit(e.Time, e.Key, v)
		return nil
	}
	// Echo: prefix + body, same time, key and headers, plus one header.
	c.body = append(append(c.body[:0], c.prefix...), b...)
	out.Emit(e.Time, e.Key, c.body)
	out.CopyHeaders(e)
	out.AddHeaderString("conformance", "1")
	c.echoed++
	return nil
}

// Tick emits the number of events echoed since the last tick, if any.
func (c *conformance) Tick(now int64, out *sluice.Output) error {
	if c.echoed == 0 {
		return nil
	}
	c.numBuf = strconv.AppendInt(c.numBuf[:0], c.echoed, 10)
	out.Emit(now, []byte("tick"), c.numBuf)
	c.echoed = 0
	return nil
}

// Open resumes after the position: the decimal index of the next event.
func (c *conformance) Open(resume []byte) error {
	if resume == nil {
		c.next = 0
		return nil
	}
	n, err := strconv.ParseInt(string(resume), 10, 64)
	if err != nil {
		return errorString("bad position " + strconv.Quote(string(resume)))
	}
	c.next = n
	return nil
}

// Poll emits "event <i>" with time i until the configured total.
func (c *conformance) Poll(max int, out *sluice.Output) ([]byte, error) {
	for n := 0; n < max && c.next < c.total; n++ {
		c.numBuf = strconv.AppendInt(append(c.numBuf[:0], "event "...), c.next, 10)
		out.Emit(c.next, nil, c.numBuf)
		c.next++
	}
	c.posBuf = strconv.AppendInt(c.posBuf[:0], c.next, 10)
	return c.posBuf, nil
}

func (c *conformance) Ack(position []byte) error { return nil }

// Write stores each accepted body in state under sink/<n>, n counting from
// 0 in zero-padded decimal.
func (c *conformance) Write(e *sluice.Event) error {
	b := e.Body
	if r, ok := cut(b, "reject:"); ok {
		return sluice.Reject(string(r))
	}
	if m, ok := cut(b, "fail:"); ok {
		return errorString(m)
	}
	if m, ok := cut(b, "retry:"); ok {
		return sluice.Retry(string(m))
	}
	c.numBuf = strconv.AppendInt(c.numBuf[:0], c.written, 10)
	c.posBuf = append(c.posBuf[:0], "sink/"...)
	for i := len(c.numBuf); i < 8; i++ {
		c.posBuf = append(c.posBuf, '0')
	}
	c.posBuf = append(c.posBuf, c.numBuf...)
	c.written++
	return sluice.StatePut(c.posBuf, b)
}

func init() { sluice.Register(&conformance{}) }

func main() {}
