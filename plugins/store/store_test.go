package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

func TestSampleConfigDecodesAndValidates(t *testing.T) {
	cfg := DefaultConfig()
	md, err := toml.Decode(SampleConfig, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("sample.toml has keys the config does not know: %v", und)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	cfg := DefaultConfig()
	if _, err := toml.Decode("path = \"\"\nsweep_interval = \"often\"", &cfg); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	want := "path: is required (e.g. path = \"results.db\")\nsweep_interval: \"often\" is not a duration (write e.g. \"250ms\", \"5s\", \"1m\")"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v", err)
	}
}

type clock struct{ t time.Time }

func openStore(t *testing.T, path string, c *clock) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path = path
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		s.now = func() time.Time { return c.t }
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func records(recs ...string) []byte {
	var b event.Builder
	for _, r := range recs {
		b.Add(&event.Event{Body: []byte(r)})
	}
	return append([]byte(nil), b.Bytes()...)
}

func apply(t *testing.T, s *Store, stream string, off uint64, recs ...string) []pipeline.Reject {
	t.Helper()
	rej, err := s.Write(context.Background(), records(recs...), pipeline.Fence{Stream: stream, Offset: off})
	if err != nil {
		t.Fatal(err)
	}
	return rej
}

func TestCommandsLikeRedis(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s := openStore(t, filepath.Join(t.TempDir(), "results.db"), c)
	rej := apply(t, s, "stats/0", 1,
		`{"op":"hincrby","key":"rev:cat","field":"books","value":2500}`,
		`{"op":"hincrby","key":"rev:cat","field":"books","value":-500}`,
		`{"op":"hincrbyfloat","key":"rev:cat","field":"avg","value":1.25}`,
		`{"op":"hincrbyfloat","key":"rev:cat","field":"avg","value":0.25}`,
		`{"op":"hset","key":"rev:cat","field":"name","value":"Books"}`,
		`{"op":"zincrby","key":"top:sku","member":"sku-1","value":3}`,
		`{"op":"zincrby","key":"top:sku","member":"sku-2","value":10}`,
		`{"op":"zincrby","key":"top:sku","member":"sku-3","value":-4}`,
		`{"op":"zincrby","key":"top:sku","member":"sku-1","value":8.5}`,
		`{"op":"set","key":"last","value":"o-1"}`,
		`{"op":"set","key":"tmp","value":"x","ttl_ms":1000}`,
		`{"op":"hincrby","key":"win:1","field":"n","value":1}`,
		`{"op":"expire","key":"win:1","ttl_ms":60000}`,
		`{"op":"expire","key":"missing","ttl_ms":60000}`,
		`{"op":"xadd","key":"events","fields":{"a":"1","b":"2"}}`,
		`{"op":"xadd","key":"events","fields":{"a":"3"}}`,
		`{"op":"publish","channel":"updates","message":"hi"}`,
	)
	if len(rej) != 0 {
		t.Fatalf("rejects: %+v", rej)
	}
	h, err := s.HGetAll("rev:cat")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(h) != "map[avg:1.5 books:2000 name:Books]" {
		t.Fatalf("HGetAll = %v", h)
	}
	top, err := s.ZTop("top:sku", 2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(top) != "[{sku-1 11.5} {sku-2 10}]" {
		t.Fatalf("ZTop = %v", top)
	}
	all, _ := s.ZTop("top:sku", 10)
	if len(all) != 3 || all[2].Member != "sku-3" || all[2].Score != -4 {
		t.Fatalf("ZTop(10) = %v", all)
	}
	if v, ok, err := s.Get("last"); v != "o-1" || !ok || err != nil {
		t.Fatalf("Get(last) = %q %v %v", v, ok, err)
	}
	if n, err := s.XLen("events"); n != 2 || err != nil {
		t.Fatalf("XLen = %d %v", n, err)
	}
	keys, err := s.Scan("", 100)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.Key+":"+k.Type)
	}
	if got := strings.Join(names, " "); got != "events:stream last:string rev:cat:hash tmp:string top:sku:zset win:1:hash" {
		t.Fatalf("Scan = %s", got)
	}
	if keys, _ := s.Scan("win:", 10); len(keys) != 1 || !keys[0].ExpiresAt.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("Scan(win:) = %+v", keys)
	}
	if _, err := s.HGetAll("last"); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("HGetAll of a string: %v", err)
	}

	// TTLs: tmp expires after 1s, win:1 after 60s.
	c.t = c.t.Add(2 * time.Second)
	if _, ok, _ := s.Get("tmp"); ok {
		t.Fatal("tmp is still readable after its TTL")
	}
	apply(t, s, "stats/0", 2, `{"op":"hincrby","key":"win:1","field":"n","value":1}`)
	if h, _ := s.HGetAll("win:1"); h["n"] != "2" {
		t.Fatalf("win:1 = %v", h)
	}
	c.t = c.t.Add(time.Minute)
	apply(t, s, "stats/0", 3, `{"op":"hincrby","key":"win:1","field":"n","value":1}`)
	if h, _ := s.HGetAll("win:1"); h["n"] != "1" {
		t.Fatalf("win:1 after expiry = %v, want a fresh hash", h)
	}
	// SET replaces any type and clears the TTL; expire ≤ 0 deletes.
	apply(t, s, "stats/0", 4, `{"op":"set","key":"rev:cat","value":"v"}`, `{"op":"expire","key":"last","ttl_ms":0}`)
	if v, ok, _ := s.Get("rev:cat"); v != "v" || !ok {
		t.Fatalf("rev:cat = %q %v", v, ok)
	}
	if _, ok, _ := s.Get("last"); ok {
		t.Fatal("expire 0 did not delete")
	}
	// An expired key is not listed, whether or not the sweep has run yet.
	if keys, _ := s.Scan("tmp", 10); len(keys) != 0 {
		t.Fatalf("tmp still listed: %v", keys)
	}
}

func TestReplayDoesNotDoubleCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.db")
	s := openStore(t, path, nil)
	inc := `{"op":"hincrby","key":"k","field":"f","value":1}`
	apply(t, s, "a", 1, inc, inc)
	apply(t, s, "a", 1, inc, inc) // replay
	apply(t, s, "b", 1, inc)      // another stream has its own fence
	apply(t, s, "a", 2, inc)
	s.Close(context.Background())
	s.Close(context.Background())

	s = openStore(t, path, nil)
	apply(t, s, "a", 2, inc) // replay after a restart
	apply(t, s, "b", 1, inc)
	if h, _ := s.HGetAll("k"); h["f"] != "4" {
		t.Fatalf("k.f = %v, want 4", h)
	}
}

func TestMalformedRecordsAreRejectedWithAReason(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "results.db"), nil)
	tests := []struct{ rec, reason string }{
		{`not json`, "not a command record: invalid character 'o' in literal null (expecting 'u')"},
		{`{"op":"hincrby","key":"k","field":"f","value":1} {}`, "not a command record: data after the JSON object"},
		{`{"key":"k"}`, `missing "op"`},
		{`{"op":"incr","key":"k"}`, `unknown op "incr" (known: hincrby, hincrbyfloat, hset, zincrby, set, expire, xadd, publish)`},
		{`{"op":"hincrby","key":"k","field":"f"}`, `hincrby: missing ["value"]`},
		{`{"op":"hincrby","key":"k","value":1}`, `hincrby: missing ["field"]`},
		{`{"op":"hincrby","key":"k","field":"f","value":"1"}`, `hincrby: value "1" is not an integer`},
		{`{"op":"hincrby","key":"k","field":"f","value":1.5}`, `hincrby: value 1.5 is not an integer`},
		{`{"op":"zincrby","key":"k","member":"m","value":"x"}`, `zincrby: value "x" is not a number`},
		{`{"op":"zincrby","key":"k","field":"m","value":1}`, `zincrby: field "field" does not belong to this op`},
		{`{"op":"hset","key":"k","field":"f","value":5}`, `hset: value 5 is not a string`},
		{`{"op":"set","key":"k","value":null}`, `set: value null is not a string`},
		{`{"op":"set","key":"k","value":"v","ttl_ms":-1}`, `set: ttl_ms -1 must be positive`},
		{`{"op":"expire","key":"k"}`, `expire: missing ["ttl_ms"]`},
		{`{"op":"xadd","key":"k","fields":{"a":1}}`, `xadd: fields {"a":1} is not an object of strings`},
		{`{"op":"set","key":"","value":"v"}`, `set: key is empty`},
		{`{"op":"hincrby","key":"k","field":"f","value":1,"extra":2}`, `not a command record: json: unknown field "extra"`},
		{`{"op":"hincrby","key":"s","field":"f","value":1}`, `WRONGTYPE: key "s" holds a string, not a hash`},
		{`{"op":"hincrby","key":"h","field":"name","value":1}`, `hincrby: h name holds "x", not an integer`},
		{`{"op":"hincrby","key":"h","field":"n","value":9223372036854775807}`, `hincrby: h n would overflow`},
	}
	recs := []string{`{"op":"set","key":"s","value":"v"}`, `{"op":"hset","key":"h","field":"name","value":"x"}`,
		`{"op":"hincrby","key":"h","field":"n","value":1}`}
	for _, tc := range tests {
		recs = append(recs, tc.rec)
	}
	recs = append(recs, `{"op":"hincrby","key":"h","field":"n","value":1}`)
	rej := apply(t, s, "x", 1, recs...)
	if len(rej) != len(tests) {
		t.Fatalf("%d rejects, want %d: %+v", len(rej), len(tests), rej)
	}
	for i, r := range rej {
		if r.Index != i+3 || r.Reason != tests[i].reason {
			t.Errorf("reject %d = %d %q\nwant      %d %q", i, r.Index, r.Reason, i+3, tests[i].reason)
		}
	}
	if h, _ := s.HGetAll("h"); h["n"] != "2" {
		t.Fatalf("the valid records around the bad ones were not applied: %v", h)
	}
}

