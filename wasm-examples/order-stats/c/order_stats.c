/*
 * order-stats (C): per-minute revenue and order count by category and by
 * city, and units per SKU, from JSON order lines; windows closed by tick;
 * state in the host (sluice_state_*); results as command records
 * (docs/command-records.md). The contract — state layout, window rule, the
 * exact records — is in ../README.md; the Go version (../go) and the native
 * reference (internal/orders) produce the same bytes.
 *
 * Per batch: every line is parsed and validated (the rules of
 * wasm-examples/order-parse/README.md; invalid lines are rejected with the
 * same reasons; the parser is ../../internal/c/order_json.h, shared with
 * order-parse/c) and added to in-memory tables, one per minute window seen in
 * the batch. After the last event (sluice_plugin_flush) each window's tables
 * are merged into its state entry, so the host persists the state with the
 * batch's position; guest memory holds nothing between calls.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

#include "../../internal/c/order_json.h"

/* ---- order-stats' own helpers --------------------------------------------- */

static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); } /* wasm is little-endian */
static void buf_i64(buf *b, int64_t v) { buf_put(b, &v, 8); }

/* format_minute writes unix ms as 2026-11-25T12:00 (16 bytes). */
static void format_minute(char *s, int64_t ms) {
  int64_t mins = ms / 60000, z = mins / 1440 + 719468, hm = mins % 1440;
  int64_t era = z / 146097, doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) y++;
  s = fmt_pad(s, y, 4), *s++ = '-', s = fmt_pad(s, m, 2), *s++ = '-', s = fmt_pad(s, d, 2);
  *s++ = 'T', s = fmt_pad(s, hm / 60, 2), *s++ = ':', fmt_pad(s, hm % 60, 2);
}

/* ---- aggregation tables ---------------------------------------------------- */

typedef struct {
  uint32_t name_off; /* into names arena */
  uint32_t name_len;
  uint32_t hash;
  uint32_t old_rank; /* 1 + position in the state value it was decoded from; 0: new in this call */
  int64_t cents, orders, units;
} entry;

typedef struct {
  entry *slots; /* open addressing; name_len 0 = empty (names are never empty) */
  uint32_t cap, count;
} table;

typedef struct {
  char minute[16];
  table dims[3]; /* category, city, sku */
} window;

enum { DIM_CATEGORY, DIM_CITY, DIM_SKU };

static buf names;      /* arena of names, reset per call */
static window *wins;   /* windows touched by this call */
static uint32_t nwins, capwins;
static int64_t batch_wm = -1;

static void table_grow(table *t) {
  uint32_t old_cap = t->cap;
  entry *old = t->slots;
  t->cap = old_cap ? old_cap * 2 : 256;
  t->slots = calloc(t->cap, sizeof(entry));
  if (!t->slots) __builtin_trap();
  for (uint32_t i = 0; i < old_cap; i++) {
    if (!old[i].name_len) continue;
    uint32_t j = old[i].hash & (t->cap - 1);
    while (t->slots[j].name_len) j = (j + 1) & (t->cap - 1);
    t->slots[j] = old[i];
  }
  free(old);
}

static entry *table_add(table *t, const uint8_t *name, uint32_t len, int64_t cents, int64_t orders, int64_t units) {
  if ((t->count + 1) * 2 > t->cap) table_grow(t);
  uint32_t h = hash_bytes(name, len), j = h & (t->cap - 1);
  for (;;) {
    entry *e = &t->slots[j];
    if (!e->name_len) break;
    if (e->hash == h && e->name_len == len && bytes_eq(names.p + e->name_off, name, len)) {
      e->cents += cents, e->orders += orders, e->units += units;
      return e;
    }
    j = (j + 1) & (t->cap - 1);
  }
  entry *e = &t->slots[j];
  e->name_off = (uint32_t)names.len;
  buf_put(&names, name, len);
  e->name_len = len, e->hash = h, e->old_rank = 0, e->cents = cents, e->orders = orders, e->units = units;
  t->count++;
  return e;
}

static void table_clear(table *t) {
  if (t->count) memset(t->slots, 0, t->cap * sizeof(entry));
  t->count = 0;
}

static void reset_windows(void) {
  for (uint32_t w = 0; w < nwins; w++)
    for (int d = 0; d < 3; d++) table_clear(&wins[w].dims[d]);
  nwins = 0;
  names.len = 0;
  batch_wm = -1;
}

