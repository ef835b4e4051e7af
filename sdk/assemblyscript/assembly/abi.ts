// The ABI exports (sdk/ABI.md §2). A plugin's entry file re-exports them:
//
//   export * from "<sdk>/assembly/abi";
//
// They decode the host's batch, call the registered Plugin once per event and
// encode the result, reusing every buffer between calls.

import { Event, Output, Config, Plugin, registered, message, OK, REJECT, RETRY } from "./index";
import { Buf } from "./internal";

const STATUS_OK: u32 = 0;
const STATUS_ERROR: u32 = 1;
const STATUS_RETRY: u32 = 2;
const HEADROOM: i32 = 256;

const input = new Buf();
const out = new Output();
const rejects = new Buf();
const final = new Buf();
const ev = new Event();
const config = new Config();
let rejectCount: u32 = 0;
let ready = false;
let opened = false;

function plugin(): Plugin {
  return changetype<Plugin>(registered);
}

function resetAll(): void {
  out.reset();
  rejects.len = 0;
  rejectCount = 0;
}

// finish encodes the result and packs (ptr << 32) | len. A failed call
// drops its events and rejects: the host retries or dead-letters the batch.
function finish(status: u32): i64 {
  const b = out.buf;
  if (status != STATUS_OK) {
    b.len = HEADROOM + 4;
    out.count = 0;
    rejects.len = 0;
    rejectCount = 0;
    out.position.len = 0;
  } else {
    message.len = 0;
  }
  store<u32>(b.ptr + HEADROOM, out.count);
  b.put32(rejectCount);
  b.put(rejects.ptr, rejects.len);
  const pos = out.position;
  const hdr = 12 + message.len + pos.len;
  let res: usize;
  let len: i32;
  if (hdr <= HEADROOM) {
    res = b.ptr + HEADROOM - hdr;
    len = b.len - (HEADROOM - hdr);
  } else {
    len = hdr + b.len - HEADROOM;
    final.len = 0;
    final.ensure(len);
    memory.copy(final.ptr + hdr, b.ptr + HEADROOM, b.len - HEADROOM);
    res = final.ptr;
  }
  store<u32>(res, status);
  store<u32>(res, message.len, 4);
  memory.copy(res + 8, message.ptr, message.len);
  store<u32>(res + 8 + message.len, pos.len);
  memory.copy(res + 12 + message.len, pos.ptr, pos.len);
  return (<i64>res << 32) | <i64>len;
}

function failWith(msg: string): i64 {
  message.len = 0;
  message.putRaw(msg);
  return finish(STATUS_ERROR);
}

function rcResult(rc: i32): i64 {
  if (rc == OK) return finish(STATUS_OK);
  if (rc == RETRY) return finish(STATUS_RETRY);
  return finish(STATUS_ERROR); // FAIL, or a REJECT with no event to name
}

function checkInput(ptr: usize, len: i32): bool {
  return len == 0 || (len > 0 && ptr == input.ptr && len <= input.cap);
}

// decodeEvent reads one event at p (bounded by end) into ev; returns the
// offset after it, or 0 when it is malformed.
function decodeEvent(p: usize, end: usize): usize {
  const start = p;
  if (end - p < 20) return 0;
  ev.time = load<i64>(p);
  const kl = load<u32>(p, 8);
  p += 12;
  if (<usize>kl > end - p) return 0;
  ev.keyPtr = p;
  ev.keyLen = kl;
  p += kl;
  if (end - p < 4) return 0;
  const bl = load<u32>(p);
  p += 4;
  if (<usize>bl > end - p) return 0;
  ev.bodyPtr = p;
  ev.bodyLen = bl;
  p += bl;
  if (end - p < 4) return 0;
  const nh = load<u32>(p);
  p += 4;
  if (<u64>nh * 8 > <u64>(end - p)) return 0;
  ev.headersPtr = p;
  for (let j: u32 = 0; j < nh; j++) {
    if (end - p < 4) return 0;
    const nl = load<u32>(p);
    p += 4;
    if (<usize>nl > end - p) return 0;
    p += nl;
    if (end - p < 4) return 0;
    const vl = load<u32>(p);
    p += 4;
    if (<usize>vl > end - p) return 0;
    p += vl;
  }
  ev.headerCount = nh;
  ev.rawPtr = start;
  ev.rawLen = <i32>(p - start);
  return p;
}

