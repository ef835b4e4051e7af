/*
 * order-parse (C): each JSON order line → the normalised order event keyed by
 * its category, timed by its ts; lines that are not valid orders are
 * rejected with the reason. The format, the validation rules and the output
 * are in ../README.md; the Go version (../main.go) and the native reference
 * (internal/orders.Normalise) produce the same bytes, which
 * ../order_parse_test.go checks.
 *
 * The parser (../../internal/c/order_json.h) is the one order-stats/c uses:
 * same rules, same reasons.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

#include "../../internal/c/order_json.h"

/* ---- the bolt ---------------------------------------------------------------- */

static order o;

/* canonical_cap bounds the canonical form of o: its fixed text (122 bytes),
 * the numbers (user_id ≤ 16 digits, qty ≤ 7, price units ≤ 8) and
 * the string fields as written. */
static size_t canonical_cap(const order *o) {
  return 160 + o->order_id.n + o->sku.n + o->category.n + o->city.n + o->status.n;
}

#define PUT(s, lit) (memcpy((s), (lit), sizeof(lit) - 1), (s) + sizeof(lit) - 1)

static uint8_t *put_str(uint8_t *s, str v) {
  memcpy(s, v.p, v.n);
  return s + v.n;
}

/* write_canonical writes the form orderjson.AppendCanonical writes: the nine
 * fields in a fixed order, no whitespace, ts with exactly three fractional
 * digits, price with two decimals. */
static uint8_t *write_canonical(uint8_t *s, const order *o) {
  s = PUT(s, "{\"ts\":\"");
  memcpy(s, o->ts.p, 19), s += 19;
  *s++ = '.';
  s = (uint8_t *)fmt_pad((char *)s, o->ms % 1000, 3);
  s = PUT(s, "Z\",\"order_id\":\"");
  s = put_str(s, o->order_id);
  s = PUT(s, "\",\"user_id\":");
  s = (uint8_t *)fmt_int((char *)s, o->user_id);
  s = PUT(s, ",\"sku\":\"");
  s = put_str(s, o->sku);
  s = PUT(s, "\",\"category\":\"");
  s = put_str(s, o->category);
  s = PUT(s, "\",\"qty\":");
  s = (uint8_t *)fmt_int((char *)s, o->qty);
  s = PUT(s, ",\"price\":");
  s = (uint8_t *)fmt_int((char *)s, o->price / 100);
  *s++ = '.';
  s = (uint8_t *)fmt_pad((char *)s, o->price % 100, 2);
  s = PUT(s, ",\"city\":\"");
  s = put_str(s, o->city);
  s = PUT(s, "\",\"status\":\"");
  s = put_str(s, o->status);
  return PUT(s, "\"}");
}

sluice_rc sluice_plugin_init(const sluice_config *cfg) {
  (void)cfg;
  return SLUICE_OK;
}

sluice_rc sluice_plugin_process(const sluice_event *e, uint32_t index) {
  (void)index;
  if (!parse_order(e->body.ptr, e->body.len, &o)) return sluice_reject(reason, reason_len);
  uint8_t *body = sluice_emit_reserve(o.ms * 1000000, o.category.p, o.category.n, canonical_cap(&o));
  sluice_emit_commit((size_t)(write_canonical(body, &o) - body));
  return SLUICE_OK;
}
