package sluice

import (
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
