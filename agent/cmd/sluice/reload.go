package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluicehq/sluice/agent/admin/topoagent"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/internal/atomicfile"
)

// reloadDebounce is how long the file watcher waits after the last event
// before it reloads: editors and config managers write a file in several
// steps (truncate, write, rename), and one reload should see the result.
const reloadDebounce = 200 * time.Millisecond

// Files of the last good config in the data directory (ADR 0009).
const (
	lastGoodFile = "last-good.toml"      // the config's bytes, exactly as applied
	lastGoodMeta = "last-good.meta.json" // lastGood: where it came from, where its relative paths resolve
)

// lastGood describes DATA/last-good.toml.
type lastGood struct {
	// Source is where the text came from: the config file's absolute path,
	// or a label such as "opamp" for text applied with ApplyBytes.
	Source string `json:"source"`
	// Dir is the working directory of the agent that applied it: relative
	// paths in the text (data_dir, .wasm files, plugin paths) resolve
	// against it, as they did then.
	Dir    string    `json:"dir"`
	SHA256 string    `json:"sha256"`
	Saved  time.Time `json:"saved"`
}

// reloader owns the running topology's config and applies new ones through
// validate-then-apply (topology.Agent.Reload). All methods are safe for
// concurrent use; applies are serialised. Every outcome is logged ("reload
// applied" / "reload rejected"), recorded in the admin status
// (reload_error, and the sluice_reload_failed metric derived from it; the
// counts as sluice_reloads_total{result="applied|rejected"}), and
// a good config becomes the last good one in the data directory.
type reloader struct {
	path string // the config file ReloadFile reads; "" when there is none
	reg  *registry.Registry
	topo *topology.Agent
	log  *slog.Logger

	mu      sync.Mutex // serialises applies; guards the fields below
	adm     *topoagent.Agent
	cur     *config.File
	curName string // the name cur was parsed under
	curText []byte // the bytes cur was parsed from
	// lastRead is the sha256 of the config file's bytes as last read
	// (ReloadFile), or of the running config's text at start.
	lastRead [sha256.Size]byte
	applied  int
	failed   int
	// onApplied is called after each good apply with the new config
	// (the watcher follows its .wasm files).
	onApplied func(*config.File)
}

// newReloader returns a reloader for topo, running cfg parsed from text.
// path is the file ReloadFile re-reads ("" for none).
func newReloader(path string, cfg *config.File, text []byte, topo *topology.Agent, log *slog.Logger) *reloader {
	return &reloader{path: path, reg: registry.Builtin(), topo: topo, log: log, cur: cfg, curName: cfg.Path, curText: text, lastRead: sha256.Sum256(text)}
}

// setAdmin makes outcomes show in adm's status.
func (r *reloader) setAdmin(adm *topoagent.Agent) {
	r.mu.Lock()
	r.adm = adm
	r.mu.Unlock()
}

// ReloadFile re-reads the config file (SIGHUP, file watcher, POST /api/reload).
func (r *reloader) ReloadFile(ctx context.Context) error {
	return r.reloadFile(ctx, "file")
}

// reloadFile is ReloadFile with the trigger named in the log line: "file"
// (the watcher), "sighup" or "api".
func (r *reloader) reloadFile(ctx context.Context, trigger string) error {
	if r.path == "" {
		return r.outcome(trigger, nil, errors.New("reload: this agent was started without a config file (run --resume without -c): restart it with -c FILE"))
	}
	text, err := os.ReadFile(r.path)
	if err != nil {
		return r.outcome(trigger, nil, fmt.Errorf("reload: %w", err))
	}
	r.mu.Lock()
	r.lastRead = sha256.Sum256(text)
	r.mu.Unlock()
	return r.apply(ctx, trigger, r.path, text)
}

