// The AssemblyScript SDK for Sluice WASM plugins (sdk/ABI.md, version 1).
//
// A plugin extends Plugin, overrides the methods of its kind and calls
// register() at top level; its entry file also re-exports the ABI:
//
//   import { Plugin, Event, Output, register, OK } from "<sdk>/assembly";
//   export * from "<sdk>/assembly/abi";
//   class Upper extends Plugin {
//     process(e: Event, out: Output, index: i32): i32 { out.forward(e); return OK; }
//   }
//   register(new Upper());
//
// Per-event methods return OK, or the value of reject(reason) (this event is
// dead-lettered), fail(message) (the whole call fails) or retry(message)
// (transient; the host retries the batch later).
//
// Nothing here allocates per event unless the plugin asks for strings: the
// input, output and reject buffers are unmanaged memory (heap.alloc) that
// grows to the largest size seen, and one Event object is reused. Event
// pointers are valid only during the method that received them.

import { LE, grow, Buf } from "./internal";

export const OK: i32 = 0;
export const REJECT: i32 = 1;
export const FAIL: i32 = 2;
export const RETRY: i32 = 3;

export const DEBUG: i32 = 0;
export const INFO: i32 = 1;
export const WARN: i32 = 2;
export const ERROR: i32 = 3;

// ---- outcomes -------------------------------------------------------------

/** @internal the reason or message of the last reject/fail/retry (UTF-8). */
export const message = new Buf();

function setMessage(s: string): void {
  message.len = 0;
  message.putRaw(s);
}

/** Rejects the current event with reason: `return reject("bad json")`. */
export function reject(reason: string): i32 {
  setMessage(reason);
  return REJECT;
}
/** Fails the whole call with message. */
export function fail(msg: string): i32 {
  setMessage(msg);
  return FAIL;
}
/** Asks the host to retry the whole batch later (a backend is down). */
export function retry(msg: string): i32 {
  setMessage(msg);
  return RETRY;
}

// ---- events -----------------------------------------------------------------

/** One input event. Pointers alias the input buffer. */
export class Event {
  time: i64 = 0;
  keyPtr: usize = 0;
  keyLen: i32 = 0;
  bodyPtr: usize = 0;
  bodyLen: i32 = 0;
  headerCount: i32 = 0;
  /** @internal */ headersPtr: usize = 0;
  /** @internal */ rawPtr: usize = 0;
  /** @internal */ rawLen: i32 = 0;

  /** The body decoded as UTF-8 (allocates). */
  bodyString(): string {
    return String.UTF8.decodeUnsafe(this.bodyPtr, this.bodyLen);
  }
  /** The key decoded as UTF-8 (allocates). */
  keyString(): string {
    return String.UTF8.decodeUnsafe(this.keyPtr, this.keyLen);
  }
  /** A copy of the body. */
  bodyBytes(): Uint8Array {
    const a = new Uint8Array(this.bodyLen);
    memory.copy(a.dataStart, this.bodyPtr, this.bodyLen);
    return a;
  }
  /** Whether the body starts with the ASCII/UTF-8 text prefix (no allocation for ASCII literals' bytes beyond a compare). */
  bodyStartsWith(prefix: string): bool {
    return bytesStartWith(this.bodyPtr, this.bodyLen, prefix);
  }
  /** The value of the first header called name, or null. */
  header(name: string): string | null {
    let p = this.headersPtr;
    for (let i = 0; i < this.headerCount; i++) {
      const nl = load<u32>(p);
      const np = p + 4;
      p = np + nl;
      const vl = load<u32>(p);
      const vp = p + 4;
      p = vp + vl;
      if (bytesEqualString(np, nl, name)) return String.UTF8.decodeUnsafe(vp, vl);
    }
    return null;
  }
}

/** Whether the bytes at (ptr, len) start with the UTF-8 encoding of an ASCII string s. */
export function bytesStartWith(ptr: usize, len: i32, s: string): bool {
  const n = s.length;
  if (n > len) return false;
  for (let i = 0; i < n; i++) {
    if (<i32>load<u8>(ptr + i) != s.charCodeAt(i)) return false;
  }
  return true;
}

/** Whether the bytes at (ptr, len) equal the ASCII string s. */
export function bytesEqualString(ptr: usize, len: u32, s: string): bool {
  return <u32>s.length == len && bytesStartWith(ptr, len, s);
}

// ---- output -------------------------------------------------------------------

const HEADROOM: i32 = 256;

/** The events a call emits, encoded straight into the result buffer. */
export class Output {
  /** @internal */ buf: Buf = new Buf();
  /** @internal */ count: u32 = 0;
  /** @internal */ lastHdrAt: i32 = -1;
  /** @internal */ position: Buf = new Buf();
  /** @internal */ reservedAt: i32 = 0;

