package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands() {
		code, out, _ := run(t, c.name, "--help")
		if code != exitOK || !strings.Contains(out, "usage: sluice "+c.name) {
			t.Errorf("sluice %s --help: exit %d, output %q", c.name, code, out)
		}
	}
	if code, out, _ := run(t, "--help"); code != exitOK || !strings.Contains(out, "exit codes") {
		t.Errorf("sluice --help: exit %d, output %q", code, out)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"run"}, {"validate"}, {"run", "--nope"}, {"plugin", "melt"}, {"dlq", "list"},
		{"tap"}, {"tap", "a", "b"}, {"tap", "raw", "--limit", "0"}, {"tap", "raw", "--sample", "x"}, {"top", "extra"}, {"top", "--frames", "-1"}} {
		if code, _, _ := run(t, args...); code != exitUsage {
			t.Errorf("sluice %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := run(t, "version"); code != exitOK || out != "sluice dev\n" {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "m.wasm")
	os.WriteFile(mod, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(`
[channels.raw]
[channels.out]
[sources.log]
type = "tail"
output = "raw"
config = { paths = ["/tmp/x/*.log"] }
[bolts.b]
wasm = "`+mod+`"
input = "raw"
output = "out"
[sinks.s]
wasm = "`+mod+`"
input = "out"
`), 0o644)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(`
[channels.raw]
[sources.log]
type = "tial"
output = "raw"
[sinks.s]
wasm = "`+mod+`"
input = "rwa"
`), 0o644)
	code, out, errs := run(t, "validate", good)
	if code != exitOK || out != good+": ok\n" {
		t.Fatalf("validate good: exit %d, out %q, err %q", code, out, errs)
	}
	code, _, errs = run(t, "validate", good, bad)
	want := bad + `:2: channels.raw: channel "raw" has no reader: it would fill up and stop its writers (remove it, or set input = "raw" on a bolt or sink)
` + bad + `:4: sources.log.type: unknown source type "tial" (did you mean "tail"?)
` + bad + `:8: sinks.s.input: channel "rwa" is not defined (did you mean "raw"?)
sluice: 1 of 2 files have problems
`
	if code != exitUsage || errs != want {
		t.Fatalf("validate bad: exit %d, stderr:\n%s\nwant:\n%s", code, errs, want)
	}
}
