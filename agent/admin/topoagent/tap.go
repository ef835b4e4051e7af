package topoagent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/plugins/store"
)

// TapSlots is the number of taps that can run at once on one agent. Each
// tap reads through a durable reader named TapReaderName(slot); a fixed
// set of names lets RemoveTapReaders clean up after a crash.
const TapSlots = 4

// tapCommitEvery is the longest a tap holds back retention of what it has
// read.
const tapCommitEvery = 100 * time.Millisecond

// TapReaderName is the channel reader name of tap slot i.
func TapReaderName(i int) string { return fmt.Sprintf("admin-tap-%d", i) }

// RemoveTapReaders unregisters every tap reader of every partition of ch.
func RemoveTapReaders(ch channel.Channel) error {
	var errs []error
	for p := range ch.Partitions() {
		for i := range TapSlots {
			errs = append(errs, ch.RemoveReader(TapReaderName(i), p))
		}
	}
	return errors.Join(errs...)
}

// TapChannel calls fn with every sample-th event appended to ch after the
// call begins (counted per partition), until fn returns false or ctx ends,
// then unregisters its reader and returns nil. fn is never called
// concurrently.
//
// The tap registers reader (a durable channel reader) on every partition
// and commits what it has read every 100ms, so it holds back retention only
// by what it read since; a channel is never blocked by a tap that keeps up,
// and fn is expected not to block.
func TapChannel(ctx context.Context, ch channel.Channel, reader string, sample int, fn func(event.Event) bool) error {
	if sample < 1 {
		sample = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stats := ch.Stats()
	var (
		mu   sync.Mutex // serialises fn
		wg   sync.WaitGroup
		errs = make([]error, ch.Partitions())
	)
	for p := range ch.Partitions() {
		r, err := tapReader(ch, reader, p, stats)
		if err != nil {
			cancel()
			wg.Wait()
			return errors.Join(err, removeReaders(ch, reader, p+1))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			var lastCommit time.Time
			for ctx.Err() == nil { // Next returns ready records without looking at ctx
				rec, err := r.Next(ctx)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, channel.ErrClosed) {
						errs[p] = fmt.Errorf("tap partition %d: %w", p, err)
					}
					cancel()
					return
				}
				err = event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
					n++
					if n%sample != 0 {
						return nil
					}
					mu.Lock()
					more := ctx.Err() == nil && fn(*e)
					mu.Unlock()
					if !more {
						cancel()
						return context.Canceled
					}
					return nil
				})
				if err != nil && !errors.Is(err, context.Canceled) {
					errs[p] = fmt.Errorf("tap partition %d offset %d: %w", p, rec.Offset, err)
					cancel()
					return
				}
				// A commit is a durable file write: at most one per
				// tapCommitEvery, enough to release segments long before
				// a channel could fill behind the tap.
				if now := time.Now(); now.Sub(lastCommit) >= tapCommitEvery {
					lastCommit = now
					if err := r.Commit(rec.Offset); err != nil && ctx.Err() == nil {
						errs[p] = fmt.Errorf("tap partition %d: commit: %w", p, err)
						cancel()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errors.Join(errs...), removeReaders(ch, reader, ch.Partitions()))
}

// tapReader registers reader on partition p positioned after the last
// record appended so far.
func tapReader(ch channel.Channel, reader string, p int, stats channel.Stats) (channel.Reader, error) {
	if err := ch.RemoveReader(reader, p); err != nil { // a leftover from a crash
		return nil, err
	}
	r, err := ch.Reader(reader, p)
	if err != nil {
		return nil, err
	}
	if p < len(stats.Partitions) && stats.Partitions[p].NextOffset > 0 {
		last := stats.Partitions[p].NextOffset - 1
		if err := r.Seek(last); err != nil {
			return nil, err
		}
		if last > 0 {
			if err := r.Commit(last); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

func removeReaders(ch channel.Channel, reader string, upTo int) error {
	var errs []error
	for p := range upTo {
		errs = append(errs, ch.RemoveReader(reader, p))
	}
	return errors.Join(errs...)
}

// storeResults reads a store sink.
type storeResults struct{ st *store.Store }

// StoreResults returns a ResultsReader over the embedded results store.
// A store that is not open yet reads as empty.
func StoreResults(st *store.Store) admin.ResultsReader { return storeResults{st} }

func (s storeResults) Name() string { return "store" }

func (s storeResults) HGetAll(key string) (map[string]string, error) {
	h, err := s.st.HGetAll(key)
	if errors.Is(err, store.ErrNotOpen) {
		return map[string]string{}, nil
	}
	return h, err
}

func (s storeResults) ZTop(key string, n int) ([]admin.ScoredMember, error) {
	top, err := s.st.ZTop(key, n)
	if errors.Is(err, store.ErrNotOpen) {
		return nil, nil
	}
	out := make([]admin.ScoredMember, len(top))
	for i, m := range top {
		out[i] = admin.ScoredMember{Member: m.Member, Score: m.Score}
	}
	return out, err
}

func (s storeResults) Keys(prefix string, limit int) ([]string, error) {
	keys, err := s.st.Scan(prefix, limit)
	if errors.Is(err, store.ErrNotOpen) {
		return nil, nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Key
	}
	return out, err
}
