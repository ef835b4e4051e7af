/*
 * order_json.h: the JSON order parser the C examples share (order-parse/c,
 * order-stats/c): the validation rules and the reject reasons of
 * wasm-examples/order-parse/README.md, mirroring internal/orders/parse.go.
 * parse_order fills an order or returns false with the reason in
 * reason/reason_len.
 *
 * Header-only (static functions, static state such as the last date seen):
 * a plugin is one translation unit that includes it once, so sluice plugin
 * build (which compiles the *.c of one directory) needs nothing more than
 * #include "../../internal/c/order_json.h".
 */
#ifndef SLUICE_EXAMPLES_ORDER_JSON_H
#define SLUICE_EXAMPLES_ORDER_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  uint32_t n;
} str;

typedef struct {
  uint8_t *p;
  size_t len, cap;
} buf;

static inline void buf_reserve(buf *b, size_t more) {
  if (b->len + more <= b->cap) return;
  size_t c = b->cap ? b->cap * 2 : 4096;
  while (c < b->len + more) c *= 2;
  uint8_t *p = realloc(b->p, c);
  if (!p) __builtin_trap(); /* out of memory: the host discards the instance */
  b->p = p;
  b->cap = c;
}
static inline void buf_put(buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}
static inline void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static inline char *fmt_int(char *s, int64_t v) {
  char tmp[24];
  int n = 0;
  uint64_t u = v < 0 ? (uint64_t)(-v) : (uint64_t)v;
  if (v < 0) *s++ = '-';
  do tmp[n++] = (char)('0' + u % 10), u /= 10; while (u);
  while (n) *s++ = tmp[--n];
  return s;
}

static inline char *fmt_pad(char *s, int64_t v, int width) {
  for (int i = width - 1; i >= 0; i--) s[i] = (char)('0' + v % 10), v /= 10;
  return s + width;
}

/* ---- dates ------------------------------------------------------------------ */

static inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  if (m <= 2) y--;
  int64_t era = y / 400, yoe = y - era * 400, mp = (m + 9) % 12;
  int64_t doy = (153 * mp + 2) / 5 + d - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}


static inline int64_t days_in(int64_t y, int64_t m) {
  if (m == 2) return (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28;
  if (m == 4 || m == 6 || m == 9 || m == 11) return 30;
  return 31;
}

/* digits2 is the two-digit number at s, or -1. */
static inline int64_t digits2(const uint8_t *s) {
  unsigned a = (unsigned)s[0] - '0', b = (unsigned)s[1] - '0';
  return a < 10 && b < 10 ? (int64_t)(a * 10 + b) : -1;
}

/* The date part of the last valid ts (YYYY-MM-DD, 10 bytes) and its day
 * number: consecutive orders nearly always share the date, and the calendar
 * arithmetic (64-bit divisions) was a fifth of the parse time in wasm. */
static uint64_t last_date_lo;
static uint16_t last_date_hi;
static int64_t last_days = -1;

/* parse_ts: YYYY-MM-DDTHH:MM:SS[.fraction]Z → unix ms, or -1. */
static inline int64_t parse_ts(const uint8_t *s, uint32_t n) {
  if (n < 20 || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[n - 1] != 'Z') return -1;
  uint64_t lo;
  uint16_t hi;
  memcpy(&lo, s, 8), memcpy(&hi, s + 8, 2);
  int64_t days;
  if (last_days >= 0 && lo == last_date_lo && hi == last_date_hi) {
    days = last_days;
  } else {
    if (s[4] != '-' || s[7] != '-') return -1;
    int64_t y1 = digits2(s), y2 = digits2(s + 2), mo = digits2(s + 5), d = digits2(s + 8);
    if (y1 < 0 || y2 < 0) return -1;
    int64_t y = y1 * 100 + y2;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in(y, mo)) return -1;
    days = days_from_civil(y, mo, d);
    last_date_lo = lo, last_date_hi = hi, last_days = days;
  }
  int64_t h = digits2(s + 11), mi = digits2(s + 14), sec = digits2(s + 17);
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return -1;
  int64_t ms = 0;
  uint32_t rest = n - 20; /* bytes between the seconds and the Z */
  if (rest > 0) {
    if (s[19] != '.' || rest == 1) return -1;
    for (uint32_t k = 0; k < rest - 1; k++) {
      uint8_t c = s[20 + k];
      if (c < '0' || c > '9') return -1;
      if (k < 3) ms = ms * 10 + (c - '0');
    }
    for (uint32_t k = rest - 1; k < 3; k++) ms *= 10;
  }
  return ((days * 24 + h) * 60 + mi) * 60000 + sec * 1000 + ms;
}

