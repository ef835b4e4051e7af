package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/event"
)

// Headers the runner puts on dead-lettered events.
const (
	HeaderReason = "sluice.reason" // why the event was refused
	HeaderStage  = "sluice.stage"  // the stage that refused it
	HeaderOrigin = "sluice.origin" // input channel/partition@offset, when known
)

var emptyBatch = []byte{0, 0, 0, 0}

// deadLetter appends events to a dead-letter channel with reason and stage
// headers. inputPos makes the write part of the hop protocol: it names
// exactly the input the dead letters come from, so that a stage restarted
// after a crash can tell which dead letters are already written (see
// docs/adr/0004, "Dead letters and the hop protocol").
func deadLetter(ctx context.Context, dlq channel.Channel, producer, stage string, evs []event.Event, inputPos []byte) error {
	if dlq == nil || len(evs) == 0 {
		return nil
	}
	var b event.Builder
	for i := range evs {
		b.Add(&evs[i])
	}
	return deadLetterBatch(ctx, dlq, producer, stage, b.Bytes(), b.Len(), inputPos)
}

// deadLetterBatch is deadLetter for dead letters already encoded as a batch.
func deadLetterBatch(ctx context.Context, dlq channel.Channel, producer, stage string, batch []byte, count int, inputPos []byte) error {
	if _, err := dlq.Append(ctx, 0, producer, batch, count, inputPos); err != nil {
		return fmt.Errorf("dead-letter channel of %s: %w", stage, err)
	}
	return nil
}

// lastDeadLetterSeq returns the seq of producer's last dead-letter record
// (0: none).
func lastDeadLetterSeq(dlq channel.Channel, producer string) (uint64, error) {
	if dlq == nil {
		return 0, nil
	}
	b, ok := dlq.LastInputPosition(0, producer)
	if !ok {
		return 0, nil
	}
	env, err := decodeEnvelope(b)
	if err != nil {
		return 0, fmt.Errorf("position of %s in its dead-letter channel: %w", producer, err)
	}
	return env.seq, nil
}

func tag(e *event.Event, stage, reason, origin string) {
	e.SetHeader(HeaderReason, reason)
	e.SetHeader(HeaderStage, stage)
	if origin != "" {
		e.SetHeader(HeaderOrigin, origin)
	}
}

