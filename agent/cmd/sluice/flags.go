package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

var errHelp = errors.New("help shown")

// newFlags returns a FlagSet that prints its usage to stdout on --help and
// turns parse errors into usage errors.
func newFlags(name, synopsis, about string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: sluice %s\n\n%s\n", synopsis, about)
		fs.SetOutput(stdout)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(stdout, "\nflags:")
			fs.PrintDefaults()
		}
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses args; --help prints usage and returns errHelp.
func parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return errHelp
	}
	if err != nil {
		return usageError{err.Error() + " (see sluice " + fs.Name() + " --help)"}
	}
	return nil
}
