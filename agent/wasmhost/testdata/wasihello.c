// wasihello: a wasi-libc reactor that prints to stdout and stderr during
// init and echoes nothing; shows WASI output reaching the agent log.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((export_name("sluice_abi_version"))) int sluice_abi_version(void) { return 1; }
__attribute__((export_name("sluice_buffer"))) void *sluice_buffer(int n) { return malloc(n ? n : 1); }
__attribute__((export_name("sluice_init"))) long long sluice_init(const char *cfg, int len) {
	printf("hello from init, %d config bytes\n", len);
	fflush(stdout);
	fprintf(stderr, "partial ");
	fprintf(stderr, "line\n");
	return 0;
}
__attribute__((export_name("sluice_process"))) long long sluice_process(const char *in, int len) { return 0; }
