// goguest is a Go reactor (GOOS=wasip1, -buildmode=c-shared) whose run
// export allocates, sorts, formats and hashes, so that the guard's decoder
// meets the whole of a Go-built module: the Go runtime included.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
)

//go:wasmexport run
func run(n uint64) uint64 {
	xs := make([]string, 0, n)
	for i := uint64(0); i < n; i++ {
		xs = append(xs, fmt.Sprintf("item-%d", (i*7919)%n))
	}
	sort.Strings(xs)
	h := sha256.New()
	for _, x := range xs {
		h.Write([]byte(x))
	}
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

func main() {}
