// trap: counts its attempts, then executes unreachable.
#include "../abi.h"
HOST("counter_add") void counter_add(const u8 *name, u32 len, i64 delta);
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	counter_add((const u8 *)"attempts", 8, 1);
	__builtin_trap();
}
