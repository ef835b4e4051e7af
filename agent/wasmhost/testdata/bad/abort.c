// abort: calls AssemblyScript's env.abort with strings laid out the way
// AssemblyScript lays them out (UTF-16LE, byte length just before).
#include "../abi.h"
__attribute__((import_module("env"), import_name("abort"))) void as_abort(const u8 *msg, const u8 *file, u32 line, u32 col);
static u8 *as_string(const char *s) {
	u32 n = str_len(s);
	u8 *p = heap_alloc(4 + 2 * n) + 4;
	wr32(p - 4, 2 * n);
	for (u32 i = 0; i < n; i++) { p[2 * i] = s[i]; p[2 * i + 1] = 0; }
	return p;
}
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	as_abort(as_string("index out of range"), as_string("assembly/index.ts"), 12, 7);
	return 0;
}
