package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/sluicehq/sluice/agent/plugintool"
)

func cmdPlugin(args []string, stdout, stderr io.Writer) error {
	const about = "  sluice plugin build [-o OUT] DIR     build the plugin in DIR (Go, C or AssemblyScript, detected)\n  sluice plugin new --lang go|c|as [--dir DIR] NAME   scaffold a bolt that builds and passes its test"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, "usage: sluice plugin build|new ...\n\n%s\n", about)
		if len(args) == 0 {
			return usageError{"plugin needs build or new"}
		}
		return errHelp
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch args[0] {
	case "build":
		fs := newFlags("plugin build", "plugin build [-o OUT] DIR", "Build the WASM plugin whose sources are in DIR; print the module's path.", stdout)
		out := fs.String("o", "", "output `FILE` (default DIR/<dir name>.wasm)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{"plugin build needs exactly one DIR"}
		}
		path, err := plugintool.Build(ctx, fs.Arg(0), *out)
		if err != nil {
			return toolError(err)
		}
		fmt.Fprintln(stdout, path)
		return nil
	case "new":
		fs := newFlags("plugin new", "plugin new --lang go|c|as [--dir DIR] NAME", "Scaffold a new bolt named NAME.", stdout)
		lang := fs.String("lang", "go", "language: go, c or as")
		dir := fs.String("dir", "", "target `DIR` (default ./NAME)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{"plugin new needs exactly one NAME"}
		}
		l, err := plugintool.ParseLang(*lang)
		if err != nil {
			return usageError{err.Error()}
		}
		d := *dir
		if d == "" {
			d = filepath.Join(".", fs.Arg(0))
		}
		if err := plugintool.New(l, fs.Arg(0), d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s; build it with: sluice plugin build %s\n", d, d)
		return nil
	}
	return usageError{fmt.Sprintf("unknown plugin subcommand %q (want build or new)", args[0])}
}

// toolError maps a missing toolchain to exit code 3.
func toolError(err error) error {
	var mt *plugintool.MissingToolError
	if errors.As(err, &mt) {
		return exitError{exitMissing, err}
	}
	return err
}
