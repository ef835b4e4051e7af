package file

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
)

// fenceState is what the sidecar file records after every applied batch:
// the data file generation, its size after the batch, and the last fence
// offset applied per stream.
type fenceState struct {
	Seq     uint64 // generation of the live data file; rotated files are named by theirs
	Size    uint64 // bytes of the live data file that belong to applied batches
	Streams map[string]uint64
}

// Sidecar wire form (version 1):
//
//	"SLFF" 0x01 seq:uvarint size:uvarint n:uvarint (nameLen:uvarint name offset:uvarint)*n crc32c:u32le
//
// The CRC covers everything before it. The sidecar is replaced atomically
// (write temp, fsync, rename), so a torn sidecar means damage from outside,
// reported as an error rather than guessed around.
var fenceMagic = []byte{'S', 'L', 'F', 'F', 1}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadFence is wrapped by every sidecar decoding error.
var ErrBadFence = errors.New("file sink: malformed fence file")

const maxStreamName = 1024

func (s *fenceState) encode() []byte {
	b := append([]byte(nil), fenceMagic...)
	b = binary.AppendUvarint(b, s.Seq)
	b = binary.AppendUvarint(b, s.Size)
	names := make([]string, 0, len(s.Streams))
	for k := range s.Streams {
		names = append(names, k)
	}
	sort.Strings(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, s.Streams[k])
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeFence(b []byte) (fenceState, error) {
	st := fenceState{Streams: map[string]uint64{}}
	if len(b) < len(fenceMagic)+4 || string(b[:4]) != string(fenceMagic[:4]) {
		return st, fmt.Errorf("%w: missing \"SLFF\" magic", ErrBadFence)
	}
	if b[4] != fenceMagic[4] {
		return st, fmt.Errorf("%w: version %d, this build reads version %d", ErrBadFence, b[4], fenceMagic[4])
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return st, fmt.Errorf("%w: checksum %08x, want %08x", ErrBadFence, got, want)
	}
	off := len(fenceMagic)
	uv := func(what string) (uint64, error) {
		v, n := binary.Uvarint(body[off:])
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad %s at byte %d", ErrBadFence, what, off)
		}
		off += n
		return v, nil
	}
	var err error
	if st.Seq, err = uv("generation"); err != nil {
		return st, err
	}
	if st.Size, err = uv("size"); err != nil {
		return st, err
	}
	n, err := uv("stream count")
	if err != nil {
		return st, err
	}
	if n > uint64(len(body)-off)/2 {
		return st, fmt.Errorf("%w: %d streams cannot fit in %d bytes", ErrBadFence, n, len(body)-off)
	}
	for i := uint64(0); i < n; i++ {
		l, err := uv("stream name length")
		if err != nil {
			return st, err
		}
		if l > maxStreamName || l > uint64(len(body)-off) {
			return st, fmt.Errorf("%w: stream %d: name length %d runs past the end", ErrBadFence, i, l)
		}
		name := string(body[off : off+int(l)])
		off += int(l)
		if st.Streams[name], err = uv("stream offset"); err != nil {
			return st, err
		}
	}
	if off != len(body) {
		return st, fmt.Errorf("%w: %d trailing bytes", ErrBadFence, len(body)-off)
	}
	return st, nil
}
