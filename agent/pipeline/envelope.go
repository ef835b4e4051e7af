package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// envelope is what the runner stores as a channel record's input position
// (the hop protocol, DESIGN §4). The channel treats it as opaque bytes.
//
//	envelope := version:u8 kind:u8 seq:u64 tickNow:i64 pos:bytes delta:bytes [dead:bytes]
//
// seq numbers the batches a stage instance has produced (1, 2, …); it lets a
// restarted bolt tell which of its output partitions already hold a batch
// that was only partly written when it crashed. kind and tickNow say whether
// the batch came from an input record or from Tick(now), so a partial tick is
// redone with the same now. pos is the upstream position after the batch (a
// source's own opaque position, or the input channel offset for a bolt).
// delta is the change to a stateful bolt's state made by the batch, written
// only in the record of the first output partition.
//
// dead is present only in version 2, which is written only when it is not
// empty (every other envelope stays version 1, byte for byte): a source's
// dead letters of the batch (an agent/event batch), which the runner copies
// to the dead-letter channel after this record is durable. A source cannot
// re-read exactly the input of a batch, so after a crash between the two
// appends the copy is made from here (docs/adr/0004, "Dead letters and the
// hop protocol").
type envelope struct {
	kind    uint8
	seq     uint64
	tickNow int64
	pos     []byte
	delta   []byte
	dead    []byte
}

const (
	envelopeVersion     = 1
	envelopeVersionDead = 2 // with dead letters
	kindInput           = 0
	kindTick            = 1
)

var errEnvelope = errors.New("pipeline: malformed position envelope")

func (e *envelope) encode(dst []byte) []byte {
	version := byte(envelopeVersion)
	if len(e.dead) > 0 {
		version = envelopeVersionDead
	}
	dst = append(dst, version, e.kind)
	dst = binary.LittleEndian.AppendUint64(dst, e.seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.tickNow))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.pos)))
	dst = append(dst, e.pos...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.delta)))
	dst = append(dst, e.delta...)
	if version == envelopeVersionDead {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.dead)))
		dst = append(dst, e.dead...)
	}
	return dst
}

// decodeEnvelope parses b; pos, delta and dead alias b.
func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 18 {
		return e, fmt.Errorf("%w: %d bytes", errEnvelope, len(b))
	}
	if b[0] != envelopeVersion && b[0] != envelopeVersionDead {
		return e, fmt.Errorf("%w: unknown version %d (this agent writes %d and %d)", errEnvelope, b[0], envelopeVersion, envelopeVersionDead)
	}
	e.kind = b[1]
	e.seq = binary.LittleEndian.Uint64(b[2:])
	e.tickNow = int64(binary.LittleEndian.Uint64(b[10:]))
	rest := b[18:]
	var err error
	if e.pos, rest, err = lenBytes(rest); err != nil {
		return e, err
	}
	if e.delta, rest, err = lenBytes(rest); err != nil {
		return e, err
	}
	if b[0] == envelopeVersionDead {
		if e.dead, rest, err = lenBytes(rest); err != nil {
			return e, err
		}
		if len(e.dead) == 0 {
			return e, fmt.Errorf("%w: version %d without dead letters", errEnvelope, envelopeVersionDead)
		}
	}
	if len(rest) != 0 {
		return e, fmt.Errorf("%w: %d trailing bytes", errEnvelope, len(rest))
	}
	return e, nil
}

func lenBytes(b []byte) ([]byte, []byte, error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated length", errEnvelope)
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("%w: length %d runs past the end", errEnvelope, n)
	}
	return b[4 : 4+n : 4+n], b[4+n:], nil
}

// offsetPos is a bolt's upstream position: the input channel offset.
func offsetPos(off uint64) []byte { return binary.LittleEndian.AppendUint64(nil, off) }

func decodeOffsetPos(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: offset position of %d bytes", errEnvelope, len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}
