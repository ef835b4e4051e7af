// Package redis is the redis sink: it applies command records
// (docs/command-records.md, the same records the embedded store sink
// applies) to Redis standalone, Sentinel or Cluster through go-redis'
// universal client.
//
// Effectively once: a batch's commands and its fence (pipeline.Fence) are
// queued in one MULTI/EXEC under WATCH of the fence key, so Redis applies
// both or neither; a batch at or below the recorded fence is skipped. In
// cluster mode the commands are grouped by hash slot and each group carries
// its own fence key in that slot, so each group is atomic and skipped on
// replay on its own. docs/adr/0007-kafka-redis-delivery.md explains why
// MULTI/EXEC and not a Lua script.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/command"
	"github.com/sluicehq/sluice/plugins/internal/instanceid"
)

var _ pipeline.Sink = (*Sink)(nil)

// Sink is the redis sink.
//
// Lifecycle: New, Open once, Write from one goroutine, Close. Close is safe
// without Open and safe twice. Open does not need Redis to be up: the first
// Write that cannot reach it returns an error and the runner retries.
type Sink struct {
	cfg     Config
	dataDir string
	log     *slog.Logger
	rdb     goredis.UniversalClient
	prefix  string // FencePrefix + instance id + ":"

	bodies [][]byte // reused between batches
	parsed []parsed
	cmds   []item
	groups map[uint16][]item
	fences map[string]string // fence key → fence this sink knows is stored
	mapper *mapper           // mapping mode, or nil for command records
	mapped []command.Command
	hincr  []*hincrSlot // reused commands, standalone and Sentinel only
	three  []*threeSlot
}

// hincrSlot is one HINCRBY command kept from batch to batch. Its arguments
// point at the slot's fields, so the next batch refills the fields instead
// of allocating a command, an argument slice and three boxed values per
// record — HINCRBY is what aggregating bolts emit most.
type hincrSlot struct {
	key, field string
	incr       int64
	cmd        *goredis.IntCmd
}

func newHincrSlot() *hincrSlot {
	h := &hincrSlot{}
	h.cmd = goredis.NewIntCmd(context.Background(), "hincrby", &h.key, &h.field, &h.incr)
	return h
}

// threeSlot is the same for a command of three string arguments
// (HINCRBYFLOAT, ZINCRBY, HSET); args[0], the command's name, is set per
// use from a constant, which boxes without allocating.
type threeSlot struct {
	a, b, c string
	args    []any // shared with cmd
	cmd     *goredis.Cmd
}

func newThreeSlot() *threeSlot {
	t := &threeSlot{}
	t.args = []any{"", &t.a, &t.b, &t.c}
	t.cmd = goredis.NewCmd(context.Background(), t.args...)
	return t
}

type item struct {
	index int // in the input batch
	cmd   command.Command
}

// New returns a redis sink for cfg, which must be valid. dataDir is the
// stage's own directory, where the instance id is kept when
// cfg.InstanceID is empty. logger may be nil.
func New(cfg Config, dataDir string, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.InstanceID == "" && dataDir == "" {
		return nil, errors.New("redis: instance_id is empty and there is no data directory to keep one in")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, dataDir: dataDir, log: logger}
	if len(cfg.Commands) > 0 {
		s.mapper, _ = newMapper(cfg.Commands) // Validate checked it
	}
	return s, nil
}

// Open builds the client; it does not wait for Redis.
func (s *Sink) Open(ctx context.Context) error {
	if s.rdb != nil {
		return errors.New("redis: Open called twice")
	}
	id := s.cfg.InstanceID
	if id == "" {
		var err error
		if id, err = instanceid.Load(s.dataDir); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	tc, err := s.cfg.TLS.Build()
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	s.prefix = s.cfg.FencePrefix + id + ":"
	s.fences = map[string]string{}
	s.rdb = goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:            s.cfg.Addrs,
		MasterName:       s.cfg.MasterName,
		IsClusterMode:    s.cfg.Mode == ModeCluster,
		Username:         s.cfg.Username,
		Password:         s.cfg.Password,
		SentinelUsername: s.cfg.SentinelUsername,
		SentinelPassword: s.cfg.SentinelPassword,
		DB:               s.cfg.DB,
		DialTimeout:      s.cfg.DialTimeout.D,
		ReadTimeout:      s.cfg.ReadTimeout.D,
		WriteTimeout:     s.cfg.WriteTimeout.D,
		PoolSize:         s.cfg.PoolSize,
		TLSConfig:        tc,
		// The runner retries whole batches with its own backoff; retries
		// inside the client would only hide an outage for longer.
		MaxRetries:      -1,
		DialerRetries:   1,
		DisableIdentity: true,
		// RESP2: the sink needs no push notifications, and under RESP3
		// go-redis checks for them before every reply it reads — twice per
		// command in a transaction (QUEUED, then the result).
		Protocol: 2,
	})
	return nil
}

