package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Scanned is one data record found by Scan, with its byte position.
type Scanned struct {
	Pos int
	Data
}

// ScanResult is what Scan learns about a segment image.
type ScanResult struct {
	Header  Segment
	Records []Scanned // valid data records in order; slices alias the image
	End     int       // position just after the last valid frame: where writing resumes
	Next    uint64    // offset the next record gets
	Sealed  bool      // the segment ends with a seal frame
	// Skipped lists damaged regions inside the segment that were skipped
	// because valid, durable frames follow them.
	Skipped []Damage
	// TornAt is the position of a torn (incomplete or unconfirmed) tail that
	// was cut off, or -1 when the segment ended cleanly.
	TornAt int
	// DirtyEnd is the end of the furthest frame that decoded, cut-off
	// tails included. Recovery zeroes [End, DirtyEnd) so that frames of a
	// cut-off tail can never be mistaken for new ones later.
	DirtyEnd int
}

// Damage is a skipped damaged region: bytes [At, At+Len) held Lost
// offsets starting at Offset.
type Damage struct {
	At, Len int
	Offset  uint64
	Lost    uint64
}

var magicBytes = binary.LittleEndian.AppendUint32(nil, Magic)

// Resync returns the position of the first valid frame in b at or after
// from that can continue a log expecting offset next (a data, sync or seal
// frame with offset >= next), or -1. Stale frames left in a recycled file
// all have smaller offsets, so they are never taken for a continuation.
func Resync(b []byte, from int, next uint64) int {
	for from < len(b) {
		j := bytes.Index(b[from:], magicBytes)
		if j < 0 {
			return -1
		}
		cand := from + j
		if f, err := Decode(b[cand:]); err == nil && f.Kind != KindSegment && f.Offset >= next {
			return cand
		}
		from = cand + 1
	}
	return -1
}

// Scan walks a whole segment image as recovery does: the header frame, then
// frames whose offsets continue the log. It never fails on damage after the
// header; it reports it.
//
// A torn tail and a damaged record in the middle look alike (a frame that
// does not decode), so Scan tells them apart by what follows: a damaged
// region is skipped only when a sync frame and then another valid frame
// follow it. The writer starts a new group only after the previous group's
// fdatasync, so such frames prove the damaged bytes were once durable (bit
// rot or a bad sector); otherwise the damage lies in the last, unacknowledged
// group and is cut off as a torn tail.
func Scan(b []byte) (ScanResult, error) {
	r := ScanResult{TornAt: -1}
	f, err := Decode(b)
	if err != nil {
		return r, fmt.Errorf("segment header: %w", err)
	}
	if r.Header, err = DecodeSegment(f); err != nil {
		return r, fmt.Errorf("segment header: %w", err)
	}
	if r.Header.Version != Version {
		return r, fmt.Errorf("%w: segment version %d (this build reads %d)", ErrUnknownVersion, r.Header.Version, Version)
	}
	pos, next := f.Size, r.Header.Base
	r.End = pos

	// A damaged region not yet known to be durable.
	type tentative struct {
		at, records int
		next        uint64
		damage      []Damage
		sawSync     bool
	}
	var tent *tentative

	for pos < len(b) {
		f, err := Decode(b[pos:])
		ok := err == nil && f.Offset == next && f.Kind != KindSegment
		var d Data
		if ok && f.Kind == KindData {
			d, err = DecodeData(f)
			ok = err == nil
		}
		if !ok {
			cand := Resync(b, pos+1, next)
			if cand < 0 {
				break
			}
			cf, _ := Decode(b[cand:])
			r.DirtyEnd = max(r.DirtyEnd, cand+cf.Size)
			if tent == nil {
				tent = &tentative{at: pos, records: len(r.Records), next: next}
			}
			tent.damage = append(tent.damage, Damage{At: pos, Len: cand - pos, Offset: next, Lost: cf.Offset - next})
			next = cf.Offset
			pos = cand
			continue
		}
		if tent != nil {
			if f.Kind == KindSync {
				tent.sawSync = true
			} else if tent.sawSync {
				r.Skipped = append(r.Skipped, tent.damage...)
				tent = nil
			}
		}
		switch f.Kind {
		case KindData:
			r.Records = append(r.Records, Scanned{Pos: pos, Data: d})
			next++
		case KindSeal:
			if tent != nil && tent.sawSync {
				r.Skipped = append(r.Skipped, tent.damage...)
				tent = nil
			}
			if tent == nil {
				r.Sealed = true
			}
		}
		pos += f.Size
		r.End = pos
		r.DirtyEnd = max(r.DirtyEnd, pos)
		if r.Sealed {
			break
		}
	}
	if tent != nil {
		r.Records = r.Records[:tent.records]
		next = tent.next
		r.End = tent.at
	}
	if r.DirtyEnd > r.End {
		r.TornAt = r.End
	} else if _, ok := PeekSize(b[r.End:]); ok && !r.Sealed {
		// A frame header where the log ends: torn unless it is a whole
		// stale frame left in a recycled file.
		if _, err := Decode(b[r.End:]); err != nil {
			r.TornAt = r.End
		}
	}
	r.DirtyEnd = max(r.DirtyEnd, r.End)
	r.Next = next
	return r, nil
}
