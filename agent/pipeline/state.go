package pipeline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// memState is the StateStore of one stateful bolt instance. It keeps the
// whole state in memory and the keys changed since the last takeDelta, so
// the runner can store each batch's change inside that batch's output record
// (the hop protocol carries state the same way it carries positions) and
// write a full snapshot now and then.
type memState struct {
	mu    sync.Mutex
	kv    map[string][]byte
	dirty map[string]bool
}

var _ StateStore = (*memState)(nil)

func newMemState() *memState {
	return &memState{kv: map[string][]byte{}, dirty: map[string]bool{}}
}

func (s *memState) Get(key []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.kv[string(key)]
	return v, ok
}

func (s *memState) Put(key, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv[string(key)] = append([]byte(nil), value...)
	s.dirty[string(key)] = true
}

func (s *memState) Delete(key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.kv, string(key))
	s.dirty[string(key)] = true
}

func (s *memState) Scan(prefix []byte, fn func(key, value []byte) bool) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.kv))
	for k := range s.kv {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = s.kv[k]
	}
	s.mu.Unlock()
	for i, k := range keys {
		if !fn([]byte(k), vals[i]) {
			return
		}
	}
}

// delta encoding: count:u32 (op:u8 key:bytes value:bytes)*count, op 0 put, 1 delete.

// takeDelta returns the encoded change since the last call and forgets it.
func (s *memState) takeDelta() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dirty) == 0 {
		return nil
	}
	keys := make([]string, 0, len(s.dirty))
	for k := range s.dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		v, ok := s.kv[k]
		op := byte(0)
		if !ok {
			op = 1
		}
		out = append(out, op)
		out = appendLenBytes(out, []byte(k))
		out = appendLenBytes(out, v)
	}
	clear(s.dirty)
	return out
}

// applyDelta replays an encoded delta (restore after a restart).
func (s *memState) applyDelta(d []byte) error {
	if len(d) == 0 {
		return nil
	}
	if len(d) < 4 {
		return fmt.Errorf("%w: state delta of %d bytes", errEnvelope, len(d))
	}
	n := binary.LittleEndian.Uint32(d)
	rest := d[4:]
	type op struct {
		del  bool
		k, v []byte
	}
	ops := make([]op, 0, min(int(n), len(rest)/9))
	for i := uint32(0); i < n; i++ {
		if len(rest) < 1 {
			return fmt.Errorf("%w: state delta truncated at entry %d", errEnvelope, i)
		}
		o := op{del: rest[0] == 1}
		if rest[0] > 1 {
			return fmt.Errorf("%w: state delta op %d", errEnvelope, rest[0])
		}
		var err error
		if o.k, rest, err = lenBytes(rest[1:]); err != nil {
			return err
		}
		if o.v, rest, err = lenBytes(rest); err != nil {
			return err
		}
		ops = append(ops, o)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after state delta", errEnvelope, len(rest))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range ops {
		if o.del {
			delete(s.kv, string(o.k))
		} else {
			s.kv[string(o.k)] = append([]byte(nil), o.v...)
		}
	}
	return nil
}

func appendLenBytes(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// Snapshot file: the full state of one bolt instance as of batch seq, whose
// record in the first output partition has offset off.
//
//	file := magic:"SLST" version:u8 seq:u64 off:u64 entries:bytes crc32c:u32
//	entries is a delta of puts only.
var snapMagic = []byte("SLST")

const snapVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type snapshot struct {
	seq, off uint64
}

func (s *memState) encodeSnapshot(seq, off uint64) []byte {
	s.mu.Lock()
	keys := make([]string, 0, len(s.kv))
	for k := range s.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	entries := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		entries = append(entries, 0)
		entries = appendLenBytes(entries, []byte(k))
		entries = appendLenBytes(entries, s.kv[k])
	}
	s.mu.Unlock()
	out := append([]byte(nil), snapMagic...)
	out = append(out, snapVersion)
	out = binary.LittleEndian.AppendUint64(out, seq)
	out = binary.LittleEndian.AppendUint64(out, off)
	out = appendLenBytes(out, entries)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

var errSnapshot = errors.New("pipeline: damaged state snapshot")

// decodeSnapshot loads b into a fresh state.
func decodeSnapshot(b []byte) (*memState, snapshot, error) {
	var sn snapshot
	if len(b) < 4+1+16+4+4 || !bytes.Equal(b[:4], snapMagic) {
		return nil, sn, fmt.Errorf("%w: not a snapshot", errSnapshot)
	}
	if b[4] != snapVersion {
		return nil, sn, fmt.Errorf("%w: unknown version %d", errSnapshot, b[4])
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, sn, fmt.Errorf("%w: checksum mismatch", errSnapshot)
	}
	sn.seq = binary.LittleEndian.Uint64(b[5:])
	sn.off = binary.LittleEndian.Uint64(b[13:])
	entries, rest, err := lenBytes(body[21:])
	if err != nil || len(rest) != 0 {
		return nil, sn, fmt.Errorf("%w: bad entries", errSnapshot)
	}
	st := newMemState()
	if err := st.applyDelta(entries); err != nil {
		return nil, sn, fmt.Errorf("%w: %v", errSnapshot, err)
	}
	return st, sn, nil
}

// writeFileAtomic writes data to path via a temp file, fsync and rename, and
// fsyncs the directory, so a crash leaves the old or the new file whole.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
