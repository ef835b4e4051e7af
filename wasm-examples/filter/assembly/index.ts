// filter (AssemblyScript): keeps only the orders whose "status" is "paid"
// (or the config value `status`), dropping the others. An event that is not
// a JSON object, or has no string "status" field, is rejected.
//
// It reads each line only up to its top-level "status" field and does not
// validate the rest: put order-parse in front of it for that.
import { Plugin, Event, Output, Config, register, reject, OK } from "../../../sdk/assemblyscript/assembly/index";
export * from "../../../sdk/assemblyscript/assembly/abi";

const QUOTE: u8 = 0x22;
const BACKSLASH: u8 = 0x5c;

// Scan results below 0 are errors.
const ERR: i32 = -1;

function ws(p: usize, n: i32, i: i32): i32 {
  while (i < n) {
    const c = load<u8>(p + i);
    if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
    i++;
  }
  return i;
}

// endOfString returns the index just after the string whose opening quote is
// at i, or ERR.
function endOfString(p: usize, n: i32, i: i32): i32 {
  i++;
  while (i < n) {
    const c = load<u8>(p + i);
    if (c == QUOTE) return i + 1;
    if (c == BACKSLASH) {
      i += 2;
      continue;
    }
    if (c < 0x20) return ERR;
    i++;
  }
  return ERR;
}

// endOfValue returns the index just after the JSON value starting at i, or ERR.
function endOfValue(p: usize, n: i32, i: i32, depth: i32): i32 {
  if (i >= n || depth > 32) return ERR;
  const c = load<u8>(p + i);
  if (c == QUOTE) return endOfString(p, n, i);
  if (c == 0x7b || c == 0x5b) {
    // { or [: walk the members
    const close: u8 = c == 0x7b ? 0x7d : 0x5d;
    i = ws(p, n, i + 1);
    if (i < n && load<u8>(p + i) == close) return i + 1;
    while (true) {
      i = ws(p, n, i);
      if (c == 0x7b) {
        if (i >= n || load<u8>(p + i) != QUOTE) return ERR;
        i = endOfString(p, n, i);
        if (i < 0) return ERR;
        i = ws(p, n, i);
        if (i >= n || load<u8>(p + i) != 0x3a) return ERR;
        i = ws(p, n, i + 1);
      }
      i = endOfValue(p, n, i, depth + 1);
      if (i < 0) return ERR;
      i = ws(p, n, i);
      if (i >= n) return ERR;
      const d = load<u8>(p + i);
      if (d == close) return i + 1;
      if (d != 0x2c) return ERR;
      i++;
    }
  }
  // number, true, false, null
  const start = i;
  while (i < n) {
    const d = load<u8>(p + i);
    if ((d >= 0x30 && d <= 0x39) || (d >= 0x61 && d <= 0x7a) || d == 0x2d || d == 0x2b || d == 0x2e || d == 0x45) {
      i++;
      continue;
    }
    break;
  }
  return i == start ? ERR : i;
}

function isStatus(p: usize, len: i32): bool {
  // "status" as written, without the quotes
  return (
    len == 6 &&
    load<u8>(p) == 0x73 && load<u8>(p + 1) == 0x74 && load<u8>(p + 2) == 0x61 &&
    load<u8>(p + 3) == 0x74 && load<u8>(p + 4) == 0x75 && load<u8>(p + 5) == 0x73
  );
}

class Filter extends Plugin {
  want: ArrayBuffer = String.UTF8.encode("paid");

  init(cfg: Config): i32 {
    this.want = String.UTF8.encode(cfg.getString("status", "paid"));
    return OK;
  }

  process(e: Event, out: Output, index: i32): i32 {
    const p = e.bodyPtr;
    const n = e.bodyLen;
    let i = ws(p, n, 0);
    if (i >= n || load<u8>(p + i) != 0x7b) return reject("not a JSON object");
    i = ws(p, n, i + 1);
    if (i < n && load<u8>(p + i) == 0x7d) return reject("missing field status");
    while (true) {
      i = ws(p, n, i);
      if (i >= n || load<u8>(p + i) != QUOTE) return reject("not a JSON object");
      const nameStart = i + 1;
      i = endOfString(p, n, i);
      if (i < 0) return reject("not a JSON object");
      const nameLen = i - 1 - nameStart;
      i = ws(p, n, i);
      if (i >= n || load<u8>(p + i) != 0x3a) return reject("not a JSON object");
      i = ws(p, n, i + 1);
      if (isStatus(p + nameStart, nameLen)) {
        if (i >= n || load<u8>(p + i) != QUOTE) return reject("field status is not a string");
        const end = endOfString(p, n, i);
        if (end < 0) return reject("not a JSON object");
        const vLen = end - 1 - (i + 1);
        const want = this.want;
        if (vLen == want.byteLength && memory.compare(p + i + 1, changetype<usize>(want), vLen) == 0) {
          out.forward(e);
        }
        return OK;
      }
      i = endOfValue(p, n, i, 0);
      if (i < 0) return reject("not a JSON object");
      i = ws(p, n, i);
      if (i >= n) return reject("not a JSON object");
      const d = load<u8>(p + i);
      if (d == 0x7d) return reject("missing field status");
      if (d != 0x2c) return reject("not a JSON object");
      i++;
    }
    return OK;
  }
}

register(new Filter());
