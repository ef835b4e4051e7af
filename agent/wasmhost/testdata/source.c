// source: emits events whose bodies are an increasing 8-byte sequence
// number, at most 3 per poll; the position is the next number. Config
// "trap_at" makes an instance that started fresh (acknowledged with an
// empty position) trap when it reaches that number: the instance that
// replaces it is acknowledged with the last position and carries on.
#include "abi.h"

static u64 next;
static int fresh;
static u64 trap_at = ~0ull;

EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) {
	u32 vl;
	const u8 *v = config_get(cfg, "trap_at", &vl);
	if (v) {
		trap_at = 0;
		for (u32 i = 0; i < vl; i++) trap_at = trap_at * 10 + (v[i] - '0');
	}
	return 0;
}

static int acked;
EXPORT("sluice_ack") i64 sluice_ack(const u8 *pos, u32 len) {
	if (!acked) {
		acked = 1;
		fresh = len == 0;
		if (len == 8) __builtin_memcpy(&next, pos, 8);
	}
	return 0;
}

EXPORT("sluice_poll") i64 sluice_poll(u32 max) {
	if (fresh && next == trap_at) __builtin_trap();
	u32 n = max < 3 ? max : 3;
	u64 first = next;
	next += n;
	result_begin(0, "", (const u8 *)&next, 8);
	for (u32 i = 0; i < n; i++) {
		u64 seq = first + i;
		result_event((i64)seq, 0, 0, (const u8 *)&seq, 8);
	}
	out_u32(0);
	return result_end();
}
