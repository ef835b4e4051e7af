package pluginbuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/toolchain"
)

func TestUnknownLanguage(t *testing.T) {
	err := Build(context.Background(), "rust", t.TempDir(), filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), `unknown language "rust"`) {
		t.Fatalf("err = %v, want an error naming the language", err)
	}
}

func TestCompileErrorIsReported(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.c"), []byte("int f( {"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Build(context.Background(), toolchain.C, dir, filepath.Join(dir, "bad.wasm"))
	if err == nil || !strings.Contains(err.Error(), "bad.c") {
		t.Fatalf("err = %v, want clang's diagnostic naming bad.c", err)
	}
}

func TestMissingASEntry(t *testing.T) {
	if _, err := ASC(); err != nil {
		t.Fatal(err) // scripts/test installs it; never skip
	}
	err := Build(context.Background(), toolchain.AssemblyScript, t.TempDir(), filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "assembly/index.ts") {
		t.Fatalf("err = %v, want it to name the expected entry file", err)
	}
}

func TestSDKRoot(t *testing.T) {
	if _, err := os.Stat(filepath.Join(SDKRoot(), "ABI.md")); err != nil {
		t.Fatalf("SDKRoot() = %s has no ABI.md: %v", SDKRoot(), err)
	}
}

// TestMissingToolchainNamesThePackage: with an empty PATH, clang and node
// are missing, and the errors say which Debian packages to install.
func TestMissingToolchainNamesThePackage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.c"), []byte("int x;"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "assembly"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "assembly", "index.ts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	err := Build(context.Background(), toolchain.C, dir, filepath.Join(dir, "p.wasm"))
	if err == nil || !strings.Contains(err.Error(), "Debian packages clang lld wasi-libc libclang-rt-14-dev-wasm32") {
		t.Errorf("C without clang: %v", err)
	}
	err = Build(context.Background(), toolchain.AssemblyScript, dir, filepath.Join(dir, "p.wasm"))
	if err == nil || !strings.Contains(err.Error(), "Debian packages nodejs npm") {
		t.Errorf("AssemblyScript without node: %v", err)
	}
}