/* ---- the order parser (mirrors internal/orders/parse.go) -------------------- */

typedef struct {
  str ts, order_id, sku, category, city, status;
  int64_t ms, user_id, qty, price;
} order;

/* The parser's state lives in a local of parse_order: every helper that
 * takes it is inlined (FORCE_INLINE), so the index stays in a wasm local
 * instead of a load and store of linear memory per byte. */
typedef struct {
  const uint8_t *b;
  uint32_t n, i;
} parser;

#define FORCE_INLINE static inline __attribute__((always_inline))

/* load_tail reads the n < 8 bytes at p into the low end of a word, with at
 * most three loads and no loop. */
FORCE_INLINE uint64_t load_tail(const uint8_t *p, uint32_t n) {
  uint64_t w = 0;
  uint32_t at = 0;
  if (n & 4) {
    uint32_t v;
    memcpy(&v, p, 4);
    w = v, at = 4;
  }
  if (n & 2) {
    uint16_t v;
    memcpy(&v, p + at, 2);
    w |= (uint64_t)v << (8 * at), at += 2;
  }
  if (n & 1) w |= (uint64_t)p[at] << (8 * at);
  return w;
}

/* hash_bytes and bytes_eq work a word at a time: names are short. */
FORCE_INLINE uint32_t hash_bytes(const uint8_t *p, uint32_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
  }
  h = (h ^ load_tail(p + i, n - i)) * 0xc4ceb9fe1a85ec53ull;
  /* a product's high bits never reach its low ones: fold them down (a
   * multiply alone left every sku-00NN in one probe chain) */
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (uint32_t)h | 1;
}

FORCE_INLINE bool bytes_eq(const uint8_t *a, const uint8_t *b, uint32_t n) {
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    memcpy(&x, a + i, 8), memcpy(&y, b + i, 8);
    if (x != y) return false;
  }
  return load_tail(a + i, n - i) == load_tail(b + i, n - i);
}

/* lit_word is a literal of at most 8 bytes as a word, for field_of. */
static inline uint64_t lit_word(const char *s, uint32_t n) {
  uint64_t w = 0;
  for (uint32_t i = 0; i < n; i++) w |= (uint64_t)(uint8_t)s[i] << (8 * i);
  return w;
}


static buf reason_buf;
static const char *reason;
static size_t reason_len;

static inline bool fail(const char *r) {
  reason = r;
  reason_len = strlen(r);
  return false;
}
/* fail3 composes a reason with a field name from the input. */
static inline bool fail3(const char *pre, str name, const char *post) {
  reason_buf.len = 0;
  buf_str(&reason_buf, pre);
  buf_put(&reason_buf, name.p, name.n);
  buf_str(&reason_buf, post);
  reason = (const char *)reason_buf.p;
  reason_len = reason_buf.len;
  return false;
}
static inline bool failf(const char *pre, const char *name, const char *post) {
  str s = {(const uint8_t *)name, (uint32_t)strlen(name)};
  return fail3(pre, s, post);
}

FORCE_INLINE uint8_t peek(const parser *p) { return p->i < p->n ? p->b[p->i] : 0; }

