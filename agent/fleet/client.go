// Package fleet manages Sluice agents through OpAMP, the OpenTelemetry
// Agent Management Protocol: the agent-side client (StartClient), a small
// server for users without one (StartServer, `sluice fleet serve`) and the
// ed25519 signing of WASM plugin packages (SignPackage, VerifyPackage).
//
// The client speaks standard OpAMP through opamp-go, so any OpAMP server can
// manage a Sluice agent: the remote config is one TOML file (any key of the
// AgentConfigMap; "sluice.toml" when there are several), plugins arrive as
// OpAMP packages whose DownloadableFile carries their sha256 and signature.
// What a server may change is decided by the agent's own [agent.opamp]
// table (config.OpAMP); see docs/adr/0012-fleet-opamp-and-plugin-signing.md.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/fleet/internal/pkgstore"
	"github.com/sluicehq/sluice/agent/fleet/internal/remote"
	"github.com/sluicehq/sluice/internal/atomicfile"
)

// ConfigFileName is the key of the remote config in an AgentConfigMap and
// of the effective config the agent reports.
const ConfigFileName = "sluice.toml"

// LabelPrefix prefixes each agent label in the agent description's
// non-identifying attributes ("sluice.label.role" = "edge").
const LabelPrefix = "sluice.label."

// Applier is the agent's reload path: validate-then-apply.
type Applier interface {
	// ApplyBytes validates the config text and applies it; on error the
	// running config stays. name labels the errors.
	ApplyBytes(ctx context.Context, name string, text []byte) error
	// CurrentText returns the TOML text of the config now running, however
	// it got there (the local file, a reload, a remote config).
	CurrentText() []byte
}

// ClientOptions configure StartClient.
type ClientOptions struct {
	// Config is the agent's config at start: it gives [agent.opamp], the
	// labels and the data dir, which a remote config cannot change.
	Config *config.File
	// Version is the agent's version, reported as service.version.
	Version string
	Applier Applier
	// Status returns the agent's admin status; health is computed from it.
	Status func() admin.Status
	Logger *slog.Logger
	// HealthEvery is how often health is sampled (default 1s).
	HealthEvery time.Duration
}

// Client is the agent's OpAMP client.
//
// Lifecycle: StartClient starts it and returns at once (connecting and
// reconnecting with backoff happen in the background; the agent runs
// unchanged while the server is away). Stop is safe to call twice and on a
// nil Client.
type Client struct {
	opts   ClientOptions
	log    *slog.Logger
	allow  []string
	grace  time.Duration
	oc     client.OpAMPClient
	store  *pkgstore.Store
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	applyMu sync.Mutex // one remote config at a time
	mu      sync.Mutex
	pending chan *protobufs.AgentRemoteConfig
	health  *protobufs.ComponentHealth
	// effective is the sha256 of the config text last reported as
	// effective (nil before the first report).
	effective *[sha256.Size]byte
	started   time.Time
	stopped   bool
}