  /** @internal */ reset(): void {
    this.buf.len = 0;
    this.buf.ensure(HEADROOM + 4);
    this.buf.len = HEADROOM + 4;
    this.count = 0;
    this.lastHdrAt = -1;
    this.position.len = 0;
  }

  /** Number of events emitted so far in this call. */
  get length(): i32 {
    return <i32>this.count;
  }

  /** Emits an event from raw memory (copied). */
  emit(time: i64, keyPtr: usize, keyLen: i32, bodyPtr: usize, bodyLen: i32): void {
    const b = this.buf;
    b.ensure(20 + keyLen + bodyLen);
    let p = b.ptr + b.len;
    store<i64>(p, time);
    store<u32>(p, keyLen, 8);
    memory.copy(p + 12, keyPtr, keyLen);
    p += 12 + keyLen;
    store<u32>(p, bodyLen);
    memory.copy(p + 4, bodyPtr, bodyLen);
    p += 4 + bodyLen;
    store<u32>(p, 0);
    this.lastHdrAt = <i32>(p - b.ptr);
    b.len = this.lastHdrAt + 4;
    this.count++;
  }

  /** Emits an event whose key and body are strings (encoded as UTF-8 in place). */
  emitString(time: i64, key: string, body: string): void {
    const b = this.buf;
    b.ensure(20);
    store<i64>(b.ptr + b.len, time);
    b.len += 8;
    b.putString(key);
    b.putString(body);
    this.lastHdrAt = b.len;
    b.put32(0);
    this.count++;
  }

  /** Emits an event whose body the caller writes in place: returns a pointer
   * to bodyCap writable bytes; call commit(len) before any other output call. */
  reserve(time: i64, keyPtr: usize, keyLen: i32, bodyCap: i32): usize {
    const b = this.buf;
    b.ensure(20 + keyLen + bodyCap);
    let p = b.ptr + b.len;
    store<i64>(p, time);
    store<u32>(p, keyLen, 8);
    memory.copy(p + 12, keyPtr, keyLen);
    this.reservedAt = b.len + 12 + keyLen;
    return p + 12 + keyLen + 4;
  }

  /** Completes reserve() with the body's real length. */
  commit(bodyLen: i32): void {
    const b = this.buf;
    const at = this.reservedAt;
    store<u32>(b.ptr + at, bodyLen);
    this.lastHdrAt = at + 4 + bodyLen;
    store<u32>(b.ptr + this.lastHdrAt, 0);
    b.len = this.lastHdrAt + 4;
    this.count++;
  }

  /** Emits e unchanged, with one copy. */
  forward(e: Event): void {
    this.buf.put(e.rawPtr, e.rawLen);
    this.lastHdrAt = -1;
    this.count++;
  }

  /** Adds a header to the event emitted last. */
  addHeader(name: string, value: string): void {
    this.bump(1);
    this.buf.putString(name);
    this.buf.putString(value);
  }

  /** Adds a header from raw memory to the event emitted last. */
  addHeaderBytes(name: string, valuePtr: usize, valueLen: i32): void {
    this.bump(1);
    this.buf.putString(name);
    this.buf.putBytes(valuePtr, valueLen);
  }

  /** Adds every header of e to the event emitted last. */
  copyHeaders(e: Event): void {
    if (e.headerCount == 0) return;
    this.bump(e.headerCount);
    this.buf.put(e.headersPtr, <i32>(e.rawPtr + e.rawLen - e.headersPtr));
  }

  /** Sources: the position after the events of this poll. */
  setPosition(ptr: usize, len: i32): void {
    this.position.len = 0;
    this.position.put(ptr, len);
  }
  setPositionString(pos: string): void {
    this.position.len = 0;
    this.position.putRaw(pos);
  }

  private bump(n: i32): void {
    assert(this.lastHdrAt >= 0, "Output: a header before any emit");
    const at = this.buf.ptr + this.lastHdrAt;
    store<u32>(at, load<u32>(at) + n);
  }
}

// ---- config -------------------------------------------------------------------

/** The plugin's TOML table, flattened (sdk/ABI.md §4). */
export class Config {
  /** @internal */ data: usize = 0;
  /** @internal */ offsets: StaticArray<u32> = new StaticArray<u32>(0); // keyPtr keyLen valPtr valLen per entry
  /** @internal */ n: i32 = 0;

