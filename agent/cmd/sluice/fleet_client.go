package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/fleet"
)

// startFleetClient connects the agent to the OpAMP server of cfg's
// [agent.opamp] table, if it has one: remote configs go through r (the same
// validate-then-apply path as a local reload) and health is computed from
// status. The returned stop disconnects; it is safe to call when the table
// is absent. The agent runs on unchanged while the server is away.
func startFleetClient(ctx context.Context, cfg *config.File, log *slog.Logger, r *reloader, status func() admin.Status) (stop func(), err error) {
	if !cfg.Agent.OpAMP.Enabled() {
		return func() {}, nil
	}
	c, err := fleet.StartClient(ctx, fleet.ClientOptions{
		Config: cfg, Version: version, Applier: fleetApplier{r}, Status: status, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Stop(sctx); err != nil {
			log.Warn("opamp: stop", "err", err)
		}
	}, nil
}

// fleetApplier gives the fleet client the reloader's apply path and the
// text of the running config.
type fleetApplier struct{ r *reloader }

func (a fleetApplier) ApplyBytes(ctx context.Context, name string, text []byte) error {
	return a.r.ApplyBytes(ctx, name, text)
}

// CurrentText reads the text the running config was parsed from. (It reads
// the reloader's field under its lock; a CurrentText method on reloader
// would be the cleaner home.)
func (a fleetApplier) CurrentText() []byte {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	return a.r.curText
}
