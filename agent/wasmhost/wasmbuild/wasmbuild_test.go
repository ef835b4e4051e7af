package wasmbuild

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildsBothTargets(t *testing.T) {
	dir := t.TempDir()
	free := filepath.Join(dir, "free.c")
	os.WriteFile(free, []byte(`__attribute__((export_name("twice"))) int twice(int x) { return 2 * x; }`), 0o644)
	wasi := filepath.Join(dir, "wasi.c")
	os.WriteFile(wasi, []byte(`#include <stdio.h>
__attribute__((export_name("hello"))) void hello(void) { printf("hello\n"); }`), 0o644)
	for _, tc := range []struct {
		src    string
		target Target
		export string
	}{{free, Freestanding, "twice"}, {wasi, WASI, "hello"}} {
		b := MustC(t, Options{Target: tc.target}, tc.src)
		if !bytes.HasPrefix(b, []byte("\x00asm")) {
			t.Fatalf("%s: output is not a wasm module", tc.src)
		}
		if !bytes.Contains(b, []byte(tc.export)) {
			t.Fatalf("%s: export %s missing", tc.src, tc.export)
		}
	}
}

func TestCompileErrorCarriesClangOutput(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bad.c")
	os.WriteFile(src, []byte("int f( {"), 0o644)
	err := C(t.Context(), filepath.Join(t.TempDir(), "bad.wasm"), Options{Target: Freestanding}, src)
	if err == nil || !strings.Contains(err.Error(), "bad.c") || !strings.Contains(err.Error(), "error") {
		t.Fatalf("want clang's error naming bad.c, got %v", err)
	}
}
