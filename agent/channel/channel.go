// Package channel is the storage on every edge of a Sluice topology
// (DESIGN §4): an ordered, durable log of event batches with named readers.
//
// Two implementations share one contract: File (Open), a segmented
// write-ahead log on disk and the default, and Memory (NewMemory), for tests
// and for edges where speed matters more than surviving a restart.
//
// # Contract
//
// A channel has Partitions() partitions, each its own log. Append writes one
// batch (the agent/event wire form, stored and returned byte for byte, never
// re-encoded) together with the producer's input position as ONE framed,
// checksummed record, and returns only when that record is durable under the
// channel's FsyncPolicy. A record is visible to readers only once it is
// durable in that sense: a reader never sees a half-written batch.
//
// Offsets are per partition, start at 1 and only grow, across segments and
// restarts; a gap can appear only where a damaged record was skipped. Offset 0
// means "before the first record": Seek(0) rewinds to the oldest record still
// retained, and a new reader's Committed() is the offset just before that
// record (0 while nothing has been deleted).
//
// Hop protocol: a producer (source, bolt or sink runner) stores the position
// of its input in the same record as its output. After a restart it asks
// LastInputPosition for the input position of its last durable append and
// resumes right after it. There is no separate commit write that a crash
// could separate from the data. Positions are opaque bytes to the channel.
// Several producers may append to one partition (fan-in); each has its own
// last position.
//
// Readers are named per partition (fan-out: every name sees every record).
// A reader is registered, durably, on first use and starts at the oldest
// retained record. Commit records "consumed through offset" durably; after a
// restart Reader returns a handle positioned right after Committed(). A
// segment is deleted only when every registered reader has committed past
// it; with no registered reader nothing is deleted. A stage that appends its
// output to another channel resumes from that channel's LastInputPosition,
// not from Committed(): for it Commit only releases space, so it may commit
// less often than once per batch (on File each Commit is an atomic file
// write costing two fsyncs).
//
// Capacity: with MaxBytes set, Append blocks (honouring ctx) while the
// retained data would exceed it, until readers commit and segments are freed.
// With MinFreeBytes set, Append blocks the same way while the filesystem
// holding Dir has less free space, logs one line when it starts waiting and
// counts the time in Stats. A channel never drops a batch.
//
// Lifecycle: Open/NewMemory return a ready channel. Close stops it: appends
// already handed to the writer are finished (and acknowledged), then Appends
// waiting for room, later Appends and Next calls return ErrClosed. Close is
// safe to call twice. Append, LastInputPosition, Reader, RemoveReader and
// Stats are safe for concurrent use; a Reader handle is used by one goroutine
// at a time (different handles may run in parallel).
package channel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/agent/event"
)

// FsyncPolicy says when an Append counts as durable.
type FsyncPolicy string

const (
	// FsyncAlways (the default): Append returns after fdatasync. Concurrent
	// appenders to a partition share one fdatasync (group commit). Nothing
	// acknowledged is lost on power failure.
	FsyncAlways FsyncPolicy = "always"
	// FsyncInterval: Append returns once the record is written to the
	// operating system; fdatasync runs every FsyncInterval. A process crash
	// loses nothing; a power failure loses at most the appends acknowledged
	// in the last FsyncInterval (plus the time one fdatasync takes).
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever: Append returns once written to the operating system; the
	// kernel writes back when it likes. A process crash loses nothing; a
	// power failure loses whatever the kernel had not written back
	// (typically up to ~30 s).
	FsyncNever FsyncPolicy = "never"
)

// Defaults applied by Open and NewMemory to zero Options fields.
const (
	DefaultPartitions    = 1
	DefaultSegmentBytes  = 64 << 20
	DefaultFsyncInterval = time.Second
)

