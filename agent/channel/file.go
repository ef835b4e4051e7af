package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluicehq/sluice/agent/channel/internal/wal"
)

// File is the durable file channel: one directory, a segmented write-ahead
// log per partition, durable reader positions. The on-disk format and the
// recovery rules are in docs/adr/0001-channel-format.md.
//
// Directory layout:
//
//	LOCK                        flock'd while open; holds the owner's pid
//	channel.meta                format version and partition count
//	p0000/00000000000000000001.seg  segments, named by their first offset
//	p0000/spare-*.seg           freed segments kept for reuse
//	p0000/readers/<hex name>.pos    one durable position per reader
type File struct {
	opts   Options
	dir    string
	log    *slog.Logger
	lock   *os.File
	parts  []*partition
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	// freeBytes reports the free space of the filesystem holding dir;
	// tests replace it to simulate a full disk.
	freeBytes func() (int64, error)
}

var _ Channel = (*File)(nil)

const (
	metaName  = "channel.meta"
	lockName  = "LOCK"
	maxSpares = 2
)

// Open opens (creating if needed) the file channel in opts.Dir and takes an
// exclusive lock on it; while another process (or another Open in this
// process) holds it, Open fails with an error wrapping ErrLocked that names
// the holder's pid. Damaged data never stops Open: it is cut off or skipped,
// counted and logged. An unknown format version is an error.
func Open(opts Options) (*File, error) {
	requestedPartitions := opts.Partitions
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("channel options: dir is empty")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	f := &File{opts: opts, dir: opts.Dir, log: opts.Logger.With("channel", opts.Dir), closed: make(chan struct{})}
	f.freeBytes = func() (int64, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(f.dir, &st); err != nil {
			return 0, err
		}
		return int64(st.Bavail) * st.Bsize, nil
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	f.lock = lock
	n, err := f.loadMeta(requestedPartitions)
	if err != nil {
		lock.Close()
		return nil, err
	}
	for i := range n {
		p, err := openPartition(f, i)
		if err != nil {
			for _, p := range f.parts {
				p.closeFiles()
			}
			lock.Close()
			return nil, err
		}
		f.parts = append(f.parts, p)
	}
	// Make the partition directories' names durable before any segment in
	// them is acknowledged.
	if err := syncDir(f.dir); err != nil {
		f.parts = nil
		lock.Close()
		return nil, fmt.Errorf("channel: %w", err)
	}
	if opts.Fsync == FsyncInterval {
		f.wg.Add(1)
		go f.syncEvery(opts.FsyncInterval)
	}
	return f, nil
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	lf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by pid %s", ErrLocked, dir, strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("channel: lock %s: %w", path, err)
	}
	if err := lf.Truncate(0); err == nil {
		_, err = lf.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("channel: lock %s: %w", path, err)
	}
	return lf, nil
}

// loadMeta reads channel.meta, or rebuilds it from the partition
// directories when it is missing, empty or unreadable (logged), and returns
// the partition count.
func (f *File) loadMeta(requested int) (int, error) {
	path := filepath.Join(f.dir, metaName)
	if stale, _ := filepath.Glob(path + ".*.tmp"); len(stale) > 0 {
		for _, s := range stale {
			os.Remove(s)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("channel: %w", err)
	}
	if err == nil {
		m, derr := wal.DecodeMeta(b)
		switch {
		case derr == nil:
			if requested > 0 && requested != m.Partitions {
				return 0, fmt.Errorf("channel %s: has %d partitions, options ask for %d (repartitioning is not supported)", f.dir, m.Partitions, requested)
			}
			return m.Partitions, nil
		case errors.Is(derr, wal.ErrUnknownVersion):
			return 0, fmt.Errorf("channel %s: %s: %w", f.dir, metaName, derr)
		default:
			f.log.Warn("channel metadata unreadable; rebuilding it from the partition directories", "file", path, "err", derr)
		}
	}
	existing := 0
	for {
		if _, err := os.Stat(filepath.Join(f.dir, partDirName(existing))); err != nil {
			break
		}
		existing++
	}
	n := f.opts.Partitions
	if existing > 0 {
		if errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("channel metadata missing; rebuilding it from the partition directories", "file", path, "partitions", existing)
		}
		if requested > 0 && requested != existing {
			return 0, fmt.Errorf("channel %s: has %d partition directories, options ask for %d", f.dir, existing, requested)
		}
		n = existing
	}
	if err := writeAtomic(path, wal.EncodeMeta(wal.Meta{Version: wal.MetaVersion, Partitions: n})); err != nil {
		return 0, fmt.Errorf("channel: %w", err)
	}
	return n, nil
}

func partDirName(i int) string { return fmt.Sprintf("p%04d", i) }

// writeAtomic replaces path with data: write a temp file, fdatasync it,
// rename it over path, fsync the directory. A crash leaves the old or the
// new content, never a mix.
func writeAtomic(path string, data []byte) error {
	// A unique temp name, so two writers of the same file never share one;
	// Open deletes temp files a crash left behind.
	tf, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := tf.Name()
	err = func() error {
		defer tf.Close()
		if _, err := tf.Write(data); err != nil {
			return err
		}
		if err := unix.Fdatasync(int(tf.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", tmp, err)
		}
		return tf.Close()
	}()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func (f *File) part(p int) (*partition, error) {
	if p < 0 || p >= len(f.parts) {
		return nil, fmt.Errorf("channel %s: partition %d out of range [0,%d)", f.dir, p, len(f.parts))
	}
	return f.parts[p], nil
}

// Partitions implements Channel.
func (f *File) Partitions() int { return len(f.parts) }

// Append implements Channel.
func (f *File) Append(ctx context.Context, p int, producer string, batch []byte, count int, inputPos []byte) (uint64, error) {
	part, err := f.part(p)
	if err != nil {
		return 0, err
	}
	return part.append(ctx, producer, batch, count, inputPos)
}

// LastInputPosition implements Channel.
func (f *File) LastInputPosition(p int, producer string) ([]byte, bool) {
	part, err := f.part(p)
	if err != nil {
		return nil, false
	}
	part.mu.Lock()
	defer part.mu.Unlock()
	pos, ok := part.durableProducers[producer]
	return bytes.Clone(pos), ok
}

// Reader implements Channel.
func (f *File) Reader(name string, p int) (Reader, error) {
	if err := checkReaderName(name); err != nil {
		return nil, err
	}
	part, err := f.part(p)
	if err != nil {
		return nil, err
	}
	return part.reader(name)
}

// RemoveReader implements Channel.
func (f *File) RemoveReader(name string, p int) error {
	part, err := f.part(p)
	if err != nil {
		return err
	}
	return part.removeReader(name)
}

// Stats implements Channel.
func (f *File) Stats() Stats {
	var s Stats
	for _, p := range f.parts {
		s.add(p.stats())
	}
	return s
}

// Close implements Channel: it finishes the writes already handed to the
// writer, wakes every blocked call with ErrClosed, closes the files and
// releases the lock. Safe to call twice.
func (f *File) Close() error {
	var err error
	f.once.Do(func() {
		close(f.closed)
		f.wg.Wait()
		for _, p := range f.parts {
			p.drain()
		}
		for _, p := range f.parts {
			err = errors.Join(err, p.closeFiles())
		}
		err = errors.Join(err, f.lock.Close())
	})
	return err
}

// syncEvery is the interval policy's clock.
func (f *File) syncEvery(d time.Duration) {
	defer f.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, p := range f.parts {
				p.syncActive()
			}
		case <-f.closed:
			return
		}
	}
}

func (f *File) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}
