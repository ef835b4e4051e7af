package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/agent/fleet"
)

// cmdFleet is `sluice fleet serve|ls|keygen|sign`.
func cmdFleet(args []string, stdout, stderr io.Writer) error {
	const about = `  sluice fleet serve -dir DIR [-addr HOST:PORT]   an OpAMP server: DIR/configs/LABEL=VALUE.toml per label group,
                                                  DIR/packages/NAME.wasm (+ NAME.wasm.sig) for every agent
  sluice fleet ls [-server URL] [-json]            the agents a fleet server knows, with health and config status
  sluice fleet keygen [-o FILE]                    a new ed25519 key pair for signing plugin packages
  sluice fleet sign -key FILE NAME.wasm...         write NAME.wasm.sig beside each package`
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, "usage: sluice fleet serve|ls|keygen|sign ...\n\n%s\n", about)
		if len(args) == 0 {
			return usageError{"fleet needs serve, ls, keygen or sign"}
		}
		return errHelp
	}
	switch args[0] {
	case "serve":
		return fleetServe(args[1:], stdout, stderr)
	case "ls":
		return fleetLs(args[1:], stdout)
	case "keygen":
		return fleetKeygen(args[1:], stdout)
	case "sign":
		return fleetSign(args[1:], stdout)
	}
	return usageError{fmt.Sprintf("fleet: unknown subcommand %q (serve, ls, keygen or sign)", args[0])}
}

func fleetServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fleet serve", "fleet serve -dir DIR [-addr HOST:PORT]",
		"Serve OpAMP on ws://ADDR/v1/opamp. Each agent gets the config of DIR/configs/LABEL=VALUE.toml\n"+
			"whose label it has (agent.labels), and every package in DIR/packages with its signature.\n"+
			"DIR is re-read every second; changes are offered at once. Agents are listed at\n"+
			"http://ADDR/ (a page) and http://ADDR/api/agents (JSON, `sluice fleet ls`).", stdout)
	dir := fs.String("dir", "", "the fleet `DIR` (required)")
	addr := fs.String("addr", "127.0.0.1:4320", "listen `address`")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{"fleet serve needs -dir DIR"}
	}
	if fi, err := os.Stat(*dir); err != nil || !fi.IsDir() {
		return exitError{exitUsage, fmt.Errorf("fleet serve: %s is not a directory", *dir)}
	}
	log := newLogger(*level, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := fleet.StartServer(ctx, fleet.ServerOptions{Dir: *dir, Addr: *addr, Logger: log})
	if err != nil {
		return err
	}
	log.Info("fleet server listening", "opamp", "ws://"+srv.Addr()+fleet.OpAMPPath, "agents", "http://"+srv.Addr()+"/", "dir", *dir)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Stop(sctx)
}

func fleetLs(args []string, stdout io.Writer) error {
	fs := newFlags("fleet ls", "fleet ls [-server URL] [-json]", "List the agents a fleet server knows: health, label group, config status, packages.", stdout)
	server := fs.String("server", "http://127.0.0.1:4320", "the fleet server's `URL`")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agents, err := fleet.ListAgents(ctx, *server)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, agents)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST\tLABELS\tHEALTH\tGROUP\tCONFIG\tPACKAGES")
	for _, a := range agents {
		name := a.Name
		if !a.Connected {
			name += " (away)"
		}
		health := a.State
		if !a.Healthy {
			health = "UNHEALTHY " + health
			for _, k := range slices.Sorted(maps.Keys(a.Components)) {
				if c := a.Components[k]; !c.Healthy {
					health += " " + k
				}
			}
		}
		cfg := a.Config.Status
		if cfg == "" {
			cfg = "-"
		} else if !a.Config.Current && a.Group != "" {
			cfg += " (older config)"
		}
		if a.Config.Error != "" {
			cfg += ": " + firstLine(a.Config.Error)
		}
		var pkgs []string
		for _, k := range slices.Sorted(maps.Keys(a.Packages)) {
			p := a.Packages[k]
			st := k + "=" + p.Status
			if p.Status == "install_failed" && p.AgentHas != "" {
				st += "(keeps " + p.AgentHas[:min(12, len(p.AgentHas))] + ")"
			}
			pkgs = append(pkgs, st)
		}
		group := a.Group
		if len(a.Conflict) > 0 {
			group = "CONFLICT " + strings.Join(a.Conflict, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, a.Host, formatLabels(a.Labels), health, orDash(group), cfg, orDash(strings.Join(pkgs, " ")))
	}
	return tw.Flush()
}

func fleetKeygen(args []string, stdout io.Writer) error {
	fs := newFlags("fleet keygen", "fleet keygen [-o FILE]",
		"Make an ed25519 key pair. The private key goes to FILE (mode 0600; keep it off the agents);\n"+
			"the public key is printed: put it in agent.opamp.trusted_keys.", stdout)
	out := fs.String("o", "fleet-signing.key", "private key `FILE`")
	if err := parse(fs, args); err != nil {
		return err
	}
	pub, priv, err := fleet.GenerateKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("fleet keygen: %w (it does not overwrite a key)", err)
	}
	if _, err := f.WriteString(priv + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "private key: %s\npublic key (agent.opamp.trusted_keys): %s\n", *out, pub)
	return nil
}

func fleetSign(args []string, stdout io.Writer) error {
	fs := newFlags("fleet sign", "fleet sign -key FILE NAME.wasm...",
		"Sign each plugin package with the private key in FILE; write NAME.wasm.sig beside it.\n"+
			"The signature covers the package name (file name without .wasm) and its sha256.", stdout)
	keyFile := fs.String("key", "", "private key `FILE` from sluice fleet keygen (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *keyFile == "" || fs.NArg() == 0 {
		return usageError{"fleet sign needs -key FILE and at least one NAME.wasm"}
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	key, err := fleet.ParsePrivateKey(string(raw))
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	for _, path := range fs.Args() {
		if !strings.HasSuffix(path, ".wasm") {
			return usageError{fmt.Sprintf("%s: a package file is NAME.wasm", path)}
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(path), ".wasm")
		if err := os.WriteFile(path+".sig", []byte(fleet.EncodeSignature(fleet.SignPackage(key, name, content))), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s.sig\n", path)
	}
	return nil
}

func formatLabels(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return orDash(strings.Join(parts, ","))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
