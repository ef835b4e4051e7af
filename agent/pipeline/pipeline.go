package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/agent/channel"
)

// Grouping is how a writer spreads batches over the partitions of a
// channel read by a parallel bolt.
type Grouping int

const (
	// Shuffle sends each whole batch to the next partition in turn.
	Shuffle Grouping = iota
	// ByKey sends every event to partition hash(key) mod N, so the same key
	// always reaches the same bolt instance (Storm's fields grouping).
	ByKey
)

// Output is a channel a source or bolt writes.
type Output struct {
	Name     string
	Channel  channel.Channel
	Grouping Grouping
}

// Input is the channel a bolt or sink reads. Each of its partitions is read
// by one instance of the stage, under the reader name of the stage.
type Input struct {
	Name    string
	Channel channel.Channel
}

// Route multiplexes a bolt's output by the value of one header.
type Route struct {
	Header string
	// To maps a header value to an index in BoltSpec.Outputs.
	To map[string]int
	// Default is the output index for other values, or -1 to send such
	// events to the dead-letter channel.
	Default int
}

// SourceSpec describes a source stage.
type SourceSpec struct {
	Name string
	// New builds a fresh source; the supervisor calls it again after a
	// failure.
	New       func(ctx context.Context) (Source, error)
	Output    Output
	BatchSize int
	// DeadLetter receives inputs the source could not turn into events.
	DeadLetter channel.Channel
}

// BoltSpec describes a bolt stage, run as one instance per partition of
// Input, at most Parallelism of them processing a batch at a time.
type BoltSpec struct {
	Name string
	// New builds the bolt of one instance. state is the instance's state
	// store when Stateful, else nil; it is restored before New is called
	// and must be the store the bolt uses.
	New     func(ctx context.Context, instance int, state StateStore) (Bolt, error)
	Input   Input
	Outputs []Output
	Route   *Route
	// Stateful bolts get a StateStore persisted with their output
	// positions.
	Stateful bool
	// Tick is the period of Tick for bolts that implement Ticker; 0 means
	// one second.
	Tick       time.Duration
	DeadLetter channel.Channel
	// Parallelism is how many instances may process a batch at the same
	// time: 1..Input.Channel.Partitions(); 0 means one per partition.
	// Partitions stay the unit of ordering, state and hop positions (the
	// reader, producer and state snapshot of an instance are named after
	// its partition), so a change of Parallelism never moves data or state
	// (docs/adr/0010).
	Parallelism int
}

// SinkSpec describes a sink stage, run as one instance per partition of
// Input.
type SinkSpec struct {
	Name       string
	New        func(ctx context.Context, partition int) (Sink, error)
	Input      Input
	DeadLetter channel.Channel
}

// Spec is a whole topology ready to run.
type Spec struct {
	Sources []SourceSpec
	Bolts   []BoltSpec
	Sinks   []SinkSpec
	// StateDir holds the state snapshots of stateful bolts.
	StateDir string
	Logger   *slog.Logger
	// MinBackoff and MaxBackoff bound the supervisor's exponential backoff
	// between restarts of a failed stage (defaults 100ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// CommitEvery is how often input reader positions are committed (they
	// only bound retention and sink replay; resumption uses the hop
	// protocol). Default 200ms.
	CommitEvery time.Duration
	// SnapshotEvery is how often stateful bolts write a full snapshot.
	// Default 10s.
	SnapshotEvery time.Duration
}

// StageStats are the counters of one stage, summed over its instances.
// Counters belong to the stage's name: they carry on across Remove and Add
// of the same name, so they never go backwards.
type StageStats struct {
	Name      string
	Kind      string // source, bolt or sink
	EventsIn  uint64
	EventsOut uint64
	Rejected  uint64 // events sent to the dead-letter channel
	Restarts  uint64
	LastError string
	// BytesIn and BytesOut count wire-form batch bytes read and written
	// (for a source: returned by Read and appended; for a sink: read from
	// the channel and written).
	BytesIn, BytesOut uint64
	// BatchLatency is the time per batch in seconds: Process and append
	// for bolts, Read and append for sources, Write for sinks.
	BatchLatency Histogram
	// Failing is true while some instance's last run ended in an error and
	// it is backing off (or a sink is retrying a failed Write); it clears
	// when that instance makes progress again.
	Failing bool
	// Parallelism is how many instances may process at once (sources: 1).
	Parallelism int
}

