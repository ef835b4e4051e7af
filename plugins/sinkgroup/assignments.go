package sinkgroup

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The assignment log: which member each recent batch of a stream was sent
// to, kept on disk so that it survives the process.
//
// Why: the runner commits a sink's channel position only every
// CommitEvery (and when caught up), so after a kill -9 it replays the
// batches since that commit — batches already sent to some member, one of
// them perhaps stored there with its acknowledgement lost with the kill. A
// fresh group choosing members anew would send a replayed batch to a member
// that never saw it, storing it twice (the receivers' fences are per
// receiver). With the log, a replayed batch goes back to the member it was
// sent to, whose fence acknowledges it without storing it again
// (docs/adr/0011-forwarding-and-sink-groups.md, "Replays after a restart").
//
// Format: one file per stream, a ring of assignSlots fixed slots of
// slotSize bytes, each written whole with one pwrite and made durable with
// fdatasync BEFORE the batch is sent:
//
//	seq u64 | offset u64 | member id u64 | zero u32 | crc32c u32 (of the first 28 bytes)
//
// all little-endian. seq counts records from 1 (a zero slot is unused);
// record seq lives in slot seq % assignSlots. The member id is fnv64a of
// the member's name, so reordering members in the config keeps it.
const (
	assignSlots = 4096
	slotSize    = 32
	// assignDir is the directory under the group's data directory that
	// holds the logs (members' directories are named after the members).
	assignDir = ".assignments"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// memberID identifies a member in the log.
func memberID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

type slot struct {
	seq, offset, member uint64
}

func encodeSlot(dst []byte, s slot) {
	binary.LittleEndian.PutUint64(dst[0:], s.seq)
	binary.LittleEndian.PutUint64(dst[8:], s.offset)
	binary.LittleEndian.PutUint64(dst[16:], s.member)
	binary.LittleEndian.PutUint32(dst[24:], 0)
	binary.LittleEndian.PutUint32(dst[28:], crc32.Checksum(dst[:28], castagnoli))
}

// decodeSlots reads a whole log file. It returns the valid records and how
// many slots were damaged (bad checksum or reserved bytes): a slot torn by a
// crash mid-pwrite is one whose batch was never sent (the send waits for
// its fdatasync), so a damaged slot is skipped, not fatal. A file of the
// wrong length is an error: it is not a log this code wrote.
func decodeSlots(b []byte) (slots []slot, damaged int, err error) {
	if len(b) != assignSlots*slotSize {
		return nil, 0, fmt.Errorf("%d bytes, want %d (%d slots of %d)", len(b), assignSlots*slotSize, assignSlots, slotSize)
	}
	for i := 0; i < assignSlots; i++ {
		p := b[i*slotSize : (i+1)*slotSize]
		if allZero(p) {
			continue
		}
		if binary.LittleEndian.Uint32(p[28:]) != crc32.Checksum(p[:28], castagnoli) || binary.LittleEndian.Uint32(p[24:]) != 0 {
			damaged++
			continue
		}
		s := slot{seq: binary.LittleEndian.Uint64(p[0:]), offset: binary.LittleEndian.Uint64(p[8:]), member: binary.LittleEndian.Uint64(p[16:])}
		if s.seq == 0 || s.seq%assignSlots != uint64(i) {
			damaged++ // a valid slot in the wrong place: not ours
			continue
		}
		slots = append(slots, s)
	}
	return slots, damaged, nil
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

// assignLog is one stream's log, open for writing.
type assignLog struct {
	f       *os.File
	path    string
	nextSeq uint64
	buf     [slotSize]byte

	// replay holds, from the file as found at open, the member each offset
	// was last sent to; replayMax is the highest offset in it. Once the
	// stream passes replayMax the replay is over and replay is dropped.
	replay    map[uint64]uint64
	replayMax uint64
	replayMin uint64
	// wrapped: the ring had been overwritten at least once, so offsets
	// below replayMin may have been sent somewhere we no longer know.
	wrapped bool
}

// openAssignLog opens (creating it zeroed if missing) the log of stream
// under dir and reads what it holds.
func openAssignLog(dir, stream string) (*assignLog, int, error) {
	d := filepath.Join(dir, assignDir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, 0, err
	}
	path := filepath.Join(d, hex.EncodeToString([]byte(stream)))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err == nil && st.Size() == 0 {
		// New: give it its full length now, so that later fdatasyncs
		// never have a file size to update, and make the name durable.
		err = f.Truncate(assignSlots * slotSize)
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = syncDir(d)
		}
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(path)
	}
	var slots []slot
	var damaged int
	if err == nil {
		slots, damaged, err = decodeSlots(b)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("assignment log %s (stream %q): %w", path, stream, err)
	}
	l := &assignLog{f: f, path: path, nextSeq: 1}
	if len(slots) > 0 {
		l.replay = make(map[uint64]uint64, len(slots))
		latest := map[uint64]uint64{} // offset → seq of its latest record
		var maxSeq uint64
		for _, s := range slots {
			maxSeq = max(maxSeq, s.seq)
			if q, ok := latest[s.offset]; !ok || s.seq > q {
				latest[s.offset] = s.seq
				l.replay[s.offset] = s.member
			}
		}
		l.nextSeq = maxSeq + 1
		l.wrapped = maxSeq > assignSlots
		l.replayMin = ^uint64(0)
		for off := range l.replay {
			l.replayMax = max(l.replayMax, off)
			l.replayMin = min(l.replayMin, off)
		}
	}
	return l, damaged, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// record makes "offset is being sent to member" durable; the caller sends
// only after it returns nil.
func (l *assignLog) record(offset, member uint64) error {
	s := slot{seq: l.nextSeq, offset: offset, member: member}
	encodeSlot(l.buf[:], s)
	if _, err := l.f.WriteAt(l.buf[:], int64(s.seq%assignSlots)*slotSize); err != nil {
		return fmt.Errorf("assignment log %s: %w", l.path, err)
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("assignment log %s: fdatasync: %w", l.path, err)
	}
	l.nextSeq++
	return nil
}

// replayed returns the member id offset was last sent to before the
// restart, if the log knows. beyond reports an offset older than what a
// wrapped log still holds (its member is unknown).
func (l *assignLog) replayed(offset uint64) (member uint64, ok, beyond bool) {
	if l.replay == nil {
		return 0, false, false
	}
	if offset > l.replayMax {
		l.replay = nil // past everything sent before the restart
		return 0, false, false
	}
	member, ok = l.replay[offset]
	return member, ok, !ok && l.wrapped && offset < l.replayMin
}

func (l *assignLog) close() error {
	return errors.Join(l.f.Close())
}
