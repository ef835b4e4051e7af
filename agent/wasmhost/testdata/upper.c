// upper: uppercases every event body in place and returns the batch, like
// noop. One loop iteration per byte: it shows what the runaway-loop guard
// costs a guest that loops.
#define CUSTOM_BUFFER
#include "abi.h"

static u8 *region;
static u32 region_cap;

EXPORT("sluice_buffer") u8 *sluice_buffer(u32 n) {
	if (!region || n + 16 > region_cap) {
		region = heap_alloc(n + 16);
		if (!region) return 0;
		region_cap = n + 16;
		wr32(region, 0);
		wr32(region + 4, 0);
		wr32(region + 8, 0);
	}
	return region + 12;
}

EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }

EXPORT("sluice_process") i64 sluice_process(u8 *in, u32 len) {
	u32 n = rd32(in);
	u8 *p = in + 4;
	for (u32 i = 0; i < n; i++) {
		event e;
		p = (u8 *)next_event(p, &e);
		u8 *b = (u8 *)e.body;
		for (u32 j = 0; j < e.body_len; j++) {
			u8 c = b[j];
			if (c >= 'a' && c <= 'z') b[j] = c - 32;
		}
	}
	wr32(in + len, 0);
	return pack(in - 12, len + 16);
}
