/* The C version of the conformance suite's HTTP sink
 * (sdk/conformance/README.md): it posts each batch's bodies, one per line. */
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static sluice_bytes url;
static uint8_t *body;
static size_t body_len, body_cap;

sluice_rc sluice_plugin_init(const sluice_config *cfg) {
  if (!sluice_config_get(cfg, "url", &url)) url.len = 0;
  return SLUICE_OK;
}

sluice_rc sluice_plugin_write(const sluice_event *e, uint32_t index) {
  (void)index;
  size_t need = body_len + e->body.len + 1;
  if (need > body_cap) {
    size_t c = body_cap ? body_cap : 4096;
    while (c < need) c *= 2;
    body = realloc(body, c);
    if (!body) __builtin_trap();
    body_cap = c;
  }
  memcpy(body + body_len, e->body.ptr, e->body.len);
  body_len += e->body.len;
  body[body_len++] = '\n';
  return SLUICE_OK;
}

sluice_rc sluice_plugin_flush(void) {
  size_t n = body_len;
  body_len = 0;
  sluice_http_header ct = {{(const uint8_t *)"Content-Type", 12}, {(const uint8_t *)"text/plain", 10}};
  sluice_http_request req = {
      .method = {(const uint8_t *)"POST", 4},
      .url = url,
      .headers = &ct,
      .n_headers = 1,
      .body = {body, (uint32_t)n},
  };
  sluice_http_response resp;
  if (!sluice_http(&req, &resp)) return sluice_fail(resp.error.ptr, resp.error.len);
  if (resp.status >= 300) {
    char msg[32] = "http status ";
    size_t len = 12;
    char digits[12];
    int k = 0;
    uint32_t s = resp.status;
    do digits[k++] = (char)('0' + s % 10), s /= 10; while (s);
    while (k) msg[len++] = digits[--k];
    return resp.status >= 500 ? sluice_retry(msg, len) : sluice_fail(msg, len);
  }
  return SLUICE_OK;
}
