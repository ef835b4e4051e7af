package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/instanceid"
)

var _ pipeline.Sink = (*Sink)(nil)

// Sink is the forward sink: it sends each batch to a forward source and
// returns from Write once the receiver has acknowledged it, which the
// receiver does only after the batch is durable in its channel. It
// implements pipeline.Sink.
//
// One batch is in flight at a time (stop and wait): Write is called once per
// channel record and must not return before the ack, so pipelining would buy
// nothing inside one stream.
//
// The sender id is the instance id (stable across restarts, kept in the
// stage's data directory) plus the fence's stream, and the batch is fenced
// at the fence's offset, so a resend after a lost ack, a timeout or a crash
// of either side is stored once.
//
// Lifecycle: New, Open once, Write from one goroutine, Close. Close is safe
// without Open and safe twice.
type Sink struct {
	cfg     SinkConfig
	dataDir string
	log     *slog.Logger
	tls     *tls.Config

	id   string
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
	rbuf []byte
}

// NotDeliveredError is returned by Write when the batch certainly did not
// reach the receiver (it could not connect, or the frame was not fully
// written), so it may be sent elsewhere without risk of a duplicate. Any
// other error from Write leaves the batch in doubt. Sink groups tell the two
// apart through the NotDelivered method.
type NotDeliveredError struct{ Err error }

func (e *NotDeliveredError) Error() string      { return e.Err.Error() }
func (e *NotDeliveredError) Unwrap() error      { return e.Err }
func (e *NotDeliveredError) NotDelivered() bool { return true }

// NewSink returns a forward sink for cfg, which must be valid. dataDir holds
// the instance id when cfg.InstanceID is empty. logger may be nil.
func NewSink(cfg SinkConfig, dataDir string, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.TLS.Build()
	if err != nil {
		return nil, err
	}
	if tc != nil && tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(cfg.Address)
		tc.ServerName = host
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg, dataDir: dataDir, log: logger, tls: tc}, nil
}

// Open loads (or creates) the instance id. It does not connect: a receiver
// that is down makes Writes fail, not the agent's start.
func (s *Sink) Open(ctx context.Context) error {
	if s.id != "" {
		return errors.New("forward sink: Open called twice")
	}
	s.id = s.cfg.InstanceID
	if s.id == "" {
		id, err := instanceid.Load(s.dataDir)
		if err != nil {
			return fmt.Errorf("forward sink: %w", err)
		}
		s.id = id
	}
	return nil
}

// SenderID is the id the receiver fences batches of stream by.
func (s *Sink) SenderID(stream string) string { return s.id + "/" + stream }

func (s *Sink) connect(ctx context.Context) error {
	if s.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout.D}
	var c net.Conn
	var err error
	if s.tls != nil {
		td := tls.Dialer{NetDialer: &d, Config: s.tls}
		c, err = td.DialContext(ctx, "tcp", s.cfg.Address)
	} else {
		c, err = d.DialContext(ctx, "tcp", s.cfg.Address)
	}
	if err != nil {
		return &NotDeliveredError{fmt.Errorf("forward sink: connect to %s: %w", s.cfg.Address, err)}
	}
	s.conn, s.r = c, bufio.NewReader(c)
	return nil
}

func (s *Sink) hangUp() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.r = nil, nil
	}
}

// Write sends batch fenced at (sender id, fence.Offset) and waits for its
// acknowledgement. An error of type *NotDeliveredError means the receiver
// cannot have it; any other error leaves it in doubt, and sending it again
// (to the same receiver) is what resolves it.
func (s *Sink) Write(ctx context.Context, batch []byte, fence pipeline.Fence) ([]pipeline.Reject, error) {
	if s.id == "" {
		return nil, errors.New("forward sink: Write without Open")
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	sender := s.SenderID(fence.Stream)
	head, trail := batchFrameParts(s.buf, sender, fence.Offset, batch)
	s.buf = head
	size := int64(len(head) + len(batch) + len(trail))
	deadline := time.Now().Add(s.cfg.AckTimeout.D)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) })
	defer stop()
	bufs := net.Buffers{head, batch, trail}
	if n, err := bufs.WriteTo(s.conn); err != nil {
		s.hangUp()
		err = fmt.Errorf("forward sink: send to %s: %w", s.cfg.Address, err)
		if n < size {
			// The frame is incomplete on the wire; the receiver drops it.
			return nil, &NotDeliveredError{err}
		}
		return nil, err
	}
	{
		f, rbuf, err := readFrame(s.r, maxSenderLen+64<<10, s.rbuf)
		s.rbuf = rbuf
		if err != nil {
			s.hangUp()
			return nil, fmt.Errorf("forward sink: no acknowledgement from %s for offset %d (in doubt; it will be sent again): %w", s.cfg.Address, fence.Offset, err)
		}
		switch f.typ {
		case frameAck:
			id, off, err := decodeAckPayload(f.payload)
			if err != nil {
				s.hangUp()
				return nil, fmt.Errorf("forward sink: from %s: %w", s.cfg.Address, err)
			}
			if id != sender || off != fence.Offset {
				// Cannot happen on a connection carrying one batch at a
				// time; hang up rather than guess.
				s.hangUp()
				return nil, fmt.Errorf("forward sink: %s acknowledged %s@%d while %s@%d was in flight", s.cfg.Address, id, off, sender, fence.Offset)
			}
			return nil, nil
		case frameRefuse:
			s.hangUp()
			return nil, &NotDeliveredError{fmt.Errorf("forward sink: %s refused the batch at offset %d: %s", s.cfg.Address, fence.Offset, f.payload)}
		default:
			s.hangUp()
			return nil, fmt.Errorf("forward sink: %s sent frame type %d", s.cfg.Address, f.typ)
		}
	}
}

// Close hangs up. It is safe without Open and safe twice.
func (s *Sink) Close(ctx context.Context) error {
	s.hangUp()
	return nil
}
