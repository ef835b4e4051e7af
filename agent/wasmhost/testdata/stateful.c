// stateful: counts events per key in host state (8-byte little-endian
// counts), reading them through a 4-byte buffer so that every read takes
// the pending-result path of ABI.md §6.1. Body "fail" fails the batch and
// "trap" traps, both after changing state; "forget" deletes the key. Tick
// emits one event per counted key.
#include "abi.h"

HOST("state_get") i32 state_get(const u8 *k, u32 kl, u8 *buf, u32 cap);
HOST("state_put") i32 state_put(const u8 *k, u32 kl, const u8 *v, u32 vl);
HOST("state_delete") i32 state_delete(const u8 *k, u32 kl);
HOST("state_scan") i32 state_scan(const u8 *p, u32 pl, u8 *buf, u32 cap);
HOST("take_result") i32 take_result(u8 *buf, u32 cap);
HOST("log") void host_log(i32 level, const u8 *p, u32 n);

static u64 get_count(const u8 *k, u32 kl) {
	u8 small[4];
	i32 n = state_get(k, kl, small, sizeof small);
	if (n < 0) return 0;
	if (n != 8) __builtin_trap();
	u64 v;
	if (take_result((u8 *)&v, 8) != 8) __builtin_trap();
	return v;
}

EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) { return 0; }

EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	u32 n = rd32(in);
	const u8 *p = in + 4;
	int fail = 0, trap = 0;
	for (u32 i = 0; i < n; i++) {
		event e;
		p = next_event(p, &e);
		if (body_is(&e, "forget")) { state_delete(e.key, e.key_len); continue; }
		u64 c = get_count(e.key, e.key_len) + 1;
		state_put(e.key, e.key_len, (const u8 *)&c, 8);
		if (body_is(&e, "fail")) fail = 1;
		if (body_is(&e, "trap")) trap = 1;
	}
	host_log(1, (const u8 *)"batch counted", 13);
	if (trap) __builtin_trap();
	if (fail) return result_status(1, "asked to fail");
	return 0;
}

EXPORT("sluice_tick") i64 sluice_tick(i64 now) {
	u8 small[4];
	i32 n = state_scan((const u8 *)"", 0, small, sizeof small);
	u8 *all = heap_alloc(n);
	if (take_result(all, n) != n) __builtin_trap();
	result_begin(0, "", 0, 0);
	u32 count = rd32(all);
	const u8 *p = all + 4;
	for (u32 i = 0; i < count; i++) {
		u32 kl = rd32(p); const u8 *k = p + 4; p += 4 + kl;
		u32 vl = rd32(p); const u8 *v = p + 4; p += 4 + vl;
		result_event(now, k, kl, v, vl);
	}
	out_u32(0);
	return result_end();
}
