package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// Bolt adapts a bolt plugin to pipeline.Bolt. When the module exports
// sluice_tick the value also implements pipeline.Ticker. Closing the
// adapter closes the plugin.
func (p *Plugin) Bolt() pipeline.Bolt {
	b := &boltAdapter{p: p}
	if p.hasTick {
		return &tickingBolt{b}
	}
	return b
}

// Source adapts a source plugin to pipeline.Source.
func (p *Plugin) Source() pipeline.Source { return &sourceAdapter{p: p} }

// Sink adapts a sink plugin to pipeline.Sink.
func (p *Plugin) Sink() pipeline.Sink { return &sinkAdapter{p: p} }

// ErrRetry is wrapped by the error of a sink write whose plugin answered
// status retry: a transient failure the runner should back off from.
var ErrRetry = errors.New("plugin asked to retry later")

// statusError turns a non-ok result into the error the pipeline expects.
func (p *Plugin) statusError(op string, res *Result) error {
	switch res.Status {
	case StatusOK:
		return nil
	case StatusRetry:
		return &PluginError{Plugin: p.name, Op: op, Err: fmt.Errorf("%w: %s", ErrRetry, res.Message)}
	}
	return &PluginError{Plugin: p.name, Op: op, Err: fmt.Errorf("plugin reported an error: %s", res.Message)}
}

func rejects(rs []Reject) []pipeline.Reject {
	if len(rs) == 0 {
		return nil
	}
	out := make([]pipeline.Reject, len(rs))
	for i, r := range rs {
		out[i] = pipeline.Reject{Index: r.Index, Reason: r.Reason}
	}
	return out
}

// appendEvents adds the events of a validated batch to out in one copy: the
// guest's output batch is already in the wire form (sdk/ABI.md §3 is
// agent/event's), so decoding and re-encoding every event — as this did
// before, ~8% of `sluice bench`'s CPU with C bolts — only cost time.
func appendEvents(out *event.Builder, batch []byte) error {
	return out.AddEncoded(batch)
}

type boltAdapter struct{ p *Plugin }

func (b *boltAdapter) Process(ctx context.Context, in []byte, out *event.Builder) ([]pipeline.Reject, error) {
	res, err := b.p.Process(ctx, in)
	if err != nil {
		return nil, err
	}
	if err := b.p.statusError("process", res); err != nil {
		return nil, err
	}
	defer res.Release()
	if err := appendEvents(out, res.Batch); err != nil {
		return nil, &PluginError{Plugin: b.p.name, Op: "process", Err: err}
	}
	return rejects(res.Rejects), nil
}

func (b *boltAdapter) Close(ctx context.Context) error { return b.p.Close(ctx) }

type tickingBolt struct{ *boltAdapter }

func (b *tickingBolt) Tick(ctx context.Context, now time.Time, out *event.Builder) error {
	res, err := b.p.Tick(ctx, now.UnixNano())
	if err != nil {
		return err
	}
	if err := b.p.statusError("tick", res); err != nil {
		return err
	}
	defer res.Release()
	if err := appendEvents(out, res.Batch); err != nil {
		return &PluginError{Plugin: b.p.name, Op: "tick", Err: err}
	}
	return nil
}

type sourceAdapter struct{ p *Plugin }

func (s *sourceAdapter) Open(ctx context.Context, resume []byte) error {
	return s.p.Ack(ctx, resume)
}

// Read polls until the plugin returns events or a new position, backing off
// between empty polls, so that an idle source does not spin a core.
func (s *sourceAdapter) Read(ctx context.Context, max int) (pipeline.SourceBatch, error) {
	const minIdle, maxIdle = time.Millisecond, 100 * time.Millisecond
	idle := minIdle
	for {
		res, err := s.p.Poll(ctx, max)
		if err != nil {
			return pipeline.SourceBatch{}, err
		}
		if err := s.p.statusError("poll", res); err != nil && res.Status != StatusRetry {
			return pipeline.SourceBatch{}, err
		}
		if res.Status == StatusOK && (inputCount(res.Batch) > 0 || res.Position != nil) {
			return pipeline.SourceBatch{Events: res.Batch, Position: res.Position}, nil
		}
		t := time.NewTimer(idle)
		select {
		case <-ctx.Done():
			t.Stop()
			return pipeline.SourceBatch{}, ctx.Err()
		case <-t.C:
		}
		idle = min(2*idle, maxIdle)
	}
}

func (s *sourceAdapter) Ack(ctx context.Context, pos []byte) error { return s.p.Ack(ctx, pos) }

func (s *sourceAdapter) Close(ctx context.Context) error { return s.p.Close(ctx) }

type sinkAdapter struct{ p *Plugin }

func (s *sinkAdapter) Open(ctx context.Context) error { return nil }

func (s *sinkAdapter) Write(ctx context.Context, batch []byte, _ pipeline.Fence) ([]pipeline.Reject, error) {
	res, err := s.p.Write(ctx, batch)
	if err != nil {
		return nil, err
	}
	res.Release()
	if err := s.p.statusError("write", res); err != nil {
		return nil, err
	}
	return rejects(res.Rejects), nil
}

func (s *sinkAdapter) Close(ctx context.Context) error { return s.p.Close(ctx) }
