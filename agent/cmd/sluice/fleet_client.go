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
// [agent.opamp] table, if it has one: remote configs go through r, the
// fleet.Applier (the same validate-then-apply path as a local reload), and
// health is computed from status. The returned stop disconnects; it is safe
// to call when the table is absent. The agent runs on unchanged while the
// server is away.
func startFleetClient(ctx context.Context, cfg *config.File, log *slog.Logger, r *reloader, status func() admin.Status) (stop func(), err error) {
	if !cfg.Agent.OpAMP.Enabled() {
		return func() {}, nil
	}
	c, err := fleet.StartClient(ctx, fleet.ClientOptions{
		Config: cfg, Version: version, Applier: r, Status: status, Logger: log,
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