// rejectedEvents copies the events of batch named by rejects, tagged.
func rejectedEvents(batch []byte, rejects []Reject, stage, origin string) ([]event.Event, error) {
	if len(rejects) == 0 {
		return nil, nil
	}
	reason := make(map[int]string, len(rejects))
	for _, r := range rejects {
		reason[r.Index] = r.Reason
	}
	var out []event.Event
	err := event.Iterate(batch, func(i int, e *event.Event) error {
		if why, ok := reason[i]; ok {
			c := event.Event{Time: e.Time, Key: append([]byte(nil), e.Key...), Body: append([]byte(nil), e.Body...),
				Headers: append([]event.Header(nil), e.Headers...)}
			tag(&c, stage, why, origin)
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// ---------------------------------------------------------------- sources

type sourceRunner struct {
	p    *Pipeline
	st   *stage
	spec *SourceSpec
}

// run: resume from the newest hop position in the output channel, then
// read, append (batch + position + the batch's dead letters in one record),
// copy the dead letters to the dead-letter channel, ack.
//
// The dead letters follow the output, not the other way round: a source
// cannot re-read exactly the input of an interrupted batch (a tail may find
// more lines and cut differently), so dead letters written before a crash
// that lost the output would be written again, differently, by the redo.
// Written after, they ride in the output record's envelope, and a crash
// before their own append is completed from there on restart.
func (r *sourceRunner) run(ctx context.Context) error {
	s, out := r.spec, r.spec.Output.Channel
	var seq uint64
	var resume, pendingDead []byte
	for part := 0; part < out.Partitions(); part++ {
		b, ok := out.LastInputPosition(part, s.Name)
		if !ok {
			continue
		}
		env, err := decodeEnvelope(b)
		if err != nil {
			return fmt.Errorf("source %s: position in channel %s/%d: %w", s.Name, s.Output.Name, part, err)
		}
		if env.seq > seq {
			seq, resume, pendingDead = env.seq, append([]byte(nil), env.pos...), env.dead
		}
	}
	if len(pendingDead) > 0 && s.DeadLetter != nil {
		// The last batch's dead letters: written unless the crash came
		// between its output append and theirs.
		dlqSeq, err := lastDeadLetterSeq(s.DeadLetter, s.Name)
		if err != nil {
			return fmt.Errorf("source %s: %w", s.Name, err)
		}
		if dlqSeq < seq {
			n, err := event.Count(pendingDead)
			if err != nil {
				return fmt.Errorf("source %s: dead letters in the position of batch %d: %w", s.Name, seq, err)
			}
			env := (&envelope{kind: kindInput, seq: seq, pos: resume}).encode(nil)
			if err := deadLetterBatch(ctx, s.DeadLetter, s.Name, s.Name, pendingDead, n, env); err != nil {
				return err
			}
			r.st.c.rejected.Add(uint64(n))
		}
	}
	select {
	case <-r.st.drain:
		return nil
	case <-r.st.halt:
		return nil
	default:
	}
	src, err := s.New(ctx)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.Name, err)
	}
	defer src.Close(context.WithoutCancel(ctx))
	if err := src.Open(ctx, resume); err != nil {
		return fmt.Errorf("source %s: open: %w", s.Name, err)
	}
	// An opened source counts as recovered: it may wait long for input.
	r.st.progress(0)
	// Drain and halt both end the Read in progress; nothing of it has been
	// appended, so that is a batch boundary.
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.st.drain:
			cancel()
		case <-r.st.halt:
			cancel()
		case <-readCtx.Done():
		}
	}()
	batchSize := max(s.BatchSize, 1)
	c := r.st.c
	for {
		began := time.Now()
		sb, err := src.Read(readCtx, batchSize)
		if err != nil {
			if readCtx.Err() != nil && ctx.Err() == nil {
				return nil // stopped by drain or halt
			}
			return fmt.Errorf("source %s: read: %w", s.Name, err)
		}
		events := sb.Events
		count := 0
		if len(events) == 0 {
			events = emptyBatch
		} else if count, err = event.Count(events); err != nil {
			return fmt.Errorf("source %s: read returned a bad batch: %w", s.Name, err)
		}
		if count == 0 && sb.Position == nil && len(sb.DeadLetters) == 0 {
			continue
		}
		seq++
		env := envelope{kind: kindInput, seq: seq, pos: sb.Position}
		var dead event.Builder
		if len(sb.DeadLetters) > 0 && s.DeadLetter != nil {
			for i := range sb.DeadLetters {
				e := &sb.DeadLetters[i]
				reason, _ := e.Header(HeaderReason)
				tag(e, s.Name, reason, "")
				dead.Add(e)
			}
			env.dead = dead.Bytes()
		}
		part := int(seq % uint64(out.Partitions()))
		if _, err := out.Append(ctx, part, s.Name, events, count, env.encode(nil)); err != nil {
			return fmt.Errorf("source %s: append to %s: %w", s.Name, s.Output.Name, err)
		}
		if dead.Len() > 0 {
			env.dead = nil
			if err := deadLetterBatch(ctx, s.DeadLetter, s.Name, s.Name, dead.Bytes(), dead.Len(), env.encode(nil)); err != nil {
				return err
			}
			c.rejected.Add(uint64(dead.Len()))
		}
		c.latency.observe(time.Since(began))
		c.out.Add(uint64(count))
		c.in.Add(uint64(count))
		c.bytesIn.Add(uint64(len(sb.Events)))
		c.bytesOut.Add(uint64(len(events)))
		r.st.progress(0)
		if sb.Position != nil {
			if err := src.Ack(ctx, sb.Position); err != nil {
				r.p.log.Warn("source ack failed", "stage", s.Name, "err", err)
			}
		}
	}
}

// ---------------------------------------------------------------- bolts

type target struct {
	out, part int
	ch        channel.Channel
}

type boltRunner struct {
	p        *Pipeline
	st       *stage
	spec     *BoltSpec
	instance int

	producer string
	targets  []target
	base     []int    // index of each output's first target
	lastSeq  []uint64 // per target: seq of our last durable record there
	dlqSeq   uint64
	seq      uint64
	state    *memState
	builders []event.Builder
	lastOff0 uint64 // offset of the last batch's record in target 0 (0: unknown)
}

