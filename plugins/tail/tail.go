// Package tail is the tail source: it follows files matched by globs and
// turns every line into an event.
//
// The follow loop is this package's own (not nxadm/tail): files are read with
// large positioned reads (pread) at a byte offset the source counts itself,
// split on '\n' with bytes.IndexByte, and only polled when every file is at
// its end. docs/adr/0006-tail-positions.md explains why and describes the
// position format and the rotation rules.
//
// A file is identified by device, inode and a fingerprint (FNV-1a 64) of its
// first fingerprint_bytes bytes, so a reused inode is a new file. The source
// never stores positions: every batch carries a Position covering every file
// in progress, the runner stores it atomically with the batch, and Open gets
// it back after a restart.
package tail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// HeaderReason is the dead-letter header that says why a line was refused.
const HeaderReason = "sluice.reason"

// DefaultMaxEvents is used when Read is called with max <= 0.
const DefaultMaxEvents = 4096

var _ pipeline.Source = (*Tail)(nil)

// Tail is the tail source. It implements pipeline.Source.
//
// Lifecycle: New, then Open once, then Read and Ack from one goroutine, then
// Close. Close is safe without Open and safe twice.
type Tail struct {
	cfg Config
	log *slog.Logger

	maxLine, readBuf, maxBatch int

	files []*follower
	byID  map[fileID]*follower
	// orphans are saved entries whose file was not found on Open. A glob
	// racing with logrotate's renames can miss a file that is there; if a
	// later scan finds it, it continues from the saved offset instead of
	// being read again as a new file. Orphans stay in the position.
	orphans map[fileID]fileState
	rr      int // file the next pass starts with

	lastScan  time.Time
	forceScan bool

	b        event.Builder
	ev       event.Event
	hdr      [1]event.Header
	dead     []event.Event
	pos      []byte
	states   []fileState
	posDirty bool // the position moved without an event (skip, reset, drop)
	readTime int64

	opened bool
	closed bool
}

type fileID struct{ dev, ino uint64 }

// follower is one open file and what has been read from it.
type follower struct {
	fileState
	f *os.File
	// buf[start:end] holds bytes read from the file but not yet consumed; the
	// file offset of buf[start] is Offset.
	buf        []byte
	start, end int
	eof        bool // the last read found no new bytes
	lastGrowth time.Time
}

func (fl *follower) readOff() int64 { return int64(fl.Offset) + int64(fl.end-fl.start) }

// New returns a tail source for cfg, which must be valid. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Tail, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Tail{
		cfg:      cfg,
		log:      logger,
		maxLine:  int(cfg.MaxLineBytes.Bytes),
		readBuf:  int(cfg.ReadBufferBytes.Bytes),
		maxBatch: int(cfg.MaxBatchBytes.Bytes),
		byID:     map[fileID]*follower{},
		orphans:  map[fileID]fileState{},
	}, nil
}

// Open finds the files matched by the globs and continues each one right
// after resume, the Position of the last durable batch (nil: first start).
func (t *Tail) Open(ctx context.Context, resume []byte) error {
	if t.opened {
		return errors.New("tail: Open called twice")
	}
	if t.closed {
		return errors.New("tail: Open after Close")
	}
	t.opened = true
	var saved []fileState
	if resume != nil {
		var err error
		if saved, err = decodePosition(resume); err != nil {
			return fmt.Errorf("tail: resume position: %w", err)
		}
	}
	matched := t.glob()
	now := time.Now()
	for _, s := range saved {
		path, ok := matched[fileID{s.Dev, s.Ino}]
		if ok {
			delete(matched, fileID{s.Dev, s.Ino})
			s.Gone = false
		} else {
			// Not matched any more: renamed while stopped (rotation), so look
			// for its inode beside its old path to drain what is left.
			path = t.findInDir(filepath.Dir(s.Path), func(id fileID, _ os.FileInfo) bool {
				return id == fileID{s.Dev, s.Ino}
			})
			if path == "" {
				t.log.Warn("tail: a file in the saved position was not found; if it was deleted, its unread lines are lost",
					"path", s.Path, "offset", s.Offset)
				t.orphans[fileID{s.Dev, s.Ino}] = s
				continue
			}
			s.Gone = true
		}
		f, fi, path, err := t.openByID(fileID{s.Dev, s.Ino}, path)
		if err != nil {
			t.log.Error("tail: cannot reopen file", "path", path, "err", err)
			continue
		}
		fl := &follower{fileState: s, f: f, lastGrowth: now}
		fl.Path = path
		if fpOK := t.fingerprintMatches(f, s.FpLen, s.Fp); !fpOK || fi.Size() < int64(s.Offset) {
			t.log.Info("tail: saved position does not fit the file", "path", path, "size", fi.Size(),
				"saved_offset", s.Offset, "fingerprint_matches", fpOK)
			// Truncated (or truncated and rewritten) while stopped.
			if s.Gone {
				f.Close()
				continue
			}
			t.truncated(fl, "while stopped")
		}
		t.add(fl, -1)
		t.log.Info("tail: resuming file", "path", fl.Path, "offset", fl.Offset, "fingerprint_bytes", fl.FpLen, "gone", fl.Gone)
	}
	ids := make([]fileID, 0, len(matched))
	for id := range matched {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return matched[ids[i]] < matched[ids[j]] })
	for _, id := range ids {
		t.openNew(matched[id], resume == nil && t.cfg.StartAt == "end")
	}
	t.lastScan = now
	return nil
}

