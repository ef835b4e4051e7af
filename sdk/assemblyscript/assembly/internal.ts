// Growable unmanaged buffers shared by the SDK's files.

/** Little-endian is the only byte order wasm has; named for readers. */
export const LE: bool = true;

/** grow returns a capacity of at least need, doubling from cap. */
export function grow(cap: i32, need: i32): i32 {
  let c = cap > 0 ? cap : 4096;
  while (c < need) c <<= 1;
  return c;
}

/** A growable byte buffer in unmanaged memory (heap.alloc): the GC never
 * moves or frees it, so its pointer can be handed to the host. */
export class Buf {
  ptr: usize = 0;
  len: i32 = 0;
  cap: i32 = 0;

  ensure(n: i32): void {
    const need = this.len + n;
    if (need <= this.cap) return;
    const c = grow(this.cap, need);
    this.ptr = this.ptr == 0 ? heap.alloc(<usize>c) : heap.realloc(this.ptr, <usize>c);
    this.cap = c;
  }
  put(src: usize, n: i32): void {
    this.ensure(n);
    memory.copy(this.ptr + this.len, src, n);
    this.len += n;
  }
  put32(v: u32): void {
    this.ensure(4);
    store<u32>(this.ptr + this.len, v);
    this.len += 4;
  }
  /** len:u32 then the bytes. */
  putBytes(src: usize, n: i32): void {
    this.put32(n);
    this.put(src, n);
  }
  /** The UTF-8 encoding of s, without a length. */
  putRaw(s: string): void {
    const n = String.UTF8.byteLength(s);
    this.ensure(n);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.ptr + this.len);
    this.len += n;
  }
  /** len:u32 then the UTF-8 encoding of s. */
  putString(s: string): void {
    const n = String.UTF8.byteLength(s);
    this.ensure(4 + n);
    store<u32>(this.ptr + this.len, n);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.ptr + this.len + 4);
    this.len += 4 + n;
  }
}
