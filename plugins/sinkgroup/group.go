// Package sinkgroup is the group sink: one sink made of member sinks, with
// Flume's two sink processors — failover (members by priority; a failed one
// sits out a growing penalty) and load_balance (round robin or random over
// healthy members, with backoff for failed ones).
//
// Members are ordinary sink plugins built through the registry, each with
// its own config table; the group only decides which member gets a batch.
//
// Exactly-once across members: a write that failed without an answer (a
// forward sink's ack timeout, a connection cut after the batch was sent)
// leaves the batch in doubt — the member may have stored it. Sending it to
// another member could store it twice, so an in-doubt batch is retried on
// the same member, whose own fence makes the retry harmless, until that
// member answers or in_doubt_timeout passes; only then does the group warn
// and fall back to another member (at-least-once for that batch). A failure
// the member reports as not delivered (an error with a NotDelivered() true
// method: refused connection, refused batch) is not in doubt and moves on
// at once. Errors of members that do not say are treated as in doubt.
//
// The pinning survives a restart: before each send the group records
// (stream, offset, member) durably in its data directory (assignments.go),
// and a batch the runner replays after a crash goes back, as in doubt, to
// the member it was sent to. See docs/adr/0011-forwarding-and-sink-groups.md.
package sinkgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/sluicehq/sluice/agent/pipeline"
)

var _ pipeline.Sink = (*Group)(nil)

// Group is the group sink. It implements pipeline.Sink.
//
// Lifecycle: New, Open once (opens every member), Write from one goroutine,
// Close (closes every member). Close is safe without Open and safe twice.
type Group struct {
	cfg     Config
	log     *slog.Logger
	members []*member
	next    int // round-robin cursor
	rng     *rand.Rand
	now     func() time.Time

	// dir is the stage's data directory, holding the assignment logs;
	// logs are those opened so far, by stream.
	dir  string
	logs map[string]*assignLog
	byID map[uint64]*member

	// doubt is the batch whose last write ended without an answer.
	doubt *inDoubt
}

type member struct {
	Member
	id       uint64 // memberID(Name), its name in the assignment log
	sink     pipeline.Sink
	failures int       // in a row
	until    time.Time // not chosen before this, unless nothing else is left
}

type inDoubt struct {
	fence  pipeline.Fence
	member *member
	since  time.Time
}

// NewMember builds the sink of members[i] from its decoded config.
type NewMember func(m *Member) (pipeline.Sink, error)

// New returns a group for cfg, building each member with build. cfg is
// validated (which decodes the member configs) if it was not already.
// dir is the stage's data directory, where the group keeps which member
// each recent batch went to (so a replay after a crash goes to the same
// one); "" keeps that in memory only, which is exactly once only while the
// process lives. logger may be nil.
func New(cfg Config, dir string, build NewMember, logger *slog.Logger) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Group{cfg: cfg, log: logger, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), now: time.Now,
		dir: dir, logs: map[string]*assignLog{}, byID: map[uint64]*member{}}
	for i := range cfg.Members {
		m := &cfg.Members[i]
		s, err := build(m)
		if err != nil {
			for _, built := range g.members {
				built.sink.Close(context.Background())
			}
			return nil, fmt.Errorf("members[%d] (%s): %w", i, m.Name, err)
		}
		mb := &member{Member: *m, id: memberID(m.Name), sink: s}
		if other, dup := g.byID[mb.id]; dup {
			for _, built := range append(g.members, mb) {
				built.sink.Close(context.Background())
			}
			return nil, fmt.Errorf("members[%d] (%s): its name hashes like member %s's; rename one", i, m.Name, other.Name)
		}
		g.byID[mb.id] = mb
		g.members = append(g.members, mb)
	}
	return g, nil
}

// Open opens every member; if one fails, those opened are closed again.
func (g *Group) Open(ctx context.Context) error {
	for i, m := range g.members {
		if err := m.sink.Open(ctx); err != nil {
			for _, o := range g.members[:i] {
				o.sink.Close(ctx)
			}
			return fmt.Errorf("group member %s: open: %w", m.Name, err)
		}
	}
	return nil
}

