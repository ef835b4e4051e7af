// Package store is the store sink, the embedded results store: it applies
// command records (docs/command-records.md) with the meaning of the Redis
// command of the same name, keeps them in a bbolt file, and answers reads
// through a small Go API (Get, HGetAll, ZTop, Scan) that the admin API
// serves. docs/adr/0005-results-store.md explains the choice.
//
// Effectively-once: each batch's commands and its fence (pipeline.Fence)
// are committed in one bbolt transaction, and a batch at or below the fence
// recorded for its stream is skipped, so a replay never counts twice.
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/command"
)

var _ pipeline.Sink = (*Store)(nil)

// Key types, as Redis TYPE names them.
const (
	TypeString = "string"
	TypeHash   = "hash"
	TypeZSet   = "zset"
	TypeStream = "stream"
)

var (
	bFence  = []byte("fence")  // stream → last applied offset (u64 BE)
	bKeys   = []byte("keys")   // key → meta: type byte, expireAt unix ms (i64 BE; 0 = none)
	bString = []byte("string") // key → value
	bHash   = []byte("hash")   // key → bucket of field → value
	bZSet   = []byte("zset")   // key → bucket of member → score (f64 bits BE)
	bZIndex = []byte("zindex") // key → bucket of sortable score ‖ member → nil
	bStream = []byte("stream") // key → bucket of id (ms u64 BE ‖ seq u64 BE) → JSON fields
)

var typeCodes = map[byte]string{'s': TypeString, 'h': TypeHash, 'z': TypeZSet, 'x': TypeStream}

// Store is the store sink. It implements pipeline.Sink, and its read methods
// may be called from any goroutine while it is open.
//
// Lifecycle: New, Open once, Write from one goroutine, Close. Close is safe
// without Open and safe twice.
type Store struct {
	cfg       Config
	log       *slog.Logger
	db        atomic.Pointer[bolt.DB] // read by the read API from other goroutines
	lastSweep time.Time
	now       func() time.Time
}

// New returns a store sink for cfg, which must be valid. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{cfg: cfg, log: logger, now: time.Now}, nil
}

