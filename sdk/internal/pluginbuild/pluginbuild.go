// Package pluginbuild builds a plugin directory written against one of the
// Sluice SDKs (sdk/go, sdk/c, sdk/assemblyscript) into a .wasm module with the
// real toolchain, for tests that run plugins built from source.
//
// It is internal to sdk/: the `sluice plugin build` command lives in
// agent/plugintool and owns language detection for users. These helpers fix
// the exact flags the SDKs are tested with, so the two can be compared.
//
// A missing toolchain is an error naming the Debian or npm package to install;
// callers never skip.
package pluginbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Lang is a plugin language.
type Lang string

// Languages.
const (
	Go             Lang = "go"
	C              Lang = "c"
	AssemblyScript Lang = "as"
)

// SDKRoot returns the absolute path of the repository's sdk/ directory.
func SDKRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CFlags are the clang flags of the C SDK, before -I, sources and -o.
var CFlags = []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-mbulk-memory", "-Wall", "-Wextra", "-Werror"}

// Build compiles the plugin in dir (written in lang) to out.
//
//   - Go: dir is a main package inside the sluice module;
//     GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
//   - C: every *.c in dir plus sdk/c/sluice.c, with CFlags and -I sdk/c.
//   - AssemblyScript: dir/asconfig.json and dir/assembly/index.ts, with the
//     asc installed by `npm ci` in sdk/assemblyscript.
func Build(ctx context.Context, lang Lang, dir, out string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	switch lang {
	case Go:
		return buildGo(ctx, dir, out)
	case C:
		return buildC(ctx, dir, out)
	case AssemblyScript:
		return buildAS(ctx, dir, out)
	}
	return fmt.Errorf("pluginbuild: unknown language %q (want go, c or as)", lang)
}

func buildGo(ctx context.Context, dir, out string) error {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		p, err := exec.LookPath("go")
		if err != nil {
			return errors.New("pluginbuild: the go command was not found; install Go 1.26 (golang.org/dl) or the Debian package golang-go")
		}
		goTool = p
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	return run(cmd, "go build of "+dir, "")
}

func buildC(ctx context.Context, dir, out string) error {
	clang, err := exec.LookPath("clang")
	if err != nil {
		return errors.New("pluginbuild: clang not found; install the Debian packages clang, lld, wasi-libc and libclang-rt-14-dev-wasm32")
	}
	sources, err := filepath.Glob(filepath.Join(dir, "*.c"))
	if err != nil || len(sources) == 0 {
		return fmt.Errorf("pluginbuild: no .c files in %s", dir)
	}
	sdk := filepath.Join(SDKRoot(), "c")
	args := append([]string{}, CFlags...)
	args = append(args, "-I", sdk, "-o", out)
	args = append(args, sources...)
	args = append(args, filepath.Join(sdk, "sluice.c"))
	cmd := exec.CommandContext(ctx, clang, args...)
	cmd.Dir = dir
	return run(cmd, "clang build of "+dir, "c")
}

// ASC returns the path of the AssemblyScript compiler installed in
// sdk/assemblyscript, or an error saying how to install it.
func ASC() (string, error) {
	asc := filepath.Join(SDKRoot(), "assemblyscript", "node_modules", ".bin", "asc")
	if _, err := os.Stat(asc); err != nil {
		return "", fmt.Errorf("pluginbuild: %s not found; install the npm package assemblyscript with `npm ci` in %s (needs the Debian packages nodejs and npm)",
			asc, filepath.Dir(filepath.Dir(filepath.Dir(asc))))
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", errors.New("pluginbuild: node not found; install the Debian packages nodejs and npm")
	}
	return asc, nil
}

func buildAS(ctx context.Context, dir, out string) error {
	asc, err := ASC()
	if err != nil {
		return err
	}
	entry := filepath.Join(dir, "assembly", "index.ts")
	if _, err := os.Stat(entry); err != nil {
		return fmt.Errorf("pluginbuild: %s: AssemblyScript plugins have their entry file at assembly/index.ts", dir)
	}
	args := []string{entry, "-o", out}
	cfg := filepath.Join(dir, "asconfig.json")
	if _, err := os.Stat(cfg); err == nil {
		args = append(args, "--config", cfg)
	} else {
		args = append(args, "--config", filepath.Join(SDKRoot(), "assemblyscript", "asconfig.json"))
	}
	cmd := exec.CommandContext(ctx, asc, args...)
	cmd.Dir = dir
	return run(cmd, "asc build of "+dir, "")
}

func run(cmd *exec.Cmd, what, lang string) error {
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		msg := output.String()
		return fmt.Errorf("pluginbuild: %s: %v\n%s%s", what, err, msg, hint(lang, msg))
	}
	return nil
}

// hint names the Debian package behind a typical C toolchain failure.
func hint(lang, msg string) string {
	if lang != "c" {
		return ""
	}
	switch {
	case strings.Contains(msg, "wasm-ld"):
		return "hint: install the Debian package lld\n"
	case strings.Contains(msg, "libclang_rt.builtins-wasm32"):
		return "hint: install the Debian package libclang-rt-14-dev-wasm32\n"
	case strings.Contains(msg, "crt1") || strings.Contains(msg, "file not found") || strings.Contains(msg, "-lc"):
		return "hint: install the Debian package wasi-libc\n"
	}
	return ""
}