// fileChanged reports whether the config file's bytes differ from those
// the last ReloadFile read (or the running config's, before any): the
// watcher reloads only then, so that other files changing in the directory
// (editor swap files, a Kubernetes ConfigMap's ..data symlink swap: there
// the file's bytes do change) cost one read and no reload.
func (r *reloader) fileChanged() bool {
	text, err := os.ReadFile(r.path)
	if err != nil {
		return true // the reload reports it
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return sha256.Sum256(text) != r.lastRead
}

// ApplyBytes validates and applies TOML text from elsewhere (OpAMP remote
// config). name labels errors; relative paths resolve as the running
// config file's do, against the agent's working directory (agent/config).
// On success it becomes the last good config in the data dir; the config
// file on disk is not rewritten.
func (r *reloader) ApplyBytes(ctx context.Context, name string, text []byte) error {
	return r.apply(ctx, "remote", name, text)
}

// reapply applies the running config's text again: a .wasm file of a
// running stage changed, and the stage restarts if its bytes differ.
func (r *reloader) reapply(ctx context.Context) error {
	r.mu.Lock()
	name, text := r.curName, r.curText
	r.mu.Unlock()
	return r.apply(ctx, "wasm", name, text)
}

// Current returns the config now running.
func (r *reloader) Current() *config.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// CurrentText returns the text the running config was parsed from, however
// it got there (the config file, a reload, a remote config): the fleet
// client merges remote configs into it. The slice is never written to; a
// new config replaces it.
func (r *reloader) CurrentText() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.curText
}

// counts returns the number of applied and rejected reloads so far.
func (r *reloader) counts() (applied, rejected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied, r.failed
}

func (r *reloader) apply(ctx context.Context, trigger, name string, text []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	began := time.Now()
	if len(bytes.TrimSpace(text)) == 0 {
		// Most likely caught between an in-place truncate and the write
		// that follows it: the write's own event reloads again.
		return r.outcomeLocked(trigger, nil, 0, fmt.Errorf("reload: %s is empty; an agent needs at least one stage", name))
	}
	cfg, err := config.Parse(name, text, r.reg)
	if err != nil {
		return r.outcomeLocked(trigger, nil, 0, fmt.Errorf("reload: %s is not valid:\n%w", name, err))
	}
	timeout := r.cur.Agent.ShutdownTimeout.Or(10 * time.Second)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	changes, err := r.topo.Reload(actx, cfg)
	if err != nil {
		return r.outcomeLocked(trigger, nil, 0, fmt.Errorf("reload: %s: %w", name, err))
	}
	r.cur, r.curName, r.curText = cfg, name, text
	if r.adm != nil {
		r.adm.Swap(r.topo, cfg)
	}
	for _, key := range changes.Restart {
		r.log.Warn("reload: setting changed; it takes effect when the agent restarts", "setting", key)
	}
	if err := saveLastGood(cfg.Agent.DataDir, name, text); err != nil {
		r.log.Warn("reload: saving the last good config", "err", err)
	}
	if r.onApplied != nil {
		r.onApplied(cfg)
	}
	return r.outcomeLocked(trigger, &changes, time.Since(began), nil)
}

func (r *reloader) outcome(trigger string, changes *topology.Changes, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outcomeLocked(trigger, changes, 0, err)
}

// outcomeLocked logs and records the result of one reload; took is how
// long a successful one validated and applied.
func (r *reloader) outcomeLocked(trigger string, changes *topology.Changes, took time.Duration, err error) error {
	if r.adm != nil {
		r.adm.SetReloadError(err)
	}
	if err != nil {
		r.failed++
		r.log.Error("reload rejected: the running config stays", "trigger", trigger, "err", err)
		return err
	}
	r.applied++
	r.log.Info("reload applied", "trigger", trigger, "changes", changes.String(), "took", took.Round(time.Millisecond))
	return nil
}

// saveLastGood writes text as DATA/last-good.toml (with its meta file),
// atomically, unless it is there already.
func saveLastGood(dataDir, source string, text []byte) error {
	sum := sha256.Sum256(text)
	hash := hex.EncodeToString(sum[:])
	if old, err := readLastGoodMeta(dataDir); err == nil && old.SHA256 == hash {
		if b, err := os.ReadFile(filepath.Join(dataDir, lastGoodFile)); err == nil && string(b) == string(text) {
			return nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if abs, err := filepath.Abs(source); err == nil && fileExists(source) {
		source = abs
	}
	meta, err := json.MarshalIndent(lastGood{Source: source, Dir: wd, SHA256: hash, Saved: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, lastGoodFile), text); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dataDir, lastGoodMeta), append(meta, '\n'))
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

func readLastGoodMeta(dataDir string) (lastGood, error) {
	var m lastGood
	b, err := os.ReadFile(filepath.Join(dataDir, lastGoodMeta))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dataDir, lastGoodMeta), err)
	}
	return m, nil
}