FORCE_INLINE bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ws skips whitespace. The first byte is tested before any loop: there is
 * rarely whitespace, and the host's guard charges every loop entered. */
FORCE_INLINE void ws(parser *p) {
  if (p->i >= p->n || !is_ws(p->b[p->i])) return;
  do p->i++;
  while (p->i < p->n && is_ws(p->b[p->i]));
}

static inline bool is_hex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* special_mask flags, in bit 7 of each byte, the bytes of w that are '"',
 * '\\' or below 0x20. Only the lowest flag is exact (a borrow can flag a byte
 * above a real one), which is all pstr needs: the first special byte. */
FORCE_INLINE uint64_t special_mask(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
  return (((q - ones) & ~q) | ((bs - ones) & ~bs) | ((w - ones * 0x20) & ~w)) & highs;
}

FORCE_INLINE bool pstr(parser *p, str *out) {
  if (peek(p) != '"') {
    if (p->i >= p->n) return fail("truncated");
    return fail("expected a string");
  }
  p->i++;
  uint32_t start = p->i;
  for (;;) {
    /* Jump 8 bytes at a time to the next special byte: strings here are
     * short, and every loop iteration costs more under the host's
     * runaway-loop guard than the arithmetic does. */
    if (p->i + 8 <= p->n) {
      uint64_t w;
      memcpy(&w, p->b + p->i, 8);
      uint64_t m = special_mask(w);
      if (!m) {
        p->i += 8;
        continue;
      }
      p->i += (uint32_t)__builtin_ctzll(m) >> 3;
    } else {
      while (p->i < p->n && p->b[p->i] >= 0x20 && p->b[p->i] != '"' && p->b[p->i] != '\\') p->i++;
      if (p->i >= p->n) return fail("truncated");
    }
    uint8_t c = p->b[p->i];
    if (c == '"') {
      out->p = p->b + start;
      out->n = p->i - start;
      p->i++;
      return true;
    }
    if (c < 0x20) return fail("control character in a string");
    /* a backslash */
    if (p->i + 1 >= p->n) return fail("truncated");
    switch (p->b[p->i + 1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
      p->i += 2;
      break;
    case 'u':
      if (p->i + 6 > p->n) return fail("truncated");
      for (int k = 2; k < 6; k++)
        if (!is_hex(p->b[p->i + k])) return fail("invalid escape in a string");
      p->i += 6;
      break;
    default:
      return fail("invalid escape in a string");
    }
  }
}

FORCE_INLINE bool str_field(parser *p, const char *name, str *out) {
  if (peek(p) != '"') {
    if (p->i >= p->n) return fail("truncated");
    return failf("field ", name, " is not a string");
  }
  if (!pstr(p, out)) return false;
  if (out->n == 0) return failf("field ", name, " is empty");
  return true;
}

FORCE_INLINE bool number_ends(const parser *p) {
  uint8_t c = peek(p);
  return c == ',' || c == '}' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

FORCE_INLINE bool int_field(parser *p, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  uint32_t start = p->i;
  int64_t v = 0;
  while (p->i < p->n && p->b[p->i] >= '0' && p->b[p->i] <= '9') {
    if (v > hi) return failf("field ", name, " is out of range");
    v = v * 10 + (p->b[p->i] - '0');
    p->i++;
  }
  if (p->i == start || !number_ends(p)) {
    if (p->i >= p->n) return fail("truncated");
    return failf("field ", name, " is not an integer");
  }
  if (v < lo || v > hi) return failf("field ", name, " is out of range");
  *out = v;
  return true;
}

#define MAX_PRICE_UNITS 100000000
FORCE_INLINE bool price_field(parser *p, int64_t *out) {
  bool quoted = peek(p) == '"';
  if (quoted) p->i++;
  int64_t units = 0, cents = 0;
  uint32_t start = p->i;
  while (p->i < p->n && p->b[p->i] >= '0' && p->b[p->i] <= '9') {
    units = units * 10 + (p->b[p->i] - '0');
    if (units >= MAX_PRICE_UNITS) return fail("field price is out of range");
    p->i++;
  }
  if (p->i == start) {
    if (p->i >= p->n) return fail("truncated");
    return fail("field price is not a non-negative decimal");
  }
  if (peek(p) == '.') {
    p->i++;
    int digits = 0;
    while (p->i < p->n && p->b[p->i] >= '0' && p->b[p->i] <= '9') {
      if (++digits > 2) return fail("field price has more than two decimals");
      cents = cents * 10 + (p->b[p->i] - '0');
      p->i++;
    }
    if (digits == 0) return fail("field price is not a non-negative decimal");
    if (digits == 1) cents *= 10;
  }
  if (quoted) {
    if (peek(p) != '"') return fail("field price is not a non-negative decimal");
    p->i++;
  } else if (!number_ends(p)) {
    if (p->i >= p->n) return fail("truncated");
    return fail("field price is not a non-negative decimal");
  }
  *out = units * 100 + cents;
  return true;
}

static inline int64_t fail_index(const char *r) {
  fail(r);
  return -1;
}

/* skip_value skips the value of an unknown field starting at byte i and
 * returns the index after it, or -1 (reason set). Not inlined: it recurses. */
static inline int64_t skip_value(const uint8_t *b, uint32_t n, uint32_t i, int depth) {
  parser q = {b, n, i}, *p = &q;
  if (depth > 32) return fail_index("value nested too deeply");
  uint8_t c = peek(p);
  if (c == 0) return fail_index("truncated");
  if (c == '"') {
    str s;
    return pstr(p, &s) ? (int64_t)q.i : -1;
  }
  if (c == '{' || c == '[') {
    uint8_t close = c == '[' ? ']' : '}';
    p->i++;
    ws(p);
    if (peek(p) == close) {
      p->i++;
      return q.i;
    }
    for (;;) {
      ws(p);
      if (c == '{') {
        str k;
        if (!pstr(p, &k)) return -1;
        ws(p);
        if (peek(p) != ':') return fail_index("expected ':' after a field name");
        p->i++;
        ws(p);
      }
      int64_t next = skip_value(q.b, q.n, q.i, depth + 1);
      if (next < 0) return -1;
      q.i = (uint32_t)next;
      ws(p);
      uint8_t d = peek(p);
      p->i++;
      if (d == close) return q.i;
      if (d != ',') {
        if (d == 0) return fail_index("truncated");
        return fail_index("invalid value of an unknown field");
      }
    }
  }
  uint32_t start = p->i;
  while (p->i < p->n) {
    uint8_t d = p->b[p->i];
    if ((d >= '0' && d <= '9') || (d >= 'a' && d <= 'z') || d == '-' || d == '+' || d == '.' || d == 'E') {
      p->i++;
      continue;
    }
    break;
  }
  if (p->i == start) return fail_index("invalid value of an unknown field");
  return q.i;
}

enum { F_TS, F_ORDER_ID, F_USER_ID, F_SKU, F_CATEGORY, F_QTY, F_PRICE, F_CITY, F_STATUS, F_NONE };
static const char *const field_names[] = {"ts", "order_id", "user_id", "sku", "category", "qty", "price", "city", "status"};

/* field_of names a known field by its length and one word compare. */
static inline int field_of(str n) {
  if (n.n > 8 || n.n < 2) return F_NONE;
  uint64_t w;
  if (n.n == 8)
    memcpy(&w, n.p, 8);
  else
    w = load_tail(n.p, n.n);
#define W(s) lit_word(s, sizeof(s) - 1)
  switch (n.n) {
  case 2: return w == W("ts") ? F_TS : F_NONE;
  case 3: return w == W("sku") ? F_SKU : w == W("qty") ? F_QTY : F_NONE;
  case 4: return w == W("city") ? F_CITY : F_NONE;
  case 5: return w == W("price") ? F_PRICE : F_NONE;
  case 6: return w == W("status") ? F_STATUS : F_NONE;
  case 7: return w == W("user_id") ? F_USER_ID : F_NONE;
  case 8: return w == W("order_id") ? F_ORDER_ID : w == W("category") ? F_CATEGORY : F_NONE;
  }
#undef W
  return F_NONE;
}

/* usual is the field order of the order log and of order-parse's output,
 * each field as "name": (the order of the F_ constants). */
static const struct {
  const char *text;
  uint32_t len;
} usual[] = {
    {"\"ts\":", 5},       {"\"order_id\":", 11}, {"\"user_id\":", 10},
    {"\"sku\":", 6},      {"\"category\":", 11}, {"\"qty\":", 6},
    {"\"price\":", 8},    {"\"city\":", 7},      {"\"status\":", 9},
};

static inline bool parse_order(const uint8_t *line, uint32_t len, order *o) {
  parser p = {line, len, 0};
  ws(&p);
  if (peek(&p) != '{') return fail("not a JSON object");
  p.i++;
  unsigned seen = 0;
  ws(&p);
  if (peek(&p) == '}') {
    p.i++;
  } else {
    for (unsigned k = 0;; k++) {
      ws(&p);
      str name;
      int f;
      /* Fast path: the k-th field is the k-th of the usual order, written
       * "name": — exactly what the general path finds, without scanning the
       * name (one loop fewer per field, which the host's guard makes dear). */
      if (k < F_NONE && p.i + usual[k].len <= p.n &&
          bytes_eq(p.b + p.i, (const uint8_t *)usual[k].text, usual[k].len)) {
        name.p = p.b + p.i + 1;
        name.n = usual[k].len - 3;
        p.i += usual[k].len;
        f = (int)k;
      } else {
        if (!pstr(&p, &name)) return false;
        ws(&p);
        if (peek(&p) != ':') return fail("expected ':' after a field name");
        p.i++;
        f = field_of(name);
      }
      ws(&p);
      if (f != F_NONE) {
        if (seen & (1u << f)) return fail3("duplicate field ", name, "");
        seen |= 1u << f;
      }
      bool ok;
      switch (f) {
      case F_TS:
        ok = str_field(&p, "ts", &o->ts);
        if (ok && (o->ms = parse_ts(o->ts.p, o->ts.n)) < 0)
          ok = fail("field ts is not a UTC time like 2026-11-25T12:00:00.123Z");
        break;
      case F_ORDER_ID: ok = str_field(&p, "order_id", &o->order_id); break;
      case F_SKU: ok = str_field(&p, "sku", &o->sku); break;
      case F_CATEGORY: ok = str_field(&p, "category", &o->category); break;
      case F_CITY: ok = str_field(&p, "city", &o->city); break;
      case F_STATUS: ok = str_field(&p, "status", &o->status); break;
      case F_USER_ID: ok = int_field(&p, "user_id", 0, (1ll << 53) - 1, &o->user_id); break;
      case F_QTY: ok = int_field(&p, "qty", 1, 1000000, &o->qty); break;
      case F_PRICE: ok = price_field(&p, &o->price); break;
      default: {
        int64_t next = skip_value(p.b, p.n, p.i, 0);
        ok = next >= 0;
        p.i = (uint32_t)next;
      }
      }
      if (!ok) return false;
      ws(&p);
      uint8_t c = peek(&p);
      p.i++;
      if (c == '}') break;
      if (c != ',') {
        if (c == 0) return fail("truncated");
        return fail3("expected ',' or '}' after field ", name, "");
      }
    }
  }
  ws(&p);
  if (p.i != p.n) return fail("trailing bytes after the object");
  if (seen != (1u << F_NONE) - 1) {
    for (int f = 0; f < F_NONE; f++)
      if (!(seen & (1u << f))) return failf("missing field ", field_names[f], "");
  }
  return true;
}

#endif /* SLUICE_EXAMPLES_ORDER_JSON_H */
