// Command order-parse is a Sluice bolt (Go): it turns each JSON order line
// into a normalised order event keyed by its category, and rejects lines
// that are not valid orders with the reason. See README.md for the format.
//
// Build: sluice plugin build wasm-examples/order-parse
package main

import (
	sluice "github.com/sluicehq/sluice/sdk/go"
	"github.com/sluicehq/sluice/wasm-examples/internal/orderjson"
)

type orderParse struct {
	f    orderjson.Fields
	body []byte // reused for every output body
}

func (p *orderParse) Init(*sluice.Config) error { return nil }

func (p *orderParse) Process(e *sluice.Event, out *sluice.Output) error {
	if err := orderjson.Parse(e.Body, &p.f); err != nil {
		return sluice.Reject(err.Error())
	}
	p.body = orderjson.AppendCanonical(p.body[:0], &p.f)
	out.Emit(p.f.TimeMs*1e6, p.f.Category, p.body)
	return nil
}

func init() { sluice.Register(&orderParse{}) }

// main is never run: the module is a reactor whose exports the host calls.
func main() {}