// Read returns the next batch of lines, waiting up to the poll interval at a
// time while every file is at its end.
func (t *Tail) Read(ctx context.Context, max int) (pipeline.SourceBatch, error) {
	if !t.opened || t.closed {
		return pipeline.SourceBatch{}, errors.New("tail: Read without Open or after Close")
	}
	if max <= 0 {
		max = DefaultMaxEvents
	}
	t.b.Reset()
	clear(t.dead)
	t.dead = t.dead[:0]
	for {
		if err := ctx.Err(); err != nil {
			return pipeline.SourceBatch{}, err
		}
		t.pass(max)
		if t.ready() {
			return t.batch(), nil
		}
		again := t.maintain(time.Now())
		if t.ready() {
			return t.batch(), nil
		}
		if again {
			continue
		}
		timer := time.NewTimer(t.cfg.PollInterval.D)
		select {
		case <-ctx.Done():
			timer.Stop()
			return pipeline.SourceBatch{}, ctx.Err()
		case <-timer.C:
		}
	}
}

// Ack is a no-op: positions travel with batches, and the source releases a
// drained file on its own after rotate_wait.
func (t *Tail) Ack(ctx context.Context, pos []byte) error { return nil }

// Close closes every file. It is safe without Open and safe twice.
func (t *Tail) Close(ctx context.Context) error {
	t.closed = true
	for _, fl := range t.files {
		fl.f.Close()
	}
	t.files, t.byID = nil, map[fileID]*follower{}
	return nil
}

func (t *Tail) ready() bool { return t.b.Len() > 0 || len(t.dead) > 0 || t.posDirty }

func (t *Tail) batch() pipeline.SourceBatch {
	t.states = t.states[:0]
	for _, fl := range t.files {
		t.states = append(t.states, fl.fileState)
	}
	for _, o := range t.orphans {
		t.states = append(t.states, o)
	}
	t.pos = appendPosition(t.pos[:0], t.states)
	t.posDirty = false
	sb := pipeline.SourceBatch{Position: t.pos, DeadLetters: t.dead}
	if t.b.Len() > 0 {
		sb.Events = t.b.Bytes()
	}
	return sb
}

func (t *Tail) full(max int) bool { return t.b.Len() >= max || t.b.Size() >= t.maxBatch }

// pass reads every file, starting with t.rr, until each is at its end or the
// batch is full.
func (t *Tail) pass(max int) {
	n := len(t.files)
	for k := 0; k < n; k++ {
		i := (t.rr + k) % n
		fl := t.files[i]
		for {
			t.consume(fl, max)
			if t.full(max) {
				t.rr = (i + 1) % n
				return
			}
			if !t.fill(fl) {
				break
			}
		}
	}
}

