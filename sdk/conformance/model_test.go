package conformance

import (
	"bytes"
	"encoding/binary"

	"github.com/sluicehq/sluice/agent/event"
)

// This file is the reference model of the conformance plugin's pure bolt
// behaviour (README.md): echo, reject, fail, retry. The ABI test vectors are
// generated from it, so the three SDKs are compared with a fourth,
// independent statement of the behaviour rather than with each other.

const (
	statusOK    = 0
	statusError = 1
	statusRetry = 2
)

type modelReject struct {
	index  int
	reason string
}

// modelProcess returns the result bytes (sdk/ABI.md §5) the conformance
// plugin must return for batch when its prefix is prefix.
func modelProcess(prefix string, batch []byte) []byte {
	var out event.Builder
	var rejects []modelReject
	evs, err := event.DecodeBatch(nil, batch)
	if err != nil {
		panic(err) // vectors are built from valid batches
	}
	for i, e := range evs {
		b := string(e.Body)
		switch {
		case hasPrefix(b, "reject:"):
			rejects = append(rejects, modelReject{i, b[len("reject:"):]})
		case hasPrefix(b, "fail:"):
			return encodeResult(statusError, b[len("fail:"):], nil, emptyBatch(), nil)
		case hasPrefix(b, "retry:"):
			return encodeResult(statusRetry, b[len("retry:"):], nil, emptyBatch(), nil)
		default:
			o := event.Event{Time: e.Time, Key: e.Key, Body: append([]byte(prefix), e.Body...)}
			o.Headers = append(append(o.Headers, e.Headers...), event.Header{Name: "conformance", Value: "1"})
			out.Add(&o)
		}
	}
	return encodeResult(statusOK, "", nil, out.Bytes(), rejects)
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func emptyBatch() []byte { return []byte{0, 0, 0, 0} }

// encodeResult is result := status:u32 message:bytes position:bytes batch rejects.
func encodeResult(status uint32, message string, position, batch []byte, rejects []modelReject) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, status))
	b.Write(le.AppendUint32(nil, uint32(len(message))))
	b.WriteString(message)
	b.Write(le.AppendUint32(nil, uint32(len(position))))
	b.Write(position)
	b.Write(batch)
	b.Write(le.AppendUint32(nil, uint32(len(rejects))))
	for _, r := range rejects {
		b.Write(le.AppendUint32(nil, uint32(r.index)))
		b.Write(le.AppendUint32(nil, uint32(len(r.reason))))
		b.WriteString(r.reason)
	}
	return b.Bytes()
}
