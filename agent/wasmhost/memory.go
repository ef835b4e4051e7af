package wasmhost

import (
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory backs one instance's WebAssembly memory with an anonymous
// mapping of the module's maximum size, reserved but not committed, instead
// of a Go slice that wazero reallocates and copies on every memory.grow.
//
// Why (docs/adr/0002-wasm-guard.md, "Guest memory"): on the Go heap, guest
// memories counted twice toward the agent's RSS — the garbage collector lets
// the heap reach twice the live size, and each grow left the old copy as
// garbage — and `sluice bench` measured them as the largest live item. A
// mapping grows in place, and only the pages a guest touches take memory.
//
// A mapping cannot be unmapped while Go code may still touch it — a guest
// running in it, or the host copying a batch in or a result out — or the
// process dies of SIGSEGV. Plugin.Close closes a runtime while calls may be
// in flight, so wazero's Free can come at any time: it only marks the memory
// freed, and the unmap happens when the last user (instantiation, or a call
// between callContext and its done) leaves.
type linearMemory struct {
	mu    sync.Mutex
	buf   []byte // the whole mapping; nil when not mapped
	users int    // instantiation and calls in progress
	freed bool   // wazero called Free
	heap  bool   // mapping failed: buf is an ordinary slice

	// size is added to with every change of the guest's memory size and
	// taken back on Free: the sum of the live memories of one plugin name,
	// which Runtime.Stats reads without locking any instance. Grows are
	// rare (memory.grow), so this costs the call path nothing.
	size *atomic.Int64
}

// newLinearMemory returns a memory with one user, the instantiation, which
// ends with release. size receives its size changes (see the field).
func newLinearMemory(size *atomic.Int64) *linearMemory {
	return &linearMemory{users: 1, size: size}
}

// Allocate implements experimental.MemoryAllocator. wazero calls it once,
// during instantiation.
func (m *linearMemory) Allocate(capBytes, maxBytes uint64) experimental.LinearMemory {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, err := mapMemory(maxBytes); err == nil {
		m.buf = b[:0]
	} else {
		m.buf, m.heap = make([]byte, 0, capBytes), true
	}
	return m
}

// Reallocate implements experimental.LinearMemory: size bytes, zeroed past
// the old length (a fresh mapping is zero; a heap slice is grown by copy).
func (m *linearMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := len(m.buf)
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
	} else {
		if !m.heap {
			return nil // past the reservation, which is the module's maximum
		}
		nb := make([]byte, size, max(size, 2*uint64(cap(m.buf))))
		copy(nb, m.buf)
		m.buf = nb
	}
	if !m.freed {
		m.size.Add(int64(len(m.buf) - old))
	}
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.freed {
		m.size.Add(-int64(len(m.buf))) // the instance is gone, whenever the unmap happens
	}
	m.freed = true
	m.unmapIfUnused()
}

// acquire marks a call in progress: the memory stays mapped until release.
func (m *linearMemory) acquire() {
	m.mu.Lock()
	m.users++
	m.mu.Unlock()
}

func (m *linearMemory) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users--
	m.unmapIfUnused()
}

func (m *linearMemory) unmapIfUnused() {
	if !m.freed || m.users > 0 || m.buf == nil {
		return
	}
	if !m.heap {
		unmapMemory(m.buf[:cap(m.buf)])
	}
	m.buf = nil
}