// Write delivers batch through one member. An error means no member took it
// (or the one that may have is still in doubt); the runner retries the same
// batch and fence.
func (g *Group) Write(ctx context.Context, batch []byte, fence pipeline.Fence) ([]pipeline.Reject, error) {
	alog, err := g.assignLog(fence.Stream)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	if d := g.doubt; d != nil && d.fence != fence {
		g.doubt = nil // a different batch: the runner started over
	}
	if g.doubt == nil && alog != nil {
		// A batch sent before a restart is in doubt on the member it went
		// to: that member may have stored it, and only its fence can tell.
		id, ok, beyond := alog.replayed(fence.Offset)
		if m := g.byID[id]; ok && m != nil {
			g.doubt = &inDoubt{fence: fence, member: m, since: g.now()}
			g.log.Info("group: replayed batch goes back to the member it was sent to before the restart",
				"member", m.Name, "stream", fence.Stream, "offset", fence.Offset)
		} else if ok || beyond {
			g.log.Warn("group: replayed batch was sent before the restart to a member this log no longer knows; choosing anew (it may be stored twice)",
				"stream", fence.Stream, "offset", fence.Offset, "removed_member", ok)
		}
	}
	if d := g.doubt; d != nil {
		switch {
		case g.now().Sub(d.since) < g.cfg.InDoubtTimeout.D:
			rejects, err := d.member.sink.Write(ctx, batch, fence)
			if err == nil {
				g.doubt = nil
				g.succeeded(d.member)
				return rejects, nil
			}
			g.failed(d.member)
			return nil, fmt.Errorf("group: batch at offset %d is in doubt on member %s since %s; retrying there only: %w",
				fence.Offset, d.member.Name, d.since.Format(time.RFC3339), err)
		default:
			g.log.Warn("group: in-doubt batch not answered within in_doubt_timeout; sending it to another member (it may be stored twice)",
				"member", d.member.Name, "offset", fence.Offset, "stream", fence.Stream, "in_doubt_timeout", g.cfg.InDoubtTimeout.D)
			g.doubt = nil
		}
	}
	var errs []error
	for _, m := range g.order() {
		if alog != nil {
			if err := alog.record(fence.Offset, m.id); err != nil {
				return nil, fmt.Errorf("group: %w", err) // nothing sent
			}
		}
		rejects, err := m.sink.Write(ctx, batch, fence)
		if err == nil {
			g.succeeded(m)
			return rejects, nil
		}
		g.failed(m)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var nd interface{ NotDelivered() bool }
		if !errors.As(err, &nd) || !nd.NotDelivered() {
			g.doubt = &inDoubt{fence: fence, member: m, since: g.now()}
			return nil, fmt.Errorf("group: member %s: %w (in doubt: retried on %s only for up to %v)", m.Name, err, m.Name, g.cfg.InDoubtTimeout.D)
		}
		errs = append(errs, fmt.Errorf("member %s: %w", m.Name, err))
	}
	return nil, fmt.Errorf("group: no member took the batch: %w", errors.Join(errs...))
}

// assignLog returns stream's assignment log, opening it on the stream's
// first batch (the group learns its streams from the fences); nil without
// a data directory.
func (g *Group) assignLog(stream string) (*assignLog, error) {
	if g.dir == "" {
		return nil, nil
	}
	if l := g.logs[stream]; l != nil {
		return l, nil
	}
	l, damaged, err := openAssignLog(g.dir, stream)
	if err != nil {
		return nil, err
	}
	if damaged > 0 {
		g.log.Warn("group: assignment log had damaged slots (a write torn by a crash is one; its batch was not sent); skipped",
			"file", l.path, "damaged", damaged)
	}
	g.logs[stream] = l
	return l, nil
}

// order lists the members to try for a new batch: those not sitting out a
// penalty, by priority (failover) or by the selector (load_balance). When
// every member is penalised, the one whose penalty ends first is tried, so a
// group never refuses to try at all.
func (g *Group) order() []*member {
	now := g.now()
	var ready []*member
	for _, m := range g.members {
		if !now.Before(m.until) {
			ready = append(ready, m)
		}
	}
	if len(ready) == 0 {
		first := g.members[0]
		for _, m := range g.members[1:] {
			if m.until.Before(first.until) {
				first = m
			}
		}
		return []*member{first}
	}
	if g.cfg.Processor == "failover" {
		sort.SliceStable(ready, func(i, j int) bool { return ready[i].Priority > ready[j].Priority })
		return ready
	}
	if g.cfg.Selector == "random" {
		g.rng.Shuffle(len(ready), func(i, j int) { ready[i], ready[j] = ready[j], ready[i] })
		return ready
	}
	start := g.next % len(ready)
	g.next++
	return append(ready[start:], ready[:start]...)
}

func (g *Group) succeeded(m *member) {
	if m.failures > 0 {
		g.log.Info("group: member recovered", "member", m.Name, "after_failures", m.failures)
	}
	m.failures, m.until = 0, time.Time{}
}

// failed puts m out for backoff × 2^(failures-1), at most max_backoff.
func (g *Group) failed(m *member) {
	m.failures++
	p := g.cfg.Backoff.D
	for i := 1; i < m.failures && p < g.cfg.MaxBackoff.D; i++ {
		p *= 2
	}
	p = min(p, g.cfg.MaxBackoff.D)
	m.until = g.now().Add(p)
}

// Close closes every member and the assignment logs and returns the first
// error.
func (g *Group) Close(ctx context.Context) error {
	var first error
	for s, l := range g.logs {
		if err := l.close(); err != nil && first == nil {
			first = fmt.Errorf("group: %w", err)
		}
		delete(g.logs, s)
	}
	for _, m := range g.members {
		if err := m.sink.Close(ctx); err != nil && first == nil {
			first = fmt.Errorf("group member %s: close: %w", m.Name, err)
		}
	}
	return first
}
