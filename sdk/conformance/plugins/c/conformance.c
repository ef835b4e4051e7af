/* The C version of the Sluice conformance plugin: the behaviour described in
 * sdk/conformance/README.md, written once per SDK and checked by the same
 * suite (go test ./sdk/conformance/). */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static sluice_bytes prefix;
static int64_t echoed, total, next_event;
static uint8_t *body;
static size_t body_cap;
static uint8_t *big;
static size_t big_cap;

static bool cut(const sluice_bytes *b, const char *p, sluice_bytes *rest) {
  size_t n = strlen(p);
  if (b->len < n || memcmp(b->ptr, p, n) != 0) return false;
  rest->ptr = b->ptr + n;
  rest->len = b->len - (uint32_t)n;
  return true;
}

static bool split_eq(sluice_bytes kv, sluice_bytes *k, sluice_bytes *v) {
  const uint8_t *eq = memchr(kv.ptr, '=', kv.len);
  if (!eq) {
    *k = kv;
    v->ptr = kv.ptr + kv.len;
    v->len = 0;
    return false;
  }
  k->ptr = kv.ptr;
  k->len = (uint32_t)(eq - kv.ptr);
  v->ptr = eq + 1;
  v->len = kv.len - k->len - 1;
  return true;
}

static bool parse_int(sluice_bytes b, int64_t *out) {
  if (b.len == 0) return false;
  int64_t n = 0;
  for (uint32_t i = 0; i < b.len; i++) {
    if (b.ptr[i] < '0' || b.ptr[i] > '9') return false;
    n = n * 10 + (b.ptr[i] - '0');
  }
  *out = n;
  return true;
}

static size_t format_int(char *dst, int64_t v) {
  char tmp[24];
  size_t n = 0;
  bool neg = v < 0;
  uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do tmp[n++] = (char)('0' + u % 10), u /= 10; while (u);
  size_t k = 0;
  if (neg) dst[k++] = '-';
  while (n) dst[k++] = tmp[--n];
  return k;
}

static void body_reserve(size_t n) {
  if (n <= body_cap) return;
  size_t c = body_cap ? body_cap : 4096;
  while (c < n) c *= 2;
  body = realloc(body, c);
  if (!body) __builtin_trap();
  body_cap = c;
}

sluice_rc sluice_plugin_init(const sluice_config *cfg) {
  bool fail = false;
  int r = sluice_config_bool(cfg, "fail_init", &fail);
  if (r < 0) return sluice_fail(SLUICE_LIT("config \"fail_init\": not true or false"));
  if (fail) return sluice_fail(SLUICE_LIT("fail_init requested"));
  if (!sluice_config_get(cfg, "prefix", &prefix)) prefix.len = 0;
  if (sluice_config_int(cfg, "events", &total) < 0) return sluice_fail(SLUICE_LIT("config \"events\": not an integer"));
  return SLUICE_OK;
}

static bool emit_pair(sluice_bytes k, sluice_bytes v, void *arg) {
  sluice_emit(*(int64_t *)arg, k.ptr, k.len, v.ptr, v.len);
  return true;
}

