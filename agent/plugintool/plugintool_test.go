package plugintool

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
)

// TestNewBuildsAndRuns scaffolds a plugin in each language, builds it with
// the real toolchain and runs a batch through the host, then runs the
// scaffold's own test the way its author would (`go test` in its folder).
func TestNewBuildsAndRuns(t *testing.T) {
	ctx := context.Background()
	rt, err := wasmhost.NewRuntime(ctx, wasmhost.RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	for _, lang := range []Lang{Go, C, AssemblyScript} {
		t.Run(string(lang), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "greeter")
			if err := New(lang, "greeter", dir); err != nil {
				t.Fatal(err)
			}
			if got, err := Detect(dir); err != nil || got != lang {
				t.Fatalf("Detect(scaffold) = %q, %v; want %q", got, err, lang)
			}
			wasm, err := Build(ctx, dir, "")
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, "greeter.wasm"); wasm != want {
				t.Fatalf("Build wrote %s, want %s", wasm, want)
			}
			p, err := rt.Load(ctx, wasmhost.PluginConfig{Name: "greeter-" + string(lang), Kind: wasmhost.KindBolt, Path: wasm})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(ctx)
			res, err := p.Process(ctx, event.AppendBatch(nil, []event.Event{{Body: []byte("hi")}, {}}))
			if err != nil {
				t.Fatal(err)
			}
			out, err := event.DecodeBatch(nil, res.Batch)
			if err != nil || len(out) != 1 || string(out[0].Body) != "greeter: hi" {
				t.Fatalf("output %+v (%v), want one event \"greeter: hi\"", out, err)
			}
			if len(res.Rejects) != 1 || res.Rejects[0].Index != 1 {
				t.Fatalf("rejects %+v, want event 1", res.Rejects)
			}

			cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "./...")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go test in the scaffold: %v\n%s", err, out)
			}
		})
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := New(Go, "Bad Name", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), `plugin name "Bad Name"`) {
		t.Errorf("bad name: %v", err)
	}
	if err := New("rust", "x", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), `"rust"`) {
		t.Errorf("bad language: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := New(Go, "x", dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty directory: %v", err)
	}
}

func TestDetect(t *testing.T) {
	cases := []struct {
		files []string
		want  Lang
	}{
		{[]string{"go.mod"}, Go},
		{[]string{"main.go"}, Go},
		{[]string{"plugin.c", "test/plugin_test.go", "go.mod"}, C},
		{[]string{"assembly/index.ts", "go.mod", "test/plugin_test.go"}, AssemblyScript},
		{[]string{"asconfig.json"}, AssemblyScript},
		{[]string{"package.json"}, AssemblyScript},
	}
	for _, tc := range cases {
		dir := t.TempDir()
		for _, f := range tc.files {
			p := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := Detect(dir); err != nil || got != tc.want {
			t.Errorf("Detect(%v) = %q, %v; want %q", tc.files, got, err, tc.want)
		}
	}
	empty := t.TempDir()
	if _, err := Detect(empty); err == nil || !strings.Contains(err.Error(), "no plugin sources found") {
		t.Errorf("Detect(empty) = %v", err)
	}
}

func TestMissingToolchainNamesThePackage(t *testing.T) {
	node, lookErr := exec.LookPath("node")
	nodeDir := filepath.Dir(mustLook(t, "node", node, lookErr))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.c"), []byte("int x;"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err := Build(context.Background(), dir, "")
	var missing *MissingToolError
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "Debian packages clang lld wasi-libc libclang-rt-14-dev-wasm32") {
		t.Fatalf("C build without clang: %v", err)
	}

	// An AssemblyScript plugin in a checkout whose SDK has no node_modules.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "sdk", "assemblyscript"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sdk", "ABI.md"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(root, "p", "assembly")
	if err := os.MkdirAll(plugin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", nodeDir)
	_, err = Build(context.Background(), filepath.Dir(plugin), "")
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "npm package assemblyscript") {
		t.Fatalf("AssemblyScript build without asc: %v", err)
	}
}

func mustLook(t *testing.T, name, path string, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("%s must be installed for this test: %v", name, err)
	}
	return path
}
