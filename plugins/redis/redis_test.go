package redis

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/internal/testredis"
	"github.com/sluicehq/sluice/plugins/internal/tlsconf"
	"github.com/sluicehq/sluice/plugins/internal/units"
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
	if cfg.Mode != ModeStandalone || cfg.ReadTimeout.D != 10*time.Second || cfg.FencePrefix != "sluice:fence:" {
		t.Fatalf("sample decoded to %+v", cfg)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	_, err := toml.Decode(`
mode = "sentinel"
addrs = [""]
db = -1
read_timeout = "soon"
pool_size = 0
fence_prefix = ""
[tls]
enable = true
cert_file = "/nonexistent.pem"
`, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"master_name: is required", "addrs[0]: is empty", "db: must not be negative",
		"read_timeout:", "pool_size: must be at least 1", "fence_prefix: is required",
		"tls.cert_file, tls.key_file: give both", "tls.cert_file: stat /nonexistent.pem"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	cfg = DefaultConfig()
	cfg.Mode = "ring"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `mode: "ring" is not one of`) {
		t.Fatalf("err = %v", err)
	}
}

func batchOf(bodies ...string) []byte {
	var b event.Builder
	for _, s := range bodies {
		b.Add(&event.Event{Body: []byte(s)})
	}
	return append([]byte(nil), b.Bytes()...)
}