// fill reads the next chunk of fl into its buffer and reports whether it got
// any bytes.
func (t *Tail) fill(fl *follower) bool {
	if fl.buf == nil {
		fl.buf = make([]byte, t.readBuf)
	}
	if fl.start == fl.end {
		fl.start, fl.end = 0, 0
	} else if fl.start > 0 {
		fl.end = copy(fl.buf, fl.buf[fl.start:fl.end])
		fl.start = 0
	}
	if fl.end == len(fl.buf) {
		// A partial line fills the buffer but is not over max_line_bytes yet.
		nb := make([]byte, 2*len(fl.buf))
		copy(nb, fl.buf[:fl.end])
		fl.buf = nb
	}
	n, err := fl.f.ReadAt(fl.buf[fl.end:], fl.readOff())
	if err != nil && err != io.EOF {
		t.log.Error("tail: read failed", "path", fl.Path, "err", err)
	}
	if n == 0 {
		fl.eof = true
		return false
	}
	if fl.FpLen > 0 && !t.fingerprintMatches(fl.f, fl.FpLen, fl.Fp) {
		// The content was replaced under us (copytruncate and regrowth past
		// our offset between two reads): these bytes are the middle of a
		// new file, not the continuation of ours.
		t.truncated(fl, "while running")
		return true
	}
	fl.end += n
	fl.eof = false
	now := time.Now()
	fl.lastGrowth = now
	t.readTime = now.UnixNano()
	if int(fl.FpLen) < t.cfg.FingerprintBytes {
		t.refingerprint(fl)
	}
	return true
}

// consume turns the complete lines in fl's buffer into events.
func (t *Tail) consume(fl *follower, max int) {
	for !t.full(max) {
		data := fl.buf[fl.start:fl.end]
		if len(data) == 0 {
			return
		}
		i := bytes.IndexByte(data, '\n')
		if fl.Skipping {
			if i < 0 {
				t.advance(fl, len(data))
				t.posDirty = true
				return
			}
			t.advance(fl, i+1)
			fl.Skipping = false
			t.posDirty = true
			continue
		}
		if i < 0 {
			if len(data) > t.maxLine {
				t.deadLetter(fl, data[:t.maxLine], len(data), false)
				t.advance(fl, len(data))
				fl.Skipping = true
			}
			return
		}
		if i > t.maxLine {
			t.deadLetter(fl, data[:t.maxLine], i, true)
			t.advance(fl, i+1)
			continue
		}
		t.emit(fl, data[:i])
		t.advance(fl, i+1)
	}
}

func (t *Tail) advance(fl *follower, n int) {
	fl.start += n
	fl.Offset += uint64(n)
}

func (t *Tail) emit(fl *follower, line []byte) {
	t.ev.Time = t.readTime
	t.ev.Body = line
	t.ev.Headers = t.ev.Headers[:0]
	if t.cfg.PathHeader != "" {
		t.hdr[0] = event.Header{Name: t.cfg.PathHeader, Value: fl.Path}
		t.ev.Headers = t.hdr[:1]
	}
	t.b.Add(&t.ev)
}

func (t *Tail) deadLetter(fl *follower, head []byte, seen int, complete bool) {
	size := fmt.Sprintf("%d bytes", seen)
	if !complete {
		size = fmt.Sprintf("at least %d bytes", seen)
	}
	e := event.Event{
		Time: time.Now().UnixNano(),
		Body: bytes.Clone(head),
		Headers: []event.Header{{Name: HeaderReason, Value: fmt.Sprintf(
			"line of %s at %s offset %d is longer than max_line_bytes (%d); its first %d bytes are kept here",
			size, fl.Path, fl.Offset, t.maxLine, len(head))}},
	}
	if t.cfg.PathHeader != "" {
		e.Headers = append(e.Headers, event.Header{Name: t.cfg.PathHeader, Value: fl.Path})
	}
	t.dead = append(t.dead, e)
	t.log.Warn("tail: line over max_line_bytes sent to the dead-letter channel",
		"path", fl.Path, "offset", fl.Offset, "max_line_bytes", t.maxLine)
}