func (r *boltRunner) run(ctx context.Context) error {
	s := r.spec
	r.producer = s.Name + "#" + strconv.Itoa(r.instance)
	r.targets, r.base = nil, nil
	for oi, o := range s.Outputs {
		r.base = append(r.base, len(r.targets))
		for q := 0; q < o.Channel.Partitions(); q++ {
			r.targets = append(r.targets, target{out: oi, part: q, ch: o.Channel})
		}
	}
	r.builders = make([]event.Builder, len(r.targets))

	// Hop protocol: every batch is written to every target, so the
	// batch to resume after is the smallest seq found; targets holding a
	// larger seq got part of the next batch before a crash and are skipped
	// when it is redone.
	r.lastSeq = make([]uint64, len(r.targets))
	var minEnv envelope
	minSeq, found := ^uint64(0), false
	var redo *envelope
	for i, t := range r.targets {
		b, ok := t.ch.LastInputPosition(t.part, r.producer)
		if !ok {
			minSeq, minEnv = 0, envelope{}
			continue
		}
		env, err := decodeEnvelope(b)
		if err != nil {
			return fmt.Errorf("bolt %s: position in %s/%d: %w", s.Name, s.Outputs[t.out].Name, t.part, err)
		}
		found = true
		r.lastSeq[i] = env.seq
		if env.seq < minSeq {
			minSeq, minEnv = env.seq, env
		}
	}
	if !found {
		minSeq = 0
	}
	for i, t := range r.targets {
		if r.lastSeq[i] > minSeq && redo == nil {
			b, _ := t.ch.LastInputPosition(t.part, r.producer)
			env, _ := decodeEnvelope(b)
			redo = &env
		}
	}
	// The dead-letter channel is one more target of a batch: emit writes
	// it first, with the same envelope. Its record of batch minSeq+1
	// means that batch was cut after its dead letters were written; it is
	// redone exactly (same input range, or same tick), so that it yields
	// the same dead letters, which are then skipped.
	if s.DeadLetter != nil {
		if b, ok := s.DeadLetter.LastInputPosition(0, r.producer); ok {
			if env, err := decodeEnvelope(b); err == nil {
				r.dlqSeq = env.seq
				if redo == nil && env.seq == minSeq+1 {
					env.pos = append([]byte(nil), env.pos...)
					env.delta, env.dead = nil, nil
					redo = &env
				}
			}
		}
	}
	r.seq = minSeq

	in, err := s.Input.Channel.Reader(s.Name, r.instance)
	if err != nil {
		return fmt.Errorf("bolt %s: reader on %s/%d: %w", s.Name, s.Input.Name, r.instance, err)
	}
	if minSeq > 0 {
		off, err := decodeOffsetPos(minEnv.pos)
		if err != nil {
			return fmt.Errorf("bolt %s: %w", s.Name, err)
		}
		if err := in.Seek(off); err != nil {
			return fmt.Errorf("bolt %s: seek %s/%d to %d: %w", s.Name, s.Input.Name, r.instance, off, err)
		}
	}

	var stateReader channel.Reader
	var store StateStore
	if s.Stateful {
		if stateReader, err = r.restoreState(minSeq); err != nil {
			return fmt.Errorf("bolt %s: restore state: %w", s.Name, err)
		}
		store = r.state
	}
	bolt, err := s.New(ctx, r.instance, store)
	if err != nil {
		return fmt.Errorf("bolt %s: %w", s.Name, err)
	}
	defer bolt.Close(context.WithoutCancel(ctx))
	ticker, _ := bolt.(Ticker)
	tickEvery := s.Tick
	if tickEvery <= 0 {
		tickEvery = time.Second
	}

	var out, scratch event.Builder
	lastIn := in.Committed()
	if minSeq > 0 {
		lastIn, _ = decodeOffsetPos(minEnv.pos)
	}
	lastCommit, lastSnap := time.Now(), time.Now()
	snapSeq := r.seq
	finish := func() {
		if lastIn > in.Committed() {
			if err := in.Commit(lastIn); err != nil {
				r.p.log.Warn("commit input position", "stage", s.Name, "err", err)
			}
		}
		if s.Stateful {
			r.snapshot(stateReader)
		}
	}
	defer finish()

	// A tick that was only partly written before a crash is redone first,
	// with its original time, against the state as of the batch before.
	if redo != nil && redo.kind == kindTick && ticker != nil {
		if err := r.st.acquire(ctx); err != nil {
			return err
		}
		out.Reset()
		err := ticker.Tick(ctx, time.Unix(0, redo.tickNow), &out)
		if err != nil {
			err = fmt.Errorf("bolt %s: redo tick: %w", s.Name, err)
		} else {
			err = r.emit(ctx, kindTick, redo.tickNow, offsetPos(lastIn), &out, nil, "")
		}
		r.st.release()
		if err != nil {
			return err
		}
	}
	// An input batch that was only partly written (to some targets, or to
	// the dead-letter channel alone) is redone over exactly the records it
	// covered, whatever has arrived since: a larger group under the same
	// seq would have its extra records' dead letters skipped as written.
	if redo != nil && redo.kind == kindInput && redo.seq == minSeq+1 {
		end, err := decodeOffsetPos(redo.pos)
		if err != nil {
			return fmt.Errorf("bolt %s: batch %d to redo: %w", s.Name, redo.seq, err)
		}
		if end > lastIn {
			if err := r.redoGroup(ctx, bolt, in, end, &out, &scratch); err != nil {
				return err
			}
			lastIn = end
		}
	}

	nextTick := time.Now().Add(tickEvery)
	for {
		var wake time.Time
		if ticker != nil {
			if now := time.Now(); !now.Before(nextTick) {
				if err := r.tick(ctx, ticker, now, lastIn, &out); err != nil {
					return err
				}
				nextTick = now.Add(tickEvery)
			}
			wake = nextTick
		}
		rec, ok, timedOut, err := nextRecord(ctx, in, r.st, wake, func() {
			r.st.progress(r.instance) // caught up: working, if idle
			if lastIn > in.Committed() {
				if err := in.Commit(lastIn); err != nil {
					r.p.log.Warn("commit input position", "stage", s.Name, "err", err)
				}
				lastCommit = time.Now()
			}
			if s.Stateful && r.seq > snapSeq && time.Since(lastSnap) >= time.Second {
				r.snapshot(stateReader)
				snapSeq, lastSnap = r.seq, time.Now()
			}
		})
		if err != nil {
			return fmt.Errorf("bolt %s: read %s/%d: %w", s.Name, s.Input.Name, r.instance, err)
		}
		if timedOut {
			continue
		}
		if !ok {
			return nil // drained or halted
		}
		if rec.Count > 0 {
			// Only processing holds a token of the stage's parallelism;
			// waiting for input above does not.
			if err := r.st.acquire(ctx); err != nil {
				return err
			}
			began := time.Now()
			groupEnd, err := r.processGroup(ctx, bolt, ticker, in, rec, nextTick, 0, &out, &scratch)
			r.st.release()
			if err != nil {
				return err
			}
			r.st.c.latency.observe(time.Since(began))
			r.st.progress(r.instance)
			lastIn = groupEnd // only now is the group's output durable
		} else {
			lastIn = rec.Offset
		}
		if time.Since(lastCommit) >= r.p.spec.CommitEvery {
			if err := in.Commit(lastIn); err != nil {
				return fmt.Errorf("bolt %s: commit %s/%d: %w", s.Name, s.Input.Name, r.instance, err)
			}
			lastCommit = time.Now()
		}
		if s.Stateful && time.Since(lastSnap) >= r.p.spec.SnapshotEvery {
			r.snapshot(stateReader)
			snapSeq, lastSnap = r.seq, time.Now()
		}
	}
}