// StartClient connects the agent to opts.Config's [agent.opamp] endpoint.
func StartClient(ctx context.Context, opts ClientOptions) (*Client, error) {
	o := opts.Config.Agent.OpAMP
	if !o.Enabled() {
		return nil, errors.New("agent.opamp.endpoint is not set")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HealthEvery <= 0 {
		opts.HealthEvery = time.Second
	}
	dir := filepath.Join(opts.Config.Agent.DataDir, "fleet")
	uid, err := loadInstanceUID(dir)
	if err != nil {
		return nil, fmt.Errorf("opamp: %w", err)
	}
	trusted := o.PublicKeys()
	store, err := pkgstore.Open(filepath.Join(dir, "packages"), func(name string, content, hash, sig []byte) error {
		return VerifyPackage(trusted, name, content, hash, sig)
	})
	if err != nil {
		return nil, fmt.Errorf("opamp: %w", err)
	}
	c := &Client{
		opts: opts, log: opts.Logger.With("component", "opamp"), allow: o.Allow,
		grace: o.HealthGrace.Or(config.DefaultHealthGrace), store: store,
		started: time.Now(),
		pending: make(chan *protobufs.AgentRemoteConfig, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.oc = client.NewWebSocket(slogAdapter{c.log})
	if err := c.oc.SetAgentDescription(c.description(uid)); err != nil {
		return nil, err
	}
	// Health must be set before the capability that reports it.
	c.health = c.computeHealth()
	if err := c.oc.SetHealth(c.health); err != nil {
		return nil, err
	}
	caps := protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus |
		protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsEffectiveConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsHealth |
		protobufs.AgentCapabilities_AgentCapabilities_AcceptsPackages |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsPackageStatuses |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat
	var failedOnce sync.Once
	settings := types.StartSettings{
		OpAMPServerURL:        o.Endpoint,
		InstanceUid:           uid,
		PackagesStateProvider: store,
		// Through the deprecated field, not SetCapabilities: before Start
		// SetCapabilities refuses the package capabilities (the state
		// provider is only given to Start), and adding them after Start
		// would make the client ignore a server's first package offer.
		Capabilities: caps,
		Callbacks: types.Callbacks{
			OnConnect: func(context.Context) { c.log.Info("opamp: connected", "endpoint", o.Endpoint) },
			OnConnectFailed: func(_ context.Context, err error) {
				// The library retries with backoff; say it once at warn.
				lvl := slog.LevelDebug
				failedOnce.Do(func() { lvl = slog.LevelWarn })
				c.log.Log(context.Background(), lvl, "opamp: cannot reach the server; the agent runs on and retries", "endpoint", o.Endpoint, "err", err)
			},
			OnError: func(_ context.Context, e *protobufs.ServerErrorResponse) {
				c.log.Warn("opamp: server error", "err", e.GetErrorMessage())
			},
			OnMessage:          c.onMessage,
			GetEffectiveConfig: c.effectiveConfig,
		},
	}
	if err := c.oc.Start(ctx, settings); err != nil {
		return nil, fmt.Errorf("opamp: starting the client of %s: %w", o.Endpoint, err)
	}
	c.wg.Add(2)
	go c.applyLoop()
	go c.healthLoop()
	return c, nil
}

// Stop disconnects from the server and waits for a remote config being
// applied to finish (bounded by ctx).
func (c *Client) Stop(ctx context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	c.cancel()
	err := c.oc.Stop(ctx)
	c.wg.Wait()
	return err
}

// PackagePath is where an installed package's content is kept.
func (c *Client) PackagePath(name string) string { return c.store.Path(name) }

func (c *Client) description(uid types.InstanceUid) *protobufs.AgentDescription {
	host, _ := os.Hostname()
	name := c.opts.Config.Agent.OpAMP.Name
	if name == "" {
		name = host
	}
	str := func(k, v string) *protobufs.KeyValue {
		return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
	}
	d := &protobufs.AgentDescription{
		IdentifyingAttributes: []*protobufs.KeyValue{
			str("service.name", "sluice"),
			str("service.version", c.opts.Version),
			str("service.instance.id", hex.EncodeToString(uid[:])),
		},
		NonIdentifyingAttributes: []*protobufs.KeyValue{
			str("host.name", host),
			str("os.type", runtime.GOOS),
			str("sluice.agent.name", name),
		},
	}
	labels := c.opts.Config.Agent.Labels
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.NonIdentifyingAttributes = append(d.NonIdentifyingAttributes, str(LabelPrefix+k, labels[k]))
	}
	return d
}

func (c *Client) onMessage(_ context.Context, msg *types.MessageData) {
	if msg.RemoteConfig != nil {
		// Applying takes up to the health grace: hand it to applyLoop so the
		// connection keeps reading. A newer offer replaces one not started.
		select {
		case <-c.pending:
		default:
		}
		c.pending <- msg.RemoteConfig
	}
	if msg.PackageSyncer != nil {
		if err := msg.PackageSyncer.Sync(c.ctx); err != nil {
			c.log.Warn("opamp: package sync", "err", err)
		}
	}
}

func (c *Client) applyLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case rc := <-c.pending:
			c.applyRemote(rc)
		}
	}
}

