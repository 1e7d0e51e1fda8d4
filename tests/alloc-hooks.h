/*
 * A counting, failure-injecting allocator interposed in a test executable.
 *
 * alloc-hooks.c defines malloc, calloc, realloc, free, aligned_alloc,
 * posix_memalign, memalign, valloc and pvalloc, forwarding to glibc's
 * __libc_* functions. A definition in the executable wins over libc's for
 * every caller in the process: libmha.a is linked into the executable, and
 * the shared libraries (the OpenMP runtime, libc itself) call malloc
 * through the PLT, so their allocations pass here too.
 *
 * Sanitizer builds compile the file with MHA_TEST_NO_ALLOC_HOOKS: ASan and
 * TSan own malloc there. Then nothing is interposed, alloc_hooks_available()
 * is 0 and every counter reads 0. Under valgrind, which replaces malloc in
 * the executable as well, the definitions are compiled but never called:
 * alloc_hooks_available() finds that out and is 0 too.
 */
#ifndef MHA_TESTS_ALLOC_HOOKS_H
#define MHA_TESTS_ALLOC_HOOKS_H

#include <stddef.h>

/* 1 if the allocator is interposed: not a sanitizer build, and no tool
 * (valgrind) replaces malloc in the executable too. Checked by making one
 * allocation fail. */
int alloc_hooks_available(void);

/* Restarts the attempt count at 0 and arms a failure: the n-th allocation
 * attempt from now (n >= 1) returns NULL (ENOMEM). n = 0 only restarts the
 * count. Counting is process-wide (every thread). */
void alloc_hooks_fail_at(long n);

/* Allocation attempts since the last alloc_hooks_fail_at(). */
long alloc_hooks_attempts(void);

/* 1 if the armed failure has happened; *site (if non-NULL) receives the
 * return address of the failed call, i.e. a point in its caller. */
int alloc_hooks_fired(const void** site);

/* Blocks allocated and not yet freed, and their usable bytes, counted from
 * the start of the process. */
long alloc_hooks_live(void);
size_t alloc_hooks_bytes(void);

/* The largest alloc_hooks_bytes() since the last reset; the reset sets it
 * to the current bytes and returns them. */
size_t alloc_hooks_peak(void);
size_t alloc_hooks_peak_reset(void);

/* 1 if the code address lies in the test executable itself (which holds
 * libmha.a), 0 if in a shared library (the OpenMP runtime, libc). */
int alloc_hooks_site_in_executable(const void* site);

/* "object: symbol+0xoffset" for a code address (the executable's own
 * symbols are named when it is linked with ENABLE_EXPORTS). */
void alloc_hooks_site_name(const void* site, char* buf, size_t size);

#endif