// Options configure a channel. The zero value of every field but Dir is a
// usable default.
type Options struct {
	// Dir is the channel's directory (File only); created if missing.
	Dir string
	// Partitions is the number of independent logs; default 1. Reopening an
	// existing File channel with a different non-zero count is an error.
	Partitions int
	// SegmentBytes is the size at which a segment file is sealed and the
	// next one started; default 64 MiB. When MaxBytes is set, segments are
	// capped at MaxBytes/4 so that freed segments can always make room.
	SegmentBytes int64
	// MaxBytes caps the bytes retained per partition (records not yet
	// released by every reader); 0 means unlimited. A full partition blocks
	// Append. A single record larger than MaxBytes is refused with an error.
	MaxBytes int64
	// MinFreeBytes is a floor on the free space of the filesystem holding
	// Dir (File only); below it Append blocks. 0 disables the check.
	MinFreeBytes int64
	// Fsync is the durability policy; default FsyncAlways.
	Fsync FsyncPolicy
	// FsyncInterval is the period of FsyncInterval; default 1 s.
	FsyncInterval time.Duration
	// Logger receives the channel's log lines; default slog.Default().
	Logger *slog.Logger
}

// Channel is an ordered, durable, partitioned log of event batches; see the
// package comment for the full contract. *File and *Memory implement it.
type Channel interface {
	// Partitions returns the number of partitions, numbered 0..n-1.
	Partitions() int
	// Append writes one batch (agent/event wire-form bytes holding count
	// events) together with the producer's input position as one framed,
	// checksummed record in partition p, and returns once it is durable
	// under the fsync policy. producer names the writer; several producers
	// may share a partition. It returns the record's offset. It blocks while
	// the partition is full (MaxBytes) or the disk is below MinFreeBytes, and
	// returns ctx.Err() if ctx ends first; a record whose Append returned an
	// error may or may not have been stored (check LastInputPosition).
	Append(ctx context.Context, p int, producer string, batch []byte, count int, inputPos []byte) (uint64, error)
	// LastInputPosition returns the inputPos of producer's last durable
	// Append in partition p, or (nil, false) if it never appended there (or
	// all its records and all later segments are gone). It works after a
	// reopen, whichever segment the append is in.
	LastInputPosition(p int, producer string) ([]byte, bool)
	// Reader returns a handle on the named reader of partition p (name: 1
	// to 120 bytes), registering the name durably on first use. The handle starts right
	// after the reader's Committed() offset. Asking again for the same name
	// returns a new handle at Committed(); the previous handle is retired
	// (its calls return ErrReaderReplaced).
	Reader(name string, p int) (Reader, error)
	// RemoveReader unregisters the named reader of partition p, so that it
	// no longer holds back retention. Removing an unknown name is not an
	// error.
	RemoveReader(name string, p int) error
	// Stats returns counters for metrics, for the whole channel and per
	// partition.
	Stats() Stats
	// Close stops the channel; safe to call twice.
	Close() error
}

// Reader reads one partition in offset order for one named reader.
type Reader interface {
	// Next blocks until a record after the current position exists, ctx is
	// done (returns ctx.Err()), or the channel closes (returns ErrClosed).
	// The Record's byte slices stay valid until the next call to Next or
	// TryNext on this handle.
	Next(ctx context.Context) (Record, error)
	// TryNext is Next without blocking: ok is false when no durable record
	// is there yet.
	TryNext() (rec Record, ok bool, err error)
	// Seek positions the handle so that the next record returned is the
	// first with Offset > offset. Seeking before the oldest retained record
	// starts at the oldest retained record.
	Seek(offset uint64) error
	// Commit durably records that this reader has consumed every record
	// through offset (an atomic file write on File). Committing an offset at
	// or below Committed() does nothing; committing past the last appended
	// record is an error.
	Commit(offset uint64) error
	// Committed returns the last committed offset (0: nothing yet).
	Committed() uint64
}

