// Package plugintool builds Sluice WASM plugins from source and scaffolds new
// ones. It is what `sluice plugin build DIR` and `sluice plugin new --lang
// go|c|as NAME` run.
//
// A plugin directory is recognised by its files, in this order:
//
//   - AssemblyScript: asconfig.json, package.json or an assembly/ folder;
//     built with asc from the plugin's own node_modules or, failing that,
//     from sdk/assemblyscript/node_modules (npm package assemblyscript).
//   - C: *.c files; built with Debian's clang as a WASI reactor together with
//     sdk/c/sluice.c (Debian packages clang, lld, wasi-libc,
//     libclang-rt-14-dev-wasm32).
//   - Go: go.mod or *.go files; built with GOOS=wasip1 GOARCH=wasm go build
//     -buildmode=c-shared.
//
// The SDKs are found in the Sluice checkout that holds the plugin directory,
// else the one holding the working directory, else $SLUICE_ROOT. A missing
// toolchain is an error that names the package to install.
package plugintool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/internal/toolchain"
)

// Lang is a plugin language.
type Lang = toolchain.Lang

// The supported languages, as `--lang` spells them.
const (
	Go             = toolchain.Go
	C              = toolchain.C
	AssemblyScript = toolchain.AssemblyScript
)

// ParseLang accepts go, c, as (or assemblyscript).
func ParseLang(s string) (Lang, error) {
	switch strings.ToLower(s) {
	case "go":
		return Go, nil
	case "c":
		return C, nil
	case "as", "assemblyscript":
		return AssemblyScript, nil
	}
	return "", fmt.Errorf("unknown plugin language %q: want go, c or as", s)
}

// Detect says which language the plugin in dir is written in.
func Detect(dir string) (Lang, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("plugin directory: %w", err)
	}
	has := func(suffix string) bool {
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), suffix) {
				return true
			}
		}
		return false
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	switch {
	case exists("asconfig.json") || exists("package.json") || exists("assembly"):
		return AssemblyScript, nil
	case has(".c"):
		return C, nil
	case exists("go.mod") || has(".go"):
		return Go, nil
	}
	return "", fmt.Errorf("%s: no plugin sources found (want asconfig.json, package.json or assembly/ for AssemblyScript, *.c for C, go.mod or *.go for Go)", dir)
}

// Build compiles the plugin in dir into the module out (default:
// dir/<dir name>.wasm when out is "") and returns out's path.
func Build(ctx context.Context, dir, out string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	lang, err := Detect(dir)
	if err != nil {
		return "", err
	}
	if out == "" {
		out = filepath.Join(dir, filepath.Base(dir)+".wasm")
	}
	if out, err = filepath.Abs(out); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	switch lang {
	case Go:
		err = buildGo(ctx, dir, out)
	case C:
		err = buildC(ctx, dir, out)
	case AssemblyScript:
		err = buildAS(ctx, dir, out)
	}
	if err != nil {
		return "", fmt.Errorf("build %s plugin %s: %w", langName(lang), dir, err)
	}
	return out, nil
}

func langName(l Lang) string {
	switch l {
	case Go:
		return "Go"
	case C:
		return "C"
	}
	return "AssemblyScript"
}

// MissingToolError says which package provides a tool that is not installed.
type MissingToolError = toolchain.MissingToolError

// SDKRoot returns the root of the Sluice checkout whose sdk/ is used for
// plugins in dir: the nearest ancestor of dir holding sdk/ABI.md, or named by
// the replace directive of github.com/sluicehq/sluice in the go.mod of dir
// or an ancestor (as scaffolds have), then the same from the working
// directory, else $SLUICE_ROOT.
func SDKRoot(dir string) (string, error) {
	if root := replacedRoot(dir); root != "" {
		return root, nil
	}
	starts := []string{dir}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, s := range starts {
		s, err := filepath.Abs(s)
		if err != nil {
			continue
		}
		for d := s; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "sdk", "ABI.md")); err == nil {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if r := os.Getenv("SLUICE_ROOT"); r != "" {
		if _, err := os.Stat(filepath.Join(r, "sdk", "ABI.md")); err == nil {
			return r, nil
		}
		return "", fmt.Errorf("SLUICE_ROOT=%s has no sdk/ABI.md", r)
	}
	return "", errors.New("cannot find the Sluice SDKs: run inside a Sluice checkout or set SLUICE_ROOT to one")
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(output.String())
		if h := toolchain.Hint(msg); h != "" {
			msg += "\n" + h
		}
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, msg)
	}
	return nil
}

func buildGo(ctx context.Context, dir, out string) error {
	goTool, err := toolchain.GoCommand()
	if err != nil {
		return err
	}
	return run(ctx, dir, []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"},
		goTool, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
}

func buildC(ctx context.Context, dir, out string) error {
	clang, err := toolchain.Clang()
	if err != nil {
		return err
	}
	root, err := SDKRoot(dir)
	if err != nil {
		return err
	}
	sdk := filepath.Join(root, "sdk", "c")
	sources, err := filepath.Glob(filepath.Join(dir, "*.c"))
	if err != nil {
		return err
	}
	hasSDK := false
	for _, s := range sources {
		if filepath.Base(s) == "sluice.c" {
			hasSDK = true
		}
	}
	if !hasSDK {
		sources = append(sources, filepath.Join(sdk, "sluice.c"))
	}
	// bulk-memory turns memcpy and memset into single instructions
	args := []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O3", "-mbulk-memory", "-Wall", "-I", sdk, "-o", out}
	return run(ctx, dir, nil, clang, append(args, sources...)...)
}

func buildAS(ctx context.Context, dir, out string) error {
	node, err := toolchain.Node()
	if err != nil {
		return err
	}
	asc, err := toolchain.ASC(dir)
	if err != nil {
		root, rerr := SDKRoot(dir)
		if rerr != nil {
			return rerr
		}
		if asc, err = toolchain.ASC(filepath.Join(root, "sdk", "assemblyscript")); err != nil {
			return err
		}
	}
	entry := filepath.Join("assembly", "index.ts")
	if _, err := os.Stat(filepath.Join(dir, entry)); err != nil {
		return fmt.Errorf("no %s: an AssemblyScript plugin's entry file is assembly/index.ts", entry)
	}
	args := []string{asc, entry, "--outFile", out, "--optimizeLevel", "3", "--shrinkLevel", "0",
		"--runtime", "incremental", "--noAssert", "--exportRuntime=false"}
	if _, err := os.Stat(filepath.Join(dir, "asconfig.json")); err == nil {
		args = []string{asc, entry, "--config", "asconfig.json", "--target", "release", "--outFile", out}
	}
	return run(ctx, dir, nil, node, args...)
}

// replacedRoot finds the checkout named by `replace github.com/sluicehq/sluice
// => PATH` in the nearest go.mod above dir, or "".
func replacedRoot(dir string) string {
	d, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for ; ; d = filepath.Dir(d) {
		mod, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(mod), "\n") {
				f := strings.Fields(line)
				if len(f) == 4 && f[0] == "replace" && f[1] == "github.com/sluicehq/sluice" && f[2] == "=>" {
					root := f[3]
					if !filepath.IsAbs(root) {
						root = filepath.Join(d, root)
					}
					if _, err := os.Stat(filepath.Join(root, "sdk", "ABI.md")); err == nil {
						return root
					}
				}
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}