// redoGroup redoes the interrupted input batch that ended at input offset
// end: the records after the resume position through end, as one group.
func (r *boltRunner) redoGroup(ctx context.Context, bolt Bolt, in channel.Reader, end uint64, out, scratch *event.Builder) error {
	s := r.spec
	for {
		rec, ok, err := in.TryNext()
		if err != nil {
			return fmt.Errorf("bolt %s: read %s/%d: %w", s.Name, s.Input.Name, r.instance, err)
		}
		if !ok {
			return fmt.Errorf("bolt %s: redo of batch %d: input %s/%d ends before offset %d, where the batch ended",
				s.Name, r.seq+1, s.Input.Name, r.instance, end)
		}
		if rec.Count == 0 {
			if rec.Offset >= end {
				return nil // nothing but positions: no batch to redo
			}
			continue
		}
		if err := r.st.acquire(ctx); err != nil {
			return err
		}
		_, err = r.processGroup(ctx, bolt, nil, in, rec, time.Time{}, end, out, scratch)
		r.st.release()
		return err
	}
}

// processGroup processes rec, and with one output partition the records
// already waiting after it, and emits their output as one batch; it returns
// the input offset of the last record in the group. until, when not 0, is
// the exact end of the group (the redo of an interrupted batch): records
// are taken through that offset, whatever the bounds.
func (r *boltRunner) processGroup(ctx context.Context, bolt Bolt, ticker Ticker, in channel.Reader, rec channel.Record, nextTick time.Time, until uint64, out, scratch *event.Builder) (uint64, error) {
	s := r.spec
	// With one output partition, records already waiting in the input are
	// processed together and written as one record (one fsync): a stage
	// whose appends wait on a slow disk then catches up in larger steps
	// instead of falling behind. With several partitions each record stays
	// its own batch, so that a batch redone after a crash is exactly the
	// same (see run).
	out.Reset()
	var dead []event.Event
	var origin string
	groupBytes, groupRecords := 0, 0
	groupEnd := rec.Offset // offset of the group's last record
	for {
		origin = s.Input.Name + "/" + strconv.Itoa(r.instance) + "@" + strconv.FormatUint(rec.Offset, 10)
		d, err := r.process(ctx, bolt, rec, scratch, origin)
		if err != nil {
			return 0, err
		}
		if err := out.AddEncoded(scratch.Bytes()); err != nil {
			return 0, fmt.Errorf("bolt %s: output of %s: %w", s.Name, origin, err)
		}
		dead = append(dead, d...)
		groupBytes += len(rec.Batch)
		groupRecords++
		groupEnd = rec.Offset
		if until != 0 {
			if groupEnd >= until {
				break
			}
		} else if len(r.targets) != 1 || groupBytes >= maxGroupBytes || groupRecords >= maxGroupRecords ||
			(ticker != nil && !time.Now().Before(nextTick)) {
			break
		}
		next, more, err := in.TryNext()
		if err != nil {
			return 0, fmt.Errorf("bolt %s: read %s/%d: %w", s.Name, s.Input.Name, r.instance, err)
		}
		for more && next.Count == 0 && (until == 0 || next.Offset < until) { // position-only records: nothing to process
			groupEnd = next.Offset
			if next, more, err = in.TryNext(); err != nil {
				return 0, fmt.Errorf("bolt %s: read %s/%d: %w", s.Name, s.Input.Name, r.instance, err)
			}
		}
		if until != 0 {
			if !more {
				return 0, fmt.Errorf("bolt %s: redo of batch %d: input %s/%d ends at offset %d, before offset %d where the batch ended",
					s.Name, r.seq+1, s.Input.Name, r.instance, groupEnd, until)
			}
			if next.Offset > until { // records lost to damage: end here, leave next for later
				if err := in.Seek(until); err != nil {
					return 0, fmt.Errorf("bolt %s: seek %s/%d to %d: %w", s.Name, s.Input.Name, r.instance, until, err)
				}
				break
			}
			if next.Count == 0 { // a position-only record ends the group
				groupEnd = next.Offset
				break
			}
		}
		if !more {
			break
		}
		rec = next
	}
	if err := r.emit(ctx, kindInput, 0, offsetPos(groupEnd), out, dead, origin); err != nil {
		return 0, err
	}
	return groupEnd, nil
}

