package topology

import "github.com/sluicehq/sluice/agent/wasmhost"

// PluginStats returns the memory, guest time and counters of every WASM
// plugin the agent has loaded, one entry per stage name (summed over the
// stage's partitions and restarts). Safe at any time from any goroutine,
// also before Start and after Stop.
func (a *Agent) PluginStats() []wasmhost.PluginStats {
	if a == nil || a.rt == nil {
		return nil
	}
	return a.rt.Stats()
}
