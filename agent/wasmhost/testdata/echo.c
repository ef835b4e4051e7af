// echo: a bolt that copies its input to its output, with behaviours chosen
// by an event's body: "reject" is rejected, "fail" fails the batch with
// status error, "trap" traps, "loop" never returns, "skip" is dropped.
// Config key "prefix", when set, must be "ok" (tests config errors).
#include "abi.h"

HOST("counter_add") void counter_add(const u8 *name, u32 len, i64 delta);

EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) {
	counter_add((const u8 *)"inits", 5, 1);
	u32 vl;
	const u8 *v = config_get(cfg, "prefix", &vl);
	if (v && !(vl == 2 && v[0] == 'o' && v[1] == 'k')) return result_status(1, "prefix must be ok");
	return 0;
}

EXPORT("sluice_process") i64 sluice_process(const u8 *in, u32 len) {
	counter_add((const u8 *)"calls", 5, 1);
	u32 n = rd32(in);
	const u8 *p = in + 4;
	// First pass: batch-level behaviours.
	for (u32 i = 0; i < n; i++) {
		event e;
		p = next_event(p, &e);
		if (body_is(&e, "fail")) return result_status(1, "asked to fail");
		if (body_is(&e, "trap")) __builtin_trap();
		if (body_is(&e, "loop")) for (volatile int x = 0;; x++) {}
	}
	result_begin(0, "", 0, 0);
	p = in + 4;
	u32 rejects = 0;
	for (u32 i = 0; i < n; i++) {
		event e;
		const u8 *start = p;
		p = next_event(p, &e);
		if (body_is(&e, "reject")) { rejects++; continue; }
		if (body_is(&e, "skip")) continue;
		out_raw(start, p - start);
		batch_count++;
	}
	out_u32(rejects);
	p = in + 4;
	for (u32 i = 0; i < n; i++) {
		event e;
		p = next_event(p, &e);
		if (body_is(&e, "reject")) { out_u32(i); out_str("rejected by request"); }
	}
	return result_end();
}