// Close closes the client. Safe without Open and safe twice.
func (s *Sink) Close(ctx context.Context) error {
	if s.rdb == nil {
		return nil
	}
	err := s.rdb.Close()
	s.rdb = nil
	return err
}

// parse decodes s.bodies into s.cmds and returns the rejects.
//
// One goroutine: splitting the batch over two measured no faster on the
// shared two-core machine (redis-server needs the other core), and the
// hand-written decoder takes ≈ 0.15–0.25 µs a record.
func (s *Sink) parse() []pipeline.Reject {
	n := len(s.bodies)
	if cap(s.parsed) < n {
		s.parsed = make([]parsed, n)
	}
	s.parsed = s.parsed[:n]
	for i := range s.parsed {
		s.parsed[i].cmd, s.parsed[i].err = command.ParseAliased(s.bodies[i])
	}
	var rejects []pipeline.Reject
	s.cmds = s.cmds[:0]
	for i := range s.parsed {
		if err := s.parsed[i].err; err != nil {
			rejects = append(rejects, pipeline.Reject{Index: i, Reason: err.Error()})
		} else {
			s.cmds = append(s.cmds, item{index: i, cmd: s.parsed[i].cmd})
		}
		s.parsed[i] = parsed{} // drop references into the batch
	}
	return rejects
}

type parsed struct {
	cmd command.Command
	err error
}

// fenceValue is the fence as fixed-width decimal, so that comparing the
// stored string with a new one orders them like the offsets.
func fenceValue(off uint64) string { return fmt.Sprintf("%020d", off) }

