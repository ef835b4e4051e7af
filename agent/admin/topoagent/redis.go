package topoagent

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/agent/admin"
)

// redisTimeout bounds each read of a dashboard refresh.
const redisTimeout = 5 * time.Second

type redisResults struct{ c redis.UniversalClient }

// RedisResults returns a ResultsReader over a Redis server the pipeline
// writes its results to (the Redis sink's database). Pass it as
// Options.Results.
func RedisResults(c redis.UniversalClient) admin.ResultsReader { return redisResults{c} }

func (r redisResults) Name() string { return "redis" }

func (r redisResults) HGetAll(key string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	return r.c.HGetAll(ctx, key).Result()
}

func (r redisResults) ZTop(key string, n int) ([]admin.ScoredMember, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	zs, err := r.c.ZRevRangeWithScores(ctx, key, 0, int64(n)-1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]admin.ScoredMember, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		out[i] = admin.ScoredMember{Member: m, Score: z.Score}
	}
	return out, nil
}

// Keys uses SCAN (never KEYS, which blocks the server) and sorts what it
// found; with more than limit matches it returns the first limit in key
// order of those scanned, which SCAN does not order.
func (r redisResults) Keys(prefix string, limit int) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	var out []string
	it := r.c.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	for it.Next(ctx) {
		out = append(out, it.Val())
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	out = slices.Compact(out) // SCAN may return a key twice
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// globEscape escapes the characters MATCH patterns give a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
