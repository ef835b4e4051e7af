package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the admin server listens unless told otherwise:
// loopback only, so that an agent is never reachable from the network by
// accident.
const DefaultAddr = "127.0.0.1:8686"

// Limits of the live endpoints.
const (
	DefaultTapLimit = 100   // events per tap stream unless ?limit= says otherwise
	MaxTapLimit     = 10000 // the most events one tap stream sends
	MaxTapSample    = 1 << 20
	maxTaps         = 4 // concurrent tap streams; more get 429
	tapBuffer       = 256
)

// ErrUnknownChannel is wrapped by Agent.Tap for a channel that does not exist.
var ErrUnknownChannel = errors.New("unknown channel")

// Config configures a Server. The zero value is valid: loopback, no token.
type Config struct {
	// Addr is the listen address, host:port. Default DefaultAddr. A host
	// that is not a loopback address (including an empty host, meaning
	// every interface) requires Token.
	Addr string
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// every endpoint but /healthz (browsers: open /?token=TOKEN once; the
	// server keeps it in an HttpOnly cookie).
	Token string
	// Interval is how often live streams (/api/events) push a status and
	// the results, and the shortest interval between two samples that
	// rates are computed over. Default 1s.
	Interval time.Duration
	// ResultMinutes is how many of the newest minutes /api/results and the
	// dashboard show. Default 60.
	ResultMinutes int
	Logger        *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.ResultMinutes <= 0 {
		c.ResultMinutes = 60
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports a listen address that cannot be parsed and a
// non-loopback address without a token.
func (c Config) Validate() error {
	c = c.withDefaults()
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("admin: address %q: %w", c.Addr, err)
	}
	if !IsLoopback(host) && c.Token == "" {
		return fmt.Errorf("admin: address %q is reachable from other machines; set a bearer token or bind to a loopback address such as 127.0.0.1", c.Addr)
	}
	return nil
}

// IsLoopback reports whether host (from host:port) only accepts
// connections from this machine: "localhost" or a loopback IP. An empty
// host means every interface, so it is not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server is the admin HTTP server.
//
// Lifecycle: New; Start once (it returns when the listener is bound); Stop
// closes the listener and ends live streams. Stop is safe without Start
// and safe twice. Handler can be used without Start (tests, embedding).
type Server struct {
	cfg     Config
	agent   Agent
	handler http.Handler
	log     *slog.Logger

	mu   sync.Mutex  // guards last
	last *StatusView // newest sample, for rates

	resMu   sync.Mutex // guards results and resAt; separate so a slow store never delays /api/status
	results *ResultsView
	resAt   time.Time

	taps chan struct{} // semaphore of concurrent taps

	startOnce sync.Once
	stopOnce  sync.Once
	srv       *http.Server
	ln        net.Listener
	streams   context.Context // cancelled by Stop: ends live streams
	endAll    context.CancelFunc
}

// New returns a server for agent; cfg must pass Validate.
func New(agent Agent, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, agent: agent, log: cfg.Logger, taps: make(chan struct{}, maxTaps)}
	s.streams, s.endAll = context.WithCancel(context.Background())

	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(agent), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.auth(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s.log}})))
	mux.Handle("GET /api/topology", s.auth(http.HandlerFunc(s.topology)))
	mux.Handle("GET /api/status", s.auth(http.HandlerFunc(s.status)))
	mux.Handle("GET /api/results", s.auth(http.HandlerFunc(s.resultsHandler)))
	mux.Handle("GET /api/events", s.auth(http.HandlerFunc(s.events)))
	mux.Handle("GET /api/tap", s.auth(http.HandlerFunc(s.tap)))
	mux.Handle("POST /api/reload", s.auth(http.HandlerFunc(s.reload)))
	mux.Handle("GET /", s.dashboard())
	s.handler = mux
	return s, nil
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds the listener and serves in the background. It fails if
// called twice or if the address cannot be bound.
func (s *Server) Start(ctx context.Context) error {
	err := errors.New("admin: Start called twice")
	s.startOnce.Do(func() {
		var lc net.ListenConfig
		s.ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			err = fmt.Errorf("admin: listen on %s: %w", s.cfg.Addr, err)
			return
		}
		s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second,
			BaseContext: func(net.Listener) context.Context { return s.streams }}
		go func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin server stopped", "err", err)
			}
		}()
		s.log.Info("admin server listening", "addr", s.ln.Addr().String(), "token", s.cfg.Token != "")
	})
	return err
}

