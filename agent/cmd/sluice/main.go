// Command sluice is the Sluice agent: it runs a topology from one TOML file,
// checks configs, runs the demo and the benchmark, builds plugins and
// inspects dead-letter channels and watches a running agent (top, tap).
//
// Exit codes:
//
//	0  success
//	1  the agent or command failed while running
//	2  bad usage or an invalid config (every problem is printed)
//	3  a toolchain needed to build a plugin is missing (the message names the package)
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitMissing = 3
)

// usageError makes main exit with exitUsage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries an explicit exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the topology of a config file until interrupted, reloading it when it changes", cmdRun},
		{"validate", "check config files and print every problem", cmdValidate},
		{"demo", "run the order-analysis demo on a generated, growing order log", cmdDemo},
		{"bench", "measure end-to-end throughput per example language", cmdBench},
		{"plugin", "build a WASM plugin from source, or scaffold a new one", cmdPlugin},
		{"dlq", "list or replay the events in dead-letter channels", cmdDLQ},
		{"top", "show a running agent's live rates and channel depths", cmdTop},
		{"tap", "print the events appended to a running agent's channel", cmdTap},
		{"fleet", "serve OpAMP to a fleet of agents, list them, sign plugin packages", cmdFleet},
		{"version", "print the version", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sluice COMMAND [flags]   (sluice COMMAND --help for a command's flags)")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 failed while running, 2 bad usage or invalid config, 3 missing toolchain")
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		return exitCode(err, stderr)
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "sluice:", ee.err)
		}
		return ee.code
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "sluice:", strings.TrimSpace(ue.msg))
		return exitUsage
	}
	fmt.Fprintln(stderr, "sluice:", err)
	return exitFailed
}
