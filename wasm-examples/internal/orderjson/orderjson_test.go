package orderjson

import (
	"bytes"
	"os"
	"testing"

	"github.com/sluicehq/sluice/internal/orders"
)

// same checks that this package and the native reference agree on line.
func same(t *testing.T, line []byte) {
	var a Fields
	var b orders.Fields
	errA, errB := Parse(line, &a), Parse2(line, &b)
	if (errA == nil) != (errB == nil) || errA != nil && errA.Error() != errB.Error() {
		t.Fatalf("%q: orderjson says %v, reference says %v", line, errA, errB)
	}
	if errA == nil {
		if ca, cb := AppendCanonical(nil, &a), orders.AppendCanonical(nil, &b); !bytes.Equal(ca, cb) {
			t.Fatalf("%q: canonical forms differ:\n%s\n%s", line, ca, cb)
		}
	}
}

// Parse2 is the reference parser (a var so the fuzz target reads clearly).
var Parse2 = orders.Parse

func TestSameAsReference(t *testing.T) {
	g := orders.NewGenerator(orders.GenConfig{Seed: 11, MalformedEvery: 3})
	for i := uint64(0); i < 3000; i++ {
		same(t, g.AppendLine(nil, i))
	}
}

func FuzzSameAsReference(f *testing.F) {
	g := orders.NewGenerator(orders.GenConfig{Seed: 12, MalformedEvery: 2})
	for i := uint64(0); i < 16; i++ {
		f.Add(g.AppendLine(nil, i))
	}
	f.Fuzz(func(t *testing.T, line []byte) { same(t, line) })
}

// TestSameSourceAsReference keeps this package a verbatim copy of the
// reference parser (below the package clause), so the benchmarks compare the
// same code compiled two ways.
func TestSameSourceAsReference(t *testing.T) {
	body := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := bytes.Cut(b, []byte("\npackage "))
		if !ok {
			t.Fatalf("%s has no package clause", path)
		}
		_, rest, _ := bytes.Cut(after, []byte("\n"))
		return rest
	}
	if !bytes.Equal(body("orderjson.go"), body("../../../internal/orders/parse.go")) {
		t.Fatal("orderjson.go and internal/orders/parse.go differ below the package clause: copy the change across")
	}
}
