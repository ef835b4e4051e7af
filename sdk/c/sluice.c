/*
 * sluice.c — the C SDK's implementation of ABI v1 (sdk/ABI.md). See sluice.h.
 *
 * Memory: four growable buffers (input, output, rejects, host results) plus
 * the copied config. They grow by doubling to the largest size seen and are
 * never freed, so the steady state does no allocation at all.
 */
#include "sluice.h"

#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))
#define IMPORT(name) __attribute__((import_module("sluice_v1"), import_name(name)))

enum { STATUS_OK = 0, STATUS_ERROR = 1, STATUS_RETRY = 2 };

/* Room kept before the output batch for the result header, which is written
 * there once its size is known; a bigger header moves the result once. */
#define HEADROOM 256

/* ---- little-endian helpers --------------------------------------------- */

static inline uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---- growable buffers -------------------------------------------------- */

typedef struct buf {
  uint8_t *p;
  size_t len, cap;
} buf;

/* The guest has no way to report allocation failure mid-event except by
 * trapping, which the host treats as a fault of this instance: exactly right
 * for memory exhaustion. */
static void grow(buf *b, size_t need) {
  if (b->len + need <= b->cap) return;
  size_t c = b->cap ? b->cap : 4096;
  while (c < b->len + need) c *= 2;
  uint8_t *p = realloc(b->p, c);
  if (!p) __builtin_trap();
  b->p = p;
  b->cap = c;
}
static inline void put(buf *b, const void *src, size_t n) {
  grow(b, n);
  if (n) memcpy(b->p + b->len, src, n);
  b->len += n;
}
static inline void put32(buf *b, uint32_t v) {
  grow(b, 4);
  wr32(b->p + b->len, v);
  b->len += 4;
}
static inline void put_bytes(buf *b, const void *src, size_t n) {
  grow(b, 4 + n);
  wr32(b->p + b->len, (uint32_t)n);
  if (n) memcpy(b->p + b->len + 4, src, n);
  b->len += 4 + n;
}

static buf in_buf;     /* handed to the host by sluice_buffer */
static buf out_buf;    /* HEADROOM, then the output batch */
static buf rej_buf;    /* (index reason)* */
static buf msg_buf;    /* message of a fail/retry, or the pending reject reason */
static buf pos_buf;    /* source position */
static buf final_buf;  /* results whose header exceeds HEADROOM */
static buf res_buf;    /* answers of host functions */
static buf req_buf;    /* encoded http request */
static uint32_t out_count, rej_count;
static size_t last_hdr_at; /* offset of the header count of the last emitted event; 0: none */
static bool ready, opened;

static void out_reset(void) {
  out_buf.len = 0;
  grow(&out_buf, HEADROOM + 4);
  out_buf.len = HEADROOM + 4;
  out_count = 0;
  last_hdr_at = 0;
  rej_buf.len = 0;
  rej_count = 0;
  msg_buf.len = 0;
  pos_buf.len = 0;
}

/* ---- outcomes ------------------------------------------------------------ */

sluice_rc sluice_reject(const void *reason, size_t len) {
  msg_buf.len = 0;
  put(&msg_buf, reason, len);
  return SLUICE_REJECT;
}
sluice_rc sluice_fail(const void *message, size_t len) {
  msg_buf.len = 0;
  put(&msg_buf, message, len);
  return SLUICE_FAIL;
}
sluice_rc sluice_retry(const void *message, size_t len) {
  msg_buf.len = 0;
  put(&msg_buf, message, len);
  return SLUICE_RETRY;
}

/* ---- output -------------------------------------------------------------- */

static inline uint8_t *emit_head(int64_t time, const void *key, size_t key_len, size_t body_len) {
  grow(&out_buf, 8 + 4 + key_len + 4 + body_len + 4);
  uint8_t *p = out_buf.p + out_buf.len;
  wr64(p, (uint64_t)time);
  wr32(p + 8, (uint32_t)key_len);
  if (key_len) memcpy(p + 12, key, key_len);
  p += 12 + key_len;
  wr32(p, (uint32_t)body_len);
  return p + 4;
}

