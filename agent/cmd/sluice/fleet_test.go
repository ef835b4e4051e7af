package main

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/fleet"
)

func TestFleetUsage(t *testing.T) {
	for _, args := range [][]string{{"fleet"}, {"fleet", "melt"}, {"fleet", "serve"}, {"fleet", "sign"}, {"fleet", "sign", "-key", "k"}} {
		if code, _, _ := run(t, args...); code != exitUsage {
			t.Errorf("sluice %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, errOut := run(t, "fleet", "serve", "-dir", filepath.Join(t.TempDir(), "absent")); code != exitUsage || !strings.Contains(errOut, "is not a directory") {
		t.Errorf("serve with a missing dir: exit %d, %q", code, errOut)
	}
}

func TestFleetKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	code, out, errOut := run(t, "fleet", "keygen", "-o", key)
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	m := regexp.MustCompile(`public key \(agent.opamp.trusted_keys\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen output: %q", out)
	}
	pub, err := fleet.ParsePublicKey(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	if code, _, errOut := run(t, "fleet", "keygen", "-o", key); code == exitOK || !strings.Contains(errOut, "does not overwrite") {
		t.Errorf("keygen over an existing key: exit %d %q", code, errOut)
	}
	pkg := filepath.Join(dir, "order-parse.wasm")
	content := []byte("\x00asm\x01\x00\x00\x00")
	os.WriteFile(pkg, content, 0o644)
	if code, _, errOut := run(t, "fleet", "sign", "-key", key, pkg); code != exitOK {
		t.Fatalf("sign: %d %s", code, errOut)
	}
	raw, _ := os.ReadFile(pkg + ".sig")
	sig, err := fleet.DecodeSignature(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.VerifyPackage([]ed25519.PublicKey{pub}, "order-parse", content, nil, sig); err != nil {
		t.Errorf("the CLI's signature does not verify: %v", err)
	}
}

func TestFleetLsEmpty(t *testing.T) {
	srv, err := fleet.StartServer(context.Background(), fleet.ServerOptions{Dir: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	code, out, errOut := run(t, "fleet", "ls", "-server", "http://"+srv.Addr())
	if code != exitOK || !strings.HasPrefix(out, "NAME") || strings.Count(out, "\n") != 1 {
		t.Errorf("fleet ls: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = run(t, "fleet", "ls", "-json", "-server", "http://"+srv.Addr())
	if code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("fleet ls -json: exit %d, %q", code, out)
	}
}
