package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func decodeSig(b []byte) ([]byte, error) {
	if string(b) == "bad" {
		return nil, errors.New("not a signature")
	}
	return b, nil
}

func TestScanAndMatch(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "configs"), 0o755)
	os.MkdirAll(filepath.Join(dir, "packages"), 0o755)
	write := func(rel, text string) {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("configs/role=edge.toml", "[sinks.a]\n")
	write("configs/dc=fra1.toml", "[sinks.b]\n")
	write("configs/nolabel.toml", "")
	write("configs/.hidden.toml", "")
	write("packages/p.wasm", "\x00asm")
	write("packages/p.wasm.sig", "sig")
	write("packages/q.wasm", "\x00asm")
	write("packages/q.wasm.sig", "bad")
	s, err := Scan(dir, decodeSig)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Groups) != 2 || s.Groups[0].Name != "dc=fra1" || s.Groups[1].Key != "role" || s.Groups[1].Value != "edge" {
		t.Fatalf("groups = %+v", s.Groups)
	}
	if len(s.Problems) != 2 || !strings.Contains(s.Problems[0], "nolabel.toml: name it LABEL=VALUE.toml") && !strings.Contains(s.Problems[1], "nolabel.toml") {
		t.Errorf("problems = %q", s.Problems)
	}
	if len(s.Packages) != 2 || string(s.Packages[0].Signature) != "sig" || s.Packages[1].Signature != nil || s.Packages[1].SigError == "" {
		t.Errorf("packages = %+v", s.Packages)
	}

	if g, conflict := s.Match(map[string]string{"role": "edge"}); g == nil || g.Name != "role=edge" || conflict != nil {
		t.Errorf("match role=edge = %v %v", g, conflict)
	}
	if g, conflict := s.Match(map[string]string{"role": "collector"}); g != nil || conflict != nil {
		t.Errorf("match nothing = %v %v", g, conflict)
	}
	if g, conflict := s.Match(map[string]string{"role": "edge", "dc": "fra1"}); g != nil || len(conflict) != 2 {
		t.Errorf("two groups must conflict, got %v %v", g, conflict)
	}

	again, _ := Scan(dir, decodeSig)
	if !s.Equal(again) {
		t.Error("two scans of the same directory differ")
	}
	write("packages/p.wasm.sig", "sig2")
	changed, _ := Scan(dir, decodeSig)
	if s.Equal(changed) {
		t.Error("a new signature is not a change")
	}
	write("configs/role=edge.toml", "[sinks.c]\n")
	changed2, _ := Scan(dir, decodeSig)
	if changed.Equal(changed2) {
		t.Error("a changed config is not a change")
	}
}

func TestScanMissingDirIsEmpty(t *testing.T) {
	s, err := Scan(t.TempDir(), decodeSig)
	if err != nil || len(s.Groups) != 0 || len(s.Packages) != 0 {
		t.Fatalf("%+v %v", s, err)
	}
}