// tick runs one Tick and emits its output, holding a processing token.
func (r *boltRunner) tick(ctx context.Context, ticker Ticker, now time.Time, lastIn uint64, out *event.Builder) error {
	if err := r.st.acquire(ctx); err != nil {
		return err
	}
	defer r.st.release()
	out.Reset()
	if err := ticker.Tick(ctx, now, out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.p.log.Error("tick failed", "stage", r.spec.Name, "instance", r.instance, "err", err)
		return nil
	}
	return r.emit(ctx, kindTick, now.UnixNano(), offsetPos(lastIn), out, nil, "")
}

// emit writes one batch's output to every target (the hop protocol), its
// rejects to the dead-letter channel, skipping targets that already hold
// this batch from before a crash.
func (r *boltRunner) emit(ctx context.Context, kind uint8, tickNow int64, pos []byte, out *event.Builder, dead []event.Event, origin string) error {
	s := r.spec
	r.seq++
	seq := r.seq
	var delta []byte
	if r.state != nil {
		delta = r.state.takeDelta()
	}
	// Split the output over targets.
	var extra []event.Event
	single := len(r.targets) == 1
	if single {
		r.builders[0] = *out
	} else {
		for i := range r.builders {
			r.builders[i].Reset()
		}
		if out.Len() > 0 {
			err := event.Iterate(out.Bytes(), func(_ int, e *event.Event) error {
				oi := 0
				if s.Route != nil {
					v, _ := e.Header(s.Route.Header)
					to, ok := s.Route.To[v]
					if !ok {
						to = s.Route.Default
					}
					if to < 0 {
						c := event.Event{Time: e.Time, Key: append([]byte(nil), e.Key...), Body: append([]byte(nil), e.Body...), Headers: append([]event.Header(nil), e.Headers...)}
						tag(&c, s.Name, fmt.Sprintf("no route for %s=%q", s.Route.Header, v), origin)
						extra = append(extra, c)
						return nil
					}
					oi = to
				}
				o := s.Outputs[oi]
				n := o.Channel.Partitions()
				q := 0
				if n > 1 {
					if o.Grouping == ByKey {
						h := fnv.New32a()
						h.Write(e.Key)
						q = int(h.Sum32() % uint32(n))
					} else {
						q = int(seq % uint64(n))
					}
				}
				r.builders[r.base[oi]+q].Add(e)
				return nil
			})
			if err != nil {
				return fmt.Errorf("bolt %s: output batch: %w", s.Name, err)
			}
		}
	}
	envFor := func(withDelta bool) []byte {
		e := envelope{kind: kind, seq: seq, tickNow: tickNow, pos: pos}
		if withDelta {
			e.delta = delta
		}
		return e.encode(nil)
	}
	dead = append(dead, extra...)
	if len(dead) > 0 && r.dlqSeq < seq {
		if err := deadLetter(ctx, s.DeadLetter, r.producer, s.Name, dead, envFor(false)); err != nil {
			return err
		}
		r.dlqSeq = seq
		r.st.c.rejected.Add(uint64(len(dead)))
	}
	r.lastOff0 = 0
	// The targets are independent logs, so their appends (and fsyncs) run
	// concurrently; the hop protocol does not care which of them a crash
	// interrupts (see run).
	offs := make([]uint64, len(r.targets))
	errs := make([]error, len(r.targets))
	var wg sync.WaitGroup
	for i, t := range r.targets {
		if r.lastSeq[i] >= seq {
			continue // written before a crash
		}
		b := &r.builders[i]
		env := envFor(i == 0)
		do := func() {
			offs[i], errs[i] = t.ch.Append(ctx, t.part, r.producer, b.Bytes(), b.Len(), env)
		}
		if len(r.targets) == 1 {
			do()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); do() }()
	}
	wg.Wait()
	for i, t := range r.targets {
		if r.lastSeq[i] >= seq {
			continue
		}
		if errs[i] != nil {
			return fmt.Errorf("bolt %s: append to %s/%d: %w", s.Name, s.Outputs[t.out].Name, t.part, errs[i])
		}
		if i == 0 {
			r.lastOff0 = offs[i]
		}
		r.lastSeq[i] = seq
		r.st.c.out.Add(uint64(r.builders[i].Len()))
		r.st.c.bytesOut.Add(uint64(len(r.builders[i].Bytes())))
	}
	if single {
		r.builders[0] = event.Builder{} // do not alias out
	}
	return nil
}

