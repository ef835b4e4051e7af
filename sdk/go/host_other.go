//go:build !wasip1

package sluice

// Outside a wasm guest there is no host to call: these make a plugin's
// non-wasm build (go vet, unit tests of its pure logic) compile, and explain
// themselves if reached.

func noHost() {
	panic("sluice: host functions exist only inside a wasm guest (GOOS=wasip1 GOARCH=wasm)")
}

func hostLog(int32, string)             { noHost() }
func hostNow() int64                    { noHost(); return 0 }
func hostRandom([]byte)                 { noHost() }
func hostCounterAdd(string, int64)      { noHost() }
func hostStateGet(_, _ []byte) int32    { noHost(); return 0 }
func hostStatePut(_, _ []byte) int32    { noHost(); return 0 }
func hostStateDelete([]byte)            { noHost() }
func hostStateScan(_, _ []byte) int32   { noHost(); return 0 }
func hostHTTPRequest(_, _ []byte) int32 { noHost(); return 0 }
func hostTakeResult([]byte) int32       { noHost(); return 0 }
