package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/instanceid"
)

var _ pipeline.Sink = (*Sink)(nil)

// Sink is the kafka sink.
//
// Lifecycle: NewSink, Open once, Write from one goroutine, Close. Close is
// safe without Open and safe twice. Open does not need Kafka: the producer
// is created by the first Write, and while the cluster cannot be reached
// Write returns an error, which the runner retries with backoff.
type Sink struct {
	cfg      SinkConfig
	dataDir  string
	log      *slog.Logger
	sc       *sarama.Config
	id       string
	client   sarama.Client // metadata (partition counts) and the producers' connections
	producer sarama.AsyncProducer
	mu       sync.Mutex // guards client and producer against Close from another goroutine
	hash     sarama.Partitioner
	closing  sync.WaitGroup // discarded producers still closing (they use client)
}

// msgMeta travels with each message through the producer.
type msgMeta struct {
	index int
	batch uint64
}

// NewSink returns a kafka sink for cfg, which must be valid. dataDir is the
// stage's own directory (for the instance id when cfg.InstanceID is empty).
func NewSink(cfg SinkConfig, dataDir string, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.InstanceID == "" && dataDir == "" {
		return nil, errors.New("kafka: instance_id is empty and there is no data directory to keep one in")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg, dataDir: dataDir, log: logger}, nil
}

// Open checks the config and loads the instance id.
func (s *Sink) Open(ctx context.Context) error {
	if s.sc != nil {
		return errors.New("kafka: Open called twice")
	}
	sc, err := s.cfg.saramaConfig()
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	p := &sc.Producer
	p.RequiredAcks = sarama.WaitForAll
	p.Idempotent = true
	p.Retry.Max = s.cfg.Retries
	sc.Net.MaxOpenRequests = 1 // the idempotent producer needs it to keep order
	p.Return.Successes, p.Return.Errors = true, true
	p.Compression = compressions[s.cfg.Compression]
	p.MaxMessageBytes = int(s.cfg.MaxMessageBytes.Bytes)
	p.Flush.Bytes = int(s.cfg.FlushBytes.Bytes)
	p.Flush.MaxMessages = s.cfg.FlushMessages
	p.Flush.Messages = s.cfg.FlushMessages
	p.Flush.Frequency = s.cfg.Linger.D
	p.Timeout = s.cfg.Timeout.D
	// Write picks each message's partition itself (see partitionOf): it
	// numbers the messages of a batch per partition in the sequence header.
	p.Partitioner = sarama.NewManualPartitioner
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	s.id = s.cfg.InstanceID
	if s.id == "" {
		if s.id, err = instanceid.Load(s.dataDir); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	s.sc = sc
	s.hash = sarama.NewHashPartitioner(s.cfg.Topic)
	return nil
}

// Close flushes and closes the producer. Safe without Open and twice.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	p, c := s.producer, s.client
	s.producer, s.client = nil, nil
	s.mu.Unlock()
	var err error
	if p != nil {
		err = p.Close()
	}
	s.closing.Wait()
	if c != nil {
		c.Close()
	}
	return err
}

func (s *Sink) connect() (sarama.Client, sarama.AsyncProducer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		c, err := sarama.NewClient(s.cfg.Brokers, s.sc)
		if err != nil {
			return nil, nil, err
		}
		s.client = c
	}
	if s.producer != nil {
		return s.client, s.producer, nil
	}
	p, err := sarama.NewAsyncProducerFromClient(s.client)
	if err != nil {
		return nil, nil, err
	}
	s.producer = p
	return s.client, p, nil
}

