package tail

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// fileState is one file's entry in a Position: which file (device, inode and
// a fingerprint of its first bytes) and how far it has been consumed.
type fileState struct {
	Dev, Ino uint64
	// Offset is the byte offset just after the last consumed byte: the start
	// of the next line to read.
	Offset uint64
	// FpLen leading bytes of the file hash to Fp (FNV-1a 64). FpLen grows
	// with the file up to fingerprint_bytes; 0 means nothing read yet.
	FpLen uint32
	Fp    uint64
	// Skipping is set while the rest of an over-long line is being skipped.
	Skipping bool
	// Gone is set for a file no longer at Path (renamed away or deleted)
	// that was still being drained.
	Gone bool
	Path string
}

// Position wire form (version 1):
//
//	"STP\x01" count:uvarint entry*count
//	entry := dev:uvarint ino:uvarint offset:uvarint fpLen:uvarint fp:u64le
//	         flags:u8 pathLen:uvarint path
//
// The runner stores it inside a checksummed channel record, but decoding
// still trusts nothing: a damaged position is an error, never a panic.
var positionMagic = []byte{'S', 'T', 'P', 1}

const (
	flagSkipping = 1 << 0
	flagGone     = 1 << 1

	maxPathLen     = 4096
	maxFingerprint = 4096
	// minEntrySize is the smallest entry: five one-byte uvarints, the
	// fingerprint, the flags and an empty path.
	minEntrySize = 5 + 8 + 1 + 1
)

// ErrBadPosition is wrapped by every position decoding error.
var ErrBadPosition = errors.New("tail: malformed position")

func appendPosition(dst []byte, files []fileState) []byte {
	dst = append(dst, positionMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(files)))
	for i := range files {
		f := &files[i]
		dst = binary.AppendUvarint(dst, f.Dev)
		dst = binary.AppendUvarint(dst, f.Ino)
		dst = binary.AppendUvarint(dst, f.Offset)
		dst = binary.AppendUvarint(dst, uint64(f.FpLen))
		dst = binary.LittleEndian.AppendUint64(dst, f.Fp)
		var flags byte
		if f.Skipping {
			flags |= flagSkipping
		}
		if f.Gone {
			flags |= flagGone
		}
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, uint64(len(f.Path)))
		dst = append(dst, f.Path...)
	}
	return dst
}

func decodePosition(b []byte) ([]fileState, error) {
	if len(b) < len(positionMagic) || string(b[:3]) != string(positionMagic[:3]) {
		return nil, fmt.Errorf("%w: missing \"STP\" magic", ErrBadPosition)
	}
	if b[3] != positionMagic[3] {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrBadPosition, b[3], positionMagic[3])
	}
	off := len(positionMagic)
	uv := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad %s at byte %d", ErrBadPosition, what, off)
		}
		off += n
		return v, nil
	}
	n, err := uv("entry count")
	if err != nil {
		return nil, err
	}
	if n > uint64(len(b)-off)/minEntrySize {
		return nil, fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrBadPosition, n, len(b)-off)
	}
	files := make([]fileState, 0, n)
	for i := uint64(0); i < n; i++ {
		var f fileState
		if f.Dev, err = uv("device"); err != nil {
			return nil, err
		}
		if f.Ino, err = uv("inode"); err != nil {
			return nil, err
		}
		if f.Offset, err = uv("offset"); err != nil {
			return nil, err
		}
		if f.Offset > 1<<62 {
			return nil, fmt.Errorf("%w: entry %d: offset %d out of range", ErrBadPosition, i, f.Offset)
		}
		fpLen, err := uv("fingerprint length")
		if err != nil {
			return nil, err
		}
		if fpLen > maxFingerprint {
			return nil, fmt.Errorf("%w: entry %d: fingerprint length %d exceeds %d", ErrBadPosition, i, fpLen, maxFingerprint)
		}
		f.FpLen = uint32(fpLen)
		if len(b)-off < 9 {
			return nil, fmt.Errorf("%w: entry %d truncated at byte %d", ErrBadPosition, i, off)
		}
		f.Fp = binary.LittleEndian.Uint64(b[off:])
		flags := b[off+8]
		off += 9
		if flags&^(flagSkipping|flagGone) != 0 {
			return nil, fmt.Errorf("%w: entry %d: unknown flags %#x", ErrBadPosition, i, flags)
		}
		f.Skipping, f.Gone = flags&flagSkipping != 0, flags&flagGone != 0
		pathLen, err := uv("path length")
		if err != nil {
			return nil, err
		}
		if pathLen > maxPathLen || pathLen > uint64(len(b)-off) {
			return nil, fmt.Errorf("%w: entry %d: path length %d at byte %d runs past the end", ErrBadPosition, i, pathLen, off)
		}
		f.Path = string(b[off : off+int(pathLen)])
		off += int(pathLen)
		files = append(files, f)
	}
	if off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadPosition, len(b)-off)
	}
	return files, nil
}
