// Package wasmbuild compiles C sources to WebAssembly modules with Debian's
// clang and lld, for tests that build their plugins from source (no .wasm
// files are committed).
//
// Two targets: WASI (clang --target=wasm32-wasi against Debian's wasi-libc,
// built as a reactor so the host calls _initialize) and Freestanding
// (--target=wasm32, no libc, no entry point; bulk-memory is enabled so that
// memcpy and memset become memory.copy and memory.fill instead of imports).
// Exports are declared in the source with
// __attribute__((export_name("..."))).
//
// A missing toolchain is reported with the Debian package to install.
package wasmbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Target selects the clang target.
type Target string

// Targets.
const (
	WASI         Target = "wasm32-wasi"
	Freestanding Target = "wasm32"
)

// Options configures one build.
type Options struct {
	Target Target   // WASI when empty
	Flags  []string // extra clang flags (-I, -D, -O3 ...), appended last
}

// Args returns the clang command line that C runs, without the sources.
func (o Options) Args(out string) []string {
	target := o.Target
	if target == "" {
		target = WASI
	}
	args := []string{"--target=" + string(target), "-O2", "-o", out}
	switch target {
	case WASI:
		args = append(args, "-mexec-model=reactor")
	case Freestanding:
		args = append(args, "-nostdlib", "-mbulk-memory", "-Wl,--no-entry")
	}
	return append(args, o.Flags...)
}

// C compiles sources into the module out.
func C(ctx context.Context, out string, opts Options, sources ...string) error {
	if len(sources) == 0 {
		return errors.New("wasmbuild: no sources")
	}
	clang, err := exec.LookPath("clang")
	if err != nil {
		return errors.New("wasmbuild: clang not found; install the Debian packages clang and lld")
	}
	cmd := exec.CommandContext(ctx, clang, append(opts.Args(out), sources...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("wasmbuild: clang %s: %v\n%s%s", strings.Join(sources, " "), err, stderr.String(), hint(stderr.String()))
	}
	return nil
}

// hint names the Debian package behind a typical toolchain failure.
func hint(msg string) string {
	switch {
	case strings.Contains(msg, "wasm-ld"):
		return "hint: install the Debian package lld\n"
	case strings.Contains(msg, "libclang_rt.builtins-wasm32"):
		return "hint: install the Debian package libclang-rt-14-dev-wasm32\n"
	case strings.Contains(msg, "crt1") || strings.Contains(msg, "'stdlib.h' file not found") ||
		strings.Contains(msg, "'stdio.h' file not found") || strings.Contains(msg, "-lc"):
		return "hint: install the Debian package wasi-libc\n"
	}
	return ""
}

// MustC compiles sources into a temporary directory of tb and returns the
// module's bytes; a build failure fails tb with clang's output.
func MustC(tb testing.TB, opts Options, sources ...string) []byte {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), strings.TrimSuffix(filepath.Base(sources[0]), ".c")+".wasm")
	if err := C(context.Background(), out, opts, sources...); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