void sluice_emit(int64_t time, const void *key, size_t key_len, const void *body, size_t body_len) {
  uint8_t *b = emit_head(time, key, key_len, body_len);
  if (body_len) memcpy(b, body, body_len);
  wr32(b + body_len, 0);
  out_buf.len = (size_t)(b + body_len - out_buf.p) + 4;
  last_hdr_at = out_buf.len - 4;
  out_count++;
}

static uint8_t *reserved_body;

uint8_t *sluice_emit_reserve(int64_t time, const void *key, size_t key_len, size_t body_cap) {
  reserved_body = emit_head(time, key, key_len, body_cap);
  return reserved_body;
}

void sluice_emit_commit(size_t body_len) {
  uint8_t *b = reserved_body;
  wr32(b - 4, (uint32_t)body_len);
  wr32(b + body_len, 0);
  out_buf.len = (size_t)(b + body_len - out_buf.p) + 4;
  last_hdr_at = out_buf.len - 4;
  out_count++;
}

static void bump_headers(uint32_t n) {
  if (!last_hdr_at) __builtin_trap(); /* a header before any emit: a plugin bug */
  uint8_t *at = out_buf.p + last_hdr_at;
  wr32(at, rd32(at) + n);
}

void sluice_add_header(const void *name, size_t name_len, const void *value, size_t value_len) {
  bump_headers(1);
  put_bytes(&out_buf, name, name_len);
  put_bytes(&out_buf, value, value_len);
}

void sluice_copy_headers(const sluice_event *e) {
  if (!e->n_headers) return;
  bump_headers(e->n_headers);
  put(&out_buf, e->headers_, (size_t)(e->raw_.ptr + e->raw_.len - e->headers_));
}

void sluice_forward(const sluice_event *e) {
  put(&out_buf, e->raw_.ptr, e->raw_.len);
  last_hdr_at = 0;
  out_count++;
}

uint32_t sluice_emitted(void) { return out_count; }

void sluice_set_position(const void *pos, size_t len) {
  pos_buf.len = 0;
  put(&pos_buf, pos, len);
}

static void put_header(uint8_t *p, uint32_t status, const buf *msg, const buf *pos) {
  wr32(p, status);
  wr32(p + 4, (uint32_t)msg->len);
  if (msg->len) memcpy(p + 8, msg->p, msg->len);
  p += 8 + msg->len;
  wr32(p, (uint32_t)pos->len);
  if (pos->len) memcpy(p + 4, pos->p, pos->len);
}

/* finish encodes the result and returns it packed as (ptr << 32) | len. A
 * failed call drops its events and rejects: the host retries or
 * dead-letters the whole batch. */
static int64_t finish(uint32_t status) {
  if (status != STATUS_OK) {
    out_buf.len = HEADROOM + 4;
    out_count = 0;
    rej_buf.len = 0;
    rej_count = 0;
    pos_buf.len = 0;
  } else {
    msg_buf.len = 0;
  }
  wr32(out_buf.p + HEADROOM, out_count);
  put32(&out_buf, rej_count);
  put(&out_buf, rej_buf.p, rej_buf.len);
  size_t hdr = 12 + msg_buf.len + pos_buf.len;
  uint8_t *res;
  size_t len;
  if (hdr <= HEADROOM) {
    res = out_buf.p + HEADROOM - hdr;
    len = out_buf.len - (HEADROOM - hdr);
  } else {
    len = hdr + out_buf.len - HEADROOM;
    final_buf.len = 0;
    grow(&final_buf, len);
    memcpy(final_buf.p + hdr, out_buf.p + HEADROOM, out_buf.len - HEADROOM);
    res = final_buf.p;
  }
  put_header(res, status, &msg_buf, &pos_buf);
  return (int64_t)(((uint64_t)(uintptr_t)res << 32) | (uint64_t)len);
}

