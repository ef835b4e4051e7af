package pkgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
)

var errRefused = errors.New("refused by verify")

// verifyHash accepts content whose sha256 is the offered hash and whose
// signature is "ok": enough to see that the store consults verify.
func verifyHash(_ string, content, hash, sig []byte) error {
	sum := sha256.Sum256(content)
	if !bytes.Equal(sum[:], hash) || string(sig) != "ok" {
		return errRefused
	}
	return nil
}

func TestUpdateContentKeepsTheOldVersionOnRefusal(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, verifyHash)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePackage("p", protobufs.PackageType_PackageType_Addon); err != nil {
		t.Fatal(err)
	}
	v1 := []byte("\x00asm\x01\x00\x00\x00v1")
	h1 := sha256.Sum256(v1)
	if err := s.UpdateContent(context.Background(), "p", bytes.NewReader(v1), h1[:], []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPackageState("p", types.PackageState{Exists: true, Type: protobufs.PackageType_PackageType_Addon, Hash: h1[:], Version: "1"}); err != nil {
		t.Fatal(err)
	}
	v2 := []byte("\x00asm\x01\x00\x00\x00v2")
	h2 := sha256.Sum256(v2)
	cases := []struct {
		name    string
		content []byte
		hash    []byte
		sig     string
		want    string
	}{
		{"bad signature", v2, h2[:], "bad", errRefused.Error()},
		{"hash mismatch", v2, h1[:], "ok", errRefused.Error()},
		{"not wasm", []byte("#!/bin/sh"), func() []byte { h := sha256.Sum256([]byte("#!/bin/sh")); return h[:] }(), "ok", "not a WebAssembly module"},
	}
	for _, tc := range cases {
		err := s.UpdateContent(context.Background(), "p", bytes.NewReader(tc.content), tc.hash, []byte(tc.sig))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if got, _ := os.ReadFile(s.Path("p")); !bytes.Equal(got, v1) {
			t.Errorf("%s: the file changed to %q", tc.name, got)
		}
	}
	if err := s.UpdateContent(context.Background(), "../escape", bytes.NewReader(v2), h2[:], []byte("ok")); err == nil {
		t.Error("a package name with a path was accepted")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.wasm")); !os.IsNotExist(err) {
		t.Error("a package was written outside the store")
	}

	// The state survives reopening.
	s2, err := Open(dir, verifyHash)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s2.PackageState("p")
	if !st.Exists || !bytes.Equal(st.Hash, h1[:]) || st.Version != "1" {
		t.Errorf("reopened state = %+v", st)
	}
	if h, _ := s2.FileContentHash("p"); !bytes.Equal(h, h1[:]) {
		t.Errorf("FileContentHash = %x", h)
	}
	if err := s2.DeletePackage("p"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.Path("p")); !os.IsNotExist(err) {
		t.Error("DeletePackage left the file")
	}
}

func TestOpenReportsABrokenStateFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state.json"), []byte("{not json"), 0o644)
	_, err := Open(dir, verifyHash)
	if err == nil || !strings.Contains(err.Error(), "state.json") || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzOpenState(f *testing.F) {
	f.Add([]byte(`{"all_hash":"AAEC","packages":{"p":{"type":1,"hash":"AAEC","version":"1"}}}`))
	f.Add([]byte(`{"packages":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, verifyHash)
		if err != nil {
			return
		}
		names, _ := s.Packages()
		for _, n := range names {
			s.PackageState(n)
			s.FileContentHash(n)
		}
	})
}
