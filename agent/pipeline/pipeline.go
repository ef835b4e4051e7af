package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// Input.
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
type StageStats struct {
	Name      string
	Kind      string // source, bolt or sink
	EventsIn  uint64
	EventsOut uint64
	Rejected  uint64 // events sent to the dead-letter channel
	Restarts  uint64
	LastError string
}

// Pipeline runs a Spec: one goroutine per source, per bolt instance (one per
// input partition) and per sink instance (one per input partition), each
// under a supervisor that restarts it with exponential backoff after an
// error.
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
// Lifecycle: New, then Start once; Stop stops intake, drains, and returns by
// its context's deadline. Stop is safe without Start and safe twice.
type Pipeline struct {
	spec   Spec
	log    *slog.Logger
	stages []*stage

	hardCtx    context.Context
	hardCancel context.CancelFunc
	stopIntake chan struct{}
	stopOnce   sync.Once
	started    atomic.Bool
	wg         sync.WaitGroup
	done       chan struct{}
}

type stage struct {
	name     string
	kind     string
	inputs   []string // channels it reads
	outputs  []string // channels it writes
	upstream []*stage
	// instances run concurrently; the stage is done when all return.
	instances []func(ctx context.Context, drain <-chan struct{}) error
	done      chan struct{}
	drain     chan struct{}

	in, out, rejected, restarts atomic.Uint64
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
	p := &Pipeline{spec: spec, log: spec.Logger, stopIntake: make(chan struct{}), done: make(chan struct{})}
	for i := range spec.Sources {
		s := &spec.Sources[i]
		if s.New == nil || s.Output.Channel == nil {
			return nil, fmt.Errorf("pipeline: source %q needs New and an output channel", s.Name)
		}
		st := p.newStage(s.Name, "source", nil, []string{s.Output.Name})
		r := &sourceRunner{p: p, st: st, spec: s}
		st.instances = append(st.instances, r.run)
	}
	for i := range spec.Bolts {
		b := &spec.Bolts[i]
		if b.New == nil || b.Input.Channel == nil || len(b.Outputs) == 0 {
			return nil, fmt.Errorf("pipeline: bolt %q needs New, an input and an output", b.Name)
		}
		var outs []string
		for _, o := range b.Outputs {
			outs = append(outs, o.Name)
		}
		st := p.newStage(b.Name, "bolt", []string{b.Input.Name}, outs)
		for inst := 0; inst < b.Input.Channel.Partitions(); inst++ {
			r := &boltRunner{p: p, st: st, spec: b, instance: inst}
			st.instances = append(st.instances, r.run)
		}
	}
	for i := range spec.Sinks {
		s := &spec.Sinks[i]
		if s.New == nil || s.Input.Channel == nil {
			return nil, fmt.Errorf("pipeline: sink %q needs New and an input", s.Name)
		}
		st := p.newStage(s.Name, "sink", []string{s.Input.Name}, nil)
		for part := 0; part < s.Input.Channel.Partitions(); part++ {
			r := &sinkRunner{p: p, st: st, spec: s, partition: part}
			st.instances = append(st.instances, r.run)
		}
	}
	// A stage drains once every writer of its input has stopped.
	for _, st := range p.stages {
		for _, in := range st.inputs {
			for _, w := range p.stages {
				for _, o := range w.outputs {
					if o == in && w != st {
						st.upstream = append(st.upstream, w)
					}
				}
			}
		}
	}
	return p, nil
}

func (p *Pipeline) newStage(name, kind string, in, out []string) *stage {
	st := &stage{name: name, kind: kind, inputs: in, outputs: out, done: make(chan struct{}), drain: make(chan struct{})}
	p.stages = append(p.stages, st)
	return st
}

