// mix: loops, recursion, a switch (br_table), function pointers
// (call_indirect), floats, 64-bit math and memcpy/memset, so that the guard's
// decoder meets a wide range of instructions. run(n) returns a checksum that
// must not change when the module is instrumented.
#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

typedef unsigned int u32;
typedef unsigned long long u64;

static u32 fib(u32 n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
static u32 twice(u32 x) { return 2 * x; }
static u32 inc(u32 x) { return x + 1; }
static u32 (*volatile ops[2])(u32) = {twice, inc};

static unsigned char a[4096], b[4096];

__attribute__((export_name("run"))) u64 run(u32 n) {
	u64 sum = fib(n % 20);
	for (u32 i = 0; i < n; i++) {
		switch (i % 5) {
		case 0: sum += i; break;
		case 1: sum ^= (u64)i << 7; break;
		case 2: sum = sum * 31 + 7; break;
		case 3: sum += (u64)(double)(i * 0.5f); break;
		default: sum += ops[i & 1](i);
		}
	}
	__builtin_memset(a, (int)n, sizeof a);
	__builtin_memcpy(b, a, sizeof a);
	for (u32 i = 0; i < sizeof b; i += 64) sum += b[i];
#ifdef __wasm_simd128__
	v128_t acc = wasm_i32x4_splat(0);
	for (u32 i = 0; i < sizeof b; i += 16) acc = wasm_i32x4_add(acc, wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_low_u8x16(wasm_v128_load(b + i))));
	sum += wasm_i32x4_extract_lane(acc, 0) + wasm_i32x4_extract_lane(acc, 3);
#endif
	return sum;
}

__attribute__((export_name("spin"))) void spin(void) {
	for (volatile u32 i = 0;; i++) {}
}
