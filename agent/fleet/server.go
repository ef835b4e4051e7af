package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/open-telemetry/opamp-go/server"
	"github.com/open-telemetry/opamp-go/server/types"

	"github.com/sluicehq/sluice/agent/fleet/internal/catalog"
)

// Paths served by a fleet server.
const (
	OpAMPPath    = "/v1/opamp"
	AgentsPath   = "/api/agents"
	PackagesPath = "/packages/"
)

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Dir holds configs/LABEL=VALUE.toml (the config of the agents whose
	// label LABEL is VALUE) and packages/NAME.wasm with NAME.wasm.sig.
	Dir string
	// Addr is the listen address, host:port (port 0 picks one).
	Addr   string
	Logger *slog.Logger
	// ScanEvery is how often Dir is re-read (default 1s). A change is
	// offered to every connected agent once two scans in a row see it.
	ScanEvery time.Duration
}

// Server is `sluice fleet serve`: an OpAMP server (opamp-go's) that offers
// each label group its config and every agent the packages, and lists the
// agents at AgentsPath (JSON) and / (a page).
//
// Lifecycle: StartServer listens and returns; Stop closes every connection
// and is safe to call twice.
type Server struct {
	opts   ServerOptions
	log    *slog.Logger
	opamp  server.OpAMPServer
	http   *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	snap    *catalog.Snapshot
	agents  map[string]*agentState // by instance uid (hex)
	byConn  map[types.Connection]*agentState
	stopped bool
}

type agentState struct {
	uid       string
	conn      types.Connection
	baseURL   string // where this agent reached us, for package downloads
	desc      *protobufs.AgentDescription
	health    *protobufs.ComponentHealth
	remote    *protobufs.RemoteConfigStatus
	effective []byte
	pkgs      *protobufs.PackageStatuses
	lastSeen  time.Time
	// What was last sent on this connection, so a heartbeat does not
	// resend an offer the agent is still working on.
	sentConfig, sentPackages []byte
}

// StartServer scans opts.Dir once (a missing directory is an error) and
// starts serving.
func StartServer(ctx context.Context, opts ServerOptions) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ScanEvery <= 0 {
		opts.ScanEvery = time.Second
	}
	snap, err := catalog.Scan(opts.Dir, DecodeSignature)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "fleet"), snap: snap,
		agents: map[string]*agentState{}, byConn: map[types.Connection]*agentState{}, done: make(chan struct{})}
	for _, p := range snap.Problems {
		s.log.Warn("fleet: skipped", "problem", p)
	}
	s.opamp = server.New(slogAdapter{s.log})
	handler, connContext, err := s.opamp.Attach(server.Settings{Callbacks: types.Callbacks{
		OnConnecting: func(r *http.Request) types.ConnectionResponse {
			// Packages are downloaded from where the agent reached us.
			base := requestBase(r)
			return types.ConnectionResponse{Accept: true, ConnectionCallbacks: types.ConnectionCallbacks{
				OnMessage: func(_ context.Context, conn types.Connection, m *protobufs.AgentToServer) *protobufs.ServerToAgent {
					return s.onMessage(base, conn, m)
				},
				OnConnectionClose: s.onClose,
			}}
		},
	}})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc(OpAMPPath, handler)
	mux.HandleFunc(AgentsPath, s.serveAgents)
	mux.HandleFunc(PackagesPath, s.servePackage)
	mux.HandleFunc("/", s.servePage)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: mux, ConnContext: connContext, ReadHeaderTimeout: 10 * time.Second}
	go s.http.Serve(ln)
	sctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.scanLoop(sctx)
	return s, nil
}

func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop stops scanning, closes every agent connection and the listener.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	err := s.opamp.Stop(ctx)
	if herr := s.http.Shutdown(ctx); err == nil {
		err = herr
	}
	return err
}

