package conformance

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors from the reference model")

// vectorPrefix is the config prefix the vectors are run with.
const vectorPrefix = ">"

// vectorBatches are the inputs of the ABI test vectors.
func vectorBatches() map[string][]event.Event {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	return map[string][]event.Event{
		"empty-batch": {},
		"echo-one":    {{Time: 1700000000000000000, Key: []byte("k1"), Body: []byte("hello")}},
		"echo-headers": {{Time: -5, Body: []byte("with headers"), Headers: []event.Header{
			{Name: "a", Value: "1"}, {Name: "content-type", Value: "text/plain"}, {Name: "", Value: ""}}}},
		"empty-body":  {{Time: 0}},
		"binary-body": {{Time: 42, Key: []byte{0, 0xff}, Body: binary}},
		"reject-mixed": {
			{Time: 1, Body: []byte("a")},
			{Time: 2, Body: []byte("reject:bad json")},
			{Time: 3, Key: []byte("k"), Body: []byte("b")},
			{Time: 4, Body: []byte("reject:")},
			{Time: 5, Body: []byte("reject:too long: über")},
		},
		"reject-all": {{Body: []byte("reject:x")}, {Body: []byte("reject:y")}},
		"batch-error": {
			{Time: 1, Body: []byte("a")},
			{Time: 2, Body: []byte("reject:r")},
			{Time: 3, Body: []byte("fail:boom at event 2")},
			{Time: 4, Body: []byte("b")},
		},
		"retry":      {{Body: []byte("a")}, {Body: []byte("retry:backend down")}},
		"many-small": manySmall(1000),
	}
}

func manySmall(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Time: int64(i), Body: []byte{'e', byte('0' + i%10)}}
		if i%7 == 0 {
			evs[i].Key = []byte{'k', byte('0' + i%10)}
		}
	}
	return evs
}

type vector struct {
	name    string
	in, out []byte
}

// readVectors loads every testdata/vectors/NAME.in with its NAME.out.
func readVectors(t *testing.T) []vector {
	t.Helper()
	ins, err := filepath.Glob(filepath.Join("testdata", "vectors", "*.in"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no vectors in testdata/vectors (%v); run go test -run TestVectorFiles -update", err)
	}
	sort.Strings(ins)
	var vs []vector
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in")
		inb, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		outb, err := os.ReadFile(strings.TrimSuffix(in, ".in") + ".out")
		if err != nil {
			t.Fatalf("vector %s has no .out: %v", name, err)
		}
		vs = append(vs, vector{name, inb, outb})
	}
	return vs
}

// TestVectorFiles checks that testdata/vectors is exactly what the reference
// model produces (or rewrites it with -update).
func TestVectorFiles(t *testing.T) {
	dir := filepath.Join("testdata", "vectors")
	want := map[string][]byte{}
	for name, evs := range vectorBatches() {
		in := event.AppendBatch(nil, evs)
		want[name+".in"] = in
		want[name+".out"] = modelProcess(vectorPrefix, in)
	}
	if *update {
		old, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("testdata/vectors has %d files, the model %d; run with -update", len(files), len(want))
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("vector file %s: %v (run with -update)", name, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("vector file %s differs from the reference model (run with -update after checking why)", name)
		}
	}
}
