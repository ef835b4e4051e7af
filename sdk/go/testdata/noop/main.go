// Command noop is the smallest Go bolt: it forwards every event. The SDK's
// tests build it to check that a plugin imports only the host functions it
// calls (here: none from sluice_v1).
package main

import sluice "github.com/sluicehq/sluice/sdk/go"

type noop struct{}

func (noop) Init(*sluice.Config) error { return nil }

func (noop) Process(e *sluice.Event, out *sluice.Output) error {
	out.Forward(e)
	return nil
}

func init() { sluice.Register(noop{}) }

func main() {}