// Write sends every event of batch and returns once Kafka acknowledged all
// of them. A message Kafka refuses for good (too large, not authorised) is
// a reject; any other failure fails the batch, to be sent again whole.
func (s *Sink) Write(ctx context.Context, batch []byte, fence pipeline.Fence) ([]pipeline.Reject, error) {
	if s.sc == nil {
		return nil, errors.New("kafka: Write without Open")
	}
	n, err := event.Count(batch)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	client, p, err := s.connect()
	if err != nil {
		return nil, fmt.Errorf("kafka: connect to %v: %w", s.cfg.Brokers, err)
	}
	parts, err := client.Partitions(s.cfg.Topic)
	if err == nil && len(parts) == 0 {
		err = errors.New("no partitions")
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: partitions of topic %s: %w", s.cfg.Topic, err)
	}
	nparts := int32(len(parts))
	// The sequence index of a message is its ordinal among the batch's
	// messages to the same partition, so the source sees each partition's
	// share of a batch as 0, 1, 2 … and can tell a message it has not seen
	// (a gap left by a failed request) from a copy.
	ordinal := make([]uint32, nparts)
	// The messages alias one private copy of the batch: if ctx ends while
	// some are still in the producer, the caller's buffer may be reused.
	own := append([]byte(nil), batch...)
	producer := []byte(s.id + ":" + fence.Stream)
	msgs := make([]*sarama.ProducerMessage, 0, n)
	// Sequence header values of the whole batch in one buffer, sized up
	// front so the slices taken from it stay valid.
	seqBuf := make([]byte, 0, n*(len(strconv.FormatUint(fence.Offset, 10))+12))
	err = event.Iterate(own, func(i int, e *event.Event) error {
		m := &sarama.ProducerMessage{Topic: s.cfg.Topic, Value: sarama.ByteEncoder(e.Body),
			Metadata: msgMeta{index: i, batch: fence.Offset}}
		if e.Key != nil {
			m.Key = sarama.ByteEncoder(e.Key)
		}
		part, err := s.partitionOf(m, fence.Offset, nparts)
		if err != nil {
			return err
		}
		m.Partition = part
		if e.Time != 0 {
			m.Timestamp = timeOf(e.Time)
		}
		hs := make([]sarama.RecordHeader, 0, len(e.Headers)+2)
		for _, h := range e.Headers {
			hs = append(hs, sarama.RecordHeader{Key: []byte(h.Name), Value: []byte(h.Value)})
		}
		start := len(seqBuf)
		seqBuf = strconv.AppendUint(seqBuf, fence.Offset, 10)
		seqBuf = append(seqBuf, '.')
		seqBuf = strconv.AppendUint(seqBuf, uint64(ordinal[part]), 10)
		ordinal[part]++
		hs = append(hs, sarama.RecordHeader{Key: headerProducerKey, Value: producer},
			sarama.RecordHeader{Key: headerSeqKey, Value: seqBuf[start:len(seqBuf):len(seqBuf)]})
		m.Headers = hs
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	var rejects []pipeline.Reject
	var retriable error
	sent, done := 0, 0
	for done < n {
		var in chan<- *sarama.ProducerMessage
		var next *sarama.ProducerMessage
		if sent < n {
			in, next = p.Input(), msgs[sent]
		}
		select {
		case in <- next:
			sent++
		case m := <-p.Successes():
			if meta, ok := m.Metadata.(msgMeta); ok && meta.batch == fence.Offset {
				done++
			}
		case pe := <-p.Errors():
			meta, ok := pe.Msg.Metadata.(msgMeta)
			if !ok || meta.batch != fence.Offset {
				continue // left over from a batch given up on
			}
			done++
			if permanent(pe.Err) {
				rejects = append(rejects, pipeline.Reject{Index: meta.index, Reason: "kafka refused the message: " + pe.Err.Error()})
			} else if retriable == nil {
				retriable = pe.Err
			}
		case <-ctx.Done():
			s.discard(p)
			return nil, ctx.Err()
		}
	}
	if retriable != nil {
		s.discard(p)
		return nil, fmt.Errorf("kafka: topic %s: %w", s.cfg.Topic, retriable)
	}
	return rejects, nil
}

// discard closes p in the background and makes the next Write start a new
// producer: after a failed batch the old one may hold messages still in
// flight or be stuck in an error state (an idempotent producer whose
// sequence broke). Copies it still delivers are dropped by the source.
func (s *Sink) discard(p sarama.AsyncProducer) {
	s.mu.Lock()
	if s.producer == p {
		s.producer = nil
	}
	s.mu.Unlock()
	s.closing.Add(1)
	go func() {
		defer s.closing.Done()
		p.Close()
	}()
}

// Header names as bytes, shared by every message (sarama only reads them).
var headerProducerKey, headerSeqKey = []byte(HeaderProducer), []byte(HeaderSeq)

// permanent reports errors that sending again cannot fix.
func permanent(err error) bool {
	var ce sarama.ConfigurationError
	if errors.As(err, &ce) { // the producer's own size check
		return true
	}
	for _, p := range []error{sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidMessageSize, sarama.ErrInvalidMessage,
		sarama.ErrTopicAuthorizationFailed, sarama.ErrClusterAuthorizationFailed, sarama.ErrInvalidRecord,
		sarama.ErrInvalidTopic} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

// partitionOf: a keyed message goes where sarama's hash partitioner puts
// it; a message without key goes to the partition chosen by its batch
// offset. Either way a re-sent message lands where the first copy did, with
// the same per-partition ordinal, so the source can recognise it.
func (s *Sink) partitionOf(m *sarama.ProducerMessage, batch uint64, n int32) (int32, error) {
	if m.Key != nil {
		return s.hash.Partition(m, n)
	}
	return int32(batch % uint64(n)), nil
}