// loadLastGood reads the last good config saved in dataDir and parses it
// with relative paths resolved as when it was applied: it changes the
// process's working directory to the one recorded (a resumed agent is the
// same agent, in the same place).
func loadLastGood(dataDir string) (*config.File, []byte, lastGood, error) {
	meta, err := readLastGoodMeta(dataDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, meta, fmt.Errorf("no last good config in %s: the agent has never run with this data directory (pass -c FILE, or --data-dir DIR)", dataDir)
		}
		return nil, nil, meta, err
	}
	path, err := filepath.Abs(filepath.Join(dataDir, lastGoodFile))
	if err != nil {
		return nil, nil, meta, err
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, meta, err
	}
	if err := os.Chdir(meta.Dir); err != nil {
		return nil, nil, meta, fmt.Errorf("last good config: relative paths resolve against %s: %w", meta.Dir, err)
	}
	cfg, err := config.Parse(path, text, registry.Builtin())
	if err != nil {
		return nil, nil, meta, fmt.Errorf("last good config %s (from %s) no longer validates:\n%w", path, meta.Source, err)
	}
	return cfg, text, meta, nil
}

// watch runs r's triggers until ctx ends: SIGHUP re-reads the config file;
// so does a change in the file's directory (watched rather than the file,
// so that replace-by-rename and symlink swaps are seen) once it settled for
// reloadDebounce, when the file's bytes differ from those last read; a
// change to the .wasm file of a running stage applies the running config
// again. Errors are logged and recorded by r.
func (r *reloader) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var (
		mu       sync.Mutex
		wasm     = map[string]bool{} // absolute .wasm paths of running stages
		dirs     = map[string]bool{}
		cfgAbs   string
		addDirOf = func(path string) {
			d := filepath.Dir(path)
			if !dirs[d] {
				if err := w.Add(d); err != nil {
					r.log.Warn("reload: cannot watch directory", "dir", d, "err", err)
					return
				}
				dirs[d] = true
			}
		}
	)
	follow := func(cfg *config.File) {
		mu.Lock()
		defer mu.Unlock()
		clear(wasm)
		for _, s := range cfg.Stages() {
			if s.Wasm != "" {
				if abs, err := filepath.Abs(s.Wasm); err == nil {
					wasm[abs] = true
					addDirOf(abs)
				}
			}
		}
	}
	if r.path != "" {
		if cfgAbs, err = filepath.Abs(r.path); err == nil {
			mu.Lock()
			addDirOf(cfgAbs)
			mu.Unlock()
		}
	}
	follow(r.Current())
	r.mu.Lock()
	r.onApplied = follow
	r.mu.Unlock()
	go func() {
		defer signal.Stop(hup)
		defer w.Close()
		var timer <-chan time.Time
		pendingFile, pendingWasm := false, false
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.reloadFile(ctx, "sighup")
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				mu.Lock()
				isWasm := wasm[ev.Name]
				mu.Unlock()
				switch {
				case isWasm:
					pendingWasm = true
				case cfgAbs != "" && filepath.Dir(ev.Name) == filepath.Dir(cfgAbs):
					// Any change in the config's directory: the file itself,
					// a rename over it, or a symlink swap above it.
					pendingFile = true
				default:
					continue
				}
				timer = time.After(reloadDebounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.Warn("reload: file watcher", "err", err)
			case <-timer:
				timer = nil
				if pendingFile && r.fileChanged() {
					r.reloadFile(ctx, "file")
				} else if pendingWasm {
					r.reapply(ctx)
				}
				pendingFile, pendingWasm = false, false
			}
		}
	}()
	return nil
}
