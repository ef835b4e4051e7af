//go:build unix

package wasmhost

import "syscall"

// mapMemory reserves n bytes of zeroed memory; pages take RAM only once
// written (MAP_NORESERVE: no swap is reserved for the untouched rest).
func mapMemory(n uint64) ([]byte, error) {
	return syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
}

func unmapMemory(b []byte) { _ = syscall.Munmap(b) }