// Open opens (or creates) the database file.
func (s *Store) Open(ctx context.Context) error {
	if s.db.Load() != nil {
		return errors.New("store: Open called twice")
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(s.cfg.Path, 0o644, &bolt.Options{Timeout: 5 * time.Second, NoSync: !s.cfg.Fsync})
	if err != nil {
		return fmt.Errorf("store: open %s: %w", s.cfg.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bFence, bKeys, bString, bHash, bZSet, bZIndex, bStream} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("store: %s: %w", s.cfg.Path, err)
	}
	s.db.Store(db)
	return nil
}

// Close closes the database. It is safe without Open and safe twice.
func (s *Store) Close(ctx context.Context) error {
	db := s.db.Swap(nil)
	if db == nil {
		return nil
	}
	return db.Close()
}

// Write applies the command records of batch and records fence, in one
// transaction. Malformed records and type errors are returned as rejects;
// the rest of the batch is applied.
func (s *Store) Write(ctx context.Context, batch []byte, fence pipeline.Fence) ([]pipeline.Reject, error) {
	db := s.db.Load()
	if db == nil {
		return nil, errors.New("store: Write without Open")
	}
	var rejects []pipeline.Reject
	now := s.now()
	err := db.Update(func(tx *bolt.Tx) error {
		rejects = rejects[:0]
		fb := tx.Bucket(bFence)
		if v := fb.Get([]byte(fence.Stream)); len(v) == 8 && fence.Offset <= binary.BigEndian.Uint64(v) {
			return nil // a replay of a batch already applied
		}
		a := applier{tx: tx, now: now}
		err := event.Iterate(batch, func(i int, e *event.Event) error {
			c, err := command.Parse(e.Body)
			if err == nil {
				err = a.apply(&c)
				if errors.Is(err, errStorage) {
					return err
				}
			}
			if err != nil {
				rejects = append(rejects, pipeline.Reject{Index: i, Reason: err.Error()})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if now.Sub(s.lastSweep) >= s.cfg.SweepInterval.D {
			if err := a.sweep(); err != nil {
				return err
			}
		}
		return fb.Put([]byte(fence.Stream), binary.BigEndian.AppendUint64(nil, fence.Offset))
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if now.Sub(s.lastSweep) >= s.cfg.SweepInterval.D {
		s.lastSweep = now
	}
	return rejects, nil
}

// errStorage marks bbolt failures, which fail the batch, apart from record
// errors, which reject one record.
var errStorage = errors.New("storage")

type applier struct {
	tx  *bolt.Tx
	now time.Time
}

func storageErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", errStorage, err)
}

// meta returns the live type code of key (0 if absent or expired, in which
// case its remains are deleted).
func (a *applier) meta(key []byte) (byte, error) {
	m := a.tx.Bucket(bKeys).Get(key)
	if m == nil {
		return 0, nil
	}
	typ, exp, err := decodeMeta(m)
	if err != nil {
		return 0, storageErr(err)
	}
	if exp != 0 && exp <= a.now.UnixMilli() {
		return 0, a.delete(key, typ)
	}
	return typ, nil
}

func (a *applier) delete(key []byte, typ byte) error {
	if err := a.tx.Bucket(bKeys).Delete(key); err != nil {
		return storageErr(err)
	}
	var err error
	switch typ {
	case 's':
		err = a.tx.Bucket(bString).Delete(key)
	case 'h':
		err = a.tx.Bucket(bHash).DeleteBucket(key)
	case 'z':
		if err = a.tx.Bucket(bZSet).DeleteBucket(key); err == nil {
			err = a.tx.Bucket(bZIndex).DeleteBucket(key)
		}
	case 'x':
		err = a.tx.Bucket(bStream).DeleteBucket(key)
	}
	if errors.Is(err, bolt.ErrBucketNotFound) {
		err = nil
	}
	return storageErr(err)
}

// prepare checks that key holds type want (or nothing) and records it.
func (a *applier) prepare(key []byte, want byte) error {
	typ, err := a.meta(key)
	if err != nil {
		return err
	}
	if typ != 0 && typ != want {
		return fmt.Errorf("WRONGTYPE: key %q holds a %s, not a %s", key, typeCodes[typ], typeCodes[want])
	}
	if typ == 0 {
		return storageErr(a.tx.Bucket(bKeys).Put(key, encodeMeta(want, 0)))
	}
	return nil
}

func (a *applier) apply(c *command.Command) error {
	key := []byte(c.Key)
	switch c.Op {
	case "hincrby", "hincrbyfloat", "hset":
		if err := a.prepare(key, 'h'); err != nil {
			return err
		}
		h, err := a.tx.Bucket(bHash).CreateBucketIfNotExists(key)
		if err != nil {
			return storageErr(err)
		}
		field := []byte(c.Field)
		old := h.Get(field)
		var val string
		switch c.Op {
		case "hset":
			val = c.Str
		case "hincrby":
			var n int64
			if old != nil {
				if n, err = strconv.ParseInt(string(old), 10, 64); err != nil {
					return fmt.Errorf("hincrby: %s %s holds %q, not an integer", c.Key, c.Field, old)
				}
			}
			if (c.Int > 0 && n > math.MaxInt64-c.Int) || (c.Int < 0 && n < math.MinInt64-c.Int) {
				return fmt.Errorf("hincrby: %s %s would overflow", c.Key, c.Field)
			}
			val = strconv.FormatInt(n+c.Int, 10)
		case "hincrbyfloat":
			var f float64
			if old != nil {
				if f, err = strconv.ParseFloat(string(old), 64); err != nil {
					return fmt.Errorf("hincrbyfloat: %s %s holds %q, not a number", c.Key, c.Field, old)
				}
			}
			if math.IsInf(f+c.Float, 0) {
				return fmt.Errorf("hincrbyfloat: %s %s would overflow", c.Key, c.Field)
			}
			val = strconv.FormatFloat(f+c.Float, 'f', -1, 64)
		}
		return storageErr(h.Put(field, []byte(val)))
	case "zincrby":
		if err := a.prepare(key, 'z'); err != nil {
			return err
		}
		z, err := a.tx.Bucket(bZSet).CreateBucketIfNotExists(key)
		if err != nil {
			return storageErr(err)
		}
		idx, err := a.tx.Bucket(bZIndex).CreateBucketIfNotExists(key)
		if err != nil {
			return storageErr(err)
		}
		member := []byte(c.Field)
		score := 0.0
		if old := z.Get(member); len(old) == 8 {
			score = math.Float64frombits(binary.BigEndian.Uint64(old))
			if err := idx.Delete(append(sortableScore(score), member...)); err != nil {
				return storageErr(err)
			}
		}
		score += c.Float
		if math.IsInf(score, 0) || math.IsNaN(score) {
			return fmt.Errorf("zincrby: %s %s would overflow", c.Key, c.Field)
		}
		if err := z.Put(member, binary.BigEndian.AppendUint64(nil, math.Float64bits(score))); err != nil {
			return storageErr(err)
		}
		return storageErr(idx.Put(append(sortableScore(score), member...), nil))
	case "set":
		typ, err := a.meta(key)
		if err != nil {
			return err
		}
		if typ != 0 {
			if err := a.delete(key, typ); err != nil { // SET replaces any type
				return err
			}
		}
		var exp int64
		if c.HasTTL {
			exp = a.now.UnixMilli() + c.TTLms
		}
		if err := a.tx.Bucket(bKeys).Put(key, encodeMeta('s', exp)); err != nil {
			return storageErr(err)
		}
		return storageErr(a.tx.Bucket(bString).Put(key, []byte(c.Str)))
	case "expire":
		typ, err := a.meta(key)
		if err != nil || typ == 0 {
			return err // PEXPIRE of a missing key does nothing
		}
		if c.TTLms <= 0 {
			return a.delete(key, typ)
		}
		return storageErr(a.tx.Bucket(bKeys).Put(key, encodeMeta(typ, a.now.UnixMilli()+c.TTLms)))
	case "xadd":
		if err := a.prepare(key, 'x'); err != nil {
			return err
		}
		x, err := a.tx.Bucket(bStream).CreateBucketIfNotExists(key)
		if err != nil {
			return storageErr(err)
		}
		seq, err := x.NextSequence()
		if err != nil {
			return storageErr(err)
		}
		id := binary.BigEndian.AppendUint64(nil, uint64(a.now.UnixMilli()))
		id = binary.BigEndian.AppendUint64(id, seq)
		val, _ := json.Marshal(c.Fields)
		return storageErr(x.Put(id, val))
	case "publish":
		return nil // no subscribers inside the agent: accepted and dropped, as Redis does without subscribers
	}
	return fmt.Errorf("unknown op %q", c.Op)
}

// sweep deletes every expired key.
func (a *applier) sweep() error {
	var expired [][]byte
	var types []byte
	now := a.now.UnixMilli()
	err := a.tx.Bucket(bKeys).ForEach(func(k, v []byte) error {
		typ, exp, err := decodeMeta(v)
		if err != nil {
			return storageErr(err)
		}
		if exp != 0 && exp <= now {
			expired = append(expired, bytes.Clone(k))
			types = append(types, typ)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, k := range expired {
		if err := a.delete(k, types[i]); err != nil {
			return err
		}
	}
	return nil
}

func encodeMeta(typ byte, expireAtMs int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{typ}, uint64(expireAtMs))
}

// errBadMeta is wrapped when a stored key record is damaged.
var errBadMeta = errors.New("store: malformed key record")

func decodeMeta(b []byte) (typ byte, expireAtMs int64, err error) {
	if len(b) != 9 {
		return 0, 0, fmt.Errorf("%w: %d bytes, want 9", errBadMeta, len(b))
	}
	if _, ok := typeCodes[b[0]]; !ok {
		return 0, 0, fmt.Errorf("%w: unknown type code %q", errBadMeta, b[0])
	}
	exp := int64(binary.BigEndian.Uint64(b[1:]))
	if exp < 0 {
		return 0, 0, fmt.Errorf("%w: negative expiry %d", errBadMeta, exp)
	}
	return b[0], exp, nil
}

// sortableScore maps a float64 to 8 bytes whose byte order is the numeric
// order, so the index bucket iterates members by score.
func sortableScore(f float64) []byte {
	u := math.Float64bits(f)
	if u&(1<<63) != 0 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8+16), u)
}

func scoreFromSortable(b []byte) float64 {
	u := binary.BigEndian.Uint64(b)
	if u&(1<<63) != 0 {
		u &^= 1 << 63
	} else {
		u = ^u
	}
	return math.Float64frombits(u)
}

// --- reads -----------------------------------------------------------------

// ErrNotOpen is returned by reads on a store that is not open.
var ErrNotOpen = errors.New("store: not open")

// ScoredMember is one member of a sorted set with its score.
type ScoredMember struct {
	Member string  `json:"member"`
	Score  float64 `json:"score"`
}

// KeyInfo describes one key found by Scan.
type KeyInfo struct {
	Key  string `json:"key"`
	Type string `json:"type"` // string, hash, zset or stream
	// ExpiresAt is zero for a key without TTL.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func (s *Store) view(fn func(tx *bolt.Tx, now int64) error) error {
	db := s.db.Load()
	if db == nil {
		return ErrNotOpen
	}
	return db.View(func(tx *bolt.Tx) error { return fn(tx, s.now().UnixMilli()) })
}

// liveType returns the type code of key if it exists and has not expired.
func liveType(tx *bolt.Tx, key []byte, now int64) (byte, error) {
	m := tx.Bucket(bKeys).Get(key)
	if m == nil {
		return 0, nil
	}
	typ, exp, err := decodeMeta(m)
	if err != nil {
		return 0, err
	}
	if exp != 0 && exp <= now {
		return 0, nil
	}
	return typ, nil
}

// Get returns the value of a string key (SET), and whether it exists.
func (s *Store) Get(key string) (value string, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx, now int64) error {
		typ, err := liveType(tx, []byte(key), now)
		if err != nil || typ == 0 {
			return err
		}
		if typ != 's' {
			return fmt.Errorf("WRONGTYPE: key %q holds a %s", key, typeCodes[typ])
		}
		value, ok = string(tx.Bucket(bString).Get([]byte(key))), true
		return nil
	})
	return value, ok, err
}

// HGetAll returns every field of a hash key; an absent key gives an empty map.
func (s *Store) HGetAll(key string) (map[string]string, error) {
	out := map[string]string{}
	err := s.view(func(tx *bolt.Tx, now int64) error {
		typ, err := liveType(tx, []byte(key), now)
		if err != nil || typ == 0 {
			return err
		}
		if typ != 'h' {
			return fmt.Errorf("WRONGTYPE: key %q holds a %s", key, typeCodes[typ])
		}
		h := tx.Bucket(bHash).Bucket([]byte(key))
		if h == nil {
			return nil
		}
		return h.ForEach(func(k, v []byte) error { out[string(k)] = string(v); return nil })
	})
	return out, err
}

// ZTop returns the n members of a sorted set with the highest scores,
// highest first (ZREVRANGE key 0 n-1 WITHSCORES).
func (s *Store) ZTop(key string, n int) ([]ScoredMember, error) {
	var out []ScoredMember
	err := s.view(func(tx *bolt.Tx, now int64) error {
		typ, err := liveType(tx, []byte(key), now)
		if err != nil || typ == 0 {
			return err
		}
		if typ != 'z' {
			return fmt.Errorf("WRONGTYPE: key %q holds a %s", key, typeCodes[typ])
		}
		idx := tx.Bucket(bZIndex).Bucket([]byte(key))
		if idx == nil {
			return nil
		}
		c := idx.Cursor()
		for k, _ := c.Last(); k != nil && len(out) < n; k, _ = c.Prev() {
			if len(k) < 8 {
				return fmt.Errorf("%w: index entry of %d bytes", errBadMeta, len(k))
			}
			out = append(out, ScoredMember{Member: string(k[8:]), Score: scoreFromSortable(k[:8])})
		}
		return nil
	})
	return out, err
}

// Scan returns up to limit live keys starting with prefix, in key order.
func (s *Store) Scan(prefix string, limit int) ([]KeyInfo, error) {
	var out []KeyInfo
	err := s.view(func(tx *bolt.Tx, now int64) error {
		c := tx.Bucket(bKeys).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, v = c.Next() {
			typ, exp, err := decodeMeta(v)
			if err != nil {
				return err
			}
			if exp != 0 && exp <= now {
				continue
			}
			ki := KeyInfo{Key: string(k), Type: typeCodes[typ]}
			if exp != 0 {
				ki.ExpiresAt = time.UnixMilli(exp).UTC()
			}
			out = append(out, ki)
		}
		return nil
	})
	return out, err
}

// XLen returns the number of entries of a stream key (XADD).
func (s *Store) XLen(key string) (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx, now int64) error {
		typ, err := liveType(tx, []byte(key), now)
		if err != nil || typ == 0 {
			return err
		}
		if typ != 'x' {
			return fmt.Errorf("WRONGTYPE: key %q holds a %s", key, typeCodes[typ])
		}
		if x := tx.Bucket(bStream).Bucket([]byte(key)); x != nil {
			n = x.Stats().KeyN
		}
		return nil
	})
	return n, err
}
