// The raw Sluice ABI v1 (sdk/ABI.md), written by hand for the host's tests:
// no SDK, no libc, so each test plugin shows exactly what crosses the
// boundary. Build with wasmbuild.Freestanding.
#ifndef SLUICE_TEST_ABI_H
#define SLUICE_TEST_ABI_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;

#define EXPORT(name) __attribute__((export_name(name)))
#define HOST(name) __attribute__((import_module("sluice_v1"), import_name(name)))

extern u8 __heap_base;
static u8 *heap_top;

// heap_alloc is a bump allocator that grows memory; 0 when memory is full.
static u8 *heap_alloc(u32 n) {
	if (!heap_top) heap_top = &__heap_base;
	u32 start = ((u32)heap_top + 15) & ~15u;
	u64 need = (u64)start + n;
	u64 have = (u64)__builtin_wasm_memory_size(0) * 65536;
	if (need > have) {
		if ((i32)__builtin_wasm_memory_grow(0, (u32)((need - have + 65535) / 65536)) < 0) return 0;
	}
	heap_top = (u8 *)(u32)need;
	return (u8 *)start;
}

static u32 rd32(const u8 *p) { return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24; }
static void wr32(u8 *p, u32 v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static i64 pack(const u8 *p, u32 n) { return (i64)((u64)(u32)p << 32 | n); }

// The input buffer, reused while big enough.
static u8 *in_buf;
static u32 in_cap;

#ifndef CUSTOM_BUFFER
EXPORT("sluice_buffer") u8 *sluice_buffer(u32 n) {
	if (n > in_cap || !in_buf) {
		in_buf = heap_alloc(n + 16);
		in_cap = in_buf ? n : 0;
	}
	return in_buf;
}
#endif

#ifndef CUSTOM_VERSION
EXPORT("sluice_abi_version") i32 sluice_abi_version(void) { return 1; }
#endif

// Output: a growable buffer holding one result being built.
static u8 *out_buf;
static u32 out_len, out_cap;

static void out_need(u32 n) {
	if (out_len + n <= out_cap) return;
	u32 cap = out_cap ? out_cap * 2 : 4096;
	while (cap < out_len + n) cap *= 2;
	u8 *b = heap_alloc(cap);
	if (!b) __builtin_trap();
	if (out_len) __builtin_memcpy(b, out_buf, out_len);
	out_buf = b;
	out_cap = cap;
}
static void out_u32(u32 v) { out_need(4); wr32(out_buf + out_len, v); out_len += 4; }
static void out_raw(const void *p, u32 n) { out_need(n); __builtin_memcpy(out_buf + out_len, p, n); out_len += n; }
static void out_bytes(const void *p, u32 n) { out_u32(n); out_raw(p, n); }
static u32 str_len(const char *s) { u32 n = 0; while (s[n]) n++; return n; }
static void out_str(const char *s) { out_bytes(s, str_len(s)); }

// result_begin starts a result: status, message, position, then the caller
// appends a batch (count first, patched by result_batch_end) and rejects.
static u32 batch_count_at, batch_count;
static void result_begin(u32 status, const char *msg, const u8 *pos, u32 pos_len) {
	out_len = 0;
	out_u32(status);
	out_str(msg);
	out_bytes(pos, pos_len);
	batch_count_at = out_len;
	batch_count = 0;
	out_u32(0);
}
static void result_event(i64 time, const u8 *key, u32 key_len, const u8 *body, u32 body_len) {
	out_raw(&time, 8);
	out_bytes(key, key_len);
	out_bytes(body, body_len);
	out_u32(0);
	batch_count++;
}
static i64 result_end(void) { wr32(out_buf + batch_count_at, batch_count); return pack(out_buf, out_len); }
static i64 result_status(u32 status, const char *msg) {
	result_begin(status, msg, 0, 0);
	out_u32(0); // no rejects
	return result_end();
}

// An event of an input batch, parsed in place.
typedef struct {
	i64 time;
	const u8 *key, *body, *headers;
	u32 key_len, body_len, n_headers, headers_len;
} event;

// next_event parses the event at p and returns the byte after it.
static const u8 *next_event(const u8 *p, event *e) {
	__builtin_memcpy(&e->time, p, 8);
	p += 8;
	e->key_len = rd32(p); e->key = p + 4; p += 4 + e->key_len;
	e->body_len = rd32(p); e->body = p + 4; p += 4 + e->body_len;
	e->n_headers = rd32(p); p += 4;
	e->headers = p;
	for (u32 i = 0; i < e->n_headers; i++) {
		p += 4 + rd32(p);
		p += 4 + rd32(p);
	}
	e->headers_len = p - e->headers;
	return p;
}

static int body_is(const event *e, const char *s) {
	u32 n = str_len(s);
	if (e->body_len != n) return 0;
	for (u32 i = 0; i < n; i++)
		if (e->body[i] != (u8)s[i]) return 0;
	return 1;
}

// config_get finds key in the flattened config of sluice_init (§4).
static const u8 *config_get(const u8 *cfg, const char *key, u32 *len) {
	u32 n = rd32(cfg), kl = str_len(key);
	const u8 *p = cfg + 4;
	for (u32 i = 0; i < n; i++) {
		u32 l = rd32(p);
		const u8 *k = p + 4;
		p += 4 + l;
		u32 vl = rd32(p);
		const u8 *v = p + 4;
		p += 4 + vl;
		if (l == kl) {
			u32 j = 0;
			while (j < l && k[j] == (u8)key[j]) j++;
			if (j == l) { *len = vl; return v; }
		}
	}
	return 0;
}

#endif