static window *window_for(const char *minute) {
  for (uint32_t w = nwins; w-- > 0;)
    if (bytes_eq((const uint8_t *)wins[w].minute, (const uint8_t *)minute, 16)) return &wins[w];
  if (nwins == capwins) {
    uint32_t c = capwins ? capwins * 2 : 4;
    window *n = realloc(wins, c * sizeof(window));
    if (!n) __builtin_trap();
    memset(n + capwins, 0, (c - capwins) * sizeof(window));
    wins = n, capwins = c;
  }
  window *w = &wins[nwins++];
  memcpy(w->minute, minute, 16);
  return w;
}

/* sorted returns the table's entries ordered by name (bytewise, shorter
 * first on a tie). State values are written in that order, so the entries
 * decoded from one are already sorted (by old_rank): only the few names new
 * in this call are sorted, then merged in. A full sort per batch was the
 * largest cost of a call after parsing. */
static entry **sorted_buf, **new_buf;
static uint32_t sorted_cap;

static int cmp_names(const entry *x, const entry *y) {
  uint32_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(names.p + x->name_off, names.p + y->name_off, n);
  if (c) return c;
  return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}
static int cmp_entries(const void *a, const void *b) { return cmp_names(*(entry *const *)a, *(entry *const *)b); }

static entry **sorted(table *t) {
  if (t->count > sorted_cap) {
    sorted_cap = t->count * 2;
    sorted_buf = realloc(sorted_buf, sorted_cap * sizeof(entry *));
    new_buf = realloc(new_buf, sorted_cap * sizeof(entry *));
    if (!sorted_buf || !new_buf) __builtin_trap();
  }
  /* old entries by rank, into the tail of sorted_buf; new ones apart */
  entry **old = sorted_buf + 0;
  uint32_t n_new = 0, max_rank = 0;
  memset(sorted_buf, 0, t->count * sizeof(entry *));
  bool ranks_fit = true;
  for (uint32_t i = 0; i < t->cap; i++) {
    entry *e = &t->slots[i];
    if (!e->name_len) continue;
    if (e->old_rank && e->old_rank <= t->count) {
      if (old[e->old_rank - 1]) ranks_fit = false;
      old[e->old_rank - 1] = e;
      if (e->old_rank > max_rank) max_rank = e->old_rank;
    } else if (e->old_rank) {
      ranks_fit = false;
    } else {
      new_buf[n_new++] = e;
    }
  }
  /* compact the old entries (a damaged value may leave gaps) */
  uint32_t n_old = 0;
  for (uint32_t r = 0; r < max_rank; r++)
    if (old[r]) old[n_old++] = old[r];
  bool old_sorted = ranks_fit;
  for (uint32_t k = 1; old_sorted && k < n_old; k++)
    if (cmp_names(old[k - 1], old[k]) >= 0) old_sorted = false;
  if (!old_sorted || n_old + n_new != t->count) {
    /* not what this plugin writes: sort everything */
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->cap; i++)
      if (t->slots[i].name_len) sorted_buf[k++] = &t->slots[i];
    qsort(sorted_buf, k, sizeof(entry *), cmp_entries);
    return sorted_buf;
  }
  if (n_new == 0) return sorted_buf;
  qsort(new_buf, n_new, sizeof(entry *), cmp_entries);
  /* merge from the back so the old entries can stay in place */
  int64_t i = (int64_t)n_old - 1, j = (int64_t)n_new - 1, k = (int64_t)t->count - 1;
  while (j >= 0) {
    if (i >= 0 && cmp_names(sorted_buf[i], new_buf[j]) > 0)
      sorted_buf[k--] = sorted_buf[i--];
    else
      sorted_buf[k--] = new_buf[j--];
  }
  return sorted_buf;
}

/* Window state value: per dimension, count:u32 then by name ascending
 * name:bytes cents:i64 orders:i64 units:i64 (all little-endian). */
static void encode_window(buf *b, window *w) {
  for (int d = 0; d < 3; d++) {
    table *t = &w->dims[d];
    entry **es = sorted(t);
    buf_u32(b, t->count);
    for (uint32_t i = 0; i < t->count; i++) {
      buf_u32(b, es[i]->name_len);
      buf_put(b, names.p + es[i]->name_off, es[i]->name_len);
      buf_i64(b, es[i]->cents), buf_i64(b, es[i]->orders), buf_i64(b, es[i]->units);
    }
  }
}