static int64_t fail_with(const char *msg) {
  msg_buf.len = 0;
  put(&msg_buf, msg, strlen(msg));
  return finish(STATUS_ERROR);
}

/* rc_result turns a hook's outcome for a whole call into a result. */
static int64_t rc_result(sluice_rc rc) {
  switch (rc) {
    case SLUICE_OK:
      return finish(STATUS_OK);
    case SLUICE_RETRY:
      return finish(STATUS_RETRY);
    case SLUICE_REJECT:
      /* a reject outside a per-event hook has no event to name */
      return finish(STATUS_ERROR);
    default:
      return finish(STATUS_ERROR);
  }
}

/* ---- input ---------------------------------------------------------------- */

typedef struct reader {
  const uint8_t *p;
  size_t len, off;
} reader;

static bool rd_u32(reader *r, uint32_t *v) {
  if (r->len - r->off < 4) return false;
  *v = rd32(r->p + r->off);
  r->off += 4;
  return true;
}
static bool rd_bytes(reader *r, sluice_bytes *b) {
  uint32_t n;
  if (!rd_u32(r, &n) || n > r->len - r->off) return false;
  b->ptr = r->p + r->off;
  b->len = n;
  r->off += n;
  return true;
}

static bool rd_event(reader *r, sluice_event *e) {
  size_t start = r->off;
  if (r->len - r->off < 8) return false;
  memcpy(&e->time, r->p + r->off, 8);
  r->off += 8;
  if (!rd_bytes(r, &e->key) || !rd_bytes(r, &e->body) || !rd_u32(r, &e->n_headers)) return false;
  if ((uint64_t)e->n_headers * 8 > r->len - r->off) return false;
  e->headers_ = r->p + r->off;
  for (uint32_t j = 0; j < e->n_headers; j++) {
    sluice_bytes skip;
    if (!rd_bytes(r, &skip) || !rd_bytes(r, &skip)) return false;
  }
  e->raw_.ptr = r->p + start;
  e->raw_.len = (uint32_t)(r->off - start);
  return true;
}

bool sluice_event_next_header(const sluice_event *e, uint32_t *pos, const uint8_t **cursor,
                              sluice_bytes *name, sluice_bytes *value) {
  if (*pos >= e->n_headers) return false;
  const uint8_t *p = *pos == 0 ? e->headers_ : *cursor;
  /* lengths were checked when the event was decoded */
  name->len = rd32(p);
  name->ptr = p + 4;
  p += 4 + name->len;
  value->len = rd32(p);
  value->ptr = p + 4;
  *cursor = p + 4 + value->len;
  (*pos)++;
  return true;
}

bool sluice_event_header(const sluice_event *e, const void *name, size_t name_len, sluice_bytes *value) {
  uint32_t pos = 0;
  const uint8_t *cur = 0;
  sluice_bytes n, v;
  while (sluice_event_next_header(e, &pos, &cur, &n, &v)) {
    if (n.len == name_len && memcmp(n.ptr, name, name_len) == 0) {
      *value = v;
      return true;
    }
  }
  return false;
}

/* input checks that the host wrote where sluice_buffer said. */
static bool input(int32_t ptr, int32_t len, const uint8_t **p) {
  if (len == 0) {
    *p = in_buf.p;
    return true;
  }
  if (len < 0 || (uint32_t)(uintptr_t)in_buf.p != (uint32_t)ptr || (size_t)len > in_buf.cap) return false;
  *p = in_buf.p;
  return true;
}

static char scratch[160];