func (s *Server) scanLoop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.opts.ScanEvery)
	defer t.Stop()
	var last *catalog.Snapshot
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		snap, err := catalog.Scan(s.opts.Dir, DecodeSignature)
		if err != nil {
			s.log.Warn("fleet: scanning", "dir", s.opts.Dir, "err", err)
			continue
		}
		// A change is offered once two scans in a row agree, so a file
		// caught half-written (an editor or `cat >` truncates first) is
		// never pushed to the fleet.
		stable := snap.Equal(last)
		last = snap
		s.mu.Lock()
		if !stable || snap.Equal(s.snap) {
			s.mu.Unlock()
			continue
		}
		s.snap = snap
		type push struct {
			conn types.Connection
			msg  *protobufs.ServerToAgent
		}
		var pushes []push
		for _, a := range s.agents {
			if a.conn == nil {
				continue
			}
			if msg := s.offerLocked(a); msg != nil {
				pushes = append(pushes, push{a.conn, msg})
			}
		}
		s.mu.Unlock()
		for _, p := range snap.Problems {
			s.log.Warn("fleet: skipped", "problem", p)
		}
		s.log.Info("fleet: directory changed; offering it", "groups", len(snap.Groups), "packages", len(snap.Packages), "offers", len(pushes))
		for _, p := range pushes {
			if err := p.conn.Send(ctx, p.msg); err != nil {
				s.log.Warn("fleet: sending an offer", "err", err)
			}
		}
	}
}

func (s *Server) onMessage(baseURL string, conn types.Connection, m *protobufs.AgentToServer) *protobufs.ServerToAgent {
	uid := hex.EncodeToString(m.GetInstanceUid())
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[uid]
	if a == nil {
		a = &agentState{uid: uid}
		s.agents[uid] = a
	}
	if a.conn != conn {
		// A new connection: offers start over.
		a.conn, a.sentConfig, a.sentPackages = conn, nil, nil
		s.byConn[conn] = a
	}
	a.baseURL = baseURL
	a.lastSeen = time.Now()
	if m.AgentDescription != nil {
		a.desc = m.AgentDescription
	}
	if m.Health != nil {
		a.health = m.Health
	}
	if m.RemoteConfigStatus != nil {
		a.remote = m.RemoteConfigStatus
	}
	if m.EffectiveConfig != nil {
		a.effective = m.EffectiveConfig.GetConfigMap().GetConfigMap()[ConfigFileName].GetBody()
	}
	if m.PackageStatuses != nil {
		a.pkgs = m.PackageStatuses
	}
	resp := s.offerLocked(a)
	if resp == nil {
		resp = &protobufs.ServerToAgent{InstanceUid: m.InstanceUid}
	}
	resp.InstanceUid = m.InstanceUid
	resp.Capabilities = uint64(protobufs.ServerCapabilities_ServerCapabilities_AcceptsStatus |
		protobufs.ServerCapabilities_ServerCapabilities_OffersRemoteConfig |
		protobufs.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig |
		protobufs.ServerCapabilities_ServerCapabilities_OffersPackages |
		protobufs.ServerCapabilities_ServerCapabilities_AcceptsPackagesStatus)
	if a.desc == nil {
		// We do not know this agent (we restarted, it did not): ask for all.
		resp.Flags |= uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)
	}
	return resp
}

func (s *Server) onClose(conn types.Connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.byConn[conn]; a != nil && a.conn == conn {
		a.conn = nil
	}
	delete(s.byConn, conn)
}