// Pipeline runs a Spec: one goroutine per source, per bolt instance (one per
// input partition) and per sink instance (one per input partition), each
// under a supervisor that restarts it with exponential backoff after an
// error. A bolt's instances share Parallelism tokens, taken only while
// processing a batch.
//
// Every stage follows the hop protocol (DESIGN §4, docs/adr/0004): a bolt
// reads a record at input offset P, processes it, and appends the output to
// every output partition with an envelope holding P, a batch sequence
// number and, for stateful bolts, the state change — one durable write per
// partition, so resuming from the output channel's LastInputPosition never
// loses or repeats a batch. Sources store their own position the same way;
// sinks get a Fence and the reader is committed after Write returns. Input
// commits only bound retention and are made every CommitEvery and before a
// reader blocks.
//
// Stages can be added and removed while the pipeline runs (Add, Remove):
// that is how a reload changes only what changed (docs/adr/0010).
//
// Lifecycle: New, then Start once; Stop stops intake, drains, and returns by
// its context's deadline. Stop is safe without Start and safe twice. Add,
// Remove and Stats are safe for concurrent use with each other; Add and
// Remove are not meant to race with Stop (they are safe, but a stage added
// while Stop runs is refused).
type Pipeline struct {
	spec Spec // settings; the stage lists are only read by New
	log  *slog.Logger

	mu       sync.Mutex
	phase    phase
	stages   []*stage                  // the current set, in the order added
	counters map[string]*stageCounters // by stage name, kept across Remove

	hardCtx    context.Context
	hardCancel context.CancelFunc
	stopIntake chan struct{}
	stopOnce   sync.Once
	done       chan struct{}
}

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseStopping // Stop called or the run's context ended: no more Add
)

type stage struct {
	name    string
	kind    string
	inputs  []string // channels it reads
	outputs []string // channels it writes
	// readers registers the stage's channel readers (run before any
	// instance starts, so that retention never frees a record it has not
	// seen).
	readers     func() error
	parallelism int
	// sem holds one token per instance processing a batch; nil when every
	// instance may process at once.
	sem     chan struct{}
	waiting atomic.Int32 // instances with a batch, waiting for a token
	// instances run concurrently; the stage is done when all return.
	instances []func(ctx context.Context) error
	failing   []atomic.Bool // per instance: last run failed, not yet recovered
	nFailing  atomic.Int32
	c         *stageCounters

	ctx    context.Context // cancelled hard by Remove at its deadline
	cancel context.CancelFunc
	done   chan struct{} // all instances returned
	drain  chan struct{} // Stop: finish what is in the input, then return
	halt   chan struct{} // Remove: return at the next batch boundary
	// halting is set (under Pipeline.mu) once Remove has closed halt; the
	// stage stays in the set until done, so its name cannot be re-added
	// while an old instance still writes.
	halting bool
}

// stageCounters are the counters of one stage name.
type stageCounters struct {
	in, out, rejected, restarts atomic.Uint64
	bytesIn, bytesOut           atomic.Uint64
	latency                     histogram
	lastErr                     atomic.Value // string
}

// New checks spec and prepares a pipeline; nothing runs until Start.
func New(spec Spec) (*Pipeline, error) {
	if spec.Logger == nil {
		spec.Logger = slog.Default()
	}
	if spec.MinBackoff <= 0 {
		spec.MinBackoff = 100 * time.Millisecond
	}
	if spec.MaxBackoff <= 0 {
		spec.MaxBackoff = 30 * time.Second
	}
	if spec.CommitEvery <= 0 {
		spec.CommitEvery = 200 * time.Millisecond
	}
	if spec.SnapshotEvery <= 0 {
		spec.SnapshotEvery = 10 * time.Second
	}
	p := &Pipeline{spec: spec, log: spec.Logger, stopIntake: make(chan struct{}), done: make(chan struct{}),
		counters: map[string]*stageCounters{}}
	sts, err := p.build(spec)
	if err != nil {
		return nil, err
	}
	p.stages = sts
	return p, nil
}

