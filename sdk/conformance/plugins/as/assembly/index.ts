// The AssemblyScript version of the Sluice conformance plugin: the behaviour
// described in sdk/conformance/README.md, written once per SDK and checked by
// the same suite (go test ./sdk/conformance/).
import {
  Plugin, Event, Output, Config, Bytes, register, OK, INFO,
  reject, fail, retry, log, now, random, counterAdd,
  stateGet, statePut, stateDelete, stateScan, bytesStartWith,
} from "../../../../assemblyscript/assembly/index";
export * from "../../../../assemblyscript/assembly/abi";

// Scratch memory for building bodies (unmanaged, reused).
let scratch: usize = 0;
let scratchCap: i32 = 0;
function reserve(n: i32): usize {
  if (n > scratchCap) {
    let c = scratchCap > 0 ? scratchCap : 4096;
    while (c < n) c <<= 1;
    scratch = scratch == 0 ? heap.alloc(c) : heap.realloc(scratch, c);
    scratchCap = c;
  }
  return scratch;
}

function indexOfByte(ptr: usize, len: i32, b: u8): i32 {
  for (let i = 0; i < len; i++) if (load<u8>(ptr + i) == b) return i;
  return -1;
}

function parseInt(ptr: usize, len: i32): i64 {
  if (len == 0) return -1;
  let n: i64 = 0;
  for (let i = 0; i < len; i++) {
    const c = load<u8>(ptr + i);
    if (c < 48 || c > 57) return -1;
    n = n * 10 + (c - 48);
  }
  return n;
}

function str(ptr: usize, len: i32): string {
  return String.UTF8.decodeUnsafe(ptr, len);
}

let scanOut: Output | null = null;
let scanTime: i64 = 0;

class Conformance extends Plugin {
  prefix: string = "";
  prefixPtr: usize = 0;
  prefixLen: i32 = 0;
  echoed: i64 = 0;
  total: i64 = 0;
  next: i64 = 0;
  written: i64 = 0;

  init(cfg: Config): i32 {
    if (cfg.get("fail_init") == "true") return fail("fail_init requested");
    this.prefix = cfg.getString("prefix", "");
    const buf = String.UTF8.encode(this.prefix);
    this.prefixLen = buf.byteLength;
    this.prefixPtr = heap.alloc(this.prefixLen);
    memory.copy(this.prefixPtr, changetype<usize>(buf), this.prefixLen);
    this.total = cfg.getInt("events", 0);
    return OK;
  }

  process(e: Event, out: Output, index: i32): i32 {
    const b = e.bodyPtr;
    const n = e.bodyLen;
    if (e.bodyStartsWith("reject:")) return reject(str(b + 7, n - 7));
    if (e.bodyStartsWith("fail:")) return fail(str(b + 5, n - 5));
    if (e.bodyStartsWith("retry:")) return retry(str(b + 6, n - 6));
    if (e.bodyStartsWith("panic:")) return fail("panic: " + str(b + 6, n - 6));
    if (e.bodyStartsWith("put:")) {
      const eq = indexOfByte(b + 4, n - 4, 61);
      const kl = eq < 0 ? n - 4 : eq;
      const vp = eq < 0 ? b + n : b + 4 + eq + 1;
      const vl = eq < 0 ? 0 : n - 4 - eq - 1;
      if (!statePut(b + 4, kl, vp, vl)) return fail("state_put refused");
      return OK;
    }
    if (e.bodyStartsWith("big:")) {
      const eq = indexOfByte(b + 4, n - 4, 61);
      if (eq < 0) return reject("big: bad size");
      const size = parseInt(b + 4 + eq + 1, n - 4 - eq - 1);
      if (size < 0) return reject("big: bad size");
      const v = reserve(<i32>size);
      for (let i = 0; i < <i32>size; i++) store<u8>(v + i, 97 + (i % 26));
      if (!statePut(b + 4, eq, v, <i32>size)) return fail("state_put refused");
      return OK;
    }
    if (e.bodyStartsWith("get:")) {
      const v = new Bytes();
      if (!stateGet(b + 4, n - 4, v)) return reject("no state for " + str(b + 4, n - 4));
      out.emit(e.time, b + 4, n - 4, v.ptr, v.len);
      return OK;
    }
    if (e.bodyStartsWith("del:")) {
      stateDelete(b + 4, n - 4);
      return OK;
    }
    if (e.bodyStartsWith("scan:")) {
      scanOut = out;
      scanTime = e.time;
      const ok = stateScan(b + 5, n - 5, (k: Bytes, v: Bytes): bool => {
        changetype<Output>(scanOut).emit(scanTime, k.ptr, k.len, v.ptr, v.len);
        return true;
      });
      if (!ok) return fail("state_scan failed");
      return OK;
    }
    if (e.bodyStartsWith("log:")) {
      log(INFO, str(b + 4, n - 4));
      return OK;
    }
    if (e.bodyStartsWith("count:")) {
      counterAdd(str(b + 6, n - 6), 1);
      return OK;
    }
    if (n == 3 && e.bodyStartsWith("now")) {
      out.emitString(e.time, e.keyString(), now().toString());
      return OK;
    }
    if (e.bodyStartsWith("random:")) {
      const size = parseInt(b + 7, n - 7);
      if (size < 0) return reject("random: bad size");
      const dst = out.reserve(e.time, e.keyPtr, e.keyLen, <i32>size);
      random(dst, <i32>size);
      out.commit(<i32>size);
      return OK;
    }
    // Echo: prefix + body, same time, key and headers, plus one header.
    const dst = out.reserve(e.time, e.keyPtr, e.keyLen, this.prefixLen + n);
    memory.copy(dst, this.prefixPtr, this.prefixLen);
    memory.copy(dst + this.prefixLen, b, n);
    out.commit(this.prefixLen + n);
    out.copyHeaders(e);
    out.addHeader("conformance", "1");
    this.echoed++;
    return OK;
  }

  tick(nowNs: i64, out: Output): i32 {
    if (this.echoed == 0) return OK;
    out.emitString(nowNs, "tick", this.echoed.toString());
    this.echoed = 0;
    return OK;
  }

  open(resumePtr: usize, resumeLen: i32): i32 {
    this.next = 0;
    if (resumeLen == 0) return OK;
    const n = parseInt(resumePtr, resumeLen);
    if (n < 0) return fail("bad position");
    this.next = n;
    return OK;
  }

  poll(max: i32, out: Output): i32 {
    for (let n = 0; n < max && this.next < this.total; n++) {
      out.emitString(this.next, "", "event " + this.next.toString());
      this.next++;
    }
    out.setPositionString(this.next.toString());
    return OK;
  }

  // Stores each accepted body in state under sink/<n>, n counting from 0
  // in zero-padded decimal (8 digits).
  write(e: Event, index: i32): i32 {
    const b = e.bodyPtr;
    const n = e.bodyLen;
    if (e.bodyStartsWith("reject:")) return reject(str(b + 7, n - 7));
    if (e.bodyStartsWith("fail:")) return fail(str(b + 5, n - 5));
    if (e.bodyStartsWith("retry:")) return retry(str(b + 6, n - 6));
    let num = this.written.toString();
    while (num.length < 8) num = "0" + num;
    this.written++;
    const key = String.UTF8.encode("sink/" + num);
    if (!statePut(changetype<usize>(key), key.byteLength, b, n)) return fail("state_put refused");
    return OK;
  }
}

register(new Conformance());