static int64_t malformed(const char *what, uint32_t index, size_t off) {
  /* no snprintf: keep wasi-libc's printf out of every plugin */
  char *s = scratch;
  const char *pre = "malformed batch: event ";
  s = stpcpy(s, pre);
  char digits[12];
  int n = 0;
  do digits[n++] = (char)('0' + index % 10), index /= 10; while (index);
  while (n) *s++ = digits[--n];
  s = stpcpy(s, ": ");
  s = stpcpy(s, what);
  (void)off;
  return fail_with(scratch);
}

typedef sluice_rc (*event_hook)(const sluice_event *, uint32_t);

static int64_t per_event(int32_t ptr, int32_t len, event_hook hook, bool sink) {
  out_reset();
  const uint8_t *p;
  if (!input(ptr, len, &p)) return fail_with("input region is not the buffer sluice_buffer returned");
  reader r = {p, (size_t)len, 0};
  uint32_t n;
  if (!rd_u32(&r, &n)) return fail_with("malformed batch: shorter than the 4-byte count");
  if ((uint64_t)n * 20 > r.len - 4) return fail_with("malformed batch: count cannot fit in its length");
  sluice_event e;
  for (uint32_t i = 0; i < n; i++) {
    if (!rd_event(&r, &e)) return malformed("truncated or lengths run past the end", i, r.off);
    sluice_rc rc = hook(&e, i);
    if (rc == SLUICE_OK) continue;
    if (rc == SLUICE_REJECT) {
      put32(&rej_buf, i);
      put_bytes(&rej_buf, msg_buf.p, msg_buf.len); /* empty when the hook gave no reason */
      rej_count++;
      msg_buf.len = 0;
      continue;
    }
    return rc_result(rc);
  }
  if (r.off != r.len) return fail_with("malformed batch: trailing bytes after the last event");
  (void)sink;
  /* after every batch, bolts too: a bolt that aggregates per batch moves
   * its result into host state here, before the call ends */
  sluice_rc rc = sluice_plugin_flush();
  if (rc != SLUICE_OK) return rc_result(rc);
  return finish(STATUS_OK);
}

/* ---- config ----------------------------------------------------------------- */

struct sluice_config {
  uint32_t n;
  sluice_bytes *keys, *values;
  uint8_t *data;
};
static sluice_config config;

static bool key_eq(sluice_bytes k, const char *key) {
  size_t n = strlen(key);
  return k.len == n && memcmp(k.ptr, key, n) == 0;
}

bool sluice_config_get(const sluice_config *cfg, const char *key, sluice_bytes *value) {
  for (uint32_t i = 0; i < cfg->n; i++) {
    if (key_eq(cfg->keys[i], key)) {
      *value = cfg->values[i];
      return true;
    }
  }
  return false;
}

int sluice_config_int(const sluice_config *cfg, const char *key, int64_t *out) {
  sluice_bytes v;
  if (!sluice_config_get(cfg, key, &v)) return 0;
  if (v.len == 0) return -1;
  uint32_t i = 0;
  bool neg = v.ptr[0] == '-';
  if (neg || v.ptr[0] == '+') i = 1;
  if (i == v.len) return -1;
  uint64_t n = 0;
  for (; i < v.len; i++) {
    uint8_t c = v.ptr[i];
    if (c < '0' || c > '9') return -1;
    if (n > (UINT64_MAX - 9) / 10) return -1;
    n = n * 10 + (c - '0');
  }
  if (n > (uint64_t)INT64_MAX + (neg ? 1 : 0)) return -1;
  *out = neg ? (int64_t)(0 - n) : (int64_t)n;
  return 1;
}

int sluice_config_bool(const sluice_config *cfg, const char *key, bool *out) {
  sluice_bytes v;
  if (!sluice_config_get(cfg, key, &v)) return 0;
  if (v.len == 4 && memcmp(v.ptr, "true", 4) == 0) return *out = true, 1;
  if (v.len == 5 && memcmp(v.ptr, "false", 5) == 0) return *out = false, 1;
  return -1;
}

uint32_t sluice_config_count(const sluice_config *cfg) { return cfg->n; }

