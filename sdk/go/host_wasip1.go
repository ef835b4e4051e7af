//go:build wasip1

package sluice

import "unsafe"

// The imports of module sluice_v1 (sdk/ABI.md §6). Go's linker keeps only
// the ones a plugin reaches, so a module imports exactly the capabilities it
// uses.

//go:wasmimport sluice_v1 log
func sluiceLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport sluice_v1 now
func sluiceNow() int64

//go:wasmimport sluice_v1 random
func sluiceRandom(ptr unsafe.Pointer, n uint32)

//go:wasmimport sluice_v1 counter_add
func sluiceCounterAdd(ptr unsafe.Pointer, n uint32, delta int64)

//go:wasmimport sluice_v1 state_get
func sluiceStateGet(kp unsafe.Pointer, kn uint32, bp unsafe.Pointer, bc uint32) int32

//go:wasmimport sluice_v1 state_put
func sluiceStatePut(kp unsafe.Pointer, kn uint32, vp unsafe.Pointer, vn uint32) int32

//go:wasmimport sluice_v1 state_delete
func sluiceStateDelete(kp unsafe.Pointer, kn uint32) int32

//go:wasmimport sluice_v1 state_scan
func sluiceStateScan(pp unsafe.Pointer, pn uint32, bp unsafe.Pointer, bc uint32) int32

//go:wasmimport sluice_v1 http_request
func sluiceHTTPRequest(rp unsafe.Pointer, rn uint32, bp unsafe.Pointer, bc uint32) int32

//go:wasmimport sluice_v1 take_result
func sluiceTakeResult(bp unsafe.Pointer, bc uint32) int32

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func hostLog(level int32, msg string) {
	sluiceLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}
func hostNow() int64      { return sluiceNow() }
func hostRandom(p []byte) { sluiceRandom(ptr(p), uint32(len(p))) }
func hostCounterAdd(name string, delta int64) {
	sluiceCounterAdd(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), delta)
}
func hostStateGet(key, buf []byte) int32 {
	return sluiceStateGet(ptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)))
}
func hostStatePut(key, value []byte) int32 {
	return sluiceStatePut(ptr(key), uint32(len(key)), ptr(value), uint32(len(value)))
}
func hostStateDelete(key []byte) { sluiceStateDelete(ptr(key), uint32(len(key))) }
func hostStateScan(prefix, buf []byte) int32 {
	return sluiceStateScan(ptr(prefix), uint32(len(prefix)), ptr(buf), uint32(len(buf)))
}
func hostHTTPRequest(req, buf []byte) int32 {
	return sluiceHTTPRequest(ptr(req), uint32(len(req)), ptr(buf), uint32(len(buf)))
}
func hostTakeResult(buf []byte) int32 { return sluiceTakeResult(ptr(buf), uint32(len(buf))) }
