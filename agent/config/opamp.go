package config

// OpAMP is the [agent.opamp] table: the agent reports to and takes remote
// configuration from an OpAMP server. Off unless Endpoint is set.
type OpAMP struct {
	// Endpoint is the OpAMP server's WebSocket URL (ws:// or wss://).
	Endpoint string `toml:"endpoint"`
}

// checkOpAMP validates the [agent.opamp] table.
func (c *checker) checkOpAMP(o *OpAMP) {}
