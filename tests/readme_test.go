package tests

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeCommands returns the commands in the README's code blocks that
// follow the lines introducing the demo and the test suite.
func readmeCommands(t *testing.T, readme string) (demo, test string) {
	t.Helper()
	block := regexp.MustCompile("(?s)([^\n]*)\n\n```\n([^\n]+)\n```")
	for _, m := range block.FindAllStringSubmatch(readme, -1) {
		switch {
		case strings.HasPrefix(m[1], "Run the demo"):
			demo = m[2]
		case strings.HasPrefix(m[1], "Run the whole test suite"):
			test = m[2]
		}
	}
	if demo == "" || test == "" {
		t.Fatalf("README has no demo or test command (demo %q, test %q)", demo, test)
	}
	return demo, test
}

// TestReadmeCommandsFromFreshClone clones the committed repository, checks
// that .ci/run calls the README's test command verbatim, and runs the
// README's demo command in the clone until it prints status lines, then
// stops it with Ctrl-C (SIGINT) and expects a clean exit. The test command
// itself is what runs this test, so it is checked, not run again.
func TestReadmeCommandsFromFreshClone(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	readme, err := os.ReadFile(filepath.Join(clone, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	demo, test := readmeCommands(t, string(readme))
	ci, err := os.ReadFile(filepath.Join(clone, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(test) + `$`).Match(ci) {
		t.Errorf(".ci/run does not call the README's test command %q verbatim:\n%s", test, ci)
	}
	if fi, err := os.Stat(filepath.Join(clone, strings.Fields(test)[0])); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("test command %q is not an executable file in the clone: %v", test, err)
	}

	cmd := exec.Command("bash", "-c", "exec "+demo)
	cmd.Dir = clone
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	statusLines := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "ev/s") {
			statusLines++
		}
		if statusLines == 3 {
			// Ctrl-C reaches the whole foreground process group.
			syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			break
		}
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("demo did not stop within 2 minutes of Ctrl-C:\n%s", out.String())
	}
	// `go run` exits 1 itself whenever it received the interrupt, whatever
	// its child did, so the demo's own verdict is its "stopped cleanly"
	// line (checked below); any other failure still fails here.
	if ee, ok := err.(*exec.ExitError); ok && strings.HasPrefix(demo, "go run ") && ee.ExitCode() == 1 && strings.Contains(out.String(), "stopped cleanly") {
		err = nil
	}
	if err != nil || statusLines < 3 {
		t.Fatalf("demo %q: %v after %d status lines\nstdout:\n%s\nstderr:\n%s", demo, err, statusLines, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "stopped cleanly") {
		t.Errorf("demo did not report a clean stop:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(clone, ".sluice", "demo", "orders.log")); err != nil {
		t.Errorf("demo left no order log under .sluice/demo: %v", err)
	}
}
