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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/sluicehq/sluice/internal/toolchain"
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
func Build(ctx context.Context, lang toolchain.Lang, dir, out string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	switch lang {
	case toolchain.Go:
		return buildGo(ctx, dir, out)
	case toolchain.C:
		return buildC(ctx, dir, out)
	case toolchain.AssemblyScript:
		return buildAS(ctx, dir, out)
	}
	return fmt.Errorf("pluginbuild: unknown language %q (want go, c or as)", lang)
}

func buildGo(ctx context.Context, dir, out string) error {
	goTool, err := toolchain.GoCommand()
	if err != nil {
		return fmt.Errorf("pluginbuild: %w", err)
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	return run(cmd, "go build of "+dir, "")
}

func buildC(ctx context.Context, dir, out string) error {
	clang, err := toolchain.Clang()
	if err != nil {
		return fmt.Errorf("pluginbuild: %w", err)
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

// ASC returns the AssemblyScript compiler script installed in
// sdk/assemblyscript, to be run with node, or an error saying how to install
// it or node.
func ASC() (string, error) {
	asc, err := toolchain.ASC(filepath.Join(SDKRoot(), "assemblyscript"))
	if err != nil {
		return "", fmt.Errorf("pluginbuild: %w", err)
	}
	if _, err := toolchain.Node(); err != nil {
		return "", fmt.Errorf("pluginbuild: %w", err)
	}
	return asc, nil
}

func buildAS(ctx context.Context, dir, out string) error {
	asc, err := ASC()
	if err != nil {
		return err
	}
	node, err := toolchain.Node()
	if err != nil {
		return fmt.Errorf("pluginbuild: %w", err)
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
	cmd := exec.CommandContext(ctx, node, append([]string{asc}, args...)...)
	cmd.Dir = dir
	return run(cmd, "asc build of "+dir, "")
}

func run(cmd *exec.Cmd, what, lang string) error {
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		msg := output.String()
		if lang == "c" {
			if h := toolchain.Hint(msg); h != "" {
				msg += h + "\n"
			}
		}
		return fmt.Errorf("pluginbuild: %s: %v\n%s", what, err, msg)
	}
	return nil
}