// Record is one batch as stored.
type Record struct {
	Offset   uint64
	Producer string
	Batch    []byte // agent/event wire form, exactly as appended
	Count    int    // events in Batch, as given to Append
	InputPos []byte // the producer's input position, as given to Append
}

// Stats are a channel's counters. Depth is measured against the slowest
// registered reader (or the oldest retained record when there is none).
type Stats struct {
	PartitionStats                  // totals over all partitions
	Partitions     []PartitionStats // one per partition
}

// PartitionStats are the counters of one partition (or their sum).
type PartitionStats struct {
	DepthEvents    uint64        // events appended and not yet committed by the slowest reader
	DepthBytes     uint64        // batch bytes of the same records
	DiskBytes      int64         // bytes of segment files on disk (File) or held in memory (Memory)
	Appends        uint64        // records appended since open
	Fsyncs         uint64        // fdatasync calls since open
	CorruptRecords uint64        // damaged records skipped since open
	BlockedTime    time.Duration // time Append spent waiting for capacity or free space
	LowDisk        bool          // Append is waiting because free space is below MinFreeBytes
	NextOffset     uint64        // offset the next record will get (per partition only)
}

// Errors returned by channels. Errors about damaged files wrap ErrCorrupt.
var (
	ErrClosed         = errors.New("channel: closed")
	ErrReaderReplaced = errors.New("channel: reader handle replaced by a newer one of the same name")
	ErrCorrupt        = errors.New("channel: damaged data")
	ErrLocked         = errors.New("channel: directory locked by another process")
)

// withDefaults fills zero fields of o.
func (o Options) withDefaults() Options {
	if o.Partitions <= 0 {
		o.Partitions = DefaultPartitions
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxBytes > 0 && o.SegmentBytes > o.MaxBytes/4 {
		o.SegmentBytes = max(o.MaxBytes/4, 4096)
	}
	if o.Fsync == "" {
		o.Fsync = FsyncAlways
	}
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = DefaultFsyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// validate reports every problem with o (after withDefaults).
func (o Options) validate() error {
	var errs []error
	switch o.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		errs = append(errs, errors.New(`channel options: fsync "`+string(o.Fsync)+`" unknown (want always, interval or never)`))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, errors.New("channel options: max_bytes is negative"))
	}
	if o.MinFreeBytes < 0 {
		errs = append(errs, errors.New("channel options: min_free_bytes is negative"))
	}
	return errors.Join(errs...)
}

func (s *Stats) add(p PartitionStats) {
	t := &s.PartitionStats
	t.DepthEvents += p.DepthEvents
	t.DepthBytes += p.DepthBytes
	t.DiskBytes += p.DiskBytes
	t.Appends += p.Appends
	t.Fsyncs += p.Fsyncs
	t.CorruptRecords += p.CorruptRecords
	t.BlockedTime += p.BlockedTime
	t.LowDisk = t.LowDisk || p.LowDisk
	s.Partitions = append(s.Partitions, p)
}

// checkBatch verifies that batch is an agent/event batch claiming count
// events (an empty batch holds none), so a wrong count never reaches the
// depth counters and garbage never reaches a reader.
func checkBatch(producer string, batch []byte, count int) error {
	if len(batch) == 0 {
		if count != 0 {
			return fmt.Errorf("channel: append by %q: empty batch with count %d", producer, count)
		}
		return nil
	}
	n, err := event.Count(batch)
	if err != nil {
		return fmt.Errorf("channel: append by %q: %w", producer, err)
	}
	if n != count {
		return fmt.Errorf("channel: append by %q: batch holds %d events, count says %d", producer, n, count)
	}
	return nil
}

// maxReaderName bounds reader names: File stores each reader in a file
// named by the hex of its name, and file names are limited to 255 bytes.
const maxReaderName = 120

func checkReaderName(name string) error {
	if name == "" || len(name) > maxReaderName {
		return fmt.Errorf("channel: reader name %.40q must be 1 to %d bytes long", name, maxReaderName)
	}
	return nil
}