  get count(): i32 {
    return this.n;
  }
  key(i: i32): string {
    return String.UTF8.decodeUnsafe(this.offsets[4 * i], this.offsets[4 * i + 1]);
  }
  valueAt(i: i32): string {
    return String.UTF8.decodeUnsafe(this.offsets[4 * i + 2], this.offsets[4 * i + 3]);
  }
  /** The value of key, or null when absent. "" is the whole table as JSON. */
  get(key: string): string | null {
    for (let i = 0; i < this.n; i++) {
      if (bytesEqualString(this.offsets[4 * i], this.offsets[4 * i + 1], key)) return this.valueAt(i);
    }
    return null;
  }
  getString(key: string, def: string): string {
    const v = this.get(key);
    return v === null ? def : v;
  }
  /** The integer value of key; def when absent; throws (aborts) when not an integer. */
  getInt(key: string, def: i64): i64 {
    const v = this.get(key);
    if (v === null) return def;
    const s = <string>v;
    let neg = false;
    let i = 0;
    if (s.length > 0 && (s.charCodeAt(0) == 45 || s.charCodeAt(0) == 43)) {
      neg = s.charCodeAt(0) == 45;
      i = 1;
    }
    if (i == s.length) throw new Error("config " + key + ": '" + s + "' is not an integer");
    let n: i64 = 0;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) throw new Error("config " + key + ": '" + s + "' is not an integer");
      n = n * 10 + (c - 48);
    }
    return neg ? -n : n;
  }
  getBool(key: string, def: bool): bool {
    const v = this.get(key);
    if (v === null) return def;
    if (v == "true") return true;
    if (v == "false") return false;
    throw new Error("config " + key + ": '" + <string>v + "' is not true or false");
  }
}

// ---- the plugin ------------------------------------------------------------------

/** Base class of every plugin; override the methods of its kind. */
export abstract class Plugin {
  /** Receives the config once; return fail(msg) to refuse to load. */
  init(cfg: Config): i32 {
    return OK;
  }
  /** Bolt: one input event; emit into out. */
  process(e: Event, out: Output, index: i32): i32 {
    return fail("plugin has no process method: it is not a bolt");
  }
  /** Bolt, optional: periodic tick with unix nanoseconds. */
  tick(nowNs: i64, out: Output): i32 {
    return OK;
  }
  /** Source: resume right after position resumePtr/resumeLen (len 0: fresh start). */
  open(resumePtr: usize, resumeLen: i32): i32 {
    return fail("plugin has no open method: it is not a source");
  }
  /** Source: emit up to max events and out.setPosition(...) after them. */
  poll(max: i32, out: Output): i32 {
    return fail("plugin has no poll method: it is not a source");
  }
  /** Source: the host made position durable. */
  ack(posPtr: usize, posLen: i32): i32 {
    return OK;
  }
  /** Sink: one event of the batch being written. */
  write(e: Event, index: i32): i32 {
    return fail("plugin has no write method: it is not a sink");
  }
  /** Sink or bolt, optional: after the last write or process of a batch. */
  flush(): i32 {
    return OK;
  }
}

/** @internal */ export let registered: Plugin | null = null;

/** Installs p as this module's plugin; call once at top level. */
export function register(p: Plugin): void {
  assert(registered === null, "register called twice");
  registered = p;
}

// ---- host functions (each needs its capability granted in config) ------------------

// @ts-ignore: decorator
@external("sluice_v1", "log") declare function _log(level: i32, ptr: usize, len: i32): void;
// @ts-ignore: decorator
@external("sluice_v1", "now") declare function _now(): i64;
// @ts-ignore: decorator
@external("sluice_v1", "random") declare function _random(ptr: usize, len: i32): void;
// @ts-ignore: decorator
@external("sluice_v1", "counter_add") declare function _counter_add(ptr: usize, len: i32, delta: i64): void;
// @ts-ignore: decorator
@external("sluice_v1", "state_get") declare function _state_get(kp: usize, kl: i32, bp: usize, bc: i32): i32;
// @ts-ignore: decorator
@external("sluice_v1", "state_put") declare function _state_put(kp: usize, kl: i32, vp: usize, vl: i32): i32;
// @ts-ignore: decorator
@external("sluice_v1", "state_delete") declare function _state_delete(kp: usize, kl: i32): i32;
// @ts-ignore: decorator
@external("sluice_v1", "state_scan") declare function _state_scan(pp: usize, pl: i32, bp: usize, bc: i32): i32;
// @ts-ignore: decorator
@external("sluice_v1", "http_request") declare function _http_request(rp: usize, rl: i32, bp: usize, bc: i32): i32;
// @ts-ignore: decorator
@external("sluice_v1", "take_result") declare function _take_result(bp: usize, bc: i32): i32;

const scratch = new Buf(); // strings encoded for host calls
const result = new Buf(); // answers of host functions (sdk/ABI.md §6.1)

/** Writes msg to the agent log. Capability "log". */
export function log(level: i32, msg: string): void {
  scratch.len = 0;
  scratch.putRaw(msg);
  _log(level, scratch.ptr, scratch.len);
}
/** Unix nanoseconds. Capability "clock". */
export function now(): i64 {
  return _now();
}
/** Fills (ptr, len) with cryptographically random bytes. Capability "random". */
export function random(ptr: usize, len: i32): void {
  _random(ptr, len);
}
/** Adds delta to a plugin counter. Capability "metrics". */
export function counterAdd(name: string, delta: i64): void {
  scratch.len = 0;
  scratch.putRaw(name);
  _counter_add(scratch.ptr, scratch.len, delta);
}