// maintain runs while every file is at its end: it detects truncation,
// rotation and deletion, rescans the globs, flushes quiet partial lines and
// drops drained files. It reports whether a file may have new bytes now.
func (t *Tail) maintain(now time.Time) (again bool) {
	for _, fl := range append([]*follower(nil), t.files...) {
		if !fl.eof {
			again = true
			continue
		}
		fi, err := fl.f.Stat()
		if err != nil {
			continue
		}
		if fi.Size() < fl.readOff() || !t.fingerprintMatches(fl.f, fl.FpLen, fl.Fp) {
			if fl.Gone {
				t.log.Warn("tail: a rotated file was truncated before it was drained", "path", fl.Path)
				t.drop(fl)
				continue
			}
			t.truncated(fl, "while running")
			again = true
			continue
		}
		if fi.Size() > fl.readOff() {
			fl.eof = false
			again = true
			continue
		}
		if !fl.Gone {
			pfi, err := os.Stat(fl.Path)
			if err != nil || idOf(pfi) != (fileID{fl.Dev, fl.Ino}) {
				// Renamed away or deleted: keep draining it through its open
				// handle, and look for the file that took its place now.
				fl.Gone = true
				t.forceScan = true
			}
		}
		partial := fl.end > fl.start && !fl.Skipping
		idle := now.Sub(fl.lastGrowth)
		if partial && t.cfg.QuietPeriod.D > 0 && idle >= t.cfg.QuietPeriod.D {
			t.flushPartial(fl)
		}
		if fl.Gone && idle >= t.cfg.RotateWait.D {
			if fl.end > fl.start && !fl.Skipping {
				t.flushPartial(fl)
			}
			t.drop(fl)
		}
	}
	if t.forceScan || now.Sub(t.lastScan) >= t.cfg.ScanInterval.D {
		t.forceScan = false
		t.lastScan = now
		if t.scan() {
			again = true
		}
	}
	return again
}

func (t *Tail) flushPartial(fl *follower) {
	t.readTime = time.Now().UnixNano()
	t.emit(fl, fl.buf[fl.start:fl.end])
	t.advance(fl, fl.end-fl.start)
}