// build checks the stages of spec and prepares them; p.mu is held (or p is
// not shared yet).
func (p *Pipeline) build(spec Spec) ([]*stage, error) {
	taken := map[string]bool{}
	for _, st := range p.stages {
		taken[st.name] = true
	}
	var sts []*stage
	claim := func(name, kind string) error {
		if name == "" {
			return fmt.Errorf("pipeline: a %s has no name", kind)
		}
		if taken[name] {
			return fmt.Errorf("pipeline: %s %q: a stage of that name is already in the pipeline", kind, name)
		}
		taken[name] = true
		return nil
	}
	for i := range spec.Sources {
		s := spec.Sources[i] // a copy: the caller's Spec may change after Add
		if err := claim(s.Name, "source"); err != nil {
			return nil, err
		}
		if s.New == nil || s.Output.Channel == nil {
			return nil, fmt.Errorf("pipeline: source %q needs New and an output channel", s.Name)
		}
		st := p.newStage(s.Name, "source", nil, []string{s.Output.Name}, 1, 1)
		r := &sourceRunner{p: p, st: st, spec: &s}
		st.instances = append(st.instances, r.run)
		st.readers = func() error { return nil }
		sts = append(sts, st)
	}
	for i := range spec.Bolts {
		b := spec.Bolts[i]
		if err := claim(b.Name, "bolt"); err != nil {
			return nil, err
		}
		if b.New == nil || b.Input.Channel == nil || len(b.Outputs) == 0 {
			return nil, fmt.Errorf("pipeline: bolt %q needs New, an input and an output", b.Name)
		}
		parts := b.Input.Channel.Partitions()
		if b.Parallelism < 0 || b.Parallelism > parts {
			return nil, fmt.Errorf("pipeline: bolt %q: parallelism %d is outside 1..%d (the partitions of its input %s)",
				b.Name, b.Parallelism, parts, b.Input.Name)
		}
		if b.Parallelism == 0 {
			b.Parallelism = parts
		}
		var outs []string
		for _, o := range b.Outputs {
			outs = append(outs, o.Name)
		}
		st := p.newStage(b.Name, "bolt", []string{b.Input.Name}, outs, parts, b.Parallelism)
		for inst := 0; inst < parts; inst++ {
			r := &boltRunner{p: p, st: st, spec: &b, instance: inst}
			st.instances = append(st.instances, r.run)
		}
		st.readers = func() error {
			for part := 0; part < parts; part++ {
				if _, err := b.Input.Channel.Reader(b.Name, part); err != nil {
					return fmt.Errorf("pipeline: bolt %s: reader on %s/%d: %w", b.Name, b.Input.Name, part, err)
				}
				if b.Stateful {
					if _, err := b.Outputs[0].Channel.Reader(stateReaderName(b.Name, part), 0); err != nil {
						return fmt.Errorf("pipeline: bolt %s: state reader on %s/0: %w", b.Name, b.Outputs[0].Name, err)
					}
				}
			}
			return nil
		}
		sts = append(sts, st)
	}
	for i := range spec.Sinks {
		s := spec.Sinks[i]
		if err := claim(s.Name, "sink"); err != nil {
			return nil, err
		}
		if s.New == nil || s.Input.Channel == nil {
			return nil, fmt.Errorf("pipeline: sink %q needs New and an input", s.Name)
		}
		parts := s.Input.Channel.Partitions()
		st := p.newStage(s.Name, "sink", []string{s.Input.Name}, nil, parts, parts)
		for part := 0; part < parts; part++ {
			r := &sinkRunner{p: p, st: st, spec: &s, partition: part}
			st.instances = append(st.instances, r.run)
		}
		st.readers = func() error {
			for part := 0; part < parts; part++ {
				if _, err := s.Input.Channel.Reader(s.Name, part); err != nil {
					return fmt.Errorf("pipeline: sink %s: reader on %s/%d: %w", s.Name, s.Input.Name, part, err)
				}
			}
			return nil
		}
		sts = append(sts, st)
	}
	return sts, nil
}

