// Package redis is the redis sink: it applies command records
// (docs/command-records.md, the same records the embedded store sink
// applies) to Redis standalone, Sentinel or Cluster through go-redis'
// universal client.
//
// Effectively once: a batch's commands and its fence (pipeline.Fence) are
// applied by one Lua script (applyScript), so Redis applies both or
// neither; a batch at or below the recorded fence is skipped. The script
// stores the commands Redis refused with the fence, so a skipped replay of
// the last applied batch returns them again. In cluster mode the commands
// are grouped by hash slot and each group carries its own fence key in
// that slot, so each group is atomic and skipped on replay on its own.
// docs/adr/0007-kafka-redis-delivery.md explains why a script and not
// MULTI/EXEC.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

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
	fences map[string]string // fence key → fence this sink last saw stored
	mapper *mapper           // mapping mode, or nil for command records
	mapped []command.Command
	args   []any // the script's arguments, reused between batches
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

// applyScript applies one batch (or, in cluster mode, one slot's share of
// it) and its fence atomically. KEYS[1] is the fence key, ARGV[1] the
// batch's fence (20 digits), then the commands (appendCommands): a run of
// "hincrby", "hincrbyfloat", "hset" or "zincrby" as the op, the run's
// length and three arguments per command; any other command as "*", its
// number of words and the words.
//
// The fence key holds the fence, followed — when Redis refused some of
// the batch's commands — by those refusals as JSON [position, error, …]
// (position: the command's place in the call). It is overwritten by every
// applied batch, so it holds the refusals of the last one only; that is
// all a replay can need, as the runner commits its position after every
// Write. A replay of exactly that batch gets them back, an older one
// nothing.
//
// Reply: {1 applied | 0 skipped, the fence stored before ("" if none), the
// refusals JSON of this batch ("" if none)}.
//
// The shebang makes it a script that may write (Redis ≥ 7.0): Redis refuses
// it as a whole before it runs when it is out of memory, a read-only
// replica or failing to persist — like EXECABORT, nothing applied. A
// command refused while it runs (WRONGTYPE, not an integer) fails alone
// (redis.pcall) and the rest is applied.
var applyScript = goredis.NewScript(`#!lua
local stored = redis.call('get', KEYS[1])
local prev = ''
if stored then
  prev = string.sub(stored, 1, 20)
  if prev >= ARGV[1] then
    if prev == ARGV[1] then return {0, prev, string.sub(stored, 21)} end
    return {0, prev, ''}
  end
end
local call, refused = redis.pcall, {}
local i, n, pos = 2, #ARGV, 0
while i <= n do
  local op, r = ARGV[i], nil
  if op == '*' then
    local k = tonumber(ARGV[i+1])
    r = call(unpack(ARGV, i+2, i+1+k))
    i = i + 2 + k
    if type(r) == 'table' and r.err then
      refused[#refused+1] = pos
      refused[#refused+1] = r.err
    end
    pos = pos + 1
  else
    local last = i + 1 + 3 * tonumber(ARGV[i+1])
    i = i + 2
    while i < last do
      r = call(op, ARGV[i], ARGV[i+1], ARGV[i+2])
      if type(r) == 'table' and r.err then
        refused[#refused+1] = pos
        refused[#refused+1] = r.err
      end
      i = i + 3
      pos = pos + 1
    end
  end
end
local rec = ''
if #refused > 0 then rec = cjson.encode(refused) end
redis.call('set', KEYS[1], ARGV[1] .. rec)
return {1, prev, rec}
`)

// apply applies items and the fence fv under fenceKey in one script call,
// unless the fence shows the batch applied already; either way it returns
// the batch's refused commands as rejects.
//
// The sink is a stream's only writer (the instance id makes fence keys
// unique to one agent), so the fence the script finds must be the one this
// sink last saw; if not, something else wrote the key, which is logged as
// an error. Any failure forgets the known fence.
func (s *Sink) apply(ctx context.Context, fenceKey, fv string, items []item) ([]pipeline.Reject, error) {
	s.args = appendCommands(append(s.args[:0], fv), items)
	reply, err := applyScript.Run(ctx, s.rdb, []string{fenceKey}, s.args...).Slice()
	clear(s.args) // drop references into the batch
	if err != nil {
		delete(s.fences, fenceKey)
		return nil, explainScriptError(err)
	}
	applied, prev, rec, ok := scriptReply(reply)
	if !ok {
		delete(s.fences, fenceKey)
		return nil, fmt.Errorf("redis: unexpected reply %v from the apply script", reply)
	}
	if last, known := s.fences[fenceKey]; known && prev != last {
		s.log.Error("redis sink: fence changed by another writer; is instance_id shared by two agents?",
			"key", fenceKey, "expected", last, "found", prev)
	}
	if applied {
		s.fences[fenceKey] = fv
	} else {
		s.fences[fenceKey] = prev
	}
	if rec == "" {
		return nil, nil
	}
	rejects, err := refusals(rec, items)
	if err != nil {
		// Only another writer of the fence key could have stored this;
		// the batch is applied, so failing it would block the stream for
		// good over rejects that cannot be known any more.
		s.log.Error("redis sink: refusals stored with the fence are unreadable; they are not dead-lettered",
			"key", fenceKey, "value", rec, "error", err)
		return nil, nil
	}
	return rejects, nil
}

