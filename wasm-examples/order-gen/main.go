// Command order-gen is a Sluice source (Go): it generates synthetic order
// lines (the reference workload, DESIGN §1) at a configured rate. Line i is
// the same as internal/orders' generator line i for the same seed, start,
// step and malformed_every, so a test — or a person — can recompute exactly
// what it produced and what the results of a pipeline must be.
//
// Build: sluice plugin build wasm-examples/order-gen
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/orders"
	sluice "github.com/sluicehq/sluice/sdk/go"
)

type orderGen struct {
	seed           uint64
	rate           int64 // orders per second; 0: as fast as the host polls
	count          uint64
	malformedEvery int
	start          time.Time // time of order 0; zero: the time of the first Open
	step           time.Duration

	gen    *orders.Generator
	next   uint64 // index of the next order
	opened int64  // clock at Open (unix ns), for the rate
	base   uint64 // next at Open
	line   []byte
	pos    []byte
}

func (g *orderGen) Init(cfg *sluice.Config) error {
	seed, err := cfg.Int("seed", 1)
	if err != nil {
		return err
	}
	if g.rate, err = cfg.Int("rate", 1000); err != nil || g.rate < 0 {
		return errors.New("config rate: want orders per second, a non-negative integer (0: as fast as polled)")
	}
	count, err := cfg.Int("count", 0)
	if err != nil || count < 0 {
		return errors.New("config count: want a non-negative integer (0: no end)")
	}
	every, err := cfg.Int("malformed_every", 0)
	if err != nil || every < 0 {
		return errors.New("config malformed_every: want a non-negative integer (0: none)")
	}
	if s := cfg.String("start", ""); s != "" {
		if g.start, err = time.Parse(time.RFC3339, s); err != nil {
			return fmt.Errorf("config start: %v", err)
		}
	}
	step, err := cfg.Duration("step", 0)
	if err != nil {
		return err
	}
	if step == 0 && g.rate > 0 {
		step = time.Second / time.Duration(g.rate) // order times advance at the rate
	}
	g.seed, g.count, g.malformedEvery, g.step = uint64(seed), uint64(count), int(every), step
	return nil
}

// Open resumes after resume, "next:startMs" (the start is kept so a restart
// continues the same timeline even when it was taken from the clock).
func (g *orderGen) Open(resume []byte) error {
	now := sluice.Now()
	if resume != nil {
		i, ms, ok := strings.Cut(string(resume), ":")
		next, err1 := strconv.ParseUint(i, 10, 64)
		startMs, err2 := strconv.ParseInt(ms, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("position %q is not next:startMs", resume)
		}
		g.next = next
		g.start = time.UnixMilli(startMs).UTC()
	} else if g.start.IsZero() {
		g.start = time.Unix(0, now).UTC().Truncate(time.Millisecond)
	}
	g.gen = orders.NewGenerator(orders.GenConfig{Seed: g.seed, Start: g.start, Step: g.step, MalformedEvery: g.malformedEvery})
	g.opened, g.base = now, g.next
	return nil
}

func (g *orderGen) Poll(max int, out *sluice.Output) ([]byte, error) {
	end := g.next + uint64(max)
	if g.rate > 0 {
		due := g.base + uint64((sluice.Now()-g.opened)*g.rate/int64(time.Second))
		end = min(end, due)
	}
	if g.count > 0 {
		end = min(end, g.count)
	}
	for ; g.next < end; g.next++ {
		g.line = g.gen.AppendLine(g.line[:0], g.next)
		o := g.gen.Order(g.next)
		out.Emit(o.TimeMs*int64(time.Millisecond), nil, g.line[:len(g.line)-1])
	}
	g.pos = strconv.AppendUint(g.pos[:0], g.next, 10)
	g.pos = append(g.pos, ':')
	g.pos = strconv.AppendInt(g.pos, g.start.UnixMilli(), 10)
	return g.pos, nil
}

func (g *orderGen) Ack([]byte) error { return nil }

func init() { sluice.Register(&orderGen{}) }

// main is never run: the module is a reactor whose exports the host calls.
func main() {}
