package tests

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestBenchRuns runs `sluice bench` on a small order file and checks that it
// prints the raw baseline and one measured row per language. Speed itself is
// not asserted here: it is what the command reports.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	bin := buildSluice(t, dir)
	out, err := exec.Command(bin, "bench", "--orders", "20000", "--langs", "c,go,native", "--dir", dir+"/bench").Output()
	if err != nil {
		t.Fatalf("sluice bench: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	for _, re := range []string{
		`raw read\+split baseline: \d+ lines/s`,
		`(?m)^c +\d+ +[\d.]+ +[\d.]+ +[\d.]+MiB +[\d.]+$`,
		`(?m)^go +\d+ +[\d.]+ +[\d.]+ +[\d.]+MiB +[\d.]+$`,
		`(?m)^native +\d+ +[\d.]+ +[\d.]+ +[\d.]+MiB +[\d.]+$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("bench output lacks %s", re)
		}
	}
}
