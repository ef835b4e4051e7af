package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/internal/instanceid"
)

var _ pipeline.Source = (*Source)(nil)

// Source is the kafka source: one member of a consumer group.
//
// Lifecycle: NewSource, Open once, Read and Ack from one goroutine, Close
// (safe without Open, safe twice). Open does not wait for Kafka: the group
// is joined in the background, retrying with backoff while the cluster
// cannot be reached.
//
// Positions: each batch's position holds the next offset of every
// partition this member has consumed (and the duplicate marks, see the
// package doc). On Open(resume), messages below the resumed offset of their
// partition are skipped, whatever the group commit says; a partition with
// no resumed offset starts at the group commit. Ack commits the acked
// offsets to the group. A partition being revoked is held until every
// message forwarded from it has been acked, so the next owner starts
// exactly after this member's durable output.
type Source struct {
	cfg     SourceConfig
	dataDir string
	log     *slog.Logger

	msgs chan *sarama.ConsumerMessage
	// unreachable carries the first failed connection attempt when the
	// cluster has not been reached since Open: Read returns it, so the
	// pipeline marks the stage failing (/healthz not ready) and restarts
	// it with backoff, logging one line per attempt.
	unreachable chan error
	closing     chan struct{}
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	// Read/Ack goroutine only.
	pos       position
	builder   event.Builder
	posBuf    []byte
	pending   *sarama.ConsumerMessage   // taken from msgs but over the batch's byte limit
	batch     []*sarama.ConsumerMessage // the messages of the batch being read
	ledger    *claimLedger              // nil without [claims]
	sc        *sarama.Config            // for the recovery's own client
	recovered bool                      // this member's pending claims are back in its output
	ranges    []claimRange
	owned     map[topicPart]int64 // per partition of the batch, the first offset this member owns

	mu        sync.Mutex
	cond      *sync.Cond
	sess      sarama.ConsumerGroupSession
	forwarded map[topicPart]int64 // next offset after the last message handed to Read
	acked     map[topicPart]int64 // next offset acked (durable downstream)
	claimed   map[topicPart]bool  // every partition ever claimed (tests)
	client    sarama.Client       // for reading commit metadata
	version   sarama.KafkaVersion
	inMarks   map[markKey]mark // marks from commit metadata, for Read to merge
	hasMarks  atomic.Bool
	opened    bool
	closed    bool
}

// NewSource returns a kafka source for cfg, which must be valid. dataDir
// is the stage's own directory, where the group instance id is kept when
// static membership is on and cfg.InstanceID is empty.
func NewSource(cfg SourceConfig, dataDir string, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StaticMembership && cfg.InstanceID == "" && dataDir == "" {
		return nil, errors.New("kafka: static_membership needs instance_id or a data directory to keep one in")
	}
	if cfg.Claims.Enabled() && cfg.InstanceID == "" && dataDir == "" {
		return nil, errors.New("kafka: claims need instance_id or a data directory to keep one in")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg, dataDir: dataDir, log: logger, forwarded: map[topicPart]int64{}, acked: map[topicPart]int64{},
		claimed: map[topicPart]bool{}, inMarks: map[markKey]mark{}, owned: map[topicPart]int64{}}
	s.cond = sync.NewCond(&s.mu)
	return s, nil
}

