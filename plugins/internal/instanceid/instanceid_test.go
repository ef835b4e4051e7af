package instanceid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadCreatesOnceAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stage")
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil || a != b || len(a) != 16 {
		t.Fatalf("ids %q %q err %v", a, b, err)
	}
	c, err := Load(t.TempDir())
	if err != nil || c == a {
		t.Fatalf("a second directory got %q (first %q), err %v", c, a, err)
	}
}

func TestLoadRejectsADamagedFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fileName), []byte("xyz\n"), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not 16 lowercase hex") {
		t.Fatalf("err = %v", err)
	}
}
