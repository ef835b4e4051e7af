package topology

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
)

// Changes is what a reload changes, by name, each list sorted.
type Changes struct {
	// Stages: added, removed, and changed (restarted) ones. A stage is
	// changed when its resolved settings, the channels it reads or writes
	// (or their grouping), or the sha256 of its .wasm file's bytes changed.
	// Every other stage keeps running untouched.
	Added, Removed, Changed []string
	// Channels opened and closed. Channels in both configs keep their data.
	AddedChannels, RemovedChannels []string
	// ReopenedChannels are file channels whose sizes or fsync changed: they
	// are closed and opened again with the new settings (their data stays),
	// and every stage reading or writing them is in Changed.
	ReopenedChannels []string
	// Restart lists [agent] settings that changed but take effect only
	// when the agent restarts (e.g. "agent.admin_addr").
	Restart []string
}

// Empty reports whether the reload changes no stage and no channel.
func (c Changes) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Changed)+len(c.AddedChannels)+len(c.RemovedChannels)+len(c.ReopenedChannels) == 0
}

// String lists the changes for a log line, e.g. "changed=[parse] added=[copy]".
func (c Changes) String() string {
	var parts []string
	for _, f := range []struct {
		name  string
		names []string
	}{{"added", c.Added}, {"removed", c.Removed}, {"changed", c.Changed},
		{"added_channels", c.AddedChannels}, {"removed_channels", c.RemovedChannels}, {"reopened_channels", c.ReopenedChannels}} {
		if len(f.names) > 0 {
			parts = append(parts, f.name+"=["+strings.Join(f.names, " ")+"]")
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " ")
}

// ErrStopped is returned by Reload after Stop.
var ErrStopped = errors.New("topology: the agent is stopped")

// Reload changes the running topology to newCfg, a config that
// config.Parse or config.Load checked without error. It validates first —
// the diff is allowed (see diff), every new or changed WASM module loads,
// removed channels are empty (or agent.drop_removed_channels is set), new
// channels and dead-letter channels open — and on any error nothing
// changes and the error is returned. Then it applies the diff: changed and
// removed stages halt at a batch boundary (pipeline.Remove, bounded by
// ctx), changed and added stages start (pipeline.Add). Unchanged stages
// keep running; a tail source keeps its files and positions, a Kafka source
// its group membership; channels keep their data.
//
// An error after validation (a stage that cannot be removed or added)
// leaves a partly applied topology; it is returned wrapped in
// "reload applied partly".
func (a *Agent) Reload(ctx context.Context, newCfg *config.File) (Changes, error) {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if a.stopped {
		return Changes{}, ErrStopped
	}
	a.mu.RLock()
	oldCfg, oldMods := a.cfg, a.modules
	a.mu.RUnlock()

	// Validate.
	newMods, err := readModules(newCfg)
	if err != nil {
		return Changes{}, err
	}
	ch, err := diff(oldCfg, oldMods, newCfg, newMods)
	if err != nil {
		return ch, err
	}
	var problems []error
	for _, name := range ch.RemovedChannels {
		c, _ := a.Channel(name)
		if depth := c.Stats().DepthEvents; depth > 0 && !newCfg.Agent.DropRemovedChannels {
			problems = append(problems, fmt.Errorf("channels.%s: removed from the config but still holds %d events: "+
				"keep it until its readers have drained it (depth 0 in /api/status), or set agent.drop_removed_channels = true to drop them", name, depth))
		}
	}
	for _, name := range slices.Concat(ch.Added, ch.Changed) {
		if s := stageOf(newCfg, name); s.Wasm != "" {
			if err := a.probe(ctx, s, newMods[name]); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if len(problems) > 0 {
		return ch, errors.Join(problems...)
	}
	opened := map[string]channel.Channel{}
	closeOpened := func() {
		for _, c := range opened {
			c.Close()
		}
	}
	data := newCfg.Agent.DataDir
	for _, name := range ch.AddedChannels {
		c, err := a.openChannel(data, newCfg.Channels[name])
		if err != nil {
			closeOpened()
			return ch, err
		}
		opened[name] = c
	}
	for _, name := range ch.Added {
		dlq, err := OpenDeadLetter(data, name, a.log)
		if err != nil {
			closeOpened()
			return ch, err
		}
		opened[DeadLetterName(name)] = dlq
	}

	// Apply.
	if halt := slices.Concat(ch.Removed, ch.Changed); len(halt) > 0 {
		if err := a.pipe.Remove(ctx, halt...); err != nil {
			// Remove cancels what has not halted by ctx's deadline and
			// waits for it, which the hop protocol makes safe: go on.
			a.log.Warn("reload: stages did not halt at a batch boundary in time; cancelled", "stages", halt, "err", err)
		}
	}
	var applyErrs []error
	a.mu.Lock()
	for _, name := range ch.Removed {
		s := stageOf(oldCfg, name)
		// Its reader positions would hold back the input's retention for
		// ever: a stage re-added later starts at the oldest retained record.
		if in, ok := a.channels[s.Input]; ok && s.Input != "" {
			for p := range in.Partitions() {
				applyErrs = append(applyErrs, in.RemoveReader(s.Name, p))
			}
			// A stateful bolt's state readers: one per instance, on
			// partition 0 of its first output.
			if outs := s.Outputs(); s.Kind == config.KindBolt && stateful(s, a.reg) && len(outs) > 0 {
				if out, ok := a.channels[outs[0]]; ok {
					for i := range in.Partitions() {
						applyErrs = append(applyErrs, out.RemoveReader(pipeline.StateReaderName(s.Name, i), 0))
					}
				}
			}
		}
		dlq := DeadLetterName(name)
		applyErrs = append(applyErrs, a.channels[dlq].Close())
		delete(a.channels, dlq)
		delete(a.sinks, name)
	}
	for _, name := range ch.Changed {
		delete(a.sinks, name)
	}
	for _, name := range ch.RemovedChannels {
		applyErrs = append(applyErrs, a.channels[name].Close())
		delete(a.channels, name)
		if newCfg.Agent.DropRemovedChannels {
			applyErrs = append(applyErrs, os.RemoveAll(ChannelDir(data, name)))
			a.log.Warn("reload: dropped channel", "channel", name)
		}
	}
	for name, c := range opened {
		a.channels[name] = c
	}
	for _, name := range ch.ReopenedChannels {
		// Every stage touching it has halted: close it and open it again
		// with the new settings (as a restart would). If that fails, the
		// old settings are tried so that its stages can start again.
		applyErrs = append(applyErrs, a.channels[name].Close())
		c, err := a.openChannel(data, newCfg.Channels[name])
		if err != nil {
			applyErrs = append(applyErrs, err)
			if c, err = a.openChannel(data, oldCfg.Channels[name]); err != nil {
				applyErrs = append(applyErrs, err)
				continue
			}
		}
		a.channels[name] = c
	}
	a.cfg, a.modules = newCfg, newMods
	var spec pipeline.Spec
	for _, name := range slices.Concat(ch.Changed, ch.Added) {
		a.addStageSpec(&spec, stageOf(newCfg, name))
	}
	a.mu.Unlock()
	if len(spec.Sources)+len(spec.Bolts)+len(spec.Sinks) > 0 {
		applyErrs = append(applyErrs, a.pipe.Add(ctx, spec))
	}
	if err := errors.Join(applyErrs...); err != nil {
		return ch, fmt.Errorf("reload applied partly: %w", err)
	}
	return ch, nil
}

// stageOf returns the stage called name in f (stage names are unique
// across kinds), nil if none.
func stageOf(f *config.File, name string) *config.Stage {
	for _, m := range []map[string]*config.Stage{f.Sources, f.Bolts, f.Sinks} {
		if s, ok := m[name]; ok {
			return s
		}
	}
	return nil
}

// diff compares the running config (with the modules its WASM stages run)
// to a new one. It refuses what cannot change while the agent runs: the
// data directory, the partitions of a channel (they hold its data, reader
// positions and bolt state), a channel's type, and any storage setting of
// a memory channel (reopening it would lose its events). A file channel
// whose sizes or fsync change is reopened, with the stages touching it
// restarted.
func diff(old *config.File, oldMods map[string]module, new *config.File, newMods map[string]module) (Changes, error) {
	var ch Changes
	var errs []error
	if old.Agent.DataDir != new.Agent.DataDir {
		errs = append(errs, fmt.Errorf("agent.data_dir: cannot change while the agent runs (%q → %q): restart the agent to use another data directory", old.Agent.DataDir, new.Agent.DataDir))
	}
	for _, f := range []struct {
		key      string
		old, new any
	}{
		{"agent.admin_addr", old.Agent.AdminAddr, new.Agent.AdminAddr},
		{"agent.admin_token", old.Agent.AdminToken, new.Agent.AdminToken},
		{"agent.log_level", old.Agent.LogLevel, new.Agent.LogLevel},
		{"agent.labels", old.Agent.Labels, new.Agent.Labels},
		{"agent.opamp", old.Agent.OpAMP, new.Agent.OpAMP},
	} {
		if !reflect.DeepEqual(f.old, f.new) {
			ch.Restart = append(ch.Restart, f.key)
		}
	}
	for _, name := range sortedKeys(new.Channels) {
		nc, oc := new.Channels[name], old.Channels[name]
		if oc == nil {
			ch.AddedChannels = append(ch.AddedChannels, name)
			continue
		}
		if oc.Partitions != nc.Partitions {
			errs = append(errs, fmt.Errorf("channels.%s.partitions: the partitions of a running channel cannot change (%d → %d): they hold its data, reader positions and bolt state. "+
				"Keep partitions = %d (bolt parallelism can change up to it), or add a new channel with %d partitions, move the stages to it and remove %s once it is drained",
				name, oc.Partitions, nc.Partitions, oc.Partitions, nc.Partitions, name))
		}
		switch d := storageDiff(oc, nc); {
		case d == "":
		case oc.Type != nc.Type:
			errs = append(errs, fmt.Errorf("channels.%s.type: a running channel's type cannot change (%s → %s): its events would be lost or stranded. "+
				"Add a new channel of type %s, move the stages to it, and remove %s once it is drained", name, oc.Type, nc.Type, nc.Type, name))
		case oc.Type == "memory":
			errs = append(errs, fmt.Errorf("channels.%s: %s of a memory channel cannot change on reload: reopening it would lose its events; restart the agent to apply it", name, d))
		default:
			ch.ReopenedChannels = append(ch.ReopenedChannels, name)
		}
	}
	for _, name := range sortedKeys(old.Channels) {
		if new.Channels[name] == nil {
			ch.RemovedChannels = append(ch.RemovedChannels, name)
		}
	}
	oldStages, newStages := map[string]*config.Stage{}, map[string]*config.Stage{}
	for _, s := range old.Stages() {
		oldStages[s.Name] = s
	}
	for _, s := range new.Stages() {
		newStages[s.Name] = s
	}
	touchesReopened := func(s *config.Stage) bool {
		for _, c := range append(s.Outputs(), s.Input) {
			if slices.Contains(ch.ReopenedChannels, c) {
				return true
			}
		}
		return false
	}
	for _, name := range sortedKeys(newStages) {
		ns, prev := newStages[name], oldStages[name]
		switch {
		case prev == nil:
			ch.Added = append(ch.Added, name)
		case !sameStage(old, prev, oldMods[name], new, ns, newMods[name]) || touchesReopened(prev) || touchesReopened(ns):
			ch.Changed = append(ch.Changed, name)
		}
	}
	for _, name := range sortedKeys(oldStages) {
		if newStages[name] == nil {
			ch.Removed = append(ch.Removed, name)
		}
	}
	return ch, errors.Join(errs...)
}

// storageDiff names the storage settings that differ between two versions
// of a channel ("" when none does).
func storageDiff(a, b *config.Channel) string {
	var d []string
	if a.Type != b.Type {
		d = append(d, "type")
	}
	if a.SegmentBytes.Or(config.DefaultSegmentBytes) != b.SegmentBytes.Or(config.DefaultSegmentBytes) {
		d = append(d, "segment_bytes")
	}
	if a.MaxBytes.Or(config.DefaultMaxBytes) != b.MaxBytes.Or(config.DefaultMaxBytes) {
		d = append(d, "max_bytes")
	}
	if a.MinFreeBytes.Or(0) != b.MinFreeBytes.Or(0) {
		d = append(d, "min_free_bytes")
	}
	if a.Fsync != b.Fsync || a.FsyncInterval.Or(0) != b.FsyncInterval.Or(0) {
		d = append(d, "fsync")
	}
	return strings.Join(d, ", ")
}

// sameStage reports whether a stage runs identically under both configs:
// same resolved settings (including its plugin's decoded config), same
// module bytes, and the same grouping on every channel it writes.
func sameStage(oldCfg *config.File, a *config.Stage, am module, newCfg *config.File, b *config.Stage, bm module) bool {
	ca, cb := *a, *b
	// The raw TOML of the plugin table: its decoded form is in Plugin.
	ca.Config, cb.Config = toml.Primitive{}, toml.Primitive{}
	if !reflect.DeepEqual(ca, cb) || am.sha256 != bm.sha256 {
		return false
	}
	for _, o := range a.Outputs() {
		if oldCfg.Channels[o].Grouping != newCfg.Channels[o].Grouping {
			return false
		}
	}
	return true
}