// Bounds of one coalesced group of input records.
const (
	maxGroupBytes   = 4 << 20
	maxGroupRecords = 64
)

// process runs the bolt on one input record into scratch and returns the
// record's dead letters. A batch the plugin fails on every retry is
// dead-lettered whole, and the pipeline goes on. The record's bytes are
// not used after it returns.
func (r *boltRunner) process(ctx context.Context, bolt Bolt, rec channel.Record, scratch *event.Builder, origin string) ([]event.Event, error) {
	s := r.spec
	r.st.c.in.Add(uint64(rec.Count))
	r.st.c.bytesIn.Add(uint64(len(rec.Batch)))
	scratch.Reset()
	rejects, perr := bolt.Process(ctx, rec.Batch, scratch)
	if perr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.p.log.Error("batch failed; dead-lettered", "stage", s.Name, "instance", r.instance, "origin", origin, "err", perr)
		scratch.Reset()
		rejects = make([]Reject, rec.Count)
		for i := range rejects {
			rejects[i] = Reject{Index: i, Reason: perr.Error()}
		}
	}
	dead, err := rejectedEvents(rec.Batch, rejects, s.Name, origin)
	if err != nil {
		return nil, fmt.Errorf("bolt %s: input batch %s: %w", s.Name, origin, err)
	}
	return dead, nil
}