static bool decode_window(const uint8_t *p, uint32_t n, window *w) {
  uint32_t off = 0;
  for (int d = 0; d < 3; d++) {
    uint32_t count, len;
    if (n - off < 4) return false;
    memcpy(&count, p + off, 4), off += 4;
    for (uint32_t i = 0; i < count; i++) {
      if (n - off < 4) return false;
      memcpy(&len, p + off, 4), off += 4;
      if ((uint64_t)n - off < (uint64_t)len + 24 || len == 0) return false;
      int64_t v[3];
      memcpy(v, p + off + len, 24);
      entry *e = table_add(&w->dims[d], p + off, len, v[0], v[1], v[2]);
      if (!e->old_rank) e->old_rank = i + 1;
      off += len + 24;
    }
  }
  return off == n;
}

/* ---- the plugin ---------------------------------------------------------- */

static int64_t lateness_ms = 2000;
static buf scratch;
static order o;

sluice_rc sluice_plugin_init(const sluice_config *cfg) {
  int rc = sluice_config_int(cfg, "lateness_ms", &lateness_ms);
  if (rc < 0 || lateness_ms < 0) return sluice_fail(SLUICE_LIT("config lateness_ms: want a non-negative integer (milliseconds)"));
  return SLUICE_OK;
}

sluice_rc sluice_plugin_process(const sluice_event *e, uint32_t index) {
  if (index == 0) reset_windows(); /* whatever a failed call left behind */
  if (!parse_order(e->body.ptr, e->body.len, &o)) return sluice_reject(reason, reason_len);
  window *w = window_for((const char *)o.ts.p);
  int64_t rev = o.qty * o.price;
  table_add(&w->dims[DIM_CATEGORY], o.category.p, o.category.n, rev, 1, o.qty);
  table_add(&w->dims[DIM_CITY], o.city.p, o.city.n, rev, 1, o.qty);
  table_add(&w->dims[DIM_SKU], o.sku.p, o.sku.n, rev, 1, o.qty);
  if (o.ms > batch_wm) batch_wm = o.ms;
  return SLUICE_OK;
}

/* flush runs after the last event of every batch: merge into host state. */
sluice_rc sluice_plugin_flush(void) {
  char key[18] = {'w', ':'};
  for (uint32_t i = 0; i < nwins; i++) {
    window *w = &wins[i];
    memcpy(key + 2, w->minute, 16);
    sluice_bytes old;
    if (sluice_state_get(key, sizeof key, &old) && !decode_window(old.ptr, old.len, w)) {
      reset_windows();
      return sluice_fail(SLUICE_LIT("state: a window value is corrupt"));
    }
    scratch.len = 0;
    encode_window(&scratch, w);
    if (!sluice_state_put(key, sizeof key, scratch.p, scratch.len)) {
      reset_windows();
      return sluice_fail(SLUICE_LIT("state: the host refused a window (state quota)"));
    }
  }
  if (batch_wm >= 0) {
    sluice_bytes old;
    int64_t prev = -1;
    if (sluice_state_get(SLUICE_LIT("wm"), &old) && old.len == 8) memcpy(&prev, old.ptr, 8);
    if (batch_wm > prev && !sluice_state_put(SLUICE_LIT("wm"), &batch_wm, 8)) {
      reset_windows();
      return sluice_fail(SLUICE_LIT("state: the host refused the watermark (state quota)"));
    }
  }
  reset_windows();
  return SLUICE_OK;
}

/* due collects the state entries of the windows a tick closes. */
typedef struct {
  const uint8_t *cutoff; /* "w:<minute>" */
  buf data;              /* key:bytes value:bytes, copied out of the scan */
  uint32_t count;
} due_list;

static bool collect(sluice_bytes key, sluice_bytes value, void *arg) {
  due_list *d = arg;
  uint32_t n = key.len < 18 ? key.len : 18;
  int c = memcmp(key.ptr, d->cutoff, n);
  if (c > 0 || (c == 0 && key.len > 18)) return false;
  buf_u32(&d->data, key.len), buf_put(&d->data, key.ptr, key.len);
  buf_u32(&d->data, value.len), buf_put(&d->data, value.ptr, value.len);
  d->count++;
  return true;
}

