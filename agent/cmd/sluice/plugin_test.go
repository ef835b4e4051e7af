package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginNewThenBuild scaffolds a Go bolt and builds it from source.
func TestPluginNewThenBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "upper")
	code, out, errs := run(t, "plugin", "new", "--lang", "go", "--dir", dir, "upper")
	if code != exitOK || !strings.Contains(out, "created "+dir) {
		t.Fatalf("plugin new: exit %d, %q, %q", code, out, errs)
	}
	code, out, errs = run(t, "plugin", "build", dir)
	want := filepath.Join(dir, "upper.wasm")
	if code != exitOK || strings.TrimSpace(out) != want {
		t.Fatalf("plugin build: exit %d, %q, %q", code, out, errs)
	}
	if b, err := os.ReadFile(want); err != nil || !strings.HasPrefix(string(b), "\x00asm") {
		t.Fatalf("%s is not a wasm module (%v)", want, err)
	}
}

// TestPluginBuildMissingToolchainExits3 builds the C order-stats with a PATH
// holding no clang: the message names the Debian packages, the exit code is 3.
func TestPluginBuildMissingToolchainExits3(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	code, _, errs := run(t, "plugin", "build", "-o", filepath.Join(t.TempDir(), "x.wasm"), "../../../wasm-examples/order-stats/c")
	if code != exitMissing || !strings.Contains(errs, "clang not found: install the Debian packages clang lld") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}