func (c *Client) reportRemote(hash []byte, status protobufs.RemoteConfigStatuses, msg string) {
	if err := c.oc.SetRemoteConfigStatus(&protobufs.RemoteConfigStatus{LastRemoteConfigHash: hash, Status: status, ErrorMessage: msg}); err != nil {
		c.log.Warn("opamp: reporting remote config status", "err", err)
	}
}

// applyRemote validates and applies one offered config, watches health for
// the grace period and rolls back to the previous config if a component
// fails in it.
func (c *Client) applyRemote(rc *protobufs.AgentRemoteConfig) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	hash := rc.GetConfigHash()
	short := hex.EncodeToString(hash)
	if len(short) > 12 {
		short = short[:12]
	}
	name := "remote config " + short
	fail := func(err error) {
		c.log.Warn("opamp: remote config refused; the running config stays", "config", short, "err", err)
		c.reportRemote(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, err.Error())
	}
	offered, err := remoteText(rc.GetConfig())
	if err != nil {
		fail(err)
		return
	}
	c.reportRemote(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING, "")
	prev := c.opts.Applier.CurrentText()
	merged, err := remote.Merge(prev, offered, c.allow)
	if err != nil {
		fail(err)
		return
	}
	before := restartsOf(c.opts.Status())
	if err := c.opts.Applier.ApplyBytes(c.ctx, name, merged); err != nil {
		fail(err)
		return
	}
	c.log.Info("opamp: remote config applied; watching health", "config", short, "grace", c.grace)
	if bad := c.watchHealth(before); bad != "" {
		rerr := c.opts.Applier.ApplyBytes(context.Background(), "previous config", prev)
		msg := fmt.Sprintf("rolled back to the previous config: %s within the %s health grace", bad, c.grace)
		if rerr != nil {
			msg += fmt.Sprintf("; rolling back failed too: %v", rerr)
		}
		c.log.Warn("opamp: remote config "+msg, "config", short)
		c.reportRemote(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, msg)
	} else if c.ctx.Err() != nil {
		return // stopping: the outcome is unknown, report nothing
	} else {
		c.reportRemote(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, "")
	}
	if err := c.oc.UpdateEffectiveConfig(c.ctx); err != nil && c.ctx.Err() == nil {
		c.log.Warn("opamp: reporting the effective config", "err", err)
	}
}

// watchHealth samples the status until the grace period ends; it returns
// a description of the first component that failed since the apply, or "".
// before holds each component's restarts at the apply: one already failing
// then (and not restarting since) is not this config's fault.
func (c *Client) watchHealth(before map[string]uint64) string {
	if bad := unhealthy(c.opts.Status(), before); bad != "" || c.grace <= 0 {
		return bad
	}
	deadline := time.NewTimer(c.grace)
	defer deadline.Stop()
	tick := time.NewTicker(max(c.grace/20, 10*time.Millisecond))
	defer tick.Stop()
	for {
		if bad := unhealthy(c.opts.Status(), before); bad != "" {
			return bad
		}
		select {
		case <-c.ctx.Done():
			return ""
		case <-deadline.C:
			return ""
		case <-tick.C:
		}
	}
}

func restartsOf(st admin.Status) map[string]uint64 {
	m := map[string]uint64{}
	for _, cs := range st.Components {
		m[admin.NodeID(cs.Kind, cs.Name)] = cs.Restarts
	}
	return m
}

func unhealthy(st admin.Status, before map[string]uint64) string {
	for _, cs := range st.Components {
		n, seen := before[admin.NodeID(cs.Kind, cs.Name)]
		if cs.State == admin.StateFailed && (!seen || cs.Restarts > n) {
			msg := fmt.Sprintf("%s %s failed", cs.Kind, cs.Name)
			if cs.LastError != "" {
				msg += ": " + cs.LastError
			}
			return msg
		}
	}
	return ""
}

