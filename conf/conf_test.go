package conf_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/plugintool"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/conf"
)

// TestEveryConfigValidates checks every conf/*.toml with the built-in
// registry, with the example plugins they reference built from source into
// the directory SLUICE_DEMO_DIR names.
func TestEveryConfigValidates(t *testing.T) {
	demo := t.TempDir()
	ctx := context.Background()
	for src, out := range map[string]string{
		"../wasm-examples/order-parse":   "order-parse.wasm",
		"../wasm-examples/order-stats/c": "order-stats.wasm",
	} {
		if _, err := plugintool.Build(ctx, src, filepath.Join(demo, "plugins", out)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SLUICE_DEMO_DIR", demo)
	files, err := filepath.Glob("*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no conf/*.toml found (%v)", err)
	}
	for _, f := range files {
		if _, err := config.Load(f, registry.Builtin()); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
	onDisk, err := os.ReadFile("agent.toml")
	if err != nil || !bytes.Equal(onDisk, conf.Demo) {
		t.Errorf("the embedded demo config differs from conf/agent.toml")
	}
}