func (p *Pipeline) newStage(name, kind string, in, out []string, instances, parallelism int) *stage {
	c := p.counters[name]
	if c == nil {
		c = &stageCounters{}
		p.counters[name] = c
	}
	st := &stage{name: name, kind: kind, inputs: in, outputs: out, parallelism: parallelism, c: c,
		failing: make([]atomic.Bool, instances),
		done:    make(chan struct{}), drain: make(chan struct{}), halt: make(chan struct{})}
	if parallelism < instances {
		st.sem = make(chan struct{}, parallelism)
	}
	return st
}

// Start runs every stage under the supervisor and returns at once. ctx
// bounds the whole run: when it ends, stages stop without draining.
func (p *Pipeline) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase != phaseNew {
		return errors.New("pipeline: already started")
	}
	// Register every reader before any writer starts, so that retention
	// never frees a record a reader has not seen and a new reader starts at
	// the first record.
	for _, st := range p.stages {
		if err := st.readers(); err != nil {
			return err
		}
	}
	p.hardCtx, p.hardCancel = context.WithCancel(ctx)
	p.phase = phaseRunning
	for _, st := range p.stages {
		p.launch(st)
	}
	go p.watch()
	return nil
}

// launch starts the instances of st; p.mu is held.
func (p *Pipeline) launch(st *stage) {
	st.ctx, st.cancel = context.WithCancel(p.hardCtx)
	var instWG sync.WaitGroup
	for i, inst := range st.instances {
		instWG.Add(1)
		go func() {
			defer instWG.Done()
			p.supervise(st, i, inst)
		}()
	}
	go func() {
		instWG.Wait()
		st.cancel()
		close(st.done)
	}()
}

// watch waits for Stop (or the end of the run's context), then drains the
// stages current at that moment in upstream order — a stage drains once
// every stage writing its input is done — and closes p.done when all are.
func (p *Pipeline) watch() {
	select {
	case <-p.stopIntake:
	case <-p.hardCtx.Done():
	}
	p.mu.Lock()
	p.phase = phaseStopping
	sts := slices.Clone(p.stages)
	p.mu.Unlock()
	for _, st := range sts {
		var upstream []*stage
		for _, in := range st.inputs {
			for _, w := range sts {
				if w != st && slices.Contains(w.outputs, in) {
					upstream = append(upstream, w)
				}
			}
		}
		go func() {
			for _, u := range upstream {
				select {
				case <-u.done:
				case <-p.hardCtx.Done():
				}
			}
			close(st.drain)
		}()
	}
	for _, st := range sts {
		<-st.done
	}
	close(p.done)
}

// supervise runs one stage instance, restarting it with exponential backoff
// after failures, until it returns nil (drained or halted) or the stage's
// context ends.
func (p *Pipeline) supervise(st *stage, i int, run func(context.Context) error) {
	backoff := p.spec.MinBackoff
	for {
		began := time.Now()
		err := run(st.ctx)
		if err == nil || st.ctx.Err() != nil {
			return
		}
		st.c.restarts.Add(1)
		st.c.lastErr.Store(err.Error())
		st.markFailing(i)
		if time.Since(began) > 10*p.spec.MaxBackoff {
			backoff = p.spec.MinBackoff
		}
		p.log.Error("stage failed; restarting", "stage", st.name, "instance", i, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-st.halt:
			t.Stop()
			return
		case <-st.ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, p.spec.MaxBackoff)
	}
}

// markFailing records that instance i failed; progress clears it.
func (st *stage) markFailing(i int) {
	if st.failing[i].CompareAndSwap(false, true) {
		st.nFailing.Add(1)
	}
}