// remoteText picks the TOML file out of an offered config map.
func remoteText(m *protobufs.AgentConfigMap) ([]byte, error) {
	files := m.GetConfigMap()
	if f, ok := files[ConfigFileName]; ok {
		return f.GetBody(), nil
	}
	if len(files) == 1 {
		for _, f := range files {
			return f.GetBody(), nil
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("remote config has %d files (%s); expected one, or one named %s", len(files), strings.Join(names, ", "), ConfigFileName)
}

func (c *Client) effectiveConfig(context.Context) (*protobufs.EffectiveConfig, error) {
	text := c.opts.Applier.CurrentText()
	sum := sha256.Sum256(text)
	c.mu.Lock()
	c.effective = &sum
	c.mu.Unlock()
	return &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
		ConfigFileName: {Body: text, ContentType: "application/toml"},
	}}}, nil
}

func (c *Client) healthLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.HealthEvery)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		h := c.computeHealth()
		c.mu.Lock()
		same := proto.Equal(h, c.health)
		c.health = h
		c.mu.Unlock()
		if !same {
			if err := c.oc.SetHealth(h); err != nil {
				c.log.Warn("opamp: reporting health", "err", err)
			}
		}
		// A local reload (SIGHUP, the file watcher) changes the running
		// config without us: report it as the effective config.
		sum := sha256.Sum256(c.opts.Applier.CurrentText())
		c.mu.Lock()
		stale := c.effective != nil && *c.effective != sum
		c.mu.Unlock()
		if stale {
			if err := c.oc.UpdateEffectiveConfig(c.ctx); err != nil && c.ctx.Err() == nil {
				c.log.Warn("opamp: reporting the effective config", "err", err)
			}
		}
	}
}

// computeHealth is the health tree: the agent, then one entry per
// component keyed "kind/name".
func (c *Client) computeHealth() *protobufs.ComponentHealth {
	st := c.opts.Status()
	h := &protobufs.ComponentHealth{
		Healthy:            st.State == admin.StateRunning || st.State == admin.StateStarting,
		Status:             string(st.State),
		LastError:          st.ReloadError,
		StartTimeUnixNano:  uint64(c.started.UnixNano()),
		ComponentHealthMap: map[string]*protobufs.ComponentHealth{},
	}
	for _, cs := range st.Components {
		ok := cs.State != admin.StateFailed
		if !ok {
			h.Healthy = false
		}
		h.ComponentHealthMap[admin.NodeID(cs.Kind, cs.Name)] = &protobufs.ComponentHealth{
			Healthy: ok, Status: string(cs.State), LastError: cs.LastError,
		}
	}
	return h
}

// loadInstanceUID reads the agent's OpAMP instance id from dir, creating
// it once: it must survive restarts so the server sees one agent.
func loadInstanceUID(dir string) (types.InstanceUid, error) {
	var uid types.InstanceUid
	path := filepath.Join(dir, "instance_uid")
	raw, err := os.ReadFile(path)
	if err == nil {
		b, derr := hex.DecodeString(strings.TrimSpace(string(raw)))
		if derr != nil || len(b) != len(uid) {
			return uid, fmt.Errorf("%s is not 32 hex digits (delete it to get a new id)", path)
		}
		copy(uid[:], b)
		return uid, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return uid, err
	}
	if _, err := rand.Read(uid[:]); err != nil {
		return uid, err
	}
	uid[6] = uid[6]&0x0f | 0x40 // a version-4 UUID
	uid[8] = uid[8]&0x3f | 0x80
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return uid, err
	}
	// Atomically: a crash mid-write would otherwise leave a partial id that
	// stops the next start.
	return uid, atomicfile.Write(path, []byte(hex.EncodeToString(uid[:])+"\n"))
}

// ConfigHash is the hash a server puts in AgentRemoteConfig.config_hash
// for a config text.
func ConfigHash(text []byte) []byte {
	sum := sha256.Sum256(text)
	return sum[:]
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debugf(_ context.Context, format string, v ...any) {
	a.l.Debug("opamp: " + fmt.Sprintf(format, v...))
}

func (a slogAdapter) Errorf(_ context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "settings.Capabilities is deprecated") {
		return // our choice, explained in StartClient
	}
	a.l.Warn("opamp: " + msg)
}
