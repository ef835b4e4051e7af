package topoagent_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/internal/orders"
	"github.com/sluicehq/sluice/plugins/store"
)

func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server (scripts/test installs it): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond) // polling for the socket, with a deadline
	defer tick.Stop()
	for c.Ping(ctx).Err() != nil {
		select {
		case <-ctx.Done():
			t.Fatalf("redis-server did not answer on %s", sock)
		case <-tick.C:
		}
	}
	return c
}

// TestResultsStoreAndRedisAgree applies the same order-stats command
// records to the embedded store (through its sink) and to a real
// redis-server, and checks the dashboard's read model is the same from
// both, and equal to the ground truth.
func TestResultsStoreAndRedisAgree(t *testing.T) {
	gen := orders.NewGenerator(orders.GenConfig{Seed: 3, Step: 20 * time.Millisecond})
	truth := orders.GroundTruth(gen, 0, 20000, nil) // 20,000 orders over about 7 minutes

	var b event.Builder
	var records [][]byte
	for key, h := range truth.Hashes {
		for field, v := range h {
			records = append(records, orders.AppendCommand(nil, "hincrby", key, field, v))
		}
	}
	for key, z := range truth.ZSets {
		for member, v := range z {
			records = append(records, orders.AppendCommand(nil, "zincrby", key, member, v))
		}
	}
	for _, r := range records {
		b.Add(&event.Event{Body: r})
	}

	cfg := store.DefaultConfig()
	cfg.Path, cfg.Fsync = filepath.Join(t.TempDir(), "results.db"), false
	st, err := store.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	rejects, err := st.Write(ctx, b.Bytes(), pipeline.Fence{Stream: "results", Offset: 1})
	if err != nil || len(rejects) > 0 {
		t.Fatalf("store write: %v %v", rejects, err)
	}

	rc := startRedis(t)
	pipe := rc.Pipeline()
	for _, r := range records {
		var c struct {
			Op, Key, Field, Member string
			Value                  int64
		}
		if err := json.Unmarshal(r, &c); err != nil {
			t.Fatal(err)
		}
		if c.Op == "hincrby" {
			pipe.HIncrBy(ctx, c.Key, c.Field, c.Value)
		} else {
			pipe.ZIncrBy(ctx, c.Key, float64(c.Value), c.Member)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	fromStore, err := admin.ReadResults(topoagent.StoreResults(st), 60)
	if err != nil {
		t.Fatal(err)
	}
	fromRedis, err := admin.ReadResults(topoagent.RedisResults(rc), 60)
	if err != nil {
		t.Fatal(err)
	}
	if fromStore.Source != "store" || fromRedis.Source != "redis" {
		t.Errorf("sources %q %q", fromStore.Source, fromRedis.Source)
	}
	fromStore.Source, fromRedis.Source = "", ""
	a, _ := json.Marshal(fromStore)
	r, _ := json.Marshal(fromRedis)
	if string(a) != string(r) {
		t.Errorf("store and redis differ:\nstore %s\nredis %s", a, r)
	}
	var total int64
	for _, m := range fromStore.Minutes {
		total += m.RevenueCents
	}
	var want int64
	for k, h := range truth.Hashes {
		if strings.HasPrefix(k, "rev:cat:") {
			for _, v := range h {
				want += v
			}
		}
	}
	if len(fromStore.Minutes) < 6 || total != want || len(fromStore.TopSKUs) != 10 || len(fromStore.Categories) != len(orders.DefaultCategories) {
		t.Errorf("read model: %d minutes, revenue %d (want %d), %d SKUs, %d categories", len(fromStore.Minutes), total, want, len(fromStore.TopSKUs), len(fromStore.Categories))
	}

	// A key prefix with glob characters matches only itself in Redis.
	rc.HSet(ctx, "rev:cat:[x]*", "a", "1")
	rc.HSet(ctx, "rev:cat:x", "a", "1")
	keys, err := topoagent.RedisResults(rc).Keys("rev:cat:[x]*", 10)
	if err != nil || len(keys) != 1 || keys[0] != "rev:cat:[x]*" {
		t.Errorf("Keys with glob characters = %v %v", keys, err)
	}
}
