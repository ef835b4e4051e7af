// procexit: a WASI module that exits in the middle of a call.
#include <wasi/api.h>
#include "../abi.h"
EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }
EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) { __wasi_proc_exit(3); }
