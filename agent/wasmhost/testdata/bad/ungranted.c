// ungranted: imports state_get without being granted "state".
#include "../abi.h"
HOST("state_get") i32 state_get(const u8 *k, u32 kl, u8 *buf, u32 cap);
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	u8 buf[8];
	return state_get((const u8 *)"k", 1, buf, 8);
}