func stateReaderName(bolt string, instance int) string {
	return bolt + "#" + strconv.Itoa(instance) + ".state"
}

func (r *boltRunner) snapPath() string {
	return filepath.Join(r.p.spec.StateDir, r.spec.Name, strconv.Itoa(r.instance)+".snap")
}

// restoreState loads the last snapshot and replays the state deltas stored
// after it in the first output partition, up to batch upTo. It returns the
// reader that keeps those records from being deleted until the next
// snapshot.
func (r *boltRunner) restoreState(upTo uint64) (channel.Reader, error) {
	t0 := r.targets[0]
	sr, err := t0.ch.Reader(stateReaderName(r.spec.Name, r.instance), t0.part)
	if err != nil {
		return nil, err
	}
	r.state = newMemState()
	var sn snapshot
	if b, err := os.ReadFile(r.snapPath()); err == nil {
		st, s, err := decodeSnapshot(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.snapPath(), err)
		}
		if s.seq <= upTo {
			r.state, sn = st, s
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := sr.Seek(sn.off); err != nil {
		return nil, err
	}
	for {
		rec, ok, err := sr.TryNext()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if rec.Producer != r.producer {
			continue
		}
		env, err := decodeEnvelope(rec.InputPos)
		if err != nil {
			return nil, err
		}
		if env.seq <= sn.seq || env.seq > upTo {
			continue
		}
		if err := r.state.applyDelta(env.delta); err != nil {
			return nil, err
		}
	}
	clear(r.state.dirty)
	return sr, nil
}

// snapshot writes the full state as of the last complete batch and lets the
// channel release the deltas before it.
func (r *boltRunner) snapshot(sr channel.Reader) {
	if r.lastOff0 == 0 || sr == nil {
		return
	}
	r.state.mu.Lock()
	dirty := len(r.state.dirty) > 0
	r.state.mu.Unlock()
	if dirty {
		return // changes of a batch that did not complete: not a state of any position
	}
	if err := writeFileAtomic(r.snapPath(), r.state.encodeSnapshot(r.seq, r.lastOff0)); err != nil {
		r.p.log.Error("state snapshot failed", "stage", r.spec.Name, "err", err)
		return
	}
	if err := sr.Commit(r.lastOff0); err != nil {
		r.p.log.Warn("commit state reader", "stage", r.spec.Name, "err", err)
	}
}

// ---------------------------------------------------------------- sinks

type sinkRunner struct {
	p         *Pipeline
	st        *stage
	spec      *SinkSpec
	partition int
}

func (r *sinkRunner) run(ctx context.Context) error {
	s := r.spec
	producer := s.Name + "#" + strconv.Itoa(r.partition)
	in, err := s.Input.Channel.Reader(s.Name, r.partition)
	if err != nil {
		return fmt.Errorf("sink %s: reader on %s/%d: %w", s.Name, s.Input.Name, r.partition, err)
	}
	sink, err := s.New(ctx, r.partition)
	if err != nil {
		return fmt.Errorf("sink %s: %w", s.Name, err)
	}
	defer sink.Close(context.WithoutCancel(ctx))
	if err := sink.Open(ctx); err != nil {
		return fmt.Errorf("sink %s: open: %w", s.Name, err)
	}
	stream := s.Input.Name + "/" + strconv.Itoa(r.partition) + "/" + s.Name
	// A restarted sink replays from its committed offset, and a replayed
	// batch may yield its rejects again: the dead letters of a record at or
	// below the last one written for this stream are skipped. (Rejects a
	// fenced sink does not return for a replay it skips cannot be written
	// by the runner: see Sink.)
	dlqOff, dlqKnown := lastSinkDeadLetter(s.DeadLetter, producer, stream)
	lastIn := in.Committed()
	lastCommit := time.Now()
	defer func() {
		if lastIn > in.Committed() {
			if err := in.Commit(lastIn); err != nil {
				r.p.log.Warn("commit input position", "stage", s.Name, "err", err)
			}
		}
	}()
	for {
		rec, ok, _, err := nextRecord(ctx, in, r.st, time.Time{}, func() {
			r.st.progress(r.partition) // caught up: working, if idle
			if lastIn > in.Committed() {
				if err := in.Commit(lastIn); err != nil {
					r.p.log.Warn("commit input position", "stage", s.Name, "err", err)
				}
				lastCommit = time.Now()
			}
		})
		if err != nil {
			return fmt.Errorf("sink %s: read %s/%d: %w", s.Name, s.Input.Name, r.partition, err)
		}
		if !ok {
			return nil
		}
		if rec.Count > 0 {
			began := time.Now()
			rejects, err := r.write(ctx, sink, rec, stream)
			if errors.Is(err, errHalted) {
				return nil // nothing of this batch was delivered
			}
			if err != nil {
				return err
			}
			// Counted once written, so that a batch a halt leaves for the
			// next run is not counted twice.
			c := r.st.c
			c.latency.observe(time.Since(began))
			c.in.Add(uint64(rec.Count))
			c.bytesIn.Add(uint64(len(rec.Batch)))
			c.bytesOut.Add(uint64(len(rec.Batch)))
			r.st.progress(r.partition)
			origin := s.Input.Name + "/" + strconv.Itoa(r.partition) + "@" + strconv.FormatUint(rec.Offset, 10)
			dead, err := rejectedEvents(rec.Batch, rejects, s.Name, origin)
			if err != nil {
				return fmt.Errorf("sink %s: %w", s.Name, err)
			}
			if len(dead) > 0 && s.DeadLetter != nil && (!dlqKnown || rec.Offset > dlqOff) {
				if err := deadLetter(ctx, s.DeadLetter, producer, s.Name, dead, sinkDeadLetterPos(rec.Offset, stream)); err != nil {
					return err
				}
				dlqOff, dlqKnown = rec.Offset, true
				c.rejected.Add(uint64(len(dead)))
			}
			c.out.Add(uint64(rec.Count - len(dead)))
		}
		lastIn = rec.Offset
		if time.Since(lastCommit) >= r.p.spec.CommitEvery {
			if err := in.Commit(lastIn); err != nil {
				return fmt.Errorf("sink %s: commit: %w", s.Name, err)
			}
			lastCommit = time.Now()
		}
	}
}

// sinkDeadLetterPos is the position of a sink's dead-letter record: the
// input offset of the batch they came from, and the stream it was read as.
func sinkDeadLetterPos(off uint64, stream string) []byte {
	return append(offsetPos(off), stream...)
}

// lastSinkDeadLetter returns the input offset of producer's last
// dead-letter record if it was written for stream. (Records of earlier
// versions hold the offset alone; they are taken as this stream's.)
func lastSinkDeadLetter(dlq channel.Channel, producer, stream string) (uint64, bool) {
	if dlq == nil {
		return 0, false
	}
	b, ok := dlq.LastInputPosition(0, producer)
	if !ok || len(b) < 8 || (len(b) > 8 && string(b[8:]) != stream) {
		return 0, false
	}
	off, _ := decodeOffsetPos(b[:8])
	return off, true
}

// errHalted is returned by write when Remove halts the stage while the
// destination fails.
var errHalted = errors.New("halted")

// write delivers one batch, retrying with backoff while the destination
// fails (a transient outage becomes backpressure, not loss); meanwhile the
// instance counts as failing. It gives up only when the run ends or the
// stage is halted (errHalted): a failed Write delivered nothing, so that is
// a batch boundary.
func (r *sinkRunner) write(ctx context.Context, sink Sink, rec channel.Record, stream string) ([]Reject, error) {
	backoff := r.p.spec.MinBackoff
	for {
		rejects, err := sink.Write(ctx, rec.Batch, Fence{Stream: stream, Offset: rec.Offset})
		if err == nil {
			return rejects, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.st.c.lastErr.Store(err.Error())
		r.st.markFailing(r.partition)
		r.p.log.Warn("sink write failed; retrying", "stage", r.spec.Name, "offset", rec.Offset, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.st.halt:
			t.Stop()
			return nil, errHalted
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, r.p.spec.MaxBackoff)
	}
}
