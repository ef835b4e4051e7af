package fleet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/agent/admin"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/fleet"
	"github.com/sluicehq/sluice/agent/registry"
)

// testApplier stands in for the agent's reloader: it validates with the
// real config package and registry, and makes a sink named "broken" report
// failed, as the admin status does for a stage that keeps restarting.
type testApplier struct {
	mu      sync.Mutex
	cur     *config.File
	text    []byte
	applies []string
}

func (a *testApplier) ApplyBytes(_ context.Context, name string, text []byte) error {
	f, err := config.Parse(name, text, registry.Builtin())
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cur, a.text = f, text
	a.applies = append(a.applies, name)
	return nil
}

func (a *testApplier) Current() *config.File {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

func (a *testApplier) CurrentText() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.text
}

func (a *testApplier) status() admin.Status {
	st := admin.Status{State: admin.StateRunning}
	cur := a.Current()
	for _, s := range cur.Stages() {
		cs := admin.ComponentStatus{Name: s.Name, Kind: string(s.Kind), State: admin.StateRunning}
		if s.Name == "broken" {
			cs.State, cs.LastError, cs.Restarts = admin.StateFailed, "file sink: mkdir: not a directory", 1
		}
		st.Components = append(st.Components, cs)
	}
	return st
}

const agentConfig = `
[agent]
data_dir = %q
admin_addr = "off"
labels = { role = "edge", n = "%d" }
[agent.opamp]
endpoint = "ws://%s/v1/opamp"
name = "edge-%d"
allow = ["sinks"]
trusted_keys = [%q]
health_grace = "300ms"

[channels.raw]

[sources.logs]
type = "tail"
output = "raw"
[sources.logs.config]
paths = ["%s/*.log"]

[sinks.out]
type = "file"
input = "raw"
[sinks.out.config]
path = "%s/out.log"
`

func waitFor(t *testing.T, srv *fleet.Server, what string, ok func([]fleet.AgentView) bool) []fleet.AgentView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		agents := srv.Agents()
		if ok(agents) {
			return agents
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; agents: %+v", what, agents)
		}
		time.Sleep(20 * time.Millisecond) // polling the server's view
	}
}

func TestClientAgainstOpAMPServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	fleetDir := filepath.Join(dir, "fleet")
	for _, d := range []string{"configs", "packages"} {
		if err := os.MkdirAll(filepath.Join(fleetDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := fleet.StartServer(context.Background(), fleet.ServerOptions{Dir: fleetDir, Addr: "127.0.0.1:0", ScanEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())

	pubText, privText, err := fleet.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := fleet.ParsePrivateKey(privText)

	const agents = 2
	appliers := make([]*testApplier, agents)
	clients := make([]*fleet.Client, agents)
	for i := range agents {
		adir := filepath.Join(dir, fmt.Sprintf("agent%d", i))
		os.MkdirAll(adir, 0o755)
		path := filepath.Join(adir, "sluice.toml")
		text := fmt.Sprintf(agentConfig, filepath.Join(adir, "data"), i, srv.Addr(), i, pubText, adir, adir)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, registry.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		appliers[i] = &testApplier{cur: cfg, text: []byte(text)}
		clients[i], err = fleet.StartClient(context.Background(), fleet.ClientOptions{
			Config: cfg, Version: "test", Applier: appliers[i], Status: appliers[i].status, HealthEvery: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer clients[i].Stop(context.Background())
	}
	waitFor(t, srv, "both agents described", func(as []fleet.AgentView) bool {
		return len(as) == agents && as[0].Name == "edge-0" && as[1].Labels["role"] == "edge" && as[0].Healthy
	})

	push := func(text string) {
		t.Helper()
		tmp := filepath.Join(fleetDir, "configs", ".push.tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(fleetDir, "configs", "role=edge.toml")); err != nil {
			t.Fatal(err)
		}
	}
	configIs := func(status, errPart string) func([]fleet.AgentView) bool {
		return func(as []fleet.AgentView) bool {
			for _, a := range as {
				if !a.Config.Current || a.Config.Status != status || !strings.Contains(a.Config.Error, errPart) {
					return false
				}
			}
			return true
		}
	}

	// 1. A valid config for the allowed table: applied everywhere.
	push("[sinks.out]\ntype = \"file\"\ninput = \"raw\"\n[sinks.out.config]\npath = \"/tmp/sluice-fleet-unit-out2.log\"\n")
	waitFor(t, srv, "config applied and reported as effective", func(as []fleet.AgentView) bool {
		if !configIs("applied", "")(as) {
			return false
		}
		for i, a := range as {
			if a.Config.EffectiveHash != fmt.Sprintf("%x", sha256.Sum256(appliers[i].CurrentText())) {
				return false
			}
		}
		return true
	})
	for i, a := range appliers {
		if a.Current().Sources["logs"] == nil || a.Current().Agent.OpAMP.Name != fmt.Sprintf("edge-%d", i) {
			t.Errorf("agent %d: merged config lost local tables: %+v", i, a.Current())
		}
	}
	good := appliers[0].Current()

	// 2. A table the allow list does not name: refused, nothing applied.
	push("[channels.raw]\npartitions = 4\n")
	waitFor(t, srv, "not-allowed config refused", configIs("failed", "remote config changes [channels], which agent.opamp.allow does not permit"))
	if appliers[0].Current() != good {
		t.Error("a refused config replaced the running one")
	}

	// 3. An invalid config: failed with the validation error.
	push("[sinks.out]\ntype = \"file\"\ninput = \"nowhere\"\n")
	waitFor(t, srv, "invalid config failed", configIs("failed", "sinks.out.input"))
	if appliers[0].Current() != good {
		t.Error("an invalid config replaced the running one")
	}

	// 4. Applies, but a component fails within the grace: rolled back.
	push("[sinks.out]\ntype = \"file\"\ninput = \"raw\"\n[sinks.out.config]\npath = \"/tmp/x.log\"\n[sinks.broken]\ntype = \"file\"\ninput = \"raw\"\n[sinks.broken.config]\npath = \"/tmp/y.log\"\n")
	waitFor(t, srv, "unhealthy config rolled back", configIs("failed", "rolled back to the previous config: sink broken failed"))
	for i, a := range appliers {
		if _, ok := a.Current().Sinks["broken"]; ok {
			t.Errorf("agent %d still runs the broken sink", i)
		}
		if a.Current().Sinks["out"] == nil {
			t.Errorf("agent %d: rollback lost sinks.out", i)
		}
	}

	// A local reload (SIGHUP) changes what runs: reported as effective.
	local := strings.Replace(string(appliers[1].CurrentText()), "out2.log", "local.log", 1)
	if err := appliers[1].ApplyBytes(context.Background(), "local reload", []byte(local)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, srv, "a local reload reported as the effective config", func(as []fleet.AgentView) bool {
		return len(as) == agents && as[1].Config.EffectiveHash == fmt.Sprintf("%x", sha256.Sum256([]byte(local)))
	})

	// 5. Packages: a signed one installs, a tampered and an unsigned one
	// are refused, and the refused ones never reach the data dir.
	module := append([]byte("\x00asm\x01\x00\x00\x00"), []byte("plugin v1")...)
	writePkg := func(name string, content, sig []byte) {
		p := filepath.Join(fleetDir, "packages", name+".wasm")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if sig != nil {
			os.WriteFile(p+".sig", []byte(fleet.EncodeSignature(sig)), 0o644)
		}
	}
	writePkg("good", module, fleet.SignPackage(priv, "good", module))
	tampered := append(append([]byte(nil), module...), "evil"...)
	writePkg("tampered", tampered, fleet.SignPackage(priv, "tampered", module))
	writePkg("unsigned", module, nil)
	pkgs := waitFor(t, srv, "package statuses", func(as []fleet.AgentView) bool {
		for _, a := range as {
			if a.Packages["good"].Status != "installed" || a.Packages["tampered"].Status != "install_failed" || a.Packages["unsigned"].Status != "install_failed" {
				return false
			}
		}
		return true
	})
	for i, a := range pkgs {
		if !strings.Contains(a.Packages["tampered"].Error, "signature does not verify") || !strings.Contains(a.Packages["unsigned"].Error, "not signed") {
			t.Errorf("agent %s: refusal reasons: %+v", a.Name, a.Packages)
		}
		got, err := os.ReadFile(clients[i].PackagePath("good"))
		if err != nil || sha256.Sum256(got) != sha256.Sum256(module) {
			t.Errorf("agent %d: installed package differs: %v", i, err)
		}
		for _, refused := range []string{"tampered", "unsigned"} {
			if _, err := os.Stat(clients[i].PackagePath(refused)); !os.IsNotExist(err) {
				t.Errorf("agent %d: refused package %s is on disk (%v)", i, refused, err)
			}
		}
	}
}

func TestPublicKeyText(t *testing.T) {
	pub, _, err := fleet.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(pub)
	if len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key is %d bytes", len(raw))
	}
}