// Addr returns the bound address (useful with port 0), or "" before Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop ends live streams and shuts the server down within ctx.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.endAll()
		if s.srv != nil {
			err = s.srv.Shutdown(ctx)
		}
	})
	return err
}

// auth enforces the bearer token when one is configured.
func (s *Server) auth(h http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

const tokenCookie = "sluice_admin_token"

func (s *Server) authorized(r *http.Request) bool {
	got := ""
	if h := r.Header.Get("Authorization"); len(h) > 7 && h[:7] == "Bearer " {
		got = h[7:]
	} else if c, err := r.Cookie(tokenCookie); err == nil {
		got = c.Value
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	st := s.agent.Status()
	var reasons []string
	if st.State != StateRunning {
		reasons = append(reasons, "agent is "+string(st.State))
	}
	for _, c := range st.Components {
		if c.State == StateFailed {
			reasons = append(reasons, fmt.Sprintf("%s %s failed: %s", c.Kind, c.Name, c.LastError))
		}
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

func (s *Server) topology(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.agent.Topology())
}

// StatusView is what /api/status returns: a Status with the time it was
// taken and per-component rates over the previous sample.
type StatusView struct {
	Status
	Time time.Time `json:"time"`
	// Rates are events per second by component ID (NodeID), measured
	// between this sample and the one before; absent on the first sample.
	Rates map[string]Rate `json:"rates"`
}

// Rate is a component's throughput in events per second.
type Rate struct {
	In  float64 `json:"in"`
	Out float64 `json:"out"`
}

// snapshot returns a sample no older than the interval, taking a new one
// when needed, so that any number of clients cost one Status per interval.
func (s *Server) snapshot() *StatusView {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.last != nil && now.Sub(s.last.Time) < s.cfg.Interval {
		return s.last
	}
	v := &StatusView{Status: s.agent.Status(), Time: now, Rates: map[string]Rate{}}
	if prev := s.last; prev != nil {
		dt := now.Sub(prev.Time).Seconds()
		before := map[string]ComponentStatus{}
		for _, c := range prev.Components {
			before[NodeID(c.Kind, c.Name)] = c
		}
		for _, c := range v.Components {
			id := NodeID(c.Kind, c.Name)
			b, ok := before[id]
			if !ok || c.EventsIn < b.EventsIn || c.EventsOut < b.EventsOut {
				continue // new component, or restarted counters after a reload
			}
			v.Rates[id] = Rate{In: float64(c.EventsIn-b.EventsIn) / dt, Out: float64(c.EventsOut-b.EventsOut) / dt}
		}
	}
	s.last = v
	return v
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.snapshot())
}

// currentResults returns results no older than the interval.
func (s *Server) currentResults() (*ResultsView, error) {
	s.resMu.Lock()
	defer s.resMu.Unlock()
	if s.results != nil && time.Since(s.resAt) < s.cfg.Interval {
		return s.results, nil
	}
	v, err := ReadResults(s.agent.Results(), s.cfg.ResultMinutes)
	if err != nil {
		return nil, err
	}
	s.results, s.resAt = v, time.Now()
	return v, nil
}

func (s *Server) resultsHandler(w http.ResponseWriter, r *http.Request) {
	v, err := s.currentResults()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if err := s.agent.Reload(r.Context()); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

// intParam parses an optional positive integer query parameter.
func intParam(r *http.Request, name string, def, max int) (int, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("query parameter %s=%q: want an integer from 1 to %d", name, raw, max)
	}
	return n, nil
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics", "err", fmt.Sprint(v...)) }