func TestReadsWhileWriting(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "results.db"), nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			top, err := s.ZTop("z", 3)
			if err != nil {
				t.Error(err)
				return
			}
			for i := 1; i < len(top); i++ {
				if top[i].Score > top[i-1].Score {
					t.Errorf("ZTop out of order: %v", top)
					return
				}
			}
		}
	}()
	for i := 0; i < 50; i++ {
		apply(t, s, "s", uint64(i+1), fmt.Sprintf(`{"op":"zincrby","key":"z","member":"m%d","value":%d}`, i%7, i))
	}
	close(stop)
	wg.Wait()
	if _, err := (&Store{}).HGetAll("x"); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("read of a closed store: %v", err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta('h', 0))
	f.Add(encodeMeta('s', 1764072000000))
	f.Add([]byte{'q', 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, exp, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, errBadMeta) {
				t.Fatalf("error %v does not wrap errBadMeta", err)
			}
			return
		}
		if string(encodeMeta(typ, exp)) != string(b) {
			t.Fatalf("round trip changed %x", b)
		}
	})
}

func FuzzSortableScore(f *testing.F) {
	f.Add(0.0, 1.0)
	f.Add(-1.5, -1.25)
	f.Add(-0.0, 1e300)
	f.Fuzz(func(t *testing.T, a, b float64) {
		if a != a || b != b { // NaN has no order
			return
		}
		ka, kb := string(sortableScore(a)), string(sortableScore(b))
		if (a < b) != (ka < kb) && a != b {
			t.Fatalf("order of %v, %v not kept", a, b)
		}
		if got := scoreFromSortable([]byte(ka)); got != a {
			t.Fatalf("round trip of %v gave %v", a, got)
		}
	})
}
