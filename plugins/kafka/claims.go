package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/plugins/internal/tlsconf"
)

// ClaimsConfig is the [sources.NAME.config.claims] table: the claim ledger
// in Redis that closes the rebalance window of docs/adr/0007 (a member
// killed between its durable append and its group commit, whose partition
// then moves, would otherwise have its last batch read again by the new
// owner from the older commit). Off while Addrs is empty.
type ClaimsConfig struct {
	// Addrs: the Redis server, the sentinels (with MasterName) or cluster
	// seed nodes, host:port. Empty: no ledger.
	Addrs      []string `toml:"addrs"`
	MasterName string   `toml:"master_name"`
	Cluster    bool     `toml:"cluster"`
	Username   string   `toml:"username"`
	Password   string   `toml:"password"`
	DB         int      `toml:"db"`
	// KeyPrefix starts every ledger key; the keys of one group share the
	// hash tag {group}, so one script can touch them in a cluster too.
	KeyPrefix string         `toml:"key_prefix"`
	TLS       tlsconf.Config `toml:"tls"`
}

// Enabled reports whether the ledger is configured.
func (c ClaimsConfig) Enabled() bool { return len(c.Addrs) > 0 }

func (c ClaimsConfig) validate() []error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	for i, a := range c.Addrs {
		if a == "" {
			errs = append(errs, fmt.Errorf("claims.addrs[%d]: is empty", i))
		}
	}
	if c.KeyPrefix == "" {
		errs = append(errs, errors.New("claims.key_prefix: must not be empty"))
	}
	if c.Cluster && c.MasterName != "" {
		errs = append(errs, errors.New("claims: cluster and master_name exclude each other"))
	}
	if err := c.TLS.Validate("claims.tls"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// claimScript claims, for one owner, one offset range per partition key:
// KEYS[i] is the partition's ledger hash, ARGV[1] the owner, ARGV[2i] and
// ARGV[2i+1] the range [from, to) the owner fetched. The hash holds
// "claimed" (every offset below it has been claimed by somebody) and
// "pending:OWNER" = "LO TO", the owner's last non-empty claim. It returns,
// per key, the first offset the owner now owns: [lo, to) is the owner's,
// [from, lo) belongs to whoever claimed it first.
//
// The same claim sent again (a reply lost on the network) gets the same
// answer: the owner never claims a range it has already passed on, so a
// pending entry ending at the same offset can only be this claim.
// Offsets are compared as Lua numbers (exact below 2^53) and stored as the
// strings the caller sent, so no float formatting creeps in.
var claimScript = goredis.NewScript(`
local field = 'pending:' .. ARGV[1]
local out = {}
for i = 1, #KEYS do
  local from, to = ARGV[2*i], ARGV[2*i+1]
  local lo = nil
  local p = redis.call('HGET', KEYS[i], field)
  if p then
    local sp = string.find(p, ' ', 1, true)
    local plo, pto = string.sub(p, 1, sp-1), string.sub(p, sp+1)
    if tonumber(pto) == tonumber(to) and tonumber(plo) >= tonumber(from) then lo = plo end
  end
  if lo == nil then
    local claimed = redis.call('HGET', KEYS[i], 'claimed') or '0'
    lo = from
    if tonumber(claimed) > tonumber(from) then lo = claimed end
    if tonumber(to) > tonumber(claimed) then redis.call('HSET', KEYS[i], 'claimed', to) end
    if tonumber(to) > tonumber(lo) then redis.call('HSET', KEYS[i], field, lo .. ' ' .. to) end
  end
  out[i] = lo
end
return out
`)

// claimLedger is one source's handle on the ledger.
type claimLedger struct {
	rdb    goredis.UniversalClient
	prefix string // key prefix + "{group}:"
	owner  string
	keys   []string
	args   []any
}

// claimRange is the offsets [From, To) of one partition in one batch.
type claimRange struct {
	tp       topicPart
	From, To int64
}

func newClaimLedger(c ClaimsConfig, group, owner string) (*claimLedger, error) {
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, fmt.Errorf("claims.tls: %w", err)
	}
	rdb := goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs: c.Addrs, MasterName: c.MasterName, IsClusterMode: c.Cluster,
		Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tc,
		DisableIdentity: true, PoolSize: 2, DialerRetries: 1,
	})
	return &claimLedger{rdb: rdb, prefix: c.KeyPrefix + "{" + group + "}:", owner: owner}, nil
}

func (l *claimLedger) key(tp topicPart) string {
	return l.prefix + tp.Topic + ":" + strconv.FormatInt(int64(tp.Partition), 10)
}

// claim claims every range in one round trip and returns, per range, the
// first offset the caller owns (To or more: none of it).
func (l *claimLedger) claim(ctx context.Context, ranges []claimRange) ([]int64, error) {
	l.keys, l.args = l.keys[:0], append(l.args[:0], l.owner)
	for _, r := range ranges {
		l.keys = append(l.keys, l.key(r.tp))
		l.args = append(l.args, strconv.FormatInt(r.From, 10), strconv.FormatInt(r.To, 10))
	}
	res, err := claimScript.Run(ctx, l.rdb, l.keys, l.args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim ledger: %w", err)
	}
	if len(res) != len(ranges) {
		return nil, fmt.Errorf("claim ledger: %d answers for %d ranges", len(res), len(ranges))
	}
	out := make([]int64, len(res))
	for i, s := range res {
		if out[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("claim ledger: answer %q for %s/%d: %w", s, ranges[i].tp.Topic, ranges[i].tp.Partition, err)
		}
	}
	return out, nil
}

// pending returns this owner's last claim on each of tps that has one.
func (l *claimLedger) pending(ctx context.Context, tps []topicPart) (map[topicPart]claimRange, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(tps))
	for i, tp := range tps {
		cmds[i] = pipe.HGet(ctx, l.key(tp), "pending:"+l.owner)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("claim ledger: %w", err)
	}
	out := map[topicPart]claimRange{}
	for i, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("claim ledger: %w", err)
		}
		r, err := parsePending(v)
		if err != nil {
			return nil, fmt.Errorf("claim ledger: %s pending:%s: %w", l.key(tps[i]), l.owner, err)
		}
		r.tp = tps[i]
		out[tps[i]] = r
	}
	return out, nil
}

// parsePending reads "LO TO".
func parsePending(v string) (claimRange, error) {
	lo, to, ok := strings.Cut(v, " ")
	if !ok {
		return claimRange{}, fmt.Errorf("%q is not \"FROM TO\"", v)
	}
	a, err1 := strconv.ParseInt(lo, 10, 64)
	b, err2 := strconv.ParseInt(to, 10, 64)
	if err1 != nil || err2 != nil || a < 0 || b < a || strconv.FormatInt(a, 10)+" "+strconv.FormatInt(b, 10) != v {
		return claimRange{}, fmt.Errorf("%q is not \"FROM TO\" with 0 <= FROM <= TO", v)
	}
	return claimRange{From: a, To: b}, nil
}

func (l *claimLedger) close() error { return l.rdb.Close() }
