// Package pkgstore keeps the plugin packages an OpAMP server offered in a
// directory under the agent's data dir, and is the opamp-go
// PackagesStateProvider that the library's package syncer drives.
//
// Nothing reaches the directory unverified: UpdateContent reads the whole
// download, hands it to the verify function (sha256 and signature) and only
// then writes it, through a temporary file and a rename, so a refused or
// interrupted download leaves the previous version of the package in place.
package pkgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/sluicehq/sluice/internal/atomicfile"
)

// MaxPackageBytes bounds one download (a WASM plugin is a few MiB at most).
const MaxPackageBytes = 64 << 20

// wasmMagic starts every WebAssembly binary module.
var wasmMagic = []byte("\x00asm")

// validName is what a package name may look like: it becomes a file name.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Verify checks a downloaded package; a non-nil error refuses it.
type Verify func(name string, content, contentHash, signature []byte) error

// Store is a directory of packages: NAME.wasm files and state.json. Safe for
// concurrent use.
type Store struct {
	dir    string
	verify Verify

	mu       sync.Mutex
	state    state
	statuses *protobufs.PackageStatuses
}

type state struct {
	AllHash  []byte                   `json:"all_hash,omitempty"`
	Packages map[string]packageRecord `json:"packages"`
}

type packageRecord struct {
	Type    int32  `json:"type"`
	Hash    []byte `json:"hash,omitempty"`
	Version string `json:"version,omitempty"`
}

var _ types.PackagesStateProvider = (*Store)(nil)

// Open opens (creating it if needed) the store in dir.
func Open(dir string, verify Verify) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, verify: verify, state: state{Packages: map[string]packageRecord{}}}
	raw, err := os.ReadFile(s.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, &s.state); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to fetch every package again)", s.statePath(), err)
		}
		if s.state.Packages == nil {
			s.state.Packages = map[string]packageRecord{}
		}
	}
	return s, nil
}

// Path is where the content of package name is kept.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name+".wasm") }

func (s *Store) statePath() string { return filepath.Join(s.dir, "state.json") }

// saveLocked writes state.json atomically; s.mu is held.
func (s *Store) saveLocked() error {
	raw, err := json.MarshalIndent(s.state, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.statePath(), raw)
}

// AllPackagesHash implements types.PackagesStateProvider.
func (s *Store) AllPackagesHash() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.AllHash, nil
}

// SetAllPackagesHash implements types.PackagesStateProvider.
func (s *Store) SetAllPackagesHash(hash []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.AllHash = hash
	return s.saveLocked()
}

// Packages implements types.PackagesStateProvider.
func (s *Store) Packages() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.state.Packages))
	for n := range s.state.Packages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// PackageState implements types.PackagesStateProvider.
func (s *Store) PackageState(name string) (types.PackageState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.state.Packages[name]
	if !ok {
		return types.PackageState{}, nil
	}
	return types.PackageState{Exists: true, Type: protobufs.PackageType(r.Type), Hash: r.Hash, Version: r.Version}, nil
}

// SetPackageState implements types.PackagesStateProvider.
func (s *Store) SetPackageState(name string, st types.PackageState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.Exists {
		delete(s.state.Packages, name)
	} else {
		s.state.Packages[name] = packageRecord{Type: int32(st.Type), Hash: st.Hash, Version: st.Version}
	}
	return s.saveLocked()
}

// CreatePackage implements types.PackagesStateProvider.
func (s *Store) CreatePackage(name string, typ protobufs.PackageType) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("package name %q is not a plain file name (letters, digits, '.', '_', '-')", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.state.Packages[name]; ok {
		return fmt.Errorf("package %s already exists", name)
	}
	s.state.Packages[name] = packageRecord{Type: int32(typ)}
	return s.saveLocked()
}

// FileContentHash implements types.PackagesStateProvider: the sha256 of the
// file on disk, or nil when there is none.
func (s *Store) FileContentHash(name string) ([]byte, error) {
	if !validName.MatchString(name) {
		return nil, nil
	}
	raw, err := os.ReadFile(s.Path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return sum[:], nil
}

// UpdateContent implements types.PackagesStateProvider: it reads the whole
// download, verifies it and only then replaces the package file.
func (s *Store) UpdateContent(ctx context.Context, name string, data io.Reader, contentHash, signature []byte) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("package name %q is not a plain file name (letters, digits, '.', '_', '-')", name)
	}
	content, err := io.ReadAll(io.LimitReader(data, MaxPackageBytes+1))
	if err != nil {
		return fmt.Errorf("package %s: download: %w", name, err)
	}
	if len(content) > MaxPackageBytes {
		return fmt.Errorf("package %s: larger than %d bytes", name, MaxPackageBytes)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.verify(name, content, contentHash, signature); err != nil {
		return err
	}
	if !bytes.HasPrefix(content, wasmMagic) {
		return fmt.Errorf("package %s: not a WebAssembly module (no \\0asm header)", name)
	}
	return atomicfile.Write(s.Path(name), content)
}

// DeletePackage implements types.PackagesStateProvider.
func (s *Store) DeletePackage(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.state.Packages, name)
	if validName.MatchString(name) {
		if err := os.Remove(s.Path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return s.saveLocked()
}

// LastReportedStatuses implements types.PackagesStateProvider. Statuses are
// kept in memory only: after a restart the server's next offer recomputes
// them from the files on disk.
func (s *Store) LastReportedStatuses() (*protobufs.PackageStatuses, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statuses, nil
}

// SetLastReportedStatuses implements types.PackagesStateProvider.
func (s *Store) SetLastReportedStatuses(st *protobufs.PackageStatuses) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses = st
	return nil
}