// scan expands the globs again: new files are followed from their start,
// renamed ones that still match get their new path.
func (t *Tail) scan() (added bool) {
	matched := t.glob()
	paths := make([]string, 0, len(matched))
	for id, p := range matched {
		if fl, ok := t.byID[id]; ok {
			fl.Path, fl.Gone = p, false
			continue
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if t.openNew(p, false) {
			added = true
		}
	}
	return added
}

func (t *Tail) openNew(path string, atEnd bool) bool {
	f, fi, err := openFile(path)
	if err != nil {
		t.log.Error("tail: cannot open file", "path", path, "err", err)
		return false
	}
	id := idOf(fi)
	if _, ok := t.byID[id]; ok {
		f.Close()
		return false
	}
	fl := &follower{fileState: fileState{Dev: id.dev, Ino: id.ino, Path: path}, f: f, lastGrowth: time.Now()}
	if atEnd {
		fl.Offset = uint64(fi.Size())
	}
	if o, ok := t.orphans[id]; ok {
		delete(t.orphans, id)
		if t.fingerprintMatches(f, o.FpLen, o.Fp) && fi.Size() >= int64(o.Offset) {
			fl.fileState = o
			fl.Path, fl.Gone = path, false
			t.log.Info("tail: found a file of the saved position again", "path", path, "offset", o.Offset)
		}
	}
	t.refingerprint(fl)
	t.add(fl, -1)
	t.posDirty = true
	t.log.Info("tail: following file", "path", path, "offset", fl.Offset)
	return true
}

// add inserts fl into the reading order before index at (-1: at the end).
func (t *Tail) add(fl *follower, at int) {
	if at < 0 || at >= len(t.files) {
		t.files = append(t.files, fl)
	} else {
		t.files = append(t.files[:at+1], t.files[at:]...)
		t.files[at] = fl
	}
	t.byID[fileID{fl.Dev, fl.Ino}] = fl
}

func (t *Tail) drop(fl *follower) {
	fl.f.Close()
	delete(t.byID, fileID{fl.Dev, fl.Ino})
	for i, x := range t.files {
		if x == fl {
			t.files = append(t.files[:i], t.files[i+1:]...)
			break
		}
	}
	if t.rr >= len(t.files) {
		t.rr = 0
	}
	t.posDirty = true
	t.log.Info("tail: finished with file", "path", fl.Path, "offset", fl.Offset)
}

// truncated handles a file whose content shrank or changed under the
// position. Before starting it over, it looks for a copy made by
// copytruncate rotation (a file beside it with the same fingerprint and more
// bytes than were consumed) and drains that copy from the old offset, so the
// lines written between the last read and the copy are not lost.
func (t *Tail) truncated(fl *follower, when string) {
	t.log.Warn("tail: file truncated or replaced, reading it again from the start",
		"path", fl.Path, "when", when, "old_offset", fl.Offset)
	if fl.FpLen > 0 {
		if f, fi, copyPath := t.findCopy(fl); f != nil {
			{ // the copy is drained before the live file is read again
				cp := &follower{fileState: fl.fileState, f: f, lastGrowth: time.Now()}
				id := idOf(fi)
				cp.Dev, cp.Ino, cp.Path, cp.Gone = id.dev, id.ino, copyPath, true
				at := -1
				for i, x := range t.files {
					if x == fl {
						at = i
					}
				}
				t.add(cp, at)
				t.log.Info("tail: draining the copy of a truncated file", "copy", copyPath, "offset", cp.Offset)
			}
		}
	}
	fl.Offset, fl.start, fl.end = 0, 0, 0
	fl.Skipping, fl.FpLen, fl.Fp = false, 0, 0
	fl.eof = false
	t.refingerprint(fl)
	t.posDirty = true
}

// findCopy looks beside fl for a copy of it (see truncated). logrotate may
// be renaming the older copies while the directory is listed, which can hide
// a file from one listing, so the lookup is tried a few times.
func (t *Tail) findCopy(fl *follower) (*os.File, os.FileInfo, string) {
	dir := filepath.Dir(fl.Path)
	for attempt := 0; attempt < 3; attempt++ {
		p := t.findInDir(dir, func(id fileID, fi os.FileInfo) bool {
			if id.dev != fl.Dev || id.ino == fl.Ino || fi.Size() <= int64(fl.Offset) {
				return false
			}
			if _, tracked := t.byID[id]; tracked {
				return false
			}
			f, err := os.Open(filepath.Join(dir, fi.Name()))
			if err != nil {
				return false
			}
			defer f.Close()
			return t.fingerprintMatches(f, fl.FpLen, fl.Fp)
		})
		if p == "" {
			continue
		}
		f, fi, err := openFile(p)
		if err != nil {
			continue
		}
		id := idOf(fi)
		if _, tracked := t.byID[id]; !tracked && id.ino != fl.Ino && fi.Size() > int64(fl.Offset) &&
			t.fingerprintMatches(f, fl.FpLen, fl.Fp) {
			return f, fi, p
		}
		f.Close()
	}
	return nil, nil, ""
}

// refingerprint extends fl's fingerprint to the bytes now in the file, up to
// fingerprint_bytes.
func (t *Tail) refingerprint(fl *follower) {
	var scratch [maxFingerprint]byte
	n, _ := fl.f.ReadAt(scratch[:t.cfg.FingerprintBytes], 0)
	if n > int(fl.FpLen) {
		fl.FpLen, fl.Fp = uint32(n), fingerprint(scratch[:n])
	}
}

func (t *Tail) fingerprintMatches(f *os.File, n uint32, fp uint64) bool {
	if n == 0 {
		return true
	}
	var scratch [maxFingerprint]byte
	got, _ := f.ReadAt(scratch[:n], 0)
	return got == int(n) && fingerprint(scratch[:n]) == fp
}

func fingerprint(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// glob expands the configured patterns to regular files by identity.
func (t *Tail) glob() map[fileID]string {
	out := map[fileID]string{}
	for _, pat := range t.cfg.Paths {
		paths, _ := filepath.Glob(pat) // patterns were validated
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if _, dup := out[idOf(fi)]; !dup {
				out[idOf(fi)] = p
			}
		}
	}
	return out
}

// findInDir returns the first regular file of dir (in name order) that match
// accepts, or "".
func (t *Tail) findInDir(dir string, match func(fileID, os.FileInfo) bool) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if match(idOf(fi), fi) {
			return p
		}
	}
	return ""
}

// openByID opens the file with identity id, expected at path. A rotation
// can rename files between the glob and the open, so the opened file's
// identity is checked, and on a mismatch the file is looked for by inode in
// the same directory.
func (t *Tail) openByID(id fileID, path string) (*os.File, os.FileInfo, string, error) {
	for attempt := 0; attempt < 5; attempt++ {
		if f, fi, err := openFile(path); err == nil {
			if idOf(fi) == id {
				return f, fi, path, nil
			}
			f.Close()
		}
		p := t.findInDir(filepath.Dir(path), func(got fileID, _ os.FileInfo) bool { return got == id })
		if p == "" {
			break
		}
		path = p
	}
	return nil, nil, path, fmt.Errorf("file with device %d inode %d is no longer beside %s", id.dev, id.ino, path)
}

func openFile(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
}
