package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/sluicehq/sluice/agent/pipeline"
)

var _ pipeline.Source = (*Source)(nil)

// Source is the forward source: it accepts forward sinks on a TCP (or TLS)
// listener and hands their batches to the runner, one received batch per
// Read. It implements pipeline.Source.
//
// Exactly once across the hop: each batch carries its sender's id and its
// offset in the sender's channel. The source keeps, per sender, the offset
// of the last batch it handed on; that table is the Position of every batch,
// so the runner stores it with the batch in one durable append and gives it
// back to Open after a crash. A batch at or below its sender's offset is a
// resend: it is acknowledged (once the original is durable) and not stored.
//
// Acknowledgements are sent from Ack, which the runner calls only after the
// append is durable. Backpressure: while the output channel is full the
// runner is not calling Read, connection handlers wait to hand over their
// batch and stop reading their sockets, and TCP flow control stalls the
// senders.
//
// Lifecycle: New, Open once (it starts listening), Read and Ack from one
// goroutine, Close. Close is safe without Open and safe twice.
type Source struct {
	cfg SourceConfig
	log *slog.Logger
	tls *tls.Config

	ln       net.Listener
	incoming chan *received // handlers → Read; unbuffered
	closed   chan struct{}
	closeMu  sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	handed   map[string]uint64 // per sender: last offset returned by Read
	durable  map[string]uint64 // per sender: last offset known durable
	durableC chan struct{}     // closed and replaced whenever durable grows
	inflight []*received       // returned by Read, not yet acknowledged
	lastRead *received         // its events stay valid until the next Read
	bufs     sync.Pool         // *[]byte frame buffers, reused once a batch is stored
	conns    map[*peer]struct{}
}

// received is one batch frame taken off a connection.
type received struct {
	buf    *[]byte // holds events; back to the pool after the next Read
	from   *peer
	sender string
	offset uint64
	events []byte
	count  int
}

// peer is one sender connection. Writes (acks, refusals) come from the
// handler and from Ack, so they are serialised.
type peer struct {
	conn    net.Conn
	writeMu sync.Mutex
	buf     []byte
}

func (p *peer) send(typ byte, payload []byte) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.buf = appendFrame(p.buf[:0], typ, payload)
	_, err := p.conn.Write(p.buf)
	return err
}

func (p *peer) ack(sender string, offset uint64) {
	// A failed ack is the sender's timeout: it sends the batch again and
	// the fence answers it.
	p.send(frameAck, appendFenceHead(nil, sender, offset))
}

// NewSource returns a forward source for cfg, which must be valid. logger may
// be nil.
func NewSource(cfg SourceConfig, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.TLS.Build()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, log: logger, tls: tc, incoming: make(chan *received), closed: make(chan struct{}),
		durableC: make(chan struct{}), conns: map[*peer]struct{}{}}, nil
}

// Addr is the listening address once Open has returned (useful with port 0).
func (s *Source) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Open restores the fence table from resume and starts listening.
func (s *Source) Open(ctx context.Context, resume []byte) error {
	if s.ln != nil {
		return errors.New("forward source: Open called twice")
	}
	t, err := decodePosition(resume)
	if err != nil {
		return err
	}
	s.handed = t
	s.durable = make(map[string]uint64, len(t))
	for k, v := range t {
		s.durable[k] = v
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("forward source: listen on %s: %w", s.cfg.Listen, err)
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	s.log.Info("forward source listening", "addr", ln.Addr().String(), "tls", s.tls != nil, "senders", len(t))
	s.wg.Add(1)
	go s.accept()
	return nil
}

func (s *Source) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("forward source: accept failed", "err", err)
			return
		}
		p := &peer{conn: c}
		s.mu.Lock()
		select {
		case <-s.closed:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[p] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(p)
	}
}

