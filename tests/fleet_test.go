package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/agent/fleet"
	"github.com/sluicehq/sluice/agent/plugintool"
)

// fleetAgentConfig is each edge agent's own file. Paths are relative: every
// agent runs in its own directory, so one group config fits all five.
const fleetAgentConfig = `
[agent]
data_dir = "data"
admin_addr = "off"
shutdown_timeout = "5s"
labels = { role = "edge", n = "%d" }

[agent.opamp]
endpoint = "%s"
name = "edge-%d"
allow = ["channels", "bolts", "sinks"]
trusted_keys = ["%s"]
health_grace = "3s"

[channels.raw]

[sources.logs]
type = "tail"
output = "raw"
[sources.logs.config]
paths = ["logs/*.log"]
poll_interval = "20ms"

[sinks.out]
type = "file"
input = "raw"
[sinks.out.config]
path = "out/v1.log"
`

// The configs pushed to the group role=edge, in order.
const (
	pushValid = `
[sinks.out]
type = "file"
input = "raw"
[sinks.out.config]
path = "out/v2.log"
`
	pushInvalid = `
[sinks.out]
type = "file"
input = "nowhere"
[sinks.out.config]
path = "out/v3.log"
`
	// Valid, but the second sink cannot create its directory ("blocker"
	// is a regular file in every agent's directory), so it keeps failing.
	pushUnhealthy = pushValid + `
[sinks.broken]
type = "file"
input = "raw"
[sinks.broken.config]
path = "blocker/out.log"
`
	// Runs the plugin package the server rolled out: order-parse turns
	// order lines into parsed orders. A table offered replaces the running
	// one as a whole, so [channels] lists raw as well.
	pushPlugin = `
[channels.raw]
[channels.parsed]

[bolts.parse]
wasm = "data/fleet/packages/order-parse.wasm"
input = "raw"
output = "parsed"

[sinks.out]
type = "file"
input = "parsed"
[sinks.out.config]
path = "out/v4.log"
`
)

// startProc runs bin with args in dir (startProcess) and stops it with
// SIGINT when the test ends; when watch matches a line of its stderr, the
// line's first submatch is sent on found.
func startProc(t *testing.T, dir, bin string, watch *regexp.Regexp, found chan<- string, args ...string) *agentProcess {
	t.Helper()
	p := startProcess(t, bin, procOptions{Dir: dir, Watch: watch, Found: found}, args...)
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		<-p.done
		p.cmd.Wait()
	})
	return p
}

