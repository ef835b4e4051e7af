package wasmhost

import (
	"sync/atomic"
	"testing"
)

// TestLinearMemoryUnmapsAfterLastUser: wazero's Free can come while a call
// still uses the memory (Plugin.Close during a call); the mapping must stay
// until that call releases it, then go.
func TestLinearMemoryUnmapsAfterLastUser(t *testing.T) {
	var size atomic.Int64
	m := newLinearMemory(&size)
	m.Allocate(0, 4*pageSize)
	b := m.Reallocate(pageSize)
	if len(b) != pageSize || m.heap {
		t.Fatalf("got %d bytes (heap %v), want a mapped page", len(b), m.heap)
	}
	if got := m.Reallocate(5 * pageSize); got != nil {
		t.Fatalf("grew past the maximum to %d bytes", len(got))
	}
	b = m.Reallocate(3 * pageSize)
	if got := size.Load(); got != 3*pageSize {
		t.Fatalf("size gauge %d after growing to 3 pages, want %d", got, 3*pageSize)
	}
	for _, at := range []int{0, pageSize, 3*pageSize - 1} {
		if b[at] != 0 {
			t.Fatalf("byte %d of grown memory is %d, want 0", at, b[at])
		}
	}
	m.release() // instantiation done
	m.acquire() // a call starts
	m.Free()    // the plugin is closed meanwhile
	if got := size.Load(); got != 0 {
		t.Fatalf("size gauge %d after Free, want 0: a freed instance is not live", got)
	}
	b[3*pageSize-1] = 7 // still mapped: a fault here would kill the test
	if m.buf == nil {
		t.Fatal("unmapped while a call holds the memory")
	}
	m.release()
	if m.buf != nil {
		t.Fatal("still mapped after the last user left")
	}
	m.Free() // twice is harmless
	if got := size.Load(); got != 0 {
		t.Fatalf("size gauge %d after a second Free, want 0", got)
	}
}