void sluice_config_at(const sluice_config *cfg, uint32_t i, sluice_bytes *key, sluice_bytes *value) {
  *key = cfg->keys[i];
  *value = cfg->values[i];
}

static const char *parse_config(const uint8_t *p, size_t len) {
  /* copy: the input buffer is reused by the next call */
  uint8_t *data = malloc(len ? len : 1);
  if (!data) return "config: out of memory";
  memcpy(data, p, len);
  reader r = {data, len, 0};
  uint32_t n;
  if (!rd_u32(&r, &n)) return "malformed config: shorter than the 4-byte count";
  if ((uint64_t)n * 8 > len - 4) return "malformed config: count cannot fit in its length";
  sluice_bytes *kv = malloc(sizeof(sluice_bytes) * 2 * (n ? n : 1));
  if (!kv) return "config: out of memory";
  for (uint32_t i = 0; i < n; i++) {
    if (!rd_bytes(&r, &kv[i]) || !rd_bytes(&r, &kv[n + i])) return "malformed config: an entry runs past the end";
  }
  if (r.off != len) return "malformed config: trailing bytes";
  config.n = n;
  config.keys = kv;
  config.values = kv + n;
  config.data = data;
  return 0;
}

/* ---- default hooks ------------------------------------------------------------ */

#define WEAK __attribute__((weak))
WEAK sluice_rc sluice_plugin_init(const sluice_config *cfg) {
  (void)cfg;
  return SLUICE_OK;
}
WEAK sluice_rc sluice_plugin_process(const sluice_event *e, uint32_t i) {
  (void)e, (void)i;
  return sluice_fail(SLUICE_LIT("plugin defines no sluice_plugin_process: it is not a bolt"));
}
WEAK sluice_rc sluice_plugin_tick(int64_t now) {
  (void)now;
  return SLUICE_OK;
}
WEAK sluice_rc sluice_plugin_open(sluice_bytes resume) {
  (void)resume;
  return sluice_fail(SLUICE_LIT("plugin defines no sluice_plugin_open: it is not a source"));
}
WEAK sluice_rc sluice_plugin_poll(uint32_t max) {
  (void)max;
  return sluice_fail(SLUICE_LIT("plugin defines no sluice_plugin_poll: it is not a source"));
}
WEAK sluice_rc sluice_plugin_ack(sluice_bytes pos) {
  (void)pos;
  return SLUICE_OK;
}
WEAK sluice_rc sluice_plugin_write(const sluice_event *e, uint32_t i) {
  (void)e, (void)i;
  return sluice_fail(SLUICE_LIT("plugin defines no sluice_plugin_write: it is not a sink"));
}
WEAK sluice_rc sluice_plugin_flush(void) { return SLUICE_OK; }

/* ---- exports (sdk/ABI.md §2) ----------------------------------------------------- */

EXPORT("sluice_abi_version") int32_t sluice_abi_version(void) { return 1; }

EXPORT("sluice_buffer") int32_t sluice_buffer(int32_t size) {
  if (size < 0) return 0;
  if ((size_t)size > in_buf.cap || !in_buf.p) {
    in_buf.len = 0;
    grow(&in_buf, (size_t)size > 65536 ? (size_t)size : 65536);
  }
  return (int32_t)(uintptr_t)in_buf.p;
}

EXPORT("sluice_init") int64_t sluice_init(int32_t ptr, int32_t len) {
  out_reset();
  const uint8_t *p;
  if (!input(ptr, len, &p)) return fail_with("input region is not the buffer sluice_buffer returned");
  const char *err = parse_config(p, (size_t)len);
  if (err) return fail_with(err);
  sluice_rc rc = sluice_plugin_init(&config);
  if (rc == SLUICE_OK) ready = true;
  return rc_result(rc);
}