function perEvent(ptr: usize, len: i32, sink: bool): i64 {
  resetAll();
  if (!checkInput(ptr, len)) return failWith("input region is not the buffer sluice_buffer returned");
  if (len < 4) return failWith("malformed batch: shorter than the 4-byte count");
  const n = load<u32>(ptr);
  if (<u64>n * 20 > <u64>(len - 4)) return failWith("malformed batch: count " + n.toString() + " cannot fit in " + len.toString() + " bytes");
  const p = plugin();
  let at = ptr + 4;
  const end = ptr + len;
  for (let i: u32 = 0; i < n; i++) {
    at = decodeEvent(at, end);
    if (at == 0) return failWith("malformed batch: event " + i.toString() + " is truncated or its lengths run past the end");
    const rc = sink ? p.write(ev, <i32>i) : p.process(ev, out, <i32>i);
    if (rc == OK) continue;
    if (rc == REJECT) {
      rejects.put32(i);
      rejects.putBytes(message.ptr, message.len); // empty when no reason was given
      rejectCount++;
      message.len = 0;
      continue;
    }
    return rcResult(rc);
  }
  if (at != end) return failWith("malformed batch: trailing bytes after the last event");
  // after every batch, bolts too (a bolt that aggregates per batch moves its
  // result into host state here, before the call ends)
  const rc = p.flush();
  if (rc != OK) return rcResult(rc);
  return finish(STATUS_OK);
}

export function sluice_abi_version(): i32 {
  return 1;
}

export function sluice_buffer(size: i32): usize {
  if (size < 0) return 0;
  if (size > input.cap || input.ptr == 0) {
    input.len = 0;
    input.ensure(size > 65536 ? size : 65536);
  }
  return input.ptr;
}

export function sluice_init(ptr: usize, len: i32): i64 {
  resetAll();
  if (!checkInput(ptr, len)) return failWith("input region is not the buffer sluice_buffer returned");
  if (registered === null) return failWith("no plugin registered: call register() at top level");
  if (len < 4) return failWith("malformed config: shorter than the 4-byte count");
  // Copy: the input buffer is reused by the next call.
  const data = heap.alloc(<usize>len);
  memory.copy(data, ptr, len);
  const n = load<u32>(data);
  if (<u64>n * 8 > <u64>(len - 4)) return failWith("malformed config: count cannot fit in its length");
  const offs = new StaticArray<u32>(<i32>n * 4);
  let p = data + 4;
  const end = data + len;
  for (let i: i32 = 0; i < <i32>n; i++) {
    for (let j = 0; j < 2; j++) {
      if (end - p < 4) return failWith("malformed config: an entry runs past the end");
      const l = load<u32>(p);
      p += 4;
      if (<usize>l > end - p) return failWith("malformed config: an entry runs past the end");
      offs[4 * i + 2 * j] = <u32>p;
      offs[4 * i + 2 * j + 1] = l;
      p += l;
    }
  }
  if (p != end) return failWith("malformed config: trailing bytes");
  config.data = data;
  config.offsets = offs;
  config.n = <i32>n;
  const rc = plugin().init(config);
  if (rc == OK) ready = true;
  return rcResult(rc);
}

export function sluice_process(ptr: usize, len: i32): i64 {
  if (!ready) {
    resetAll();
    return failWith("sluice_process called before a successful sluice_init");
  }
  return perEvent(ptr, len, false);
}

export function sluice_write(ptr: usize, len: i32): i64 {
  if (!ready) {
    resetAll();
    return failWith("sluice_write called before a successful sluice_init");
  }
  return perEvent(ptr, len, true);
}

export function sluice_tick(now: i64): i64 {
  resetAll();
  if (!ready) return failWith("sluice_tick called before a successful sluice_init");
  return rcResult(plugin().tick(now, out));
}

export function sluice_poll(max: i32): i64 {
  resetAll();
  if (!ready) return failWith("sluice_poll called before a successful sluice_init");
  const rc = plugin().poll(max < 0 ? 0 : max, out);
  if (rc == OK && out.count > <u32>max) return failWith("poll emitted more events than asked for");
  return rcResult(rc);
}

export function sluice_ack(ptr: usize, len: i32): i64 {
  resetAll();
  if (!ready) return failWith("sluice_ack called before a successful sluice_init");
  if (!checkInput(ptr, len)) return failWith("input region is not the buffer sluice_buffer returned");
  let rc: i32;
  if (!opened) {
    opened = true;
    rc = plugin().open(ptr, len);
  } else {
    rc = plugin().ack(ptr, len);
  }
  return rcResult(rc);
}