// serve reads frames from one sender until it hangs up or sends garbage.
func (s *Source) serve(p *peer) {
	defer s.wg.Done()
	defer func() {
		p.conn.Close()
		s.mu.Lock()
		delete(s.conns, p)
		s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(p.conn, 64<<10)
	remote := p.conn.RemoteAddr().String()
	for {
		bp := s.getBuf()
		f, buf, err := readFrame(r, int(s.cfg.MaxFrameBytes.Bytes), *bp)
		*bp = buf
		if err != nil {
			if errors.Is(err, ErrBadFrame) {
				s.refuse(p, remote, err)
			}
			return
		}
		if f.typ != frameBatch {
			s.refuse(p, remote, fmt.Errorf("%w: frame type %d from a sender (only batches are sent to a receiver)", ErrBadFrame, f.typ))
			return
		}
		sender, offset, events, count, err := decodeBatchPayload(f.payload)
		if err != nil {
			s.refuse(p, remote, err)
			return
		}
		rb := &received{buf: bp, from: p, sender: sender, offset: offset, events: events, count: count}
		s.mu.Lock()
		dup := offset <= s.handed[sender] && s.seen(sender)
		s.mu.Unlock()
		if dup {
			s.bufs.Put(bp)
			s.log.Info("forward source: batch already stored (a resend); acknowledging it without storing it again",
				"sender", sender, "offset", offset, "remote", remote)
			if !s.ackWhenDurable(rb) {
				return
			}
			continue
		}
		select {
		case s.incoming <- rb:
		case <-s.closed:
			return
		}
	}
}

func (s *Source) getBuf() *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok {
		return bp
	}
	return new([]byte)
}

func (s *Source) seen(sender string) bool { _, ok := s.handed[sender]; return ok }

func (s *Source) refuse(p *peer, remote string, err error) {
	s.log.Warn("forward source: refusing a sender", "remote", remote, "err", err)
	p.send(frameRefuse, []byte(err.Error()))
}

// ackWhenDurable acknowledges a resent batch once the original copy is
// durable (it may still be between Read and the append). False: closing.
func (s *Source) ackWhenDurable(rb *received) bool {
	for {
		s.mu.Lock()
		done := rb.offset <= s.durable[rb.sender] && s.seenDurable(rb.sender)
		wait := s.durableC
		s.mu.Unlock()
		if done {
			rb.from.ack(rb.sender, rb.offset)
			return true
		}
		select {
		case <-wait:
		case <-s.closed:
			return false
		}
	}
}

func (s *Source) seenDurable(sender string) bool { _, ok := s.durable[sender]; return ok }

// Read returns the next received batch whole (a sender's batch is one
// channel record on both sides, so max is not applied to it) with the fence
// table as its position.
func (s *Source) Read(ctx context.Context, max int) (pipeline.SourceBatch, error) {
	if s.lastRead != nil {
		// The runner has appended the previous batch: its buffer is free.
		s.bufs.Put(s.lastRead.buf)
		s.lastRead = nil
	}
	for {
		var rb *received
		select {
		case rb = <-s.incoming:
		case <-ctx.Done():
			return pipeline.SourceBatch{}, ctx.Err()
		case <-s.closed:
			return pipeline.SourceBatch{}, errors.New("forward source: closed")
		}
		s.mu.Lock()
		if rb.offset <= s.handed[rb.sender] && s.seen(rb.sender) {
			// The same batch came in on two connections (a sender that
			// timed out and reconnected): the second one only needs its ack.
			s.mu.Unlock()
			s.log.Info("forward source: batch already stored (a resend); acknowledging it without storing it again",
				"sender", rb.sender, "offset", rb.offset)
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.ackWhenDurable(rb) }()
			continue
		}
		s.handed[rb.sender] = rb.offset
		s.inflight = append(s.inflight, rb)
		s.lastRead = rb
		pos := encodePosition(s.handed)
		s.mu.Unlock()
		return pipeline.SourceBatch{Events: rb.events, Position: pos}, nil
	}
}

// Ack is called by the runner once every batch up to pos is durable in the
// output channel: only now are those batches acknowledged to their senders.
func (s *Source) Ack(ctx context.Context, pos []byte) error {
	t, err := decodePosition(pos)
	if err != nil {
		return err
	}
	s.mu.Lock()
	for id, off := range t {
		if cur, ok := s.durable[id]; !ok || off > cur {
			s.durable[id] = off
		}
	}
	var ready []*received
	keep := s.inflight[:0]
	for _, rb := range s.inflight {
		if rb.offset <= s.durable[rb.sender] {
			ready = append(ready, rb)
		} else {
			keep = append(keep, rb)
		}
	}
	s.inflight = keep
	close(s.durableC)
	s.durableC = make(chan struct{})
	s.mu.Unlock()
	for _, rb := range ready {
		rb.from.ack(rb.sender, rb.offset)
	}
	return nil
}

// Close stops listening, hangs up on every sender and waits for the
// connection handlers. Unacknowledged batches are resent by their senders
// to whoever receives next.
func (s *Source) Close(ctx context.Context) error {
	s.closeMu.Do(func() {
		close(s.closed)
		if s.ln != nil {
			s.ln.Close()
		}
		s.mu.Lock()
		for p := range s.conns {
			p.conn.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}