// progress records that instance i works (one atomic load when it was not
// failing: it runs once per batch).
func (st *stage) progress(i int) {
	if st.failing[i].Load() && st.failing[i].CompareAndSwap(true, false) {
		st.nFailing.Add(-1)
	}
}

// acquire takes a processing token when the stage's parallelism is below
// its instance count; release gives it back.
func (st *stage) acquire(ctx context.Context) error {
	if st.sem == nil {
		return nil
	}
	select {
	case st.sem <- struct{}{}:
		return nil
	default:
	}
	st.waiting.Add(1)
	defer st.waiting.Add(-1)
	select {
	case st.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (st *stage) release() {
	if st.sem != nil {
		<-st.sem
	}
}

// Add adds the stages of spec (only Sources, Bolts and Sinks are read) to
// the pipeline. Before Start they start with Start; after Start they
// register their readers and start at once. A name already in the pipeline
// (running, or still being removed) is an error, and so is Add once Stop
// has begun; on error nothing is added.
//
// A stage added under the name of a removed one resumes where that one
// stopped (its readers, hop positions and state snapshots are found under
// the same names) and continues its counters.
func (p *Pipeline) Add(ctx context.Context, spec Spec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase == phaseStopping {
		return errors.New("pipeline: stopping; no stage can be added")
	}
	sts, err := p.build(spec)
	if err != nil {
		return err
	}
	if p.phase == phaseRunning {
		for _, st := range sts {
			if err := st.readers(); err != nil {
				return err
			}
		}
		for _, st := range sts {
			p.launch(st)
		}
	}
	p.stages = append(p.stages, sts...)
	return nil
}

// Remove halts the named stages at their next batch boundary — the batch in
// flight finishes and its output is appended; an instance waiting for input
// returns at once — and waits until every instance has returned and closed
// its plugin. At ctx's deadline the instances still running are cancelled
// hard, which the hop protocol makes safe (the cut batch is redone by the
// next run under that name); Remove then still waits for them to return
// and returns an error wrapping ctx.Err() — the stages are removed all the
// same.
//
// Readers, hop positions and state snapshots are kept, so a stage re-added
// under the same name resumes exactly where it stopped. A stage removed for
// good should have its readers removed from its input channel
// (channel.RemoveReader with the stage name, and for stateful bolts the
// names from StateReaderName on partition 0 of the first output), or they
// hold back retention.
//
// An unknown name is an error, and then nothing is removed. Remove is safe
// before Start (the stage is dropped from the set), concurrently with Add,
// Remove and Stats, and after Stop.
func (p *Pipeline) Remove(ctx context.Context, names ...string) error {
	p.mu.Lock()
	var sts []*stage
	for _, name := range names {
		i := slices.IndexFunc(p.stages, func(st *stage) bool { return st.name == name })
		if i < 0 {
			p.mu.Unlock()
			return fmt.Errorf("pipeline: remove %q: no stage of that name", name)
		}
		if !slices.Contains(sts, p.stages[i]) {
			sts = append(sts, p.stages[i])
		}
	}
	if p.phase == phaseNew {
		p.stages = slices.DeleteFunc(p.stages, func(st *stage) bool { return slices.Contains(sts, st) })
		p.mu.Unlock()
		return nil
	}
	for _, st := range sts {
		if !st.halting {
			st.halting = true
			close(st.halt)
		}
	}
	p.mu.Unlock()

	var cancelled []string
	for _, st := range sts {
		select {
		case <-st.done:
		case <-ctx.Done():
			p.log.Warn("stage did not halt before the deadline; cancelling it", "stage", st.name, "err", ctx.Err())
			st.cancel()
			<-st.done
			cancelled = append(cancelled, st.name)
		}
	}
	p.mu.Lock()
	p.stages = slices.DeleteFunc(p.stages, func(st *stage) bool { return slices.Contains(sts, st) })
	p.mu.Unlock()
	if len(cancelled) > 0 {
		return fmt.Errorf("pipeline: %s did not halt by the deadline and were cancelled (removed all the same; the cut batch is redone when re-added): %w",
			strings.Join(cancelled, ", "), ctx.Err())
	}
	return nil
}

// StateReaderName is the channel reader that keeps the state deltas of
// instance (partition) i of stateful bolt name from being deleted before
// its next snapshot; it reads partition 0 of the bolt's first output.
func StateReaderName(bolt string, i int) string { return stateReaderName(bolt, i) }

// Stop stops intake (sources), lets bolts and sinks drain what is already
// in their input channels — each stage once every stage writing its input
// has stopped, among the stages present when Stop is called — and returns
// when everything has stopped or ctx ends, whichever is first; at the
// deadline in-flight work is abandoned (it is redone after a restart:
// nothing is lost). Safe without Start and safe twice.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.mu.Lock()
	started := p.phase != phaseNew
	p.mu.Unlock()
	if !started {
		return nil
	}
	p.stopOnce.Do(func() { close(p.stopIntake) })
	select {
	case <-p.done:
		p.hardCancel()
		return nil
	case <-ctx.Done():
		p.hardCancel()
		<-p.done
		return fmt.Errorf("pipeline: drain did not finish before the deadline: %w", ctx.Err())
	}
}

// Done is closed when every stage has stopped after Stop or the end of the
// run's context.
func (p *Pipeline) Done() <-chan struct{} { return p.done }

// Stats returns the counters of each stage in the pipeline, in the order
// the stages were added.
func (p *Pipeline) Stats() []StageStats {
	p.mu.Lock()
	sts := slices.Clone(p.stages)
	p.mu.Unlock()
	out := make([]StageStats, 0, len(sts))
	for _, st := range sts {
		c := st.c
		s := StageStats{Name: st.name, Kind: st.kind, EventsIn: c.in.Load(), EventsOut: c.out.Load(),
			Rejected: c.rejected.Load(), Restarts: c.restarts.Load(),
			BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), BatchLatency: c.latency.snapshot(),
			Failing: st.nFailing.Load() > 0, Parallelism: st.parallelism}
		if e, ok := c.lastErr.Load().(string); ok {
			s.LastError = e
		}
		out = append(out, s)
	}
	return out
}