// Start runs every stage under the supervisor and returns at once. ctx
// bounds the whole run: when it ends, stages stop without draining.
func (p *Pipeline) Start(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("pipeline: already started")
	}
	// Register every reader before any writer starts, so that retention
	// never frees a record a reader has not seen and a new reader starts at
	// the first record.
	for i := range p.spec.Bolts {
		b := &p.spec.Bolts[i]
		for part := 0; part < b.Input.Channel.Partitions(); part++ {
			if _, err := b.Input.Channel.Reader(b.Name, part); err != nil {
				return fmt.Errorf("pipeline: bolt %s: reader on %s/%d: %w", b.Name, b.Input.Name, part, err)
			}
			if b.Stateful {
				if _, err := b.Outputs[0].Channel.Reader(stateReaderName(b.Name, part), 0); err != nil {
					return fmt.Errorf("pipeline: bolt %s: state reader on %s/0: %w", b.Name, b.Outputs[0].Name, err)
				}
			}
		}
	}
	for i := range p.spec.Sinks {
		s := &p.spec.Sinks[i]
		for part := 0; part < s.Input.Channel.Partitions(); part++ {
			if _, err := s.Input.Channel.Reader(s.Name, part); err != nil {
				return fmt.Errorf("pipeline: sink %s: reader on %s/%d: %w", s.Name, s.Input.Name, part, err)
			}
		}
	}
	p.hardCtx, p.hardCancel = context.WithCancel(ctx)
	for _, st := range p.stages {
		st := st
		var instWG sync.WaitGroup
		for i, inst := range st.instances {
			instWG.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer instWG.Done()
				p.supervise(st, i, inst)
			}()
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			instWG.Wait()
			close(st.done)
		}()
		// Drain when all upstream stages are done (sources: on Stop).
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if st.kind == "source" {
				select {
				case <-p.stopIntake:
				case <-p.hardCtx.Done():
				}
			} else {
				for _, u := range st.upstream {
					select {
					case <-u.done:
					case <-p.hardCtx.Done():
					}
				}
				select {
				case <-p.stopIntake:
				case <-p.hardCtx.Done():
				}
			}
			close(st.drain)
		}()
	}
	go func() {
		p.wg.Wait()
		close(p.done)
	}()
	return nil
}

// supervise runs one stage instance, restarting it with exponential backoff
// after failures, until it returns nil (drained) or the run ends.
func (p *Pipeline) supervise(st *stage, i int, run func(context.Context, <-chan struct{}) error) {
	backoff := p.spec.MinBackoff
	for {
		began := time.Now()
		err := run(p.hardCtx, st.drain)
		if err == nil || p.hardCtx.Err() != nil {
			return
		}
		st.restarts.Add(1)
		st.lastErr.Store(err.Error())
		if time.Since(began) > 10*p.spec.MaxBackoff {
			backoff = p.spec.MinBackoff
		}
		p.log.Error("stage failed; restarting", "stage", st.name, "instance", i, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.hardCtx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, p.spec.MaxBackoff)
	}
}

// Stop stops intake (sources), lets bolts and sinks drain what is already
// in their input channels, and returns when everything has stopped or ctx
// ends, whichever is first; at the deadline in-flight work is abandoned
// (it is redone after a restart: nothing is lost). Safe without Start and
// safe twice.
func (p *Pipeline) Stop(ctx context.Context) error {
	if !p.started.Load() {
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

// Done is closed when every stage has stopped.
func (p *Pipeline) Done() <-chan struct{} { return p.done }

// Stats returns each stage's counters.
func (p *Pipeline) Stats() []StageStats {
	out := make([]StageStats, 0, len(p.stages))
	for _, st := range p.stages {
		s := StageStats{Name: st.name, Kind: st.kind, EventsIn: st.in.Load(), EventsOut: st.out.Load(),
			Rejected: st.rejected.Load(), Restarts: st.restarts.Load()}
		if e, ok := st.lastErr.Load().(string); ok {
			s.LastError = e
		}
		out = append(out, s)
	}
	return out
}

// nextRecord returns the next record of r: blocking until one arrives (or
// until wake, when non-zero), and once drain is closed, only what is
// already there (ok false when nothing is left).
//
// beforeBlock runs when no record is ready, before waiting: runners commit
// their consumed position there, so that a reader that has caught up never
// holds back retention (and with it a writer blocked on a full channel).
func nextRecord(ctx context.Context, r channel.Reader, drain <-chan struct{}, wake time.Time, beforeBlock func()) (rec channel.Record, ok bool, timedOut bool, err error) {
	select {
	case <-drain:
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
		case <-drain:
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
	select {
	case <-drain:
		rec, ok, err = r.TryNext()
		return rec, ok, false, err
	default:
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return rec, false, true, nil
	}
	return rec, false, false, err
}
