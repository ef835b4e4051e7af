// sink: POSTs every event body to config "url" through the http
// capability. Body "bad" is rejected; "retry" answers status retry; an
// http failure fails the batch with the host's error text.
#include "abi.h"

HOST("http_request") i32 http_request(const u8 *req, u32 len, u8 *buf, u32 cap);
HOST("take_result") i32 take_result(u8 *buf, u32 cap);

static const u8 *url;
static u32 url_len;

EXPORT("sluice_init") i64 sluice_init(const u8 *cfg, u32 len) {
	const u8 *v = config_get(cfg, "url", &url_len);
	if (!v) return result_status(1, "url is required");
	url = heap_alloc(url_len);
	__builtin_memcpy((u8 *)url, v, url_len);
	return 0;
}

static u8 *req;
static u8 resp[256];

EXPORT("sluice_write") i64 sluice_write(const u8 *in, u32 len) {
	u32 n = rd32(in);
	const u8 *p = in + 4;
	u32 rejects = 0;
	for (u32 i = 0; i < n; i++) {
		event e;
		p = next_event(p, &e);
		if (body_is(&e, "retry")) return result_status(2, "backend busy");
		if (body_is(&e, "bad")) { rejects++; continue; }
		req = heap_alloc(4 + 4 + 4 + url_len + 4 + 4 + e.body_len);
		u8 *q = req;
		wr32(q, 4); __builtin_memcpy(q + 4, "POST", 4); q += 8;
		wr32(q, url_len); __builtin_memcpy(q + 4, url, url_len); q += 4 + url_len;
		wr32(q, 0); q += 4;
		wr32(q, e.body_len); __builtin_memcpy(q + 4, e.body, e.body_len); q += 4 + e.body_len;
		i32 r = http_request(req, q - req, resp, sizeof resp);
		if (r < 0) {
			static u8 msg[512];
			i32 m = take_result(msg, sizeof msg - 1);
			if (m < 0 || m >= (i32)sizeof msg) m = 0;
			msg[m] = 0;
			return result_status(1, (const char *)msg);
		}
		if (r > (i32)sizeof resp) take_result(heap_alloc(r), r);
		else if (rd32(resp) != 200) return result_status(1, "webhook did not answer 200");
	}
	result_begin(0, "", 0, 0);
	out_u32(rejects);
	p = in + 4;
	for (u32 i = 0; i < n; i++) {
		event e;
		p = next_event(p, &e);
		if (body_is(&e, "bad")) { out_u32(i); out_str("bad event"); }
	}
	return result_end();
}