func open(t testing.TB, addr, id string) *Sink {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addrs = []string{addr}
	cfg.InstanceID = id
	cfg.ReadTimeout = units.Of(2 * time.Second)
	s, err := New(cfg, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func client(t testing.TB, addr string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEveryOpAppliedLikeRedis(t *testing.T) {
	srv := testredis.Start(t)
	s := open(t, srv.Addr, "")
	rc := client(t, srv.Addr)
	ctx := context.Background()
	sub := rc.Subscribe(ctx, "news")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	rej, err := s.Write(ctx, batchOf(
		`{"op":"hincrby","key":"rev","field":"books","value":1250}`,
		`{"op":"hincrby","key":"rev","field":"books","value":-50}`,
		`{"op":"hincrbyfloat","key":"avg","field":"x","value":0.25}`,
		`{"op":"hset","key":"meta","field":"city","value":"Hangzhou"}`,
		`{"op":"zincrby","key":"top","member":"sku-1","value":3}`,
		`{"op":"set","key":"last","value":"o-9","ttl_ms":600000}`,
		`{"op":"set","key":"plain","value":"v"}`,
		`{"op":"expire","key":"plain","ttl_ms":900000}`,
		`{"op":"xadd","key":"log","fields":{"a":"1","b":"2"}}`,
		`{"op":"publish","channel":"news","message":"hello"}`,
	), pipeline.Fence{Stream: "s/0/redis", Offset: 1})
	if err != nil || len(rej) != 0 {
		t.Fatalf("rejects %v err %v", rej, err)
	}
	if v := rc.HGet(ctx, "rev", "books").Val(); v != "1200" {
		t.Errorf("rev.books = %q", v)
	}
	if v := rc.HGet(ctx, "avg", "x").Val(); v != "0.25" {
		t.Errorf("avg.x = %q", v)
	}
	if v := rc.HGet(ctx, "meta", "city").Val(); v != "Hangzhou" {
		t.Errorf("meta.city = %q", v)
	}
	if v := rc.ZScore(ctx, "top", "sku-1").Val(); v != 3 {
		t.Errorf("top sku-1 = %v", v)
	}
	if ttl := rc.PTTL(ctx, "last").Val(); rc.Get(ctx, "last").Val() != "o-9" || ttl <= 0 || ttl > 600*time.Second {
		t.Errorf("last = %q ttl %v", rc.Get(ctx, "last").Val(), ttl)
	}
	if ttl := rc.PTTL(ctx, "plain").Val(); ttl <= 600*time.Second {
		t.Errorf("plain ttl %v, want about 900s", ttl)
	}
	xs := rc.XRange(ctx, "log", "-", "+").Val()
	if len(xs) != 1 || xs[0].Values["a"] != "1" || xs[0].Values["b"] != "2" {
		t.Errorf("log = %+v", xs)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "hello" {
		t.Errorf("published %v %v", msg, err)
	}
}

func TestReplayAtOrBelowTheFenceIsSkipped(t *testing.T) {
	srv := testredis.Start(t)
	s := open(t, srv.Addr, "aaaa")
	rc := client(t, srv.Addr)
	ctx := context.Background()
	b := batchOf(`{"op":"hincrby","key":"n","field":"f","value":1}`)
	for _, off := range []uint64{5, 5, 3, 6, 6, 10, 9} {
		if rej, err := s.Write(ctx, b, pipeline.Fence{Stream: "c/0/r", Offset: off}); err != nil || rej != nil {
			t.Fatalf("offset %d: %v %v", off, rej, err)
		}
	}
	if v := rc.HGet(ctx, "n", "f").Val(); v != "3" { // offsets 5, 6, 10
		t.Fatalf("n.f = %s, want 3", v)
	}
	// Another stream of the same agent and the same stream of another
	// agent have fences of their own.
	s.Write(ctx, b, pipeline.Fence{Stream: "c/1/r", Offset: 1})
	other := open(t, srv.Addr, "bbbb")
	other.Write(ctx, b, pipeline.Fence{Stream: "c/0/r", Offset: 1})
	if v := rc.HGet(ctx, "n", "f").Val(); v != "5" {
		t.Fatalf("n.f = %s, want 5", v)
	}
	if v := rc.Get(ctx, "sluice:fence:aaaa:c/0/r").Val(); v != "00000000000000000010" {
		t.Fatalf("fence = %q", v)
	}
}

func TestMalformedAndRefusedCommandsAreRejectedTheRestApplied(t *testing.T) {
	srv := testredis.Start(t)
	s := open(t, srv.Addr, "")
	rc := client(t, srv.Addr)
	ctx := context.Background()
	rc.Set(ctx, "str", "x", 0)
	rej, err := s.Write(ctx, batchOf(
		`{"op":"hincrby","key":"ok","field":"f","value":2}`,
		`not json`,
		`{"op":"hincrby","key":"str","field":"f","value":1}`, // WRONGTYPE
		`{"op":"hincrby","key":"ok","field":"f","value":3}`,
		`{"op":"zincrby","key":"ok2","member":"m"}`,
	), pipeline.Fence{Stream: "x", Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{1: "not a command record", 2: "WRONGTYPE", 4: `missing ["value"]`}
	if len(rej) != len(want) {
		t.Fatalf("rejects %+v", rej)
	}
	for _, r := range rej {
		if !strings.Contains(r.Reason, want[r.Index]) {
			t.Errorf("reject %d: %q, want %q", r.Index, r.Reason, want[r.Index])
		}
	}
	if v := rc.HGet(ctx, "ok", "f").Val(); v != "5" {
		t.Fatalf("ok.f = %s, want 5", v)
	}
}

// A replayed batch the fence skips must still return the rejects of its
// first Write (the Sink contract, docs/adr/0004 §6): the agent may have
// been killed between that Write and the runner's dead-letter append. The
// replay comes from a fresh sink, as after a restart.
func TestSkippedReplayReturnsTheRefusalsOfItsFirstWrite(t *testing.T) {
	srv := testredis.Start(t)
	rc := client(t, srv.Addr)
	ctx := context.Background()
	rc.Set(ctx, "str", "x", 0)
	b := batchOf(
		`{"op":"hincrby","key":"ok","field":"f","value":2}`,
		`{"op":"hincrby","key":"str","field":"f","value":1}`, // WRONGTYPE
		`not json`,
		`{"op":"zincrby","key":"str","member":"m","value":1}`, // WRONGTYPE
		`{"op":"hincrby","key":"ok","field":"f","value":3}`,
	)
	fence := pipeline.Fence{Stream: "in/0/redis", Offset: 7}
	first, err := open(t, srv.Addr, "replay").Write(ctx, b, fence)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 || first[0].Index != 1 || first[1].Index != 2 || first[2].Index != 3 ||
		!strings.Contains(first[0].Reason, "WRONGTYPE") || !strings.Contains(first[2].Reason, "WRONGTYPE") {
		t.Fatalf("first write rejects %+v, want 1 and 3 (WRONGTYPE) and 2 (malformed)", first)
	}
	// A fresh sink replays the same batch with the same fence, twice (a
	// retry after a lost reply looks the same).
	restarted := open(t, srv.Addr, "replay")
	for try := 0; try < 2; try++ {
		again, err := restarted.Write(ctx, b, fence)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(again) != fmt.Sprint(first) {
			t.Fatalf("replay %d rejects %+v, want those of the first write %+v", try, again, first)
		}
	}
	if v := rc.HGet(ctx, "ok", "f").Val(); v != "5" {
		t.Fatalf("ok.f = %s, want 5 (applied once)", v)
	}
	// Only the last applied batch's refusals are kept: the next batch
	// (none refused) replaces them, and a replay of an older batch gets
	// only its recomputed malformed-record rejects.
	next := batchOf(`{"op":"hincrby","key":"ok","field":"f","value":10}`)
	if rej, err := restarted.Write(ctx, next, pipeline.Fence{Stream: fence.Stream, Offset: 8}); err != nil || rej != nil {
		t.Fatalf("batch 8: %v %v", rej, err)
	}
	if rej, err := open(t, srv.Addr, "replay").Write(ctx, next, pipeline.Fence{Stream: fence.Stream, Offset: 8}); err != nil || rej != nil {
		t.Fatalf("replay of batch 8: %v %v", rej, err)
	}
	old, err := restarted.Write(ctx, b, fence)
	if err != nil || len(old) != 1 || old[0].Index != 2 {
		t.Fatalf("replay of batch 7 after batch 8: %+v %v, want the malformed record 2 only", old, err)
	}
	if v := rc.HGet(ctx, "ok", "f").Val(); v != "15" {
		t.Fatalf("ok.f = %s, want 15", v)
	}
}

// The sink reuses its HINCRBY, HINCRBYFLOAT, ZINCRBY and HSET commands
// from batch to batch: a refusal, name, key or argument of one batch must
// not show up in the next.
func TestReusedCommandsCarryNothingOverBetweenBatches(t *testing.T) {
	srv := testredis.Start(t)
	s := open(t, srv.Addr, "")
	rc := client(t, srv.Addr)
	ctx := context.Background()
	rc.Set(ctx, "str", "x", 0)
	rej, err := s.Write(ctx, batchOf(
		`{"op":"hincrby","key":"str","field":"f","value":1}`, // WRONGTYPE
		`{"op":"hincrby","key":"a","field":"f","value":2}`,
		`{"op":"zincrby","key":"str","member":"m","value":1}`, // WRONGTYPE
		`{"op":"hincrbyfloat","key":"a","field":"g","value":1.5}`,
		`{"op":"hset","key":"a","field":"h","value":"v1"}`,
	), pipeline.Fence{Stream: "x", Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 2 || rej[0].Index != 0 || rej[1].Index != 2 ||
		!strings.Contains(rej[0].Reason, "WRONGTYPE") || !strings.Contains(rej[1].Reason, "WRONGTYPE") {
		t.Fatalf("batch 1 rejects %+v, want 0 and 2 (WRONGTYPE)", rej)
	}
	rej, err = s.Write(ctx, batchOf(
		`{"op":"zincrby","key":"z","member":"m","value":2.5}`,
		`{"op":"hincrby","key":"b","field":"h","value":4}`,
		`{"op":"hset","key":"c","field":"f","value":"v"}`,
		`{"op":"hincrby","key":"b","field":"h","value":-1}`,
	), pipeline.Fence{Stream: "x", Offset: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 0 {
		t.Fatalf("batch 2 rejects %+v, want none", rej)
	}
	got := map[string]any{"z": rc.ZRangeWithScores(ctx, "z", 0, -1).Val()}
	for _, k := range []string{"a", "b", "c"} {
		got[k] = rc.HGetAll(ctx, k).Val()
	}
	want := map[string]any{"a": map[string]string{"f": "2", "g": "1.5", "h": "v1"}, "b": map[string]string{"h": "3"},
		"c": map[string]string{"f": "v"}, "z": []goredis.Z{{Score: 2.5, Member: "m"}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestRedisKilledMidRunLosesAndDuplicatesNothing(t *testing.T) {
	// appendfsync always: what Redis acknowledged survives its kill -9, as
	// a real deployment with persistence would promise.
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := open(t, srv.Addr, "")
	ctx := context.Background()
	const batches, perBatch, killAfter = 40, 50, 15
	var failures atomic.Int64
	killed, stopped, failed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		var failedOnce bool
		for off := uint64(1); off <= batches; off++ {
			var bodies []string
			for i := 0; i < perBatch; i++ {
				bodies = append(bodies, fmt.Sprintf(`{"op":"hincrby","key":"tot","field":"f%d","value":%d}`, i%5, off))
			}
			b := batchOf(bodies...)
			for { // the runner's retry loop, without its backoff
				_, err := s.Write(ctx, b, pipeline.Fence{Stream: "in/0/redis", Offset: off})
				if err == nil {
					break
				}
				failures.Add(1)
				if !failedOnce {
					failedOnce = true
					close(failed)
				}
			}
			if off == killAfter {
				close(killed)
				<-stopped
			}
		}
		done <- nil
	}()
	<-killed
	srv.Stop()
	close(stopped)
	<-failed // at least one write found Redis down
	srv.Restart()
	<-done
	if failures.Load() == 0 {
		t.Fatal("no write failed while Redis was down")
	}
	rc := client(t, srv.Addr)
	var sum int64
	for i := 0; i < 5; i++ {
		v, err := rc.HGet(ctx, "tot", fmt.Sprint("f", i)).Int64()
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	// Every batch adds perBatch × offset.
	if want := int64(perBatch * batches * (batches + 1) / 2); sum != want {
		t.Fatalf("total %d, want %d (lost or doubled)", sum, want)
	}
}

func TestRedisDownIsAnErrorNotALoss(t *testing.T) {
	srv := testredis.Start(t)
	s := open(t, srv.Addr, "")
	srv.Stop()
	_, err := s.Write(context.Background(), batchOf(`{"op":"set","key":"k","value":"v"}`), pipeline.Fence{Stream: "x", Offset: 1})
	if err == nil || !strings.HasPrefix(err.Error(), "redis: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestClusterGroupsBySlot(t *testing.T) {
	if Slot("foo") != 12182 || Slot("{user1000}.following") != Slot("{user1000}.followers") || Slot("a{}b") != crc16("a{}b")%16384 {
		t.Fatalf("slots %d %d %d", Slot("foo"), Slot("{user1000}.following"), Slot("{user1000}.followers"))
	}
	for s := 0; s < 16384; s++ {
		if Slot("{"+slotTag(uint16(s))+"}x") != uint16(s) {
			t.Fatalf("tag %q of slot %d hashes to %d", slotTag(uint16(s)), s, Slot(slotTag(uint16(s))))
		}
	}
	// A one-node cluster holding every slot: go-redis routes each slot's
	// transaction there, and replays are skipped per slot.
	srv := testredis.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	rc := client(t, srv.Addr)
	ctx := context.Background()
	if err := rc.Do(ctx, "cluster", "addslotsrange", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(rc.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		time.Sleep(10 * time.Millisecond) // polling the server's own state, not standing in for it
	}
	cfg := DefaultConfig()
	cfg.Mode, cfg.Addrs, cfg.InstanceID = ModeCluster, []string{srv.Addr}, "cccc"
	s, err := New(cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	b := batchOf(`{"op":"hincrby","key":"a","field":"f","value":1}`, `{"op":"hincrby","key":"b","field":"f","value":1}`,
		`{"op":"hincrby","key":"c","field":"f","value":1}`)
	for _, off := range []uint64{1, 1, 2} {
		if _, err := s.Write(ctx, b, pipeline.Fence{Stream: "x", Offset: off}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "b", "c"} {
		if v := rc.HGet(ctx, k, "f").Val(); v != "2" {
			t.Errorf("%s.f = %q, want 2", k, v)
		}
	}
	if n := len(rc.Keys(ctx, "sluice:fence:*").Val()); n != 3 {
		t.Errorf("%d fence keys, want one per slot (3)", n)
	}
}

func TestLifecycle(t *testing.T) {
	s, err := New(DefaultConfig(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Close(ctx); err != nil { // without Open
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, batchOf(), pipeline.Fence{}); err == nil {
		t.Fatal("Write without Open succeeded")
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err == nil {
		t.Fatal("second Open succeeded")
	}
	if err := errors.Join(s.Close(ctx), s.Close(ctx)); err != nil {
		t.Fatal(err)
	}
}

func TestTLSAndACLUser(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	srv := testredis.StartTLS(t, cert, key, "--user", "sluice", "on", ">s3cret", "~*", "&*", "+@all", "--user", "default", "off")
	ctx := context.Background()
	for _, c := range []struct {
		pass string
		ok   bool
	}{{"s3cret", true}, {"wrong", false}} {
		cfg := DefaultConfig()
		cfg.Addrs, cfg.InstanceID, cfg.Username, cfg.Password = []string{srv.Addr}, "tls", "sluice", c.pass
		cfg.TLS = tlsconf.Config{Enable: true, CAFile: cert, ServerName: "127.0.0.1"}
		s, err := New(cfg, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = s.Write(ctx, batchOf(`{"op":"set","key":"k","value":"v"}`), pipeline.Fence{Stream: "x", Offset: 1})
		s.Close(ctx)
		if (err == nil) != c.ok {
			t.Fatalf("password %q: err %v", c.pass, err)
		}
		if !c.ok && !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("wrong password error: %v", err)
		}
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestNoGoroutineOutlivesClose(t *testing.T) {
	srv := testredis.Start(t)
	before := goleak.IgnoreCurrent()
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Addrs, cfg.InstanceID = []string{srv.Addr}, "leak"
	s, err := New(cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Open(ctx)
	if _, err := s.Write(ctx, batchOf(`{"op":"set","key":"k","value":"v"}`), pipeline.Fence{Stream: "x", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	goleak.VerifyNone(t, before)
}

func TestMappingModeBuildsCommandsFromPlainEvents(t *testing.T) {
	srv := testredis.Start(t)
	cfg := DefaultConfig()
	md, err := toml.Decode(`
addrs = ["`+srv.Addr+`"]
instance_id = "map"
[[commands]]
op = "hincrby"
key = "rev:cat:{category}"
field = "{city}"
value = "{price_cents}"
[[commands]]
op = "zincrby"
key = "top:sku"
member = "{sku}"
value = "1"
[[commands]]
op = "set"
key = "last:{@key}"
value = "{order_id}"
ttl_ms = 60000
`, &cfg)
	if err != nil || len(md.Undecoded()) > 0 {
		t.Fatalf("%v %v", err, md.Undecoded())
	}
	s, err := New(cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.Open(ctx)
	defer s.Close(ctx)
	var b event.Builder
	for _, body := range []string{
		`{"order_id":"o-1","category":"books","city":"Hangzhou","price_cents":1250,"sku":"sku-1"}`,
		`{"order_id":"o-2","category":"books","city":"Hangzhou","price_cents":50,"sku":"sku-2"}`,
		`{"order_id":"o-3","category":"books","price_cents":50,"sku":"sku-2"}`, // no city
		`not json`,
		`{"order_id":"o-4","category":"toys","city":"Paris","price_cents":7,"sku":"sku-1"}`,
	} {
		b.Add(&event.Event{Key: []byte("u42"), Body: []byte(body)})
	}
	rej, err := s.Write(ctx, b.Bytes(), pipeline.Fence{Stream: "x", Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 2 || rej[0].Index != 2 || !strings.Contains(rej[0].Reason, `no field "city"`) ||
		rej[1].Index != 3 || !strings.Contains(rej[1].Reason, "not a JSON object") {
		t.Fatalf("rejects %+v", rej)
	}
	rc := client(t, srv.Addr)
	if v := rc.HGet(ctx, "rev:cat:books", "Hangzhou").Val(); v != "1300" {
		t.Errorf("rev:cat:books Hangzhou = %q", v)
	}
	if v := rc.ZScore(ctx, "top:sku", "sku-1").Val(); v != 2 {
		t.Errorf("top:sku sku-1 = %v", v)
	}
	if v := rc.Get(ctx, "last:u42").Val(); v != "o-4" {
		t.Errorf("last:u42 = %q", v)
	}
}

func TestMappingValidation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Commands = []Mapping{{Op: "hincrby", Key: "k{", Value: "1"}, {Op: "frob"}, {Op: "expire", Key: "k"}, {Op: "set", Key: "k", Value: "v", Member: "m"}}
	err := cfg.Validate()
	for _, want := range []string{`commands[0].key: "{" without "}"`, "commands[0].field: is required for hincrby",
		`commands[1].op: "frob"`, "commands[2].ttl_ms: expire needs", "commands[3].member: does not belong to set"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	f.Add("rev:{category}:{city}", []byte(`{"category":"books","city":"Hangzhou"}`))
	f.Add("{@key}", []byte(`{}`))
	f.Add("}{", []byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, tmpl string, body []byte) {
		tp, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		m := &mapper{ms: []Mapping{{Op: "hset"}}, key: []template{tp}, fld: []template{tp}, val: []template{tp}}
		m.commands(nil, body, []byte("k")) // must not panic
	})
}

// FuzzRefusals: the refusals stored with a fence come from the network;
// whatever they hold, decoding must not panic and may only name commands
// of the batch.
func FuzzRefusals(f *testing.F) {
	f.Add(`[0,"WRONGTYPE Operation against a key holding the wrong kind of value",2,"ERR hash value is not an integer"]`)
	f.Add(`[1.5,"x"]`)
	f.Add(`[0]`)
	f.Add(`[-1,"x"]`)
	f.Add(`{"a":1}`)
	f.Fuzz(func(t *testing.T, rec string) {
		items := []item{{index: 4}, {index: 7}, {index: 9}}
		items[0].cmd.Op, items[1].cmd.Op, items[2].cmd.Op = "hincrby", "hset", "zincrby"
		rejects, err := refusals(rec, items)
		if err != nil {
			return
		}
		for _, r := range rejects {
			if r.Index != 4 && r.Index != 7 && r.Index != 9 {
				t.Fatalf("reject of event %d, not one of the batch's", r.Index)
			}
		}
	})
}

// TestScriptErrorOfAnOldServerNamesTheVersion checks that the error Redis 6
// gives for the apply script's shebang (its text copied from a Redis 6.2
// reply) says that Redis 7 is needed, and that other errors pass unchanged.
func TestScriptErrorOfAnOldServerNamesTheVersion(t *testing.T) {
	old := errors.New("ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'")
	err := explainScriptError(old)
	if !errors.Is(err, old) || !strings.Contains(err.Error(), "needs Redis 7.0 or later") {
		t.Fatalf("got %v", err)
	}
	other := errors.New("LOADING Redis is loading the dataset in memory")
	if err := explainScriptError(other); !errors.Is(err, other) || strings.Contains(err.Error(), "7.0") {
		t.Fatalf("got %v", err)
	}
}