func fleetCmd(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestFleet runs `sluice fleet serve` and five edge agents as processes and
// pushes configs and plugin packages to their label group through OpAMP.
func TestFleet(t *testing.T) {
	const agents = 5
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	plugin, err := plugintool.Build(context.Background(), "../wasm-examples/order-parse/c", filepath.Join(dir, "order-parse.wasm"))
	if err != nil {
		t.Fatal(err)
	}

	// Keys, with the CLI an operator uses.
	out := fleetCmd(t, dir, bin, "fleet", "keygen", "-o", filepath.Join(dir, "signing.key"))
	m := regexp.MustCompile(`public key \(agent.opamp.trusted_keys\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen printed no public key:\n%s", out)
	}
	pubKey := m[1]

	fleetDir := filepath.Join(dir, "fleet")
	for _, d := range []string{"configs", "packages"} {
		if err := os.MkdirAll(filepath.Join(fleetDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addrCh := make(chan string, 1)
	server := startProc(t, dir, bin, regexp.MustCompile(`fleet server listening" opamp=(\S+)`), addrCh,
		"fleet", "serve", "-dir", fleetDir, "-addr", "127.0.0.1:0")
	var endpoint string
	select {
	case endpoint = <-addrCh:
	case <-server.done:
		t.Fatalf("fleet serve exited:\n%s", server.log)
	case <-time.After(60 * time.Second):
		t.Fatalf("fleet serve did not say where it listens:\n%s", server.log)
	}
	base := "http://" + strings.TrimSuffix(strings.TrimPrefix(endpoint, "ws://"), fleet.OpAMPPath)

	procs := make([]*agentProcess, agents)
	agentDir := func(i int) string { return filepath.Join(dir, fmt.Sprintf("edge%d", i)) }
	for i := range agents {
		ad := agentDir(i)
		for _, d := range []string{"logs", "out"} {
			if err := os.MkdirAll(filepath.Join(ad, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(ad, "blocker"), []byte("a file where a directory should be\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf(fleetAgentConfig, i, endpoint, i, pubKey)
		if err := os.WriteFile(filepath.Join(ad, "sluice.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		procs[i] = startProc(t, ad, bin, nil, nil, "run", "-c", "sluice.toml")
	}
	logs := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "--- fleet serve\n%s", server.log)
		for i, p := range procs {
			fmt.Fprintf(&b, "--- edge%d\n%s", i, p.log)
		}
		return b.String()
	}

	// wait polls the server's agent list until ok holds for every agent.
	wait := func(what string, ok func(a fleet.AgentView) bool) []fleet.AgentView {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			list, err := fleet.ListAgents(context.Background(), base)
			good := err == nil && len(list) == agents
			for _, a := range list {
				good = good && ok(a)
			}
			if good {
				return list
			}
			for i, p := range procs {
				select {
				case <-p.done:
					t.Fatalf("edge%d exited while waiting for %s\n%s", i, what, logs())
				default:
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; agents: %+v (err %v)\n%s", what, list, err, logs())
			}
			time.Sleep(50 * time.Millisecond) // polling the server's view
		}
	}
	push := func(text string) { writeRename(t, filepath.Join(fleetDir, "configs", "role=edge.toml"), text) }
	configIs := func(status, errPart string) func(a fleet.AgentView) bool {
		return func(a fleet.AgentView) bool {
			return a.Connected && a.Group == "role=edge" && a.Config.Current && a.Config.Status == status && strings.Contains(a.Config.Error, errPart)
		}
	}
	// flows writes a line into every agent's log and waits until it is in
	// file rel of every agent (the config that is really running).
	line := 0
	flows := func(rel string, want func(string) string) {
		t.Helper()
		line++
		order := fmt.Sprintf(`{"ts":"2026-11-25T12:00:00.000Z","order_id":"o-%06d","user_id":42,"sku":"sku-1","category":"books","qty":1,"price":12.50,"city":"Hangzhou","status":"paid","note":"raw"}`, line)
		for i := range agents {
			f, err := os.OpenFile(filepath.Join(agentDir(i), "logs", "orders.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(f, order)
			f.Close()
		}
		needle := want(order)
		deadline := time.Now().Add(60 * time.Second)
		for i := range agents {
			for {
				got, _ := os.ReadFile(filepath.Join(agentDir(i), rel))
				if bytes.Contains(got, []byte(needle)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("edge%d: %q never reached %s\n%s", i, needle, rel, logs())
				}
				time.Sleep(20 * time.Millisecond) // polling the output file
			}
		}
	}
	same := func(s string) string { return s }
	// order-parse drops fields that are not part of an order.
	parsed := func(s string) string { return strings.Replace(s, `,"note":"raw"`, "", 1) }

	wait("five agents connected and healthy", func(a fleet.AgentView) bool {
		return a.Connected && a.Healthy && a.Labels["role"] == "edge"
	})
	flows("out/v1.log", same)

	// 1. A valid config: every agent applies it and runs it.
	push(pushValid)
	wait("valid config applied", configIs("applied", ""))
	flows("out/v2.log", same)

	// 2. An invalid config: every agent refuses it, with the validation
	// error, and keeps running the previous one.
	push(pushInvalid)
	refused := wait("invalid config failed", configIs("failed", "sinks.out.input"))
	for _, a := range refused {
		if !strings.Contains(a.Config.Error, `channel "nowhere" is not defined`) {
			t.Errorf("%s: error does not say why: %s", a.Name, a.Config.Error)
		}
	}
	flows("out/v2.log", same)

	// 3. A config that starts but leaves a sink failing: rolled back.
	push(pushUnhealthy)
	wait("unhealthy config rolled back", configIs("failed", "rolled back to the previous config: sink broken failed"))
	wait("healthy again after the rollback", func(a fleet.AgentView) bool {
		_, stillThere := a.Components["sink/broken"]
		return a.Healthy && !stillThere
	})
	flows("out/v2.log", same)

	// 4. A signed plugin package rolls out to every agent.
	pkg := filepath.Join(fleetDir, "packages", "order-parse.wasm")
	good, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(dir, "order-parse.wasm")
	fleetCmd(t, dir, bin, "fleet", "sign", "-key", filepath.Join(dir, "signing.key"), staged)
	sig, err := os.ReadFile(staged + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	writeRename(t, pkg+".sig", string(sig))
	writeRename(t, pkg, string(good))
	wait("signed package installed", func(a fleet.AgentView) bool {
		return a.Packages["order-parse"].Status == "installed"
	})
	installed := func(i int) []byte {
		b, err := os.ReadFile(filepath.Join(agentDir(i), "data", "fleet", "packages", "order-parse.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range agents {
		if sha256.Sum256(installed(i)) != sha256.Sum256(good) {
			t.Errorf("edge%d: installed package differs from the offered one", i)
		}
	}
	// …and a config using it runs it.
	push(pushPlugin)
	wait("config using the package applied", configIs("applied", ""))
	flows("out/v4.log", parsed)

	// 5. A tampered package (one byte changed, old signature) is refused
	// by every agent, which keeps the good version.
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 0xff
	writeRename(t, pkg, string(tampered))
	refusedPkg := wait("tampered package refused", func(a fleet.AgentView) bool {
		p := a.Packages["order-parse"]
		return p.Status == "install_failed" && p.ServerOffer != "" && strings.Contains(p.Error, "signature does not verify")
	})
	for i := range agents {
		if sha256.Sum256(installed(i)) != sha256.Sum256(good) {
			t.Errorf("edge%d: a refused package replaced the good one", i)
		}
	}
	flows("out/v4.log", parsed)

	// 6. The server goes away: the agents run on unchanged, reconnect
	// when it is back, and it learns their whole state again.
	server.cmd.Process.Signal(os.Interrupt)
	<-server.done
	flows("out/v4.log", parsed)
	addrCh = make(chan string, 1)
	server = startProc(t, dir, bin, regexp.MustCompile(`fleet server listening" opamp=(\S+)`), addrCh,
		"fleet", "serve", "-dir", fleetDir, "-addr", strings.TrimPrefix(base, "http://"))
	select {
	case <-addrCh:
	case <-server.done:
		t.Fatalf("fleet serve did not restart:\n%s", server.log)
	case <-time.After(60 * time.Second):
		t.Fatalf("fleet serve did not restart:\n%s", server.log)
	}
	wait("agents back after the server restarted", func(a fleet.AgentView) bool {
		return configIs("applied", "")(a) && a.Healthy && a.Packages["order-parse"].Status == "install_failed"
	})

	table := fleetCmd(t, dir, bin, "fleet", "ls", "-server", base)
	if n := strings.Count(table, "order-parse=install_failed(keeps "); n != agents {
		t.Errorf("fleet ls shows %d agents keeping their package after the refusal, want %d:\n%s", n, agents, table)
	}
	t.Logf("fleet: %d agents; 4 config pushes (valid → applied %d/%d, invalid → failed %d/%d, unhealthy → rolled back %d/%d, plugin config → applied %d/%d); "+
		"2 package rollouts (signed → installed %d/%d, tampered → refused %d/%d); server restarted, all reconnected\n%s",
		agents, agents, agents, len(refused), agents, agents, agents, agents, agents, agents, agents, len(refusedPkg), agents, table)
}