// nextRecord returns the next record of r: blocking until one arrives (or
// until wake, when non-zero), and once st.drain is closed, only what is
// already there (ok false when nothing is left). Once st.halt is closed it
// returns ok false at once: the caller is between batches.
//
// beforeBlock runs when no record is ready, before waiting: runners commit
// their consumed position there, so that a reader that has caught up never
// holds back retention (and with it a writer blocked on a full channel).
func nextRecord(ctx context.Context, r channel.Reader, st *stage, wake time.Time, beforeBlock func()) (rec channel.Record, ok bool, timedOut bool, err error) {
	if halted(st) {
		return rec, false, false, nil
	}
	select {
	case <-st.drain:
		rec, ok, err = r.TryNext()
		if !ok && err == nil {
			beforeBlock()
		}
		return rec, ok, false, err
	default:
	}
	if rec, ok, err = r.TryNext(); ok || err != nil {
		return rec, ok, false, err
	}
	beforeBlock()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		select {
		case <-st.drain:
			cancel()
		case <-st.halt:
			cancel()
		case <-stopWatch:
		}
	}()
	if !wake.IsZero() {
		var c2 context.CancelFunc
		wctx, c2 = context.WithDeadline(wctx, wake)
		defer c2()
	}
	rec, err = r.Next(wctx)
	if err == nil {
		return rec, true, false, nil
	}
	if ctx.Err() != nil {
		return rec, false, false, ctx.Err()
	}
	if halted(st) {
		return rec, false, false, nil
	}
	select {
	case <-st.drain:
		rec, ok, err = r.TryNext()
		return rec, ok, false, err
	default:
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return rec, false, true, nil
	}
	return rec, false, false, err
}

// halted reports whether Remove has asked st to halt.
func halted(st *stage) bool {
	select {
	case <-st.halt:
		return true
	default:
		return false
	}
}
