// bomb: grows memory a page at a time until the host refuses, then traps
// the way a C program dereferencing a failed malloc would.
#include "../abi.h"
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	while ((i32)__builtin_wasm_memory_grow(0, 1) >= 0) {}
	__builtin_trap();
}