// offerLocked returns what agent a should be sent now, or nil. s.mu is held.
func (s *Server) offerLocked(a *agentState) *protobufs.ServerToAgent {
	if a.desc == nil {
		return nil
	}
	var msg protobufs.ServerToAgent
	any := false
	if g, _ := s.snap.Match(labelsOf(a.desc)); g != nil {
		if !bytes.Equal(a.remote.GetLastRemoteConfigHash(), g.Hash) && !bytes.Equal(a.sentConfig, g.Hash) {
			msg.RemoteConfig = &protobufs.AgentRemoteConfig{ConfigHash: g.Hash, Config: &protobufs.AgentConfigMap{
				ConfigMap: map[string]*protobufs.AgentConfigFile{ConfigFileName: {Body: g.Text, ContentType: "application/toml"}},
			}}
			a.sentConfig = g.Hash
			any = true
		}
	}
	if len(s.snap.Packages) > 0 && a.baseURL != "" {
		all := s.snap.AllPackagesHash
		if !bytes.Equal(a.pkgs.GetServerProvidedAllPackagesHash(), all) && !bytes.Equal(a.sentPackages, all) {
			avail := &protobufs.PackagesAvailable{AllPackagesHash: all, Packages: map[string]*protobufs.PackageAvailable{}}
			for i := range s.snap.Packages {
				p := &s.snap.Packages[i]
				avail.Packages[p.Name] = &protobufs.PackageAvailable{
					Type:    protobufs.PackageType_PackageType_Addon,
					Version: hex.EncodeToString(p.ContentHash)[:12],
					Hash:    p.PackageHash(),
					File: &protobufs.DownloadableFile{
						DownloadUrl: a.baseURL + PackagesPath + p.Name + ".wasm",
						ContentHash: p.ContentHash,
						Signature:   p.Signature,
					},
				}
			}
			msg.PackagesAvailable = avail
			a.sentPackages = all
			any = true
		}
	}
	if !any {
		return nil
	}
	return &msg
}

func labelsOf(d *protobufs.AgentDescription) map[string]string {
	labels := map[string]string{}
	for _, kv := range d.GetNonIdentifyingAttributes() {
		if k, ok := strings.CutPrefix(kv.GetKey(), LabelPrefix); ok {
			labels[k] = kv.GetValue().GetStringValue()
		}
	}
	return labels
}

func attr(d *protobufs.AgentDescription, key string) string {
	for _, list := range [][]*protobufs.KeyValue{d.GetIdentifyingAttributes(), d.GetNonIdentifyingAttributes()} {
		for _, kv := range list {
			if kv.GetKey() == key {
				return kv.GetValue().GetStringValue()
			}
		}
	}
	return ""
}

// AgentView is one agent as `sluice fleet ls` and AgentsPath show it.
type AgentView struct {
	InstanceUID string                   `json:"instance_uid"`
	Name        string                   `json:"name"`
	Host        string                   `json:"host"`
	Version     string                   `json:"version"`
	Labels      map[string]string        `json:"labels"`
	Connected   bool                     `json:"connected"`
	LastSeen    time.Time                `json:"last_seen"`
	Healthy     bool                     `json:"healthy"`
	State       string                   `json:"state"`
	Components  map[string]ComponentView `json:"components,omitempty"`
	// Group is the configs/ file this agent gets ("role=edge"), "" for
	// none; Conflict lists the groups when it matches several.
	Group    string                 `json:"group,omitempty"`
	Conflict []string               `json:"conflict,omitempty"`
	Config   ConfigView             `json:"config"`
	Packages map[string]PackageView `json:"packages,omitempty"`
}

// ComponentView is one component's health.
type ComponentView struct {
	Healthy   bool   `json:"healthy"`
	Status    string `json:"status"`
	LastError string `json:"last_error,omitempty"`
}

// ConfigView is where an agent stands with its group's config.
type ConfigView struct {
	// Status is the agent's last report: "applying", "applied", "failed"
	// or "" (none yet).
	Status string `json:"status"`
	Hash   string `json:"hash,omitempty"` // of the config the status is about
	Error  string `json:"error,omitempty"`
	// Current is true when Hash is the group's config as it is now.
	Current bool `json:"current"`
	// EffectiveHash is the sha256 of the config text the agent runs.
	EffectiveHash string `json:"effective_hash,omitempty"`
}