// Open decodes resume and starts joining the group.
func (s *Source) Open(ctx context.Context, resume []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened {
		return errors.New("kafka: Open called twice")
	}
	pos, err := decodePosition(resume)
	if err != nil {
		return err
	}
	sc, err := s.cfg.saramaConfig()
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	g := &sc.Consumer.Group
	g.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	g.Session.Timeout = s.cfg.SessionTimeout.D
	g.Heartbeat.Interval = s.cfg.HeartbeatInterval.D
	g.Rebalance.Timeout = s.cfg.RebalanceTimeout.D
	sc.Consumer.MaxWaitTime = s.cfg.MaxWait.D
	sc.Consumer.Offsets.AutoCommit.Enable = false // offsets are committed by Ack only
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if s.cfg.StartAt == "latest" {
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	sc.Consumer.Return.Errors = true
	id := s.cfg.InstanceID
	if id == "" && (s.cfg.StaticMembership || s.cfg.Claims.Enabled()) {
		if id, err = instanceid.Load(s.dataDir); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	if s.cfg.StaticMembership {
		g.InstanceId = "sluice-" + id
		if !sc.Version.IsAtLeast(sarama.V2_3_0_0) {
			sc.Version = sarama.V2_3_0_0
		}
	}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if s.cfg.Claims.Enabled() {
		if s.ledger, err = newClaimLedger(s.cfg.Claims, s.cfg.Group, id); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	s.sc = sc
	s.pos = pos
	for tp, off := range pos.Next {
		s.acked[tp] = off
	}
	s.msgs = make(chan *sarama.ConsumerMessage, 1024)
	s.unreachable = make(chan error, 1)
	s.closing = make(chan struct{})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.opened = true
	s.wg.Add(1)
	go s.run(runCtx, sc)
	return nil
}

// run joins the group and consumes until Close, reconnecting with backoff.
func (s *Source) run(ctx context.Context, sc *sarama.Config) {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	connected := false
	for ctx.Err() == nil {
		client, err := sarama.NewClient(s.cfg.Brokers, sc)
		var group sarama.ConsumerGroup
		if err == nil {
			if group, err = sarama.NewConsumerGroupFromClient(s.cfg.Group, client); err != nil {
				client.Close()
			}
		}
		if err != nil && !connected {
			select {
			case s.unreachable <- fmt.Errorf("kafka: cannot reach the cluster at %s: %w", strings.Join(s.cfg.Brokers, ", "), err):
			default:
			}
			return // Read hands the error to the pipeline, which restarts the source
		}
		if err != nil {
			s.log.Warn("kafka source: cannot reach the cluster; retrying", "brokers", s.cfg.Brokers, "backoff", backoff, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		connected = true
		s.mu.Lock()
		s.client = client
		s.version = sc.Version
		s.mu.Unlock()
		done := make(chan struct{})
		go func() {
			for {
				select {
				case err, ok := <-group.Errors():
					if !ok {
						return
					}
					s.log.Warn("kafka source: group error", "group", s.cfg.Group, "err", err)
				case <-done:
					return
				}
			}
		}()
		for ctx.Err() == nil {
			if err := group.Consume(ctx, s.cfg.Topics, handler{s}); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					break
				}
				s.log.Warn("kafka source: consume", "group", s.cfg.Group, "err", err)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
			}
		}
		group.Close()
		client.Close()
		close(done)
	}
}

type handler struct{ s *Source }

func (h handler) Setup(sess sarama.ConsumerGroupSession) error {
	h.s.mu.Lock()
	h.s.sess = sess
	h.s.mu.Unlock()
	return nil
}

func (h handler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.s.mu.Lock()
	if h.s.sess == sess {
		h.s.sess = nil
	}
	h.s.mu.Unlock()
	return nil
}

// ConsumeClaim forwards one partition's messages to Read. When the claim
// ends (revoked, session over), it waits until everything it forwarded has
// been acked — committed to the group — before letting the partition go.
func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	s := h.s
	tp := topicPart{claim.Topic(), claim.Partition()}
	s.mu.Lock()
	s.claimed[tp] = true
	s.mu.Unlock()
	s.log.Info("kafka source: partition assigned", "topic", tp.Topic, "partition", tp.Partition, "from", claim.InitialOffset())
	defer s.log.Info("kafka source: partition released", "topic", tp.Topic, "partition", tp.Partition)
	// The duplicate marks of this partition travel with its group commit
	// (as the commit's metadata): a partition that was another member's
	// must not let through copies whose originals that member passed on.
	if err := s.loadMarks(tp); err != nil {
		s.log.Warn("kafka source: reading the commit metadata", "topic", tp.Topic, "partition", tp.Partition, "err", err)
		return err // the session ends and the claim is retried
	}
loop:
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				break loop
			}
			select {
			case s.msgs <- m:
				s.mu.Lock()
				s.forwarded[tp] = m.Offset + 1
				s.mu.Unlock()
			case <-sess.Context().Done():
				break loop
			case <-s.closing:
				return nil
			}
		case <-sess.Context().Done():
			break loop
		case <-s.closing:
			return nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && s.acked[tp] < s.forwarded[tp] {
		s.cond.Wait()
	}
	delete(s.forwarded, tp)
	return nil
}

// Read returns up to max events, waiting for the first one. With the
// claim ledger, the first Read after Open returns this member's claimed
// but not yet durable ranges (see recover), and every later batch is
// claimed before it is returned, so its durable append follows its claim.
func (s *Source) Read(ctx context.Context, max int) (pipeline.SourceBatch, error) {
	if !s.opened {
		return pipeline.SourceBatch{}, errors.New("kafka: Read without Open")
	}
	s.builder.Reset()
	changed := false
	if s.ledger != nil && !s.recovered {
		var err error
		if changed, err = s.recover(ctx); err != nil {
			return pipeline.SourceBatch{}, err
		}
		s.recovered = true
		if changed {
			return s.batchOut(), nil
		}
	}
	clear(s.batch)
	s.batch = s.batch[:0]
	var bytes int64
	take := func(m *sarama.ConsumerMessage) bool {
		if len(s.batch) > 0 && bytes+int64(len(m.Value)) > s.cfg.MaxBatchBytes.Bytes {
			s.pending = m
			return false
		}
		s.batch = append(s.batch, m)
		bytes += int64(len(m.Value))
		return true
	}
	if m := s.pending; m != nil {
		s.pending = nil
		take(m)
	} else {
		select {
		case m := <-s.msgs:
			take(m)
		case err := <-s.unreachable:
			return pipeline.SourceBatch{}, err
		case <-ctx.Done():
			return pipeline.SourceBatch{}, ctx.Err()
		}
	}
fill:
	for len(s.batch) < max && s.pending == nil {
		select {
		case m := <-s.msgs:
			take(m)
		default:
			break fill
		}
	}
	owned := map[topicPart]int64(nil)
	if s.ledger != nil {
		var err error
		if owned, err = s.claimBatch(ctx); err != nil {
			return pipeline.SourceBatch{}, err
		}
	}
	for _, m := range s.batch {
		s.add(m, &changed, owned)
	}
	if !changed {
		return pipeline.SourceBatch{}, nil
	}
	return s.batchOut(), nil
}

func (s *Source) batchOut() pipeline.SourceBatch {
	s.posBuf = s.pos.encode(s.posBuf[:0])
	var events []byte
	if s.builder.Len() > 0 {
		events = s.builder.Bytes()
	}
	return pipeline.SourceBatch{Events: events, Position: s.posBuf}
}

// claimBatch claims the batch's new offsets of every partition in one
// ledger call and returns, per partition, the first offset this member
// owns. Redis unreachable → retry with backoff until ctx is done (the
// batch waits: backpressure, nothing passed on unclaimed).
func (s *Source) claimBatch(ctx context.Context) (map[topicPart]int64, error) {
	s.ranges = s.ranges[:0]
	clear(s.owned)
	for _, m := range s.batch {
		tp := topicPart{m.Topic, m.Partition}
		if m.Offset < s.pos.Next[tp] {
			continue // passed on before; no claim needed
		}
		found := false
		for i := range s.ranges {
			if s.ranges[i].tp == tp {
				s.ranges[i].To, found = m.Offset+1, true
				break
			}
		}
		if !found {
			s.ranges = append(s.ranges, claimRange{tp: tp, From: m.Offset, To: m.Offset + 1})
		}
	}
	if len(s.ranges) == 0 {
		return s.owned, nil
	}
	backoff := 100 * time.Millisecond
	for {
		// Not cut short by a drain: once the messages are taken, a claim
		// that reached Redis must come back with its batch, so that the
		// batch is appended before a clean stop.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		los, err := s.ledger.claim(cctx, s.ranges)
		cancel()
		if err == nil {
			for i, r := range s.ranges {
				s.owned[r.tp] = los[i]
				if los[i] > r.From {
					s.log.Info("kafka source: skipping offsets another member claimed", "topic", r.tp.Topic, "partition", r.tp.Partition,
						"from", r.From, "to", min(los[i], r.To))
				}
			}
			return s.owned, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Warn("kafka source: claim ledger unreachable; the batch waits, retrying", "addrs", s.cfg.Claims.Addrs, "backoff", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// recover puts back into this member's output the ranges it claimed in
// the ledger but never made durable (killed between its claim and its
// append): nobody else will pass them on, since the claim is theirs. They
// are read straight from the partitions, outside the group, whoever owns
// the partitions now. Retries with backoff until ctx is done.
func (s *Source) recover(ctx context.Context) (bool, error) {
	backoff := 100 * time.Millisecond
	for {
		changed, err := s.recoverOnce(ctx)
		if err == nil {
			return changed, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		s.log.Warn("kafka source: recovering claimed ranges; retrying", "backoff", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false, ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Source) recoverOnce(ctx context.Context) (bool, error) {
	client, err := sarama.NewClient(s.cfg.Brokers, s.sc)
	if err != nil {
		return false, err
	}
	defer client.Close()
	var tps []topicPart
	for _, topic := range s.cfg.Topics {
		parts, err := client.Partitions(topic)
		if err != nil {
			return false, fmt.Errorf("partitions of %s: %w", topic, err)
		}
		for _, p := range parts {
			tps = append(tps, topicPart{topic, p})
		}
	}
	pend, err := s.ledger.pending(ctx, tps)
	if err != nil {
		return false, err
	}
	var todo []claimRange
	for _, r := range pend {
		if r.To > s.pos.Next[r.tp] {
			r.From = max(r.From, s.pos.Next[r.tp])
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		return false, nil
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return false, err
	}
	defer consumer.Close()
	var msgs []*sarama.ConsumerMessage
	for _, r := range todo {
		pc, err := consumer.ConsumePartition(r.tp.Topic, r.tp.Partition, r.From)
		if err != nil {
			return false, fmt.Errorf("reading %s/%d from %d: %w", r.tp.Topic, r.tp.Partition, r.From, err)
		}
	read:
		for {
			select {
			case m := <-pc.Messages():
				if m.Offset < r.To {
					msgs = append(msgs, m)
				}
				if m.Offset+1 >= r.To {
					break read
				}
			case err := <-pc.Errors():
				pc.Close()
				return false, fmt.Errorf("reading %s/%d: %w", r.tp.Topic, r.tp.Partition, err)
			case <-ctx.Done():
				pc.Close()
				return false, ctx.Err()
			}
		}
		pc.Close()
	}
	changed := false
	for _, m := range msgs {
		s.add(m, &changed, nil)
	}
	for _, r := range todo {
		if s.pos.Next[r.tp] < r.To {
			s.pos.Next[r.tp], changed = r.To, true
		}
		s.log.Info("kafka source: recovered a claimed range that was not durable", "topic", r.tp.Topic, "partition", r.tp.Partition, "from", r.From, "to", r.To)
	}
	return changed, nil
}

// add turns one message into an event unless this member passed it on (or
// past it) already, it is a re-sent copy, or another member claimed it
// (owned: the first offset per partition that is ours; nil = all). Either
// way the partition's next offset advances.
func (s *Source) add(m *sarama.ConsumerMessage, changed *bool, owned map[topicPart]int64) {
	if s.hasMarks.Load() {
		s.mu.Lock()
		for k, v := range s.inMarks {
			var merged mark
			if last, ok := s.pos.Marks[k]; ok {
				merged = last.merge(v)
			} else {
				merged = mark{}.merge(v)
			}
			s.pos.Marks[k] = &merged
		}
		clear(s.inMarks)
		s.hasMarks.Store(false)
		s.mu.Unlock()
	}
	tp := topicPart{m.Topic, m.Partition}
	if m.Offset < s.pos.Next[tp] {
		// In our output already (before a restart, or before the
		// partition went away and came back with an older commit).
		return
	}
	s.pos.Next[tp] = m.Offset + 1
	*changed = true
	var producer []byte
	var sq seq
	var hasSeq bool
	e := event.Event{Key: m.Key, Body: m.Value}
	if !m.Timestamp.IsZero() {
		e.Time = m.Timestamp.UnixNano()
	}
	for _, h := range m.Headers {
		switch string(h.Key) {
		case HeaderProducer:
			producer = h.Value
		case HeaderSeq:
			sq, hasSeq = parseSeq(h.Value)
		default:
			e.Headers = append(e.Headers, event.Header{Name: string(h.Key), Value: string(h.Value)})
		}
	}
	if producer != nil && hasSeq {
		k := markKey{topicPart: tp, Producer: string(producer)}
		mk := s.pos.Marks[k]
		if mk == nil {
			mk = &mark{}
			s.pos.Marks[k] = mk
		} else if mk.copyOf(sq) {
			return // a copy the producer sent again
		}
		mk.see(sq)
	}
	if lo, ok := owned[tp]; ok && m.Offset < lo {
		// Claimed by another member, which passes it on (its marks still
		// count: a later copy of it must be dropped here too).
		return
	}
	if e.Key == nil || len(e.Key) == 0 {
		e.Key = nil
	}
	s.builder.Add(&e)
}

// Ack commits the offsets of pos to the group and releases partitions
// waiting for them.
func (s *Source) Ack(ctx context.Context, pos []byte) error {
	p, err := decodePosition(pos)
	if err != nil {
		return err
	}
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess != nil {
		byPart := map[topicPart][]byte{}
		for k, v := range p.Marks {
			byPart[k.topicPart] = appendMark(byPart[k.topicPart], k.Producer, *v)
		}
		for tp, off := range p.Next {
			sess.MarkOffset(tp.Topic, tp.Partition, off, string(byPart[tp]))
		}
		sess.Commit() // synchronous: the offsets are on the broker after it
	}
	// Only now may a revoked partition go: its next owner starts at the
	// commit just made.
	s.mu.Lock()
	for tp, off := range p.Next {
		if off > s.acked[tp] {
			s.acked[tp] = off
		}
	}
	s.mu.Unlock()
	s.cond.Broadcast()
	return nil
}

// assigned lists the partitions of the current session, for tests. What
// it returns counts as claimed for everClaimed too: sarama's cooperative
// session changes its claims before the new partitions' ConsumeClaim
// goroutines run, and the two views must agree.
func (s *Source) assigned() map[string][]int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	claims := s.sess.Claims()
	for topic, parts := range claims {
		for _, p := range parts {
			s.claimed[topicPart{topic, p}] = true
		}
	}
	return claims
}

// everClaimed lists every partition this source has ever been given, for
// tests.
func (s *Source) everClaimed() []topicPart {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []topicPart
	for tp := range s.claimed {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

// Close leaves the group. Safe without Open and safe twice.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.opened || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.cond.Broadcast()
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if s.ledger != nil {
		s.ledger.close()
	}
	return nil
}

// loadMarks reads the group commit metadata of tp and queues its marks
// for Read.
func (s *Source) loadMarks(tp topicPart) error {
	s.mu.Lock()
	client, version := s.client, s.version
	s.mu.Unlock()
	coord, err := client.Coordinator(s.cfg.Group)
	if err != nil {
		return err
	}
	resp, err := coord.FetchOffset(sarama.NewOffsetFetchRequest(version, s.cfg.Group, map[string][]int32{tp.Topic: {tp.Partition}}))
	if err != nil {
		return err
	}
	b := resp.GetBlock(tp.Topic, tp.Partition)
	if b == nil {
		return nil
	}
	if b.Err != sarama.ErrNoError {
		return b.Err
	}
	marks, err := decodeMarks([]byte(b.Metadata))
	if err != nil {
		// Metadata written by another client: no marks to learn.
		s.log.Warn("kafka source: commit metadata is not sluice marks", "topic", tp.Topic, "partition", tp.Partition, "err", err)
		return nil
	}
	s.mu.Lock()
	for producer, v := range marks {
		s.inMarks[markKey{tp, producer}] = v
	}
	s.hasMarks.Store(len(s.inMarks) > 0)
	s.mu.Unlock()
	return nil
}
