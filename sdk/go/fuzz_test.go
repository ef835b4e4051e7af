package sluice

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
)

// The guest decodes bytes the host wrote; none of them may panic the guest
// (a panic in a Go guest is recovered, but must not be needed).

func FuzzBatchReader(f *testing.F) {
	f.Add(event.AppendBatch(nil, nil))
	f.Add(event.AppendBatch(nil, []event.Event{{Time: 1, Key: []byte("k"), Body: []byte("b"), Headers: []event.Header{{Name: "n", Value: "v"}}}}))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r batchReader
		var e Event
		if r.reset(b) != nil {
			return
		}
		n := 0
		for {
			more, err := r.next(&e)
			if err != nil || !more {
				break
			}
			e.EachHeader(func(_, _ []byte) bool { return true })
			e.Header("x")
			n++
		}
		_, derr := event.DecodeBatch(nil, b)
		if derr == nil && n != r.count {
			t.Fatalf("agent/event accepts the batch but the SDK read %d of %d events", n, r.count)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add(configBytes())
	f.Add(configBytes("a", "1", "", "{}"))
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b)
		if err == nil {
			for _, k := range c.Keys() {
				if _, ok := c.Lookup(k); !ok {
					t.Fatalf("key %q listed but not found", k)
				}
			}
		}
	})
}

func FuzzHostAnswers(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseHTTPResponse(b)
		eachPair(b, func(_, _ []byte) bool { return true })
	})
}

// forwardBolt forwards every event and reads its headers.
type forwardBolt struct{}

func (forwardBolt) Init(*Config) error { return nil }

func (forwardBolt) Process(e *Event, out *Output) error {
	e.EachHeader(func(_, _ []byte) bool { return true })
	e.Header("x")
	out.Forward(e)
	return nil
}

// FuzzProcess checks the decoder inside guest.perEvent against batchReader:
// a batch batchReader reads to its end without error is forwarded whole
// (the output batch is the input), anything else is a malformed-batch error
// result, and nothing panics.
func FuzzProcess(f *testing.F) {
	f.Add(event.AppendBatch(nil, nil))
	f.Add(event.AppendBatch(nil, []event.Event{{Time: 1, Key: []byte("k"), Body: []byte("b"), Headers: []event.Header{{Name: "n", Value: "v"}, {Name: "", Value: ""}}}, {Body: []byte("c")}}))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255})
	registered = forwardBolt{}
	g := &guest{}
	g.init(configBytes())
	registered = nil
	f.Fuzz(func(t *testing.T, b []byte) {
		wellFormed := false
		var r batchReader
		var e Event
		if r.reset(b) == nil {
			for {
				more, err := r.next(&e)
				if err != nil {
					break
				}
				if !more {
					wellFormed = true
					break
				}
			}
		}
		res := decodeResult(t, g.process(b))
		switch {
		case wellFormed && res.status != statusOK:
			t.Fatalf("batchReader reads the batch, process fails: %d %q", res.status, res.message)
		case wellFormed && !bytes.Equal(event.AppendBatch(nil, res.events), b):
			t.Fatal("forwarding every event did not reproduce the batch")
		case !wellFormed && (res.status != statusError || !strings.Contains(res.message, "malformed batch")):
			t.Fatalf("batchReader refuses the batch, process gives %d %q", res.status, res.message)
		}
	})
}
