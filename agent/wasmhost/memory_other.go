//go:build !unix

package wasmhost

import "errors"

// Without mmap, guest memories live on the Go heap (linearMemory.heap).
func mapMemory(uint64) ([]byte, error) { return nil, errors.New("no mmap") }

func unmapMemory([]byte) {}