static void emit_record(int64_t time, const char *op, const char *field, const char *prefix, const char *minute,
                        const uint8_t *name, uint32_t name_len, int64_t value) {
  char key[48];
  char *k = stpcpy(key, prefix);
  if (minute) memcpy(k, minute, 16), k += 16;
  size_t key_len = (size_t)(k - key);
  size_t cap = 64 + key_len + name_len + 24;
  uint8_t *b = sluice_emit_reserve(time, key, key_len, cap), *s = b;
  s = (uint8_t *)stpcpy((char *)s, "{\"op\":\"");
  s = (uint8_t *)stpcpy((char *)s, op);
  s = (uint8_t *)stpcpy((char *)s, "\",\"key\":\"");
  memcpy(s, key, key_len), s += key_len;
  s = (uint8_t *)stpcpy((char *)s, field);
  memcpy(s, name, name_len), s += name_len;
  s = (uint8_t *)stpcpy((char *)s, "\",\"value\":");
  s = (uint8_t *)fmt_int((char *)s, value);
  *s++ = '}';
  sluice_emit_commit((size_t)(s - b));
}

static due_list due;

sluice_rc sluice_plugin_tick(int64_t now_ns) {
  reset_windows();
  int64_t t = now_ns / 1000000;
  sluice_bytes v;
  if (sluice_state_get(SLUICE_LIT("wm"), &v) && v.len == 8) {
    int64_t wm;
    memcpy(&wm, v.ptr, 8);
    if (wm > t) t = wm;
  }
  int64_t last = t - lateness_ms - 60000;
  if (last < 0) return SLUICE_OK;
  char cutoff[18] = {'w', ':'};
  format_minute(cutoff + 2, last);
  due.cutoff = (const uint8_t *)cutoff;
  due.data.len = 0;
  due.count = 0;
  if (!sluice_state_scan(SLUICE_LIT("w:"), collect, &due)) return sluice_fail(SLUICE_LIT("state: scan failed"));
  const uint8_t *p = due.data.p;
  for (uint32_t i = 0; i < due.count; i++) {
    uint32_t kl, vl;
    memcpy(&kl, p, 4);
    const uint8_t *key = p + 4;
    memcpy(&vl, key + kl, 4);
    const uint8_t *val = key + kl + 4;
    p = val + vl;
    if (kl != 18) return sluice_fail(SLUICE_LIT("state: a window key is not w:<minute>"));
    const char *minute = (const char *)key + 2;
    uint8_t ts[20];
    memcpy(ts, minute, 16), memcpy(ts + 16, ":00Z", 4);
    int64_t ms = parse_ts(ts, 20);
    if (ms < 0) return sluice_fail(SLUICE_LIT("state: a window key is not w:<minute>"));
    window *w = window_for(minute);
    if (!decode_window(val, vl, w)) return sluice_fail(SLUICE_LIT("state: a window value is corrupt"));
    int64_t time = ms * 1000000;
    entry **es = sorted(&w->dims[DIM_CATEGORY]);
    for (uint32_t k = 0; k < w->dims[DIM_CATEGORY].count; k++) {
      const uint8_t *name = names.p + es[k]->name_off;
      emit_record(time, "hincrby", "\",\"field\":\"", "rev:cat:", minute, name, es[k]->name_len, es[k]->cents);
      emit_record(time, "hincrby", "\",\"field\":\"", "cnt:cat:", minute, name, es[k]->name_len, es[k]->orders);
    }
    es = sorted(&w->dims[DIM_CITY]);
    for (uint32_t k = 0; k < w->dims[DIM_CITY].count; k++) {
      const uint8_t *name = names.p + es[k]->name_off;
      emit_record(time, "hincrby", "\",\"field\":\"", "rev:city:", minute, name, es[k]->name_len, es[k]->cents);
      emit_record(time, "hincrby", "\",\"field\":\"", "cnt:city:", minute, name, es[k]->name_len, es[k]->orders);
    }
    es = sorted(&w->dims[DIM_SKU]);
    for (uint32_t k = 0; k < w->dims[DIM_SKU].count; k++) {
      const uint8_t *name = names.p + es[k]->name_off;
      emit_record(time, "zincrby", "\",\"member\":\"", "top:sku:", minute, name, es[k]->name_len, es[k]->units);
      emit_record(time, "zincrby", "\",\"member\":\"", "top:sku", NULL, name, es[k]->name_len, es[k]->units);
    }
    sluice_state_delete(key, kl);
  }
  reset_windows();
  return SLUICE_OK;
}