#define NEED_INIT(what)                                                    \
  if (!ready) {                                                            \
    out_reset();                                                           \
    return fail_with(what " called before a successful sluice_init");     \
  }

EXPORT("sluice_process") int64_t sluice_process(int32_t ptr, int32_t len) {
  NEED_INIT("sluice_process");
  return per_event(ptr, len, sluice_plugin_process, false);
}

EXPORT("sluice_write") int64_t sluice_write(int32_t ptr, int32_t len) {
  NEED_INIT("sluice_write");
  return per_event(ptr, len, sluice_plugin_write, true);
}

EXPORT("sluice_tick") int64_t sluice_tick(int64_t now) {
  NEED_INIT("sluice_tick");
  out_reset();
  return rc_result(sluice_plugin_tick(now));
}

EXPORT("sluice_poll") int64_t sluice_poll(int32_t max) {
  NEED_INIT("sluice_poll");
  out_reset();
  sluice_rc rc = sluice_plugin_poll(max < 0 ? 0 : (uint32_t)max);
  if (rc == SLUICE_OK && out_count > (uint32_t)max) return fail_with("sluice_plugin_poll emitted more events than asked for");
  return rc_result(rc);
}

EXPORT("sluice_ack") int64_t sluice_ack(int32_t ptr, int32_t len) {
  NEED_INIT("sluice_ack");
  out_reset();
  const uint8_t *p;
  if (!input(ptr, len, &p)) return fail_with("input region is not the buffer sluice_buffer returned");
  sluice_bytes pos = {p, (uint32_t)len};
  sluice_rc rc;
  if (!opened) {
    opened = true;
    rc = sluice_plugin_open(pos);
  } else {
    rc = sluice_plugin_ack(pos);
  }
  return rc_result(rc);
}

/* ---- host functions (sdk/ABI.md §6) ---------------------------------------------- */

IMPORT("log") void sluice_v1_log(int32_t level, const void *p, uint32_t n);
IMPORT("now") int64_t sluice_v1_now(void);
IMPORT("random") void sluice_v1_random(void *p, uint32_t n);
IMPORT("counter_add") void sluice_v1_counter_add(const void *p, uint32_t n, int64_t delta);
IMPORT("state_get") int32_t sluice_v1_state_get(const void *k, uint32_t kn, void *b, uint32_t bc);
IMPORT("state_put") int32_t sluice_v1_state_put(const void *k, uint32_t kn, const void *v, uint32_t vn);
IMPORT("state_delete") int32_t sluice_v1_state_delete(const void *k, uint32_t kn);
IMPORT("state_scan") int32_t sluice_v1_state_scan(const void *p, uint32_t pn, void *b, uint32_t bc);
IMPORT("http_request") int32_t sluice_v1_http_request(const void *r, uint32_t rn, void *b, uint32_t bc);
IMPORT("take_result") int32_t sluice_v1_take_result(void *b, uint32_t bc);

void sluice_log(int level, const void *msg, size_t len) { sluice_v1_log(level, msg, (uint32_t)len); }
int64_t sluice_now(void) { return sluice_v1_now(); }
void sluice_random(void *b, size_t len) { sluice_v1_random(b, (uint32_t)len); }
void sluice_counter_add(const void *name, size_t len, int64_t delta) {
  sluice_v1_counter_add(name, (uint32_t)len, delta);
}

static void res_ready(void) {
  if (!res_buf.p) grow(&res_buf, 4096);
}

/* fetch completes a call that answered n bytes (sdk/ABI.md §6.1). */
static bool fetch(int32_t n, sluice_bytes *out) {
  if (n < 0) return false;
  if ((size_t)n > res_buf.cap) {
    res_buf.len = 0;
    grow(&res_buf, (size_t)n);
    int32_t m = sluice_v1_take_result(res_buf.p, (uint32_t)res_buf.cap);
    if (m != n) __builtin_trap(); /* the host broke §6.1 */
  }
  out->ptr = res_buf.p;
  out->len = (uint32_t)n;
  return true;
}

