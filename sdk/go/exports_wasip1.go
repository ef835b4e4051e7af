//go:build wasip1

package sluice

import "unsafe"

// The exports of sdk/ABI.md §2. Every one that runs plugin code recovers
// panics (in guest methods), because a panic unwinding out of a wasmexport
// leaves the Go runtime corrupted.

var theGuest guest

// pack returns the i64 result (ptr << 32 | len) of res.
func pack(res []byte) int64 {
	if len(res) == 0 {
		return 0
	}
	return int64(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(res))))<<32 | uint64(len(res)))
}

// input returns the region the host wrote into. The ABI says it is always
// the buffer sluice_buffer handed out, so that is the only region accepted;
// anything else yields nil and an error result.
func input(p, n int32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	in := theGuest.in
	if n < 0 || cap(in) < int(n) || int32(uintptr(unsafe.Pointer(unsafe.SliceData(in)))) != p {
		return nil, false
	}
	return in[:n], true
}

func badInput(p, n int32) int64 {
	theGuest.out.reset()
	return pack(theGuest.out.finish(statusError, badInputMessage(p, n, cap(theGuest.in)), nil))
}

//go:wasmexport sluice_abi_version
func sluiceABIVersion() int32 { return 1 }

//go:wasmexport sluice_buffer
func sluiceBuffer(size int32) int32 {
	b := theGuest.buffer(int(size))
	if cap(b) == 0 {
		return 0
	}
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(b[:cap(b)]))))
}

//go:wasmexport sluice_init
func sluiceInit(p, n int32) int64 {
	in, ok := input(p, n)
	if !ok {
		return badInput(p, n)
	}
	return pack(theGuest.init(in))
}

//go:wasmexport sluice_process
func sluiceProcess(p, n int32) int64 {
	in, ok := input(p, n)
	if !ok {
		return badInput(p, n)
	}
	return pack(theGuest.process(in))
}

//go:wasmexport sluice_tick
func sluiceTick(now int64) int64 { return pack(theGuest.tick(now)) }

//go:wasmexport sluice_poll
func sluicePoll(max int32) int64 { return pack(theGuest.poll(int(max))) }

//go:wasmexport sluice_ack
func sluiceAck(p, n int32) int64 {
	in, ok := input(p, n)
	if !ok {
		return badInput(p, n)
	}
	return pack(theGuest.ack(in))
}

//go:wasmexport sluice_write
func sluiceWrite(p, n int32) int64 {
	in, ok := input(p, n)
	if !ok {
		return badInput(p, n)
	}
	return pack(theGuest.write(in))
}
