package forward

import (
	"bufio"
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
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/tlsconf"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

// receiver drives a Source the way the pipeline runner does: Read, append
// (batch + position) to a durable log, Ack. The log survives restarts of the
// source; Open gets the position of its last record, as after a crash.
type receiver struct {
	t   *testing.T
	cfg SourceConfig

	mu      sync.Mutex
	bodies  []string // every stored event body, in order
	lastPos []byte

	src    *Source
	cancel context.CancelFunc
	done   chan struct{}
	// holdAcks, when set, is waited on between the append and the Ack.
	holdAcks chan struct{}
	// holdReads, when set, is waited on before the first Read: the
	// runner's output channel is full.
	holdReads chan struct{}
}

func newReceiver(t *testing.T, cfg SourceConfig) *receiver {
	r := &receiver{t: t, cfg: cfg}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) start() {
	r.t.Helper()
	src, err := NewSource(r.cfg, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	resume := r.lastPos
	r.mu.Unlock()
	if err := src.Open(context.Background(), resume); err != nil {
		r.t.Fatal(err)
	}
	r.cfg.Listen = src.Addr().String() // restart on the same port
	ctx, cancel := context.WithCancel(context.Background())
	r.src, r.cancel, r.done = src, cancel, make(chan struct{})
	hold, holdReads := r.holdAcks, r.holdReads
	go func() {
		defer close(r.done)
		if holdReads != nil {
			select {
			case <-holdReads:
			case <-ctx.Done():
				return
			}
		}
		for {
			sb, err := src.Read(ctx, 1024)
			if err != nil {
				return
			}
			r.mu.Lock()
			event.Iterate(sb.Events, func(_ int, e *event.Event) error {
				r.bodies = append(r.bodies, string(e.Body))
				return nil
			})
			r.lastPos = append([]byte(nil), sb.Position...)
			r.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-ctx.Done():
					return // "crashed" after the append, before the ack
				}
			}
			src.Ack(ctx, sb.Position)
		}
	}()
}

// stop is a crash: the runner stops, whatever was appended stays.
func (r *receiver) stop() {
	if r.src == nil {
		return
	}
	r.cancel()
	<-r.done
	r.src.Close(context.Background())
	r.src.Close(context.Background()) // safe twice
	r.src = nil
}

func (r *receiver) stored() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func testSourceConfig() SourceConfig {
	c := DefaultSourceConfig()
	c.Listen = "127.0.0.1:0"
	return c
}

func newTestSink(t *testing.T, addr string, mod func(*SinkConfig)) *Sink {
	t.Helper()
	c := DefaultSinkConfig()
	c.Address = addr
	c.AckTimeout = units.Of(10 * time.Second)
	if mod != nil {
		mod(&c)
	}
	s, err := NewSink(c, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()); s.Close(context.Background()) })
	return s
}

func batchOf(lines ...string) []byte {
	var b event.Builder
	for _, l := range lines {
		b.Add(&event.Event{Body: []byte(l)})
	}
	return b.Bytes()
}

