/*
 * sluice.h — the C SDK for Sluice WASM plugins (sdk/ABI.md, version 1).
 *
 * A plugin defines the hooks of its kind; the SDK (sluice.c) owns the batched
 * ABI underneath — buffers, batch framing, results, rejects — and calls the
 * hooks once per event. Hooks return a sluice_rc: SLUICE_OK, or the value of
 * sluice_reject()/sluice_fail()/sluice_retry(), which record the reason.
 *
 *   bolt:   sluice_plugin_process (per event), sluice_plugin_flush (optional,
 *           after each batch), sluice_plugin_tick (optional)
 *   source: sluice_plugin_open, sluice_plugin_poll, sluice_plugin_ack
 *   sink:   sluice_plugin_write (per event), sluice_plugin_flush (optional)
 *   every kind: sluice_plugin_init
 *
 * Hooks a plugin does not define fall back to weak defaults: init and the
 * optional ones succeed, the kind-specific ones fail with a message naming
 * the missing hook. One module may implement several kinds.
 *
 * Build (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 \
 *     -I sdk/c -o plugin.wasm plugin.c sdk/c/sluice.c
 *
 * Nothing here allocates per event: input, output, reject and host-result
 * buffers grow to the largest size seen and are reused. Event fields point
 * into the input buffer and are valid only during the hook that received
 * them. Binary throughout: every value is a pointer and a length.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A view of bytes owned by someone else (the SDK or the host). */
typedef struct sluice_bytes {
  const uint8_t *ptr;
  uint32_t len;
} sluice_bytes;

/* SLUICE_LIT("text") expands to a pointer and a length, for literals. */
#define SLUICE_LIT(s) (s), (sizeof(s) - 1)

/* ---- events ------------------------------------------------------------ */

typedef struct sluice_event {
  int64_t time;       /* unix nanoseconds */
  sluice_bytes key;   /* len 0: no key */
  sluice_bytes body;
  uint32_t n_headers;
  const uint8_t *headers_; /* internal: header region */
  sluice_bytes raw_;       /* internal: the whole encoded event */
} sluice_event;

/* Finds the first header called name; false when absent. */
bool sluice_event_header(const sluice_event *e, const void *name, size_t name_len, sluice_bytes *value);

/* Walks the headers: call with *pos = 0 until it returns false. */
bool sluice_event_next_header(const sluice_event *e, uint32_t *pos, const uint8_t **cursor,
                              sluice_bytes *name, sluice_bytes *value);

/* ---- outcomes of a hook ------------------------------------------------- */

typedef enum sluice_rc {
  SLUICE_OK = 0,
  SLUICE_REJECT = 1, /* this event goes to the dead-letter channel */
  SLUICE_FAIL = 2,   /* the whole call fails (the host retries, then dead-letters) */
  SLUICE_RETRY = 3,  /* transient: the host retries the same batch later */
} sluice_rc;

/* Record why, and return the matching code: `return sluice_reject(SLUICE_LIT("bad json"));` */
sluice_rc sluice_reject(const void *reason, size_t len);
sluice_rc sluice_fail(const void *message, size_t len);
sluice_rc sluice_retry(const void *message, size_t len);

/* ---- output ------------------------------------------------------------- */

/* Emits an event (copied). Headers can be added to it until the next emit. */
void sluice_emit(int64_t time, const void *key, size_t key_len, const void *body, size_t body_len);
/* Emits an event whose body the caller writes in place: returns a pointer to
 * body_cap writable bytes; then call sluice_emit_commit with the real length
 * (<= body_cap) before any other output call. */
uint8_t *sluice_emit_reserve(int64_t time, const void *key, size_t key_len, size_t body_cap);
void sluice_emit_commit(size_t body_len);
void sluice_add_header(const void *name, size_t name_len, const void *value, size_t value_len);
void sluice_copy_headers(const sluice_event *e);
/* Emits e unchanged, with one copy. */
void sluice_forward(const sluice_event *e);
/* Number of events emitted so far in this call. */
uint32_t sluice_emitted(void);
/* Sources: the position after the events of this poll (copied). */
void sluice_set_position(const void *pos, size_t len);

/* ---- config ------------------------------------------------------------- */

typedef struct sluice_config sluice_config;

/* Value of a flattened key ("window", "fields.price"); "" is the table as JSON. */
bool sluice_config_get(const sluice_config *cfg, const char *key, sluice_bytes *value);
/* 1 and *out set when present and an integer, 0 when absent, -1 when not an integer. */
int sluice_config_int(const sluice_config *cfg, const char *key, int64_t *out);
/* 1 and *out set when "true"/"false", 0 when absent, -1 otherwise. */
int sluice_config_bool(const sluice_config *cfg, const char *key, bool *out);
uint32_t sluice_config_count(const sluice_config *cfg);
void sluice_config_at(const sluice_config *cfg, uint32_t i, sluice_bytes *key, sluice_bytes *value);

/* ---- hooks the plugin defines ------------------------------------------- */

sluice_rc sluice_plugin_init(const sluice_config *cfg);
sluice_rc sluice_plugin_process(const sluice_event *e, uint32_t index);
sluice_rc sluice_plugin_tick(int64_t now_ns);
sluice_rc sluice_plugin_open(sluice_bytes resume); /* resume.len 0: fresh start */
sluice_rc sluice_plugin_poll(uint32_t max_events);
sluice_rc sluice_plugin_ack(sluice_bytes position);
sluice_rc sluice_plugin_write(const sluice_event *e, uint32_t index);
sluice_rc sluice_plugin_flush(void);

/* ---- host functions (each needs its capability granted in config) ------- */

enum { SLUICE_DEBUG = 0, SLUICE_INFO = 1, SLUICE_WARN = 2, SLUICE_ERROR = 3 };

void sluice_log(int level, const void *msg, size_t len);            /* log */
int64_t sluice_now(void);                                            /* clock */
void sluice_random(void *buf, size_t len);                           /* random */
void sluice_counter_add(const void *name, size_t len, int64_t delta); /* metrics */

/* state: values alias an SDK buffer valid until the next state or http call. */
bool sluice_state_get(const void *key, size_t key_len, sluice_bytes *value);
bool sluice_state_put(const void *key, size_t key_len, const void *value, size_t value_len);
void sluice_state_delete(const void *key, size_t key_len);
typedef bool (*sluice_scan_fn)(sluice_bytes key, sluice_bytes value, void *arg); /* false stops */
bool sluice_state_scan(const void *prefix, size_t prefix_len, sluice_scan_fn fn, void *arg);

/* http (sources and sinks): the URL's host:port must be granted. */
typedef struct sluice_http_header {
  sluice_bytes name, value;
} sluice_http_header;
typedef struct sluice_http_request {
  sluice_bytes method, url;
  const sluice_http_header *headers;
  uint32_t n_headers;
  sluice_bytes body;
} sluice_http_request;
typedef struct sluice_http_response {
  uint32_t status;
  uint32_t n_headers;
  const uint8_t *headers_; /* internal; walk with sluice_http_next_header */
  sluice_bytes body;       /* aliases an SDK buffer, like state values */
  sluice_bytes error;      /* set when the call returns false */
} sluice_http_response;
bool sluice_http(const sluice_http_request *req, sluice_http_response *resp);
bool sluice_http_next_header(const sluice_http_response *r, uint32_t *pos, const uint8_t **cursor,
                             sluice_bytes *name, sluice_bytes *value);

#ifdef __cplusplus
}
#endif
#endif