// explainScriptError wraps an error of applyScript. A server older than
// Redis 7 cannot compile the script's "#!lua" shebang; it would refuse every
// batch with a Lua syntax error that does not say why, so name the cause.
func explainScriptError(err error) error {
	if strings.Contains(err.Error(), "Error compiling script") {
		return fmt.Errorf("redis: the server cannot compile the sink's apply script, which needs Redis 7.0 or later: %w", err)
	}
	return fmt.Errorf("redis: %w", err)
}

// scriptReply unpacks the reply of applyScript.
func scriptReply(reply []any) (applied bool, prev, rec string, ok bool) {
	if len(reply) != 3 {
		return false, "", "", false
	}
	flag, ok1 := reply[0].(int64)
	prev, ok2 := reply[1].(string)
	rec, ok3 := reply[2].(string)
	return flag == 1, prev, rec, ok1 && ok2 && ok3
}

// refusals decodes the refusals JSON of applyScript into rejects of items.
func refusals(rec string, items []item) ([]pipeline.Reject, error) {
	var pairs []any
	if err := json.Unmarshal([]byte(rec), &pairs); err != nil {
		return nil, err
	}
	if len(pairs)%2 != 0 {
		return nil, fmt.Errorf("%d elements, want pairs", len(pairs))
	}
	rejects := make([]pipeline.Reject, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		pos, ok1 := pairs[i].(float64)
		msg, ok2 := pairs[i+1].(string)
		if !ok1 || !ok2 || pos < 0 || pos >= float64(len(items)) || pos != float64(int(pos)) {
			return nil, fmt.Errorf("element %d: want a command position below %d and an error", i, len(items))
		}
		it := &items[int(pos)]
		rejects = append(rejects, pipeline.Reject{Index: it.index,
			Reason: fmt.Sprintf("redis refused %s %s: %s", it.cmd.Op, it.cmd.Key, msg)})
	}
	return rejects, nil
}

// appendCommands appends the commands of items in applyScript's layout:
// a run of consecutive commands of one three-argument op is sent as the
// op, the run's length and the arguments, so the script gets one argument
// fewer per command to convert. Those commands pass constant names and
// pointers into items, which go into an interface without allocating: a
// batch of a thousand records would otherwise box thousands of strings.
func appendCommands(args []any, items []item) []any {
	run, runOp, runLen := -1, "", 0 // run: where its length goes in args
	endRun := func() {
		if run >= 0 {
			args[run] = runLen
		}
		run, runOp, runLen = -1, "", 0
	}
	for i := range items {
		c := &items[i].cmd
		var op string
		var a, b, d any
		switch c.Op {
		case "hincrby":
			op, a, b, d = "hincrby", &c.Key, &c.Field, &c.Int
		case "hincrbyfloat":
			op, a, b, d = "hincrbyfloat", &c.Key, &c.Field, &c.Raw
		case "hset":
			op, a, b, d = "hset", &c.Key, &c.Field, &c.Str
		case "zincrby":
			op, a, b, d = "zincrby", &c.Key, &c.Raw, &c.Field
		default:
			endRun()
			args = appendGeneric(args, c)
			continue
		}
		if op != runOp {
			endRun()
			args = append(args, op, nil)
			run, runOp = len(args)-1, op
		}
		args = append(args, a, b, d)
		runLen++
	}
	endRun()
	return args
}

// appendGeneric appends c as "*", its number of words and the words.
func appendGeneric(args []any, c *command.Command) []any {
	switch c.Op {
	case "set":
		if c.HasTTL {
			return append(args, "*", 5, "set", &c.Key, &c.Str, "px", &c.TTLms)
		}
		return append(args, "*", 3, "set", &c.Key, &c.Str)
	case "expire":
		return append(args, "*", 3, "pexpire", &c.Key, &c.TTLms)
	case "xadd":
		args = append(args, "*", 3+2*len(c.Fields), "xadd", &c.Key, "*")
		for f, v := range c.Fields {
			args = append(args, f, v)
		}
		return args
	case "publish":
		return append(args, "*", 3, "publish", &c.Key, &c.Str)
	default:
		// command.Parse and the mapper admit only these and the four
		// three-argument ops.
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