func TestDeliversAndAcknowledgesAfterAppend(t *testing.T) {
	r := newReceiver(t, testSourceConfig())
	s := newTestSink(t, r.cfg.Listen, nil)
	for i := 1; i <= 3; i++ {
		if _, err := s.Write(context.Background(), batchOf(fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)), pipeline.Fence{Stream: "c/0", Offset: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(r.stored(), ","); got != "a1,b1,a2,b2,a3,b3" {
		t.Errorf("stored %s", got)
	}
}

// A batch whose ack is lost (the sender times out while the receiver holds
// it) is sent again and acknowledged without being stored twice.
func TestResendAfterLostAckIsStoredOnce(t *testing.T) {
	cfg := testSourceConfig()
	r := &receiver{t: t, cfg: cfg, holdAcks: make(chan struct{})}
	r.start()
	t.Cleanup(r.stop)
	s := newTestSink(t, r.cfg.Listen, func(c *SinkConfig) { c.AckTimeout = units.Of(100 * time.Millisecond) })
	fence := pipeline.Fence{Stream: "c/0", Offset: 7}
	_, err := s.Write(context.Background(), batchOf("x"), fence)
	var nd interface{ NotDelivered() bool }
	if err == nil || errors.As(err, &nd) || !strings.Contains(err.Error(), "in doubt") {
		t.Fatalf("first write: want an in-doubt error, got %v", err)
	}
	close(r.holdAcks) // the receiver finishes the first copy; its ack goes to a closed connection
	if _, err := s.Write(context.Background(), batchOf("x"), fence); err != nil {
		t.Fatalf("resend: %v", err)
	}
	if _, err := s.Write(context.Background(), batchOf("y"), pipeline.Fence{Stream: "c/0", Offset: 8}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.stored(), ","); got != "x,y" {
		t.Errorf("stored %q, want x,y", got)
	}
}

// Backpressure: while the receiver's runner is not reading (its channel is
// full) nothing is acknowledged, so the sender times out and sends again,
// twice, on new connections. Once the runner reads, the batch is stored once
// and the copy still waiting is acknowledged.
func TestFullReceiverWithholdsAcksAndStoresResendsOnce(t *testing.T) {
	r := &receiver{t: t, cfg: testSourceConfig(), holdReads: make(chan struct{})}
	r.start()
	t.Cleanup(r.stop)
	impatient := newTestSink(t, r.cfg.Listen, func(c *SinkConfig) { c.AckTimeout = units.Of(50 * time.Millisecond) })
	fence := pipeline.Fence{Stream: "c/0", Offset: 3}
	for i := 0; i < 2; i++ {
		if _, err := impatient.Write(context.Background(), batchOf("z"), fence); err == nil || !strings.Contains(err.Error(), "in doubt") {
			t.Fatalf("attempt %d while the receiver is full: want in doubt, got %v", i, err)
		}
	}
	if got := r.stored(); len(got) != 0 {
		t.Fatalf("stored %v while the runner was not reading", got)
	}
	patient := newTestSink(t, r.cfg.Listen, func(c *SinkConfig) { c.InstanceID = impatient.id })
	res := make(chan error, 1)
	go func() { _, err := patient.Write(context.Background(), batchOf("z"), fence); res <- err }()
	close(r.holdReads)
	if err := <-res; err != nil {
		t.Fatalf("third copy: %v", err)
	}
	if got := strings.Join(r.stored(), ","); got != "z" {
		t.Errorf("stored %q, want z once", got)
	}
}

// The receiver crashes after the append and before the ack; after restart
// (fence table from its channel) the resent batch is acknowledged, not
// stored again. A second sender's batches are fenced separately.
func TestReceiverRestartKeepsFence(t *testing.T) {
	r := &receiver{t: t, cfg: testSourceConfig(), holdAcks: make(chan struct{})}
	r.start()
	t.Cleanup(r.stop)
	s := newTestSink(t, r.cfg.Listen, nil)
	other := newTestSink(t, r.cfg.Listen, nil)
	res := make(chan error, 1)
	go func() {
		_, err := s.Write(context.Background(), batchOf("one"), pipeline.Fence{Stream: "c/0", Offset: 1})
		res <- err
	}()
	for len(r.stored()) == 0 {
		time.Sleep(time.Millisecond) // polling for the append, not a timing assumption
	}
	r.stop() // crash: appended, never acknowledged
	if err := <-res; err == nil {
		t.Fatal("write succeeded without an ack")
	}
	r.holdAcks = nil
	r.start()
	if _, err := s.Write(context.Background(), batchOf("one"), pipeline.Fence{Stream: "c/0", Offset: 1}); err != nil {
		t.Fatalf("resend after restart: %v", err)
	}
	if _, err := other.Write(context.Background(), batchOf("other"), pipeline.Fence{Stream: "c/0", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(context.Background(), batchOf("two"), pipeline.Fence{Stream: "c/0", Offset: 2}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.stored(), ","); got != "one,other,two" {
		t.Errorf("stored %q, want one,other,two", got)
	}
}

func TestSenderIDStableAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	c := DefaultSinkConfig()
	c.Address = "127.0.0.1:1"
	a, _ := NewSink(c, dir, nil)
	b, _ := NewSink(c, dir, nil)
	if err := a.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.SenderID("c/0") != b.SenderID("c/0") || a.SenderID("c/0") == a.SenderID("c/1") {
		t.Errorf("sender ids %q %q %q", a.SenderID("c/0"), b.SenderID("c/0"), a.SenderID("c/1"))
	}
}

func TestConnectFailureIsNotDelivered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newTestSink(t, addr, nil)
	_, err = s.Write(context.Background(), batchOf("x"), pipeline.Fence{Stream: "s", Offset: 1})
	var nd *NotDeliveredError
	if !errors.As(err, &nd) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("want a NotDeliveredError naming %s, got %v", addr, err)
	}
}

// Bad frames are refused with an error naming what is wrong; nothing is
// stored and the receiver keeps serving others.
func TestBadFramesRefused(t *testing.T) {
	cfg := testSourceConfig()
	cfg.MaxFrameBytes = units.Bytes(4096)
	r := newReceiver(t, cfg)
	good := appendFrame(nil, frameBatch, append(appendFenceHead(nil, "s", 1), batchOf("ok")...))
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-6] ^= 0x40
	badVersion := append([]byte(nil), good...)
	badVersion[4] = 9
	tooBig := appendFrame(nil, frameBatch, make([]byte, 5000))
	badBatch := appendFrame(nil, frameBatch, append(appendFenceHead(nil, "s", 2), 9, 0, 0, 0))
	ackToReceiver := appendFrame(nil, frameAck, appendFenceHead(nil, "s", 1))
	for _, tc := range []struct {
		name, frame, want string
	}{
		{"not sluice", "GET / HTTP/1.1\r\n\r\n", `"SLFW" magic`},
		{"checksum", string(flipped), "checksum"},
		{"version", string(badVersion), "protocol version 9, this agent speaks version 1"},
		{"too big", string(tooBig), "payload of 5000 bytes exceeds max_frame_bytes (4096)"},
		{"bad batch", string(badBatch), "batch from s at offset 2"},
		{"wrong direction", string(ackToReceiver), "frame type 2 from a sender"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", r.cfg.Listen)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(tc.frame))
			f, _, err := readFrame(bufio.NewReader(c), 1<<20, nil)
			if err != nil {
				t.Fatalf("no refusal: %v", err)
			}
			if f.typ != frameRefuse || !strings.Contains(string(f.payload), tc.want) {
				t.Errorf("got frame %d %q, want a refusal containing %q", f.typ, f.payload, tc.want)
			}
		})
	}
	s := newTestSink(t, r.cfg.Listen, nil)
	if _, err := s.Write(context.Background(), batchOf("after"), pipeline.Fence{Stream: "s", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.stored(), ","); got != "after" {
		t.Errorf("stored %q, want only the good batch", got)
	}
}

