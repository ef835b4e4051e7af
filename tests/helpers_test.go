package tests

import (
	"fmt"
	"iter"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// writeRename replaces path the way editors and config managers do: write
// a temporary file beside it, rename it over path.
func writeRename(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port nothing listens on (it
// was free a moment ago; the kernel does not hand it out again at once).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freePort is freeAddr's port.
func freePort(t *testing.T) int {
	t.Helper()
	addr, err := net.ResolveTCPAddr("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return addr.Port
}

// onceTally is how far a run's output is from every expected id exactly
// once.
type onceTally struct {
	lost, dup int      // expected ids missing; extra copies of those present
	examples  []string // the first few of either, for the failure message
}

// tallyOnce checks that each id of want occurs once in count (occurrences
// by id), deleting it from count: what is left there was not expected.
func tallyOnce(count map[string]int, want iter.Seq[string]) onceTally {
	var r onceTally
	for id := range want {
		switch n := count[id]; {
		case n == 0:
			r.lost++
			if len(r.examples) < 5 {
				r.examples = append(r.examples, "lost "+id)
			}
		case n > 1:
			r.dup += n - 1
			if len(r.examples) < 5 {
				r.examples = append(r.examples, fmt.Sprintf("%s ×%d", id, n))
			}
		}
		delete(count, id)
	}
	return r
}
