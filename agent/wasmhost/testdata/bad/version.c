// version: claims ABI version 2.
#define CUSTOM_VERSION
#include "../abi.h"
EXPORT("sluice_abi_version") i32 sluice_abi_version(void) { return 2; }
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) { return 0; }