// Write applies the command records of batch with fence. Malformed records
// and commands Redis refuses come back as rejects; the rest of the batch is
// applied. An error means nothing of this batch may be assumed applied.
func (s *Sink) Write(ctx context.Context, batch []byte, fence pipeline.Fence) ([]pipeline.Reject, error) {
	if s.rdb == nil {
		return nil, errors.New("redis: Write without Open")
	}
	var rejects []pipeline.Reject
	if s.mapper != nil {
		s.cmds = s.cmds[:0]
		err := event.Iterate(batch, func(i int, e *event.Event) error {
			var err error
			if s.mapped, err = s.mapper.commands(s.mapped[:0], e.Body, e.Key); err != nil {
				rejects = append(rejects, pipeline.Reject{Index: i, Reason: err.Error()})
				return nil
			}
			for _, c := range s.mapped {
				s.cmds = append(s.cmds, item{index: i, cmd: c})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
	} else {
		s.bodies = s.bodies[:0]
		err := event.Iterate(batch, func(i int, e *event.Event) error {
			s.bodies = append(s.bodies, e.Body)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		rejects = s.parse()
	}
	fv := fenceValue(fence.Offset)
	if s.cfg.Mode != ModeCluster {
		r, err := s.apply(ctx, s.prefix+fence.Stream, fv, s.cmds)
		if err != nil {
			return nil, err
		}
		return onePerEvent(append(rejects, r...)), nil
	}
	// Cluster: one transaction per hash slot, each with the fence key of
	// that slot. A batch with no commands records no fence: there is
	// nothing a replay could apply twice.
	if s.groups == nil {
		s.groups = map[uint16][]item{}
	}
	clear(s.groups)
	for _, it := range s.cmds {
		slot := Slot(it.cmd.Key)
		if it.cmd.Op == "publish" {
			slot = 0 // PUBLISH reaches the whole cluster from any node
		}
		s.groups[slot] = append(s.groups[slot], it)
	}
	for slot, g := range s.groups {
		r, err := s.apply(ctx, s.prefix+"{"+slotTag(slot)+"}:"+fence.Stream, fv, g)
		if err != nil {
			return nil, err
		}
		rejects = append(rejects, r...)
	}
	return onePerEvent(rejects), nil
}

// onePerEvent keeps the first reject of each event (in mapping mode one
// event may have several refused commands), in event order.
func onePerEvent(rs []pipeline.Reject) []pipeline.Reject {
	if len(rs) < 2 {
		return rs
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Index < rs[j].Index })
	out := rs[:1]
	for _, r := range rs[1:] {
		if r.Index != out[len(out)-1].Index {
			out = append(out, r)
		}
	}
	return out
}

// apply applies items and the fence fv under fenceKey, atomically, unless
// the fence shows the batch applied already.
//
// The first batch of a stream after Open reads the fence under WATCH:
// WATCH+GET in one round trip, then MULTI … SET fence EXEC (a cluster client
// sends WATCH itself, one more round trip). After that this sink knows the
// stream's fence — it is the stream's only writer (the instance id makes
// fence keys unique to one agent) — and sends MULTI … SET fence GET EXEC
// alone: one round trip per batch, like a bare pipeline. The old value GET
// returns must be the fence this sink last wrote; if not, something else
// wrote the key, which is logged as an error. Any failure forgets the
// known fence, so the next attempt reads it again.
func (s *Sink) apply(ctx context.Context, fenceKey, fv string, items []item) ([]pipeline.Reject, error) {
	if last, ok := s.fences[fenceKey]; ok {
		if fv <= last {
			return nil, nil // a replay of a batch this sink applied
		}
		var prev string
		rejects, err := s.exec(ctx, s.rdb.TxPipelined, fenceKey, fv, items, &prev)
		if err != nil {
			delete(s.fences, fenceKey)
			return nil, fmt.Errorf("redis: %w", err)
		}
		if prev != last {
			s.log.Error("redis sink: fence changed by another writer; is instance_id shared by two agents?",
				"key", fenceKey, "expected", last, "found", prev)
		}
		s.fences[fenceKey] = fv
		return rejects, nil
	}
	var rejects []pipeline.Reject
	cluster := s.cfg.Mode == ModeCluster
	var watchKeys []string
	if cluster {
		watchKeys = []string{fenceKey}
	}
	known := ""
	err := s.rdb.Watch(ctx, func(tx *goredis.Tx) error {
		var get *goredis.StringCmd
		if _, err := tx.Pipelined(ctx, func(p goredis.Pipeliner) error {
			if !cluster {
				p.Do(ctx, "watch", fenceKey)
			}
			get = p.Get(ctx, fenceKey)
			return nil
		}); err != nil && err != goredis.Nil {
			return err
		}
		cur, err := get.Result()
		if err != nil && err != goredis.Nil {
			return err
		}
		if err == nil && cur >= fv {
			known = cur
			return tx.Unwatch(ctx).Err() // a replay of a batch already applied
		}
		var prev string
		rejects, err = s.exec(ctx, tx.TxPipelined, fenceKey, fv, items, &prev)
		if err == nil {
			known = fv
		}
		return err
	}, watchKeys...)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	s.fences[fenceKey] = known
	return rejects, nil
}

// exec sends MULTI, the commands, SET fence GET, EXEC through txPipelined
// and sorts the replies into rejects; prev receives the fence's old value.
func (s *Sink) exec(ctx context.Context, txPipelined func(context.Context, func(goredis.Pipeliner) error) ([]goredis.Cmder, error),
	fenceKey, fv string, items []item, prev *string) ([]pipeline.Reject, error) {
	var fenceCmd *goredis.Cmd
	// A cluster client caches each command's hash slot in the command, so
	// commands are reused only outside cluster mode.
	reuse := s.cfg.Mode != ModeCluster
	used, usedThree := 0, 0
	defer func() {
		for _, h := range s.hincr[:used] {
			h.key, h.field = "", "" // drop references into the batch
		}
		for _, t := range s.three[:usedThree] {
			t.a, t.b, t.c = "", "", ""
		}
	}()
	three := func(p goredis.Pipeliner, op any, a, b, c string) {
		if usedThree == len(s.three) {
			s.three = append(s.three, newThreeSlot())
		}
		t := s.three[usedThree]
		usedThree++
		t.args[0], t.a, t.b, t.c = op, a, b, c
		t.cmd.SetErr(nil)
		_ = p.Process(ctx, t.cmd)
	}
	cmds, err := txPipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range items {
			c := &items[i].cmd
			if !reuse {
				queue(ctx, p, c)
				continue
			}
			switch c.Op {
			case "hincrby":
				if used == len(s.hincr) {
					s.hincr = append(s.hincr, newHincrSlot())
				}
				h := s.hincr[used]
				used++
				h.key, h.field, h.incr = c.Key, c.Field, c.Int
				h.cmd.SetErr(nil)
				_ = p.Process(ctx, h.cmd)
			case "hincrbyfloat":
				three(p, "hincrbyfloat", c.Key, c.Field, c.Raw)
			case "zincrby":
				three(p, "zincrby", c.Key, c.Raw, c.Field)
			case "hset":
				three(p, "hset", c.Key, c.Field, c.Str)
			default:
				queue(ctx, p, c)
			}
		}
		fenceCmd = p.Do(ctx, "set", fenceKey, fv, "get")
		return nil
	})
	if len(cmds) != len(items)+1 {
		if err == nil {
			err = fmt.Errorf("transaction returned %d replies for %d commands", len(cmds), len(items)+1)
		}
		return nil, err
	}
	// The fence reply tells whether EXEC ran: if it did not (network
	// error, EXECABORT, a watched key changed), nothing was applied.
	old, ferr := fenceCmd.Text()
	if ferr != nil && ferr != goredis.Nil {
		return nil, ferr
	}
	*prev = old
	var rejects []pipeline.Reject
	for i, c := range cmds[:len(items)] {
		if cerr := c.Err(); cerr != nil {
			rejects = append(rejects, pipeline.Reject{Index: items[i].index,
				Reason: fmt.Sprintf("redis refused %s %s: %v", items[i].cmd.Op, items[i].cmd.Key, cerr)})
		}
	}
	return rejects, nil
}

// queue adds the Redis command of c to p.
func queue(ctx context.Context, p goredis.Pipeliner, c *command.Command) {
	switch c.Op {
	case "hincrby":
		p.HIncrBy(ctx, c.Key, c.Field, c.Int)
	case "hincrbyfloat":
		p.Do(ctx, "hincrbyfloat", c.Key, c.Field, c.Raw)
	case "hset":
		p.HSet(ctx, c.Key, c.Field, c.Str)
	case "zincrby":
		p.Do(ctx, "zincrby", c.Key, c.Raw, c.Field)
	case "set":
		if c.HasTTL {
			p.Set(ctx, c.Key, c.Str, time.Duration(c.TTLms)*time.Millisecond)
		} else {
			p.Set(ctx, c.Key, c.Str, 0)
		}
	case "expire":
		p.PExpire(ctx, c.Key, time.Duration(c.TTLms)*time.Millisecond)
	case "xadd":
		vals := make([]string, 0, 2*len(c.Fields))
		for f, v := range c.Fields {
			vals = append(vals, f, v)
		}
		p.XAdd(ctx, &goredis.XAddArgs{Stream: c.Key, Values: vals})
	case "publish":
		p.Publish(ctx, c.Key, c.Str)
	default:
		// command.Parse admits only the ops above.
		panic("redis: unknown op " + c.Op)
	}
}

// Slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key, or
// of the part between the first "{" and the next "}" when that is not
// empty, modulo 16384.
func Slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotTag returns a short string whose hash slot is slot, so a fence key
// "…{tag}…" lives in the same slot as the commands it fences. The tag of a
// slot is the smallest decimal number that hashes to it: found by search,
// the same on every agent and every run.
func slotTag(slot uint16) string {
	slotTagsOnce()
	return slotTags[slot]
}

var slotTags []string

var slotTagsOnce = sync.OnceFunc(func() {
	slotTags = make([]string, 16384)
	left := 16384
	for n := 0; left > 0; n++ {
		t := fmt.Sprint(n)
		if s := crc16(t) % 16384; slotTags[s] == "" {
			slotTags[s] = t
			left--
		}
	}
})