sluice_rc sluice_plugin_process(const sluice_event *e, uint32_t index) {
  (void)index;
  sluice_bytes r, k, v;
  if (cut(&e->body, "reject:", &r)) return sluice_reject(r.ptr, r.len);
  if (cut(&e->body, "fail:", &r)) return sluice_fail(r.ptr, r.len);
  if (cut(&e->body, "retry:", &r)) return sluice_retry(r.ptr, r.len);
  if (cut(&e->body, "panic:", &r)) {
    /* C has no panic: the equivalent outcome is a failed batch. */
    body_reserve(7 + r.len);
    memcpy(body, "panic: ", 7);
    memcpy(body + 7, r.ptr, r.len);
    return sluice_fail(body, 7 + r.len);
  }
  if (cut(&e->body, "put:", &r)) {
    split_eq(r, &k, &v);
    if (!sluice_state_put(k.ptr, k.len, v.ptr, v.len)) return sluice_fail(SLUICE_LIT("state_put refused"));
    return SLUICE_OK;
  }
  if (cut(&e->body, "big:", &r)) {
    int64_t size;
    split_eq(r, &k, &v);
    if (!parse_int(v, &size)) return sluice_reject(SLUICE_LIT("big: bad size"));
    if ((size_t)size > big_cap) {
      big = realloc(big, (size_t)size);
      if (!big) __builtin_trap();
      big_cap = (size_t)size;
    }
    for (int64_t i = 0; i < size; i++) big[i] = (uint8_t)('a' + i % 26);
    if (!sluice_state_put(k.ptr, k.len, big, (size_t)size)) return sluice_fail(SLUICE_LIT("state_put refused"));
    return SLUICE_OK;
  }
  if (cut(&e->body, "get:", &r)) {
    if (!sluice_state_get(r.ptr, r.len, &v)) {
      body_reserve(13 + r.len);
      memcpy(body, "no state for ", 13);
      memcpy(body + 13, r.ptr, r.len);
      return sluice_reject(body, 13 + r.len);
    }
    sluice_emit(e->time, r.ptr, r.len, v.ptr, v.len);
    return SLUICE_OK;
  }
  if (cut(&e->body, "del:", &r)) {
    sluice_state_delete(r.ptr, r.len);
    return SLUICE_OK;
  }
  if (cut(&e->body, "scan:", &r)) {
    int64_t t = e->time;
    if (!sluice_state_scan(r.ptr, r.len, emit_pair, &t)) return sluice_fail(SLUICE_LIT("state_scan failed"));
    return SLUICE_OK;
  }
  if (cut(&e->body, "log:", &r)) {
    sluice_log(SLUICE_INFO, r.ptr, r.len);
    return SLUICE_OK;
  }
  if (cut(&e->body, "count:", &r)) {
    sluice_counter_add(r.ptr, r.len, 1);
    return SLUICE_OK;
  }
  if (e->body.len == 3 && memcmp(e->body.ptr, "now", 3) == 0) {
    char num[24];
    size_t n = format_int(num, sluice_now());
    sluice_emit(e->time, e->key.ptr, e->key.len, num, n);
    return SLUICE_OK;
  }
  if (cut(&e->body, "random:", &r)) {
    int64_t size;
    if (!parse_int(r, &size)) return sluice_reject(SLUICE_LIT("random: bad size"));
    uint8_t *dst = sluice_emit_reserve(e->time, e->key.ptr, e->key.len, (size_t)size);
    sluice_random(dst, (size_t)size);
    sluice_emit_commit((size_t)size);
    return SLUICE_OK;
  }
  /* Echo: prefix + body, same time, key and headers, plus one header. */
  uint8_t *dst = sluice_emit_reserve(e->time, e->key.ptr, e->key.len, prefix.len + e->body.len);
  memcpy(dst, prefix.ptr, prefix.len);
  memcpy(dst + prefix.len, e->body.ptr, e->body.len);
  sluice_emit_commit(prefix.len + e->body.len);
  sluice_copy_headers(e);
  sluice_add_header(SLUICE_LIT("conformance"), SLUICE_LIT("1"));
  echoed++;
  return SLUICE_OK;
}

sluice_rc sluice_plugin_tick(int64_t now) {
  if (echoed == 0) return SLUICE_OK;
  char num[24];
  size_t n = format_int(num, echoed);
  sluice_emit(now, SLUICE_LIT("tick"), num, n);
  echoed = 0;
  return SLUICE_OK;
}

sluice_rc sluice_plugin_open(sluice_bytes resume) {
  next_event = 0;
  if (resume.len == 0) return SLUICE_OK;
  if (!parse_int(resume, &next_event)) return sluice_fail(SLUICE_LIT("bad position"));
  return SLUICE_OK;
}

sluice_rc sluice_plugin_poll(uint32_t max) {
  char buf[40];
  for (uint32_t n = 0; n < max && next_event < total; n++) {
    memcpy(buf, "event ", 6);
    size_t len = 6 + format_int(buf + 6, next_event);
    sluice_emit(next_event, 0, 0, buf, len);
    next_event++;
  }
  size_t len = format_int(buf, next_event);
  sluice_set_position(buf, len);
  return SLUICE_OK;
}

sluice_rc sluice_plugin_ack(sluice_bytes position) {
  (void)position;
  return SLUICE_OK;
}

/* Stores each accepted body in state under sink/<n>, n counting from 0 in
 * zero-padded decimal (8 digits). */
static int64_t written;

sluice_rc sluice_plugin_write(const sluice_event *e, uint32_t index) {
  (void)index;
  sluice_bytes r;
  if (cut(&e->body, "reject:", &r)) return sluice_reject(r.ptr, r.len);
  if (cut(&e->body, "fail:", &r)) return sluice_fail(r.ptr, r.len);
  if (cut(&e->body, "retry:", &r)) return sluice_retry(r.ptr, r.len);
  char key[40] = "sink/";
  char num[24];
  size_t n = format_int(num, written++);
  size_t k = 5;
  for (size_t i = n; i < 8; i++) key[k++] = '0';
  memcpy(key + k, num, n);
  k += n;
  if (!sluice_state_put(key, k, e->body.ptr, e->body.len)) return sluice_fail(SLUICE_LIT("state_put refused"));
  return SLUICE_OK;
}
