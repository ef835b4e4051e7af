package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// The forward source's position (pipeline.SourceBatch.Position), stored by
// the runner with every batch it appends — the hop protocol. It is the whole
// fence table: for every sender, the offset of the last batch handed on.
//
//	0x01 n:uvarint (idLen:uvarint id offset:uvarint)*n
//
// Senders are sorted, so equal tables encode to equal bytes.
const positionVersion = 1

// ErrBadPosition is wrapped by every position decoding error.
var ErrBadPosition = errors.New("forward source: malformed position")

func encodePosition(t map[string]uint64) []byte {
	ids := make([]string, 0, len(t))
	for id := range t {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	b := []byte{positionVersion}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendFenceHead(b, id, t[id])
	}
	return b
}

func decodePosition(b []byte) (map[string]uint64, error) {
	t := map[string]uint64{}
	if len(b) == 0 {
		return t, nil
	}
	if b[0] != positionVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrBadPosition, b[0], positionVersion)
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad sender count", ErrBadPosition)
	}
	rest := b[1+k:]
	if n > uint64(len(rest))/3 { // each entry needs at least 3 bytes
		return nil, fmt.Errorf("%w: %d senders cannot fit in %d bytes", ErrBadPosition, n, len(rest))
	}
	for i := uint64(0); i < n; i++ {
		id, off, r, err := decodeFenceHead(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: sender %d: %v", ErrBadPosition, i, err)
		}
		t[id] = off
		rest = r
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadPosition, len(rest))
	}
	return t, nil
}
