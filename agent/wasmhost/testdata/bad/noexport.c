// noexport: a bolt without sluice_process.
#include "../abi.h"
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
