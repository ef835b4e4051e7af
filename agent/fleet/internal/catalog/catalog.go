// Package catalog reads what `sluice fleet serve` offers from its
// directory:
//
//	DIR/configs/KEY=VALUE.toml   the config for agents whose label KEY is VALUE
//	DIR/packages/NAME.wasm       a plugin package
//	DIR/packages/NAME.wasm.sig   its signature (base64; `sluice fleet sign`)
//
// A Snapshot is immutable; Scan builds a new one, and Equal tells whether
// anything an agent would see changed.
package catalog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Group is one configs/KEY=VALUE.toml file.
type Group struct {
	Name  string // "KEY=VALUE"
	Key   string
	Value string
	Text  []byte
	Hash  []byte // sha256 of Text: the OpAMP config_hash
}

// Package is one packages/NAME.wasm file.
type Package struct {
	Name        string
	Content     []byte
	ContentHash []byte // sha256 of Content
	Signature   []byte // raw ed25519 signature; nil when there is no .sig file
	SigError    string // why the .sig file could not be read ("" when fine or absent)
}

// Snapshot is the directory's content at one scan.
type Snapshot struct {
	Groups   []Group   // sorted by Name
	Packages []Package // sorted by Name
	Problems []string  // files skipped, with the reason
	// AllPackagesHash changes whenever any package or signature does.
	AllPackagesHash []byte
}

// Scan reads dir. A file it cannot use is skipped and named in Problems;
// only a missing or unreadable directory is an error.
func Scan(dir string, decodeSig func([]byte) ([]byte, error)) (*Snapshot, error) {
	s := &Snapshot{}
	cfgDir, pkgDir := filepath.Join(dir, "configs"), filepath.Join(dir, "packages")
	entries, err := os.ReadDir(cfgDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".toml") || strings.HasPrefix(n, ".") {
			continue
		}
		group := strings.TrimSuffix(n, ".toml")
		k, v, ok := strings.Cut(group, "=")
		if !ok || k == "" || v == "" {
			s.Problems = append(s.Problems, fmt.Sprintf("%s: name it LABEL=VALUE.toml (e.g. role=edge.toml)", filepath.Join(cfgDir, n)))
			continue
		}
		text, err := os.ReadFile(filepath.Join(cfgDir, n))
		if err != nil {
			s.Problems = append(s.Problems, err.Error())
			continue
		}
		sum := sha256.Sum256(text)
		s.Groups = append(s.Groups, Group{Name: group, Key: k, Value: v, Text: text, Hash: sum[:]})
	}
	entries, err = os.ReadDir(pkgDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	all := sha256.New()
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".wasm") || strings.HasPrefix(n, ".") {
			continue
		}
		content, err := os.ReadFile(filepath.Join(pkgDir, n))
		if err != nil {
			s.Problems = append(s.Problems, err.Error())
			continue
		}
		sum := sha256.Sum256(content)
		p := Package{Name: strings.TrimSuffix(n, ".wasm"), Content: content, ContentHash: sum[:]}
		sigPath := filepath.Join(pkgDir, n+".sig")
		if raw, err := os.ReadFile(sigPath); err == nil {
			if p.Signature, err = decodeSig(raw); err != nil {
				p.SigError = fmt.Sprintf("%s: %v", sigPath, err)
				s.Problems = append(s.Problems, p.SigError)
			}
		}
		fmt.Fprintf(all, "%s\x00%x\x00%x\x00", p.Name, p.ContentHash, p.Signature)
		s.Packages = append(s.Packages, p)
	}
	sort.Slice(s.Groups, func(i, j int) bool { return s.Groups[i].Name < s.Groups[j].Name })
	sort.Slice(s.Packages, func(i, j int) bool { return s.Packages[i].Name < s.Packages[j].Name })
	s.AllPackagesHash = all.Sum(nil)
	return s, nil
}

// PackageHash is the OpAMP PackageAvailable.hash of p: it changes with the
// content and with the signature.
func (p *Package) PackageHash() []byte {
	h := sha256.New()
	h.Write(p.ContentHash)
	h.Write(p.Signature)
	return h.Sum(nil)
}

// Match returns the group whose label an agent with labels has. None is
// (nil, nil); more than one is a conflict, and the agent gets no config
// until the operator resolves it.
func (s *Snapshot) Match(labels map[string]string) (*Group, []string) {
	var found []*Group
	for i := range s.Groups {
		g := &s.Groups[i]
		if v, ok := labels[g.Key]; ok && v == g.Value {
			found = append(found, g)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	var names []string
	for _, g := range found {
		names = append(names, g.Name)
	}
	return nil, names
}

// Equal reports whether two snapshots offer the same configs and packages.
func (s *Snapshot) Equal(o *Snapshot) bool {
	if s == nil || o == nil {
		return s == o
	}
	if len(s.Groups) != len(o.Groups) || !bytes.Equal(s.AllPackagesHash, o.AllPackagesHash) {
		return false
	}
	for i := range s.Groups {
		if s.Groups[i].Name != o.Groups[i].Name || !bytes.Equal(s.Groups[i].Hash, o.Groups[i].Hash) {
			return false
		}
	}
	return true
}
