// loop: never returns from sluice_process.
#include "../abi.h"
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	for (volatile u32 i = 0;; i++) {}
}