func TestConfigErrorsNameTheirKeys(t *testing.T) {
	sc := DefaultSinkConfig()
	sc.Address = "nohost"
	sc.AckTimeout = units.Of(0)
	err := sc.Validate()
	for _, want := range []string{`address: "nohost" is not host:port`, "ack_timeout: must be greater than zero"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sink: want %q in %v", want, err)
		}
	}
	rc := DefaultSourceConfig()
	rc.MaxFrameBytes = units.Bytes(10)
	rc.TLS = tlsconf.Server{Enable: true, ClientCAFile: "/nonexistent/ca.pem"}
	err = rc.Validate()
	for _, want := range []string{"max_frame_bytes: 10B is outside", "tls.cert_file, tls.key_file: both are required", "tls.client_ca_file:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("source: want %q in %v", want, err)
		}
	}
}

// TLS with client certificates: a sender without a certificate signed by
// the receiver's client CA is refused; one with it delivers.
func TestTLSWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t, dir, "ca")
	writeLeaf(t, dir, "server", ca, caKey, true)
	writeLeaf(t, dir, "client", ca, caKey, false)
	cfg := testSourceConfig()
	cfg.TLS = tlsconf.Server{Enable: true, CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		ClientCAFile: filepath.Join(dir, "ca.pem")}
	r := newReceiver(t, cfg)

	anon := newTestSink(t, r.cfg.Listen, func(c *SinkConfig) {
		c.TLS.Enable, c.TLS.CAFile = true, filepath.Join(dir, "ca.pem")
	})
	if _, err := anon.Write(context.Background(), batchOf("anon"), pipeline.Fence{Stream: "s", Offset: 1}); err == nil {
		t.Fatal("a sender without a client certificate was accepted")
	}
	s := newTestSink(t, r.cfg.Listen, func(c *SinkConfig) {
		c.TLS.Enable, c.TLS.CAFile = true, filepath.Join(dir, "ca.pem")
		c.TLS.CertFile, c.TLS.KeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	})
	if _, err := s.Write(context.Background(), batchOf("mtls"), pipeline.Fence{Stream: "s", Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.stored(), ","); got != "mtls" {
		t.Errorf("stored %q", got)
	}
}

func newCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func writeLeaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", kd)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPositionRoundTrip(t *testing.T) {
	in := map[string]uint64{"a/c/0": 5, "b/c/1": 1 << 40}
	out, err := decodePosition(encodePosition(in))
	if err != nil || fmt.Sprint(out) != fmt.Sprint(in) {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := decodePosition([]byte{2, 0}); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("bad version: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameBatch, append(appendFenceHead(nil, "s", 1), batchOf("x")...)))
	f.Add(appendFrame(nil, frameAck, appendFenceHead(nil, "id/c/0", 99)))
	f.Add(appendFrame(nil, frameRefuse, []byte("no")))
	f.Add([]byte("SLFW\x01\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(strings.NewReader(string(b)))
		for {
			fr, _, err := readFrame(r, 1<<16, nil)
			if err != nil {
				return
			}
			switch fr.typ {
			case frameBatch:
				if _, _, ev, n, err := decodeBatchPayload(fr.payload); err == nil {
					if c, _ := event.Count(ev); c != n {
						t.Fatalf("count %d vs %d", c, n)
					}
				}
			case frameAck:
				decodeAckPayload(fr.payload)
			}
		}
	})
}

func FuzzDecodePosition(f *testing.F) {
	f.Add(encodePosition(map[string]uint64{"a": 1, "b/c/0": 1 << 50}))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodePosition(b)
		if err != nil {
			return
		}
		again, err := decodePosition(encodePosition(m))
		if err != nil || len(again) != len(m) {
			t.Fatalf("round trip: %v %v", again, err)
		}
	})
}

// The sink writes a frame as pieces (writev); they must be the frame.
func TestBatchFramePartsAreOneFrame(t *testing.T) {
	batch := batchOf("a", "b")
	head, trail := batchFrameParts(nil, "id/s", 42, batch)
	got := string(head) + string(batch) + string(trail)
	want := string(appendFrame(nil, frameBatch, append(appendFenceHead(nil, "id/s", 42), batch...)))
	if got != want {
		t.Fatalf("parts %x\nframe %x", got, want)
	}
}