bool sluice_state_get(const void *key, size_t key_len, sluice_bytes *value) {
  res_ready();
  return fetch(sluice_v1_state_get(key, (uint32_t)key_len, res_buf.p, (uint32_t)res_buf.cap), value);
}

bool sluice_state_put(const void *key, size_t key_len, const void *value, size_t value_len) {
  return sluice_v1_state_put(key, (uint32_t)key_len, value, (uint32_t)value_len) == 0;
}

void sluice_state_delete(const void *key, size_t key_len) { sluice_v1_state_delete(key, (uint32_t)key_len); }

bool sluice_state_scan(const void *prefix, size_t prefix_len, sluice_scan_fn fn, void *arg) {
  res_ready();
  sluice_bytes all;
  if (!fetch(sluice_v1_state_scan(prefix, (uint32_t)prefix_len, res_buf.p, (uint32_t)res_buf.cap), &all)) return false;
  reader r = {all.ptr, all.len, 0};
  uint32_t n;
  if (!rd_u32(&r, &n)) return false;
  for (uint32_t i = 0; i < n; i++) {
    sluice_bytes k, v;
    if (!rd_bytes(&r, &k) || !rd_bytes(&r, &v)) return false;
    if (!fn(k, v, arg)) break;
  }
  return true;
}

bool sluice_http(const sluice_http_request *req, sluice_http_response *resp) {
  req_buf.len = 0;
  put_bytes(&req_buf, req->method.ptr, req->method.len);
  put_bytes(&req_buf, req->url.ptr, req->url.len);
  put32(&req_buf, req->n_headers);
  for (uint32_t i = 0; i < req->n_headers; i++) {
    put_bytes(&req_buf, req->headers[i].name.ptr, req->headers[i].name.len);
    put_bytes(&req_buf, req->headers[i].value.ptr, req->headers[i].value.len);
  }
  put_bytes(&req_buf, req->body.ptr, req->body.len);
  res_ready();
  memset(resp, 0, sizeof *resp);
  int32_t n = sluice_v1_http_request(req_buf.p, (uint32_t)req_buf.len, res_buf.p, (uint32_t)res_buf.cap);
  if (n < 0) {
    int32_t m = sluice_v1_take_result(res_buf.p, (uint32_t)res_buf.cap);
    if (m > 0 && (size_t)m <= res_buf.cap) {
      resp->error.ptr = res_buf.p;
      resp->error.len = (uint32_t)m;
    } else {
      resp->error.ptr = (const uint8_t *)"refused";
      resp->error.len = 7;
    }
    return false;
  }
  sluice_bytes all;
  fetch(n, &all);
  reader r = {all.ptr, all.len, 0};
  if (!rd_u32(&r, &resp->status) || !rd_u32(&r, &resp->n_headers)) goto bad;
  resp->headers_ = all.ptr + r.off;
  for (uint32_t i = 0; i < resp->n_headers; i++) {
    sluice_bytes skip;
    if (!rd_bytes(&r, &skip) || !rd_bytes(&r, &skip)) goto bad;
  }
  if (!rd_bytes(&r, &resp->body) || r.off != r.len) goto bad;
  return true;
bad:
  resp->error.ptr = (const uint8_t *)"malformed http response from the host";
  resp->error.len = 37;
  return false;
}

bool sluice_http_next_header(const sluice_http_response *resp, uint32_t *pos, const uint8_t **cursor,
                             sluice_bytes *name, sluice_bytes *value) {
  if (*pos >= resp->n_headers) return false;
  const uint8_t *p = *pos == 0 ? resp->headers_ : *cursor;
  name->len = rd32(p);
  name->ptr = p + 4;
  p += 4 + name->len;
  value->len = rd32(p);
  value->ptr = p + 4;
  *cursor = p + 4 + value->len;
  (*pos)++;
  return true;
}
