package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// MetaVersion is the channel directory format this build reads and writes.
const MetaVersion = 1

// Meta is the content of a channel's metadata file: a few text lines,
//
//	sluice-channel
//	version 1
//	partitions 4
type Meta struct {
	Version    int
	Partitions int
}

// ErrUnknownVersion is wrapped when a metadata file names a format version
// this build cannot read.
var ErrUnknownVersion = errors.New("unknown channel format version")

// ErrBadMeta is wrapped by every other metadata decoding error.
var ErrBadMeta = errors.New("bad channel metadata")

// EncodeMeta returns the bytes of m.
func EncodeMeta(m Meta) []byte {
	return fmt.Appendf(nil, "sluice-channel\nversion %d\npartitions %d\n", m.Version, m.Partitions)
}

// DecodeMeta parses a metadata file. An unknown version is reported as
// ErrUnknownVersion, anything else malformed as ErrBadMeta.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, fmt.Errorf("%w: empty file", ErrBadMeta)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "sluice-channel" {
		return Meta{}, fmt.Errorf("%w: line 1 is %.40q, want \"sluice-channel\"", ErrBadMeta, lines[0])
	}
	var m Meta
	seen := map[string]bool{}
	for i, line := range lines[1:] {
		key, val, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 0 {
			return Meta{}, fmt.Errorf("%w: line %d %.40q is not \"key number\"", ErrBadMeta, i+2, line)
		}
		if seen[key] {
			return Meta{}, fmt.Errorf("%w: line %d repeats %q", ErrBadMeta, i+2, key)
		}
		seen[key] = true
		switch key {
		case "version":
			m.Version = n
		case "partitions":
			m.Partitions = n
		default:
			// Unknown keys are tolerated only under a version we know;
			// the version check below decides.
		}
	}
	if !seen["version"] {
		return Meta{}, fmt.Errorf("%w: no version line", ErrBadMeta)
	}
	if m.Version != MetaVersion {
		return Meta{}, fmt.Errorf("%w: version %d (this build reads %d)", ErrUnknownVersion, m.Version, MetaVersion)
	}
	if len(seen) != 2 {
		return Meta{}, fmt.Errorf("%w: unexpected keys for version %d", ErrBadMeta, m.Version)
	}
	if m.Partitions < 1 || m.Partitions > 1<<16 {
		return Meta{}, fmt.Errorf("%w: partitions %d out of range [1,65536]", ErrBadMeta, m.Partitions)
	}
	return m, nil
}

// Position is a reader's durable position: it has consumed every record
// through Offset, which together hold EventsThrough events and BytesThrough
// batch bytes since the partition began.
type Position struct {
	Name          string
	Offset        uint64
	EventsThrough uint64
	BytesThrough  uint64
}

// ErrBadPosition is wrapped by every position decoding error.
var ErrBadPosition = errors.New("bad reader position file")

const posMagic uint32 = 0x50434c53 // "SLCP"

// EncodePosition returns the bytes of a position file:
//
//	magic:u32 offset:u64 events:u64 bytes:u64 nameLen:u16 name crc32c:u32
func EncodePosition(p Position) []byte {
	b := binary.LittleEndian.AppendUint32(nil, posMagic)
	b = binary.LittleEndian.AppendUint64(b, p.Offset)
	b = binary.LittleEndian.AppendUint64(b, p.EventsThrough)
	b = binary.LittleEndian.AppendUint64(b, p.BytesThrough)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(p.Name)))
	b = append(b, p.Name...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodePosition parses a position file.
func DecodePosition(b []byte) (Position, error) {
	const fixed = 4 + 8 + 8 + 8 + 2
	if len(b) < fixed+4 {
		return Position{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrBadPosition, len(b), fixed+4)
	}
	if binary.LittleEndian.Uint32(b) != posMagic {
		return Position{}, fmt.Errorf("%w: wrong magic", ErrBadPosition)
	}
	n := int(binary.LittleEndian.Uint16(b[fixed-2:]))
	if len(b) != fixed+n+4 {
		return Position{}, fmt.Errorf("%w: %d bytes, want %d for a %d-byte name", ErrBadPosition, len(b), fixed+n+4, n)
	}
	body := b[:fixed+n]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[fixed+n:]); got != want {
		return Position{}, fmt.Errorf("%w: checksum %#x, want %#x", ErrBadPosition, got, want)
	}
	return Position{
		Offset:        binary.LittleEndian.Uint64(b[4:]),
		EventsThrough: binary.LittleEndian.Uint64(b[12:]),
		BytesThrough:  binary.LittleEndian.Uint64(b[20:]),
		Name:          string(bytes.Clone(b[fixed : fixed+n])),
	}, nil
}