// PackageView is an agent's status of one package.
type PackageView struct {
	Status string `json:"status"` // installed, installing, downloading, install_failed
	// AgentHas is the package hash the agent has installed (after a refusal,
	// the version it keeps); ServerOffer the one offered.
	AgentHas    string `json:"agent_has,omitempty"`
	ServerOffer string `json:"server_offered,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Agents returns every agent the server has heard from, by name.
func (s *Server) Agents() []AgentView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AgentView, 0, len(s.agents))
	for _, a := range s.agents {
		v := AgentView{InstanceUID: a.uid, Name: attr(a.desc, "sluice.agent.name"), Host: attr(a.desc, "host.name"),
			Version: attr(a.desc, "service.version"), Labels: labelsOf(a.desc), Connected: a.conn != nil, LastSeen: a.lastSeen,
			Healthy: a.health.GetHealthy(), State: a.health.GetStatus()}
		if len(a.health.GetComponentHealthMap()) > 0 {
			v.Components = map[string]ComponentView{}
			for k, h := range a.health.GetComponentHealthMap() {
				v.Components[k] = ComponentView{Healthy: h.GetHealthy(), Status: h.GetStatus(), LastError: h.GetLastError()}
			}
		}
		g, conflict := s.snap.Match(v.Labels)
		if g != nil {
			v.Group = g.Name
		}
		v.Conflict = conflict
		if r := a.remote; r != nil {
			v.Config.Status = strings.ToLower(strings.TrimPrefix(r.GetStatus().String(), "RemoteConfigStatuses_"))
			if v.Config.Status == "unset" {
				v.Config.Status = ""
			}
			v.Config.Hash = hex.EncodeToString(r.GetLastRemoteConfigHash())
			v.Config.Error = r.GetErrorMessage()
			v.Config.Current = g != nil && bytes.Equal(r.GetLastRemoteConfigHash(), g.Hash)
		}
		if a.effective != nil {
			sum := sha256.Sum256(a.effective)
			v.Config.EffectiveHash = hex.EncodeToString(sum[:])
		}
		for name, p := range a.pkgs.GetPackages() {
			if v.Packages == nil {
				v.Packages = map[string]PackageView{}
			}
			v.Packages[name] = PackageView{
				Status:   snakeCase(strings.TrimPrefix(p.GetStatus().String(), "PackageStatusEnum_")),
				AgentHas: hex.EncodeToString(p.GetAgentHasHash()), ServerOffer: hex.EncodeToString(p.GetServerOfferedHash()),
				Error: p.GetErrorMessage(),
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].InstanceUID < out[j].InstanceUID
	})
	return out
}

func (s *Server) serveAgents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.Agents())
}

func (s *Server) servePackage(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, PackagesPath), ".wasm")
	s.mu.Lock()
	var content []byte
	for i := range s.snap.Packages {
		if s.snap.Packages[i].Name == name {
			content = s.snap.Packages[i].Content
		}
	}
	s.mu.Unlock()
	if content == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/wasm")
	w.Write(content)
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<meta charset="utf-8"><title>Sluice fleet</title>
<style>body{font:14px system-ui;margin:2em}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}.bad{color:#b00}</style>
<h1>Sluice fleet</h1><p>{{len .}} agents · <a href="/api/agents">JSON</a></p>
<table><tr><th>Agent</th><th>Host</th><th>Labels</th><th>Health</th><th>Group</th><th>Config</th><th>Packages</th></tr>
{{range .}}<tr><td>{{.Name}}{{if not .Connected}} (away){{end}}</td><td>{{.Host}}</td><td>{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}</td>
<td{{if not .Healthy}} class="bad"{{end}}>{{.State}}{{range $k, $c := .Components}}{{if not $c.Healthy}}<br>{{$k}}: {{$c.LastError}}{{end}}{{end}}</td>
<td>{{.Group}}{{range .Conflict}} conflict:{{.}}{{end}}</td><td{{if eq .Config.Status "failed"}} class="bad"{{end}}>{{.Config.Status}} {{.Config.Error}}</td>
<td>{{range $k, $p := .Packages}}{{$k}}: {{$p.Status}} {{$p.Error}}<br>{{end}}</td></tr>
{{end}}</table>`))

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	page.Execute(w, s.Agents())
}

// ListAgents asks the fleet server at baseURL ("http://host:port") for its
// agents, as `sluice fleet ls` does.
func ListAgents(ctx context.Context, baseURL string) ([]AgentView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+AgentsPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	var out []AgentView
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: %w", req.URL, err)
	}
	return out, nil
}

// snakeCase turns an enum name like "InstallFailed" into "install_failed".
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