/** A view of bytes in an SDK buffer, valid until the next state or http call. */
export class Bytes {
  ptr: usize = 0;
  len: i32 = 0;
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, this.len);
  }
}

function fetch(n: i32, out: Bytes): bool {
  if (n < 0) return false;
  if (n > result.cap) {
    result.len = 0;
    result.ensure(n);
    const m = _take_result(result.ptr, result.cap);
    if (m != n) unreachable(); // the host broke sdk/ABI.md §6.1
  }
  out.ptr = result.ptr;
  out.len = n;
  return true;
}

/** Looks key up; fills value and returns true when present. Capability "state". */
export function stateGet(keyPtr: usize, keyLen: i32, value: Bytes): bool {
  result.ensure(4096);
  return fetch(_state_get(keyPtr, keyLen, result.ptr, result.cap), value);
}
/** Stores value under key; false when the host refuses (state quota). */
export function statePut(keyPtr: usize, keyLen: i32, valPtr: usize, valLen: i32): bool {
  return _state_put(keyPtr, keyLen, valPtr, valLen) == 0;
}
export function stateDelete(keyPtr: usize, keyLen: i32): void {
  _state_delete(keyPtr, keyLen);
}

/** Calls fn(key, value) for every key with the prefix, ascending, until fn returns false. */
export function stateScan(prefixPtr: usize, prefixLen: i32, fn: (key: Bytes, value: Bytes) => bool): bool {
  result.ensure(4096);
  const all = new Bytes();
  if (!fetch(_state_scan(prefixPtr, prefixLen, result.ptr, result.cap), all)) return false;
  let p = all.ptr;
  const end = all.ptr + all.len;
  if (all.len < 4) return false;
  const n = load<u32>(p);
  p += 4;
  const k = new Bytes();
  const v = new Bytes();
  for (let i: u32 = 0; i < n; i++) {
    if (end - p < 4) return false;
    k.len = load<u32>(p);
    k.ptr = p + 4;
    p += 4 + k.len;
    if (p > end || end - p < 4) return false;
    v.len = load<u32>(p);
    v.ptr = p + 4;
    p += 4 + v.len;
    if (p > end) return false;
    if (!fn(k, v)) break;
  }
  return true;
}

/** An HTTP response; body aliases an SDK buffer until the next state or http call. */
export class HTTPResponse {
  status: i32 = 0;
  headerNames: string[] = [];
  headerValues: string[] = [];
  body: Bytes = new Bytes();
  error: string | null = null;
}

const request = new Buf();

/** Performs an HTTP request through the host (capability "http", sources and
 * sinks only); the URL's host:port must be granted. */
export function httpRequest(method: string, url: string, headerNames: string[], headerValues: string[], bodyPtr: usize, bodyLen: i32): HTTPResponse {
  request.len = 0;
  request.putString(method);
  request.putString(url);
  request.put32(headerNames.length);
  for (let i = 0; i < headerNames.length; i++) {
    request.putString(headerNames[i]);
    request.putString(headerValues[i]);
  }
  request.putBytes(bodyPtr, bodyLen);
  result.ensure(4096);
  const resp = new HTTPResponse();
  const n = _http_request(request.ptr, request.len, result.ptr, result.cap);
  if (n < 0) {
    const m = _take_result(result.ptr, result.cap);
    resp.error = m > 0 && m <= result.cap ? String.UTF8.decodeUnsafe(result.ptr, m) : "refused";
    return resp;
  }
  const all = new Bytes();
  fetch(n, all);
  let p = all.ptr;
  const end = p + all.len;
  if (all.len < 8) {
    resp.error = "malformed http response from the host";
    return resp;
  }
  resp.status = load<u32>(p);
  const nh = load<u32>(p, 4);
  p += 8;
  for (let i: u32 = 0; i < nh; i++) {
    if (end - p < 4) break;
    const nl = load<u32>(p);
    const np = p + 4;
    p = np + nl;
    if (p > end || end - p < 4) break;
    const vl = load<u32>(p);
    const vp = p + 4;
    p = vp + vl;
    if (p > end) break;
    resp.headerNames.push(String.UTF8.decodeUnsafe(np, nl));
    resp.headerValues.push(String.UTF8.decodeUnsafe(vp, vl));
  }
  if (p > end || end - p < 4) {
    resp.error = "malformed http response from the host";
    return resp;
  }
  resp.body.len = load<u32>(p);
  resp.body.ptr = p + 4;
  if (resp.body.ptr + resp.body.len != end) resp.error = "malformed http response from the host";
  return resp;
}
