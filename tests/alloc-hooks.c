/* The interposed allocator of alloc-hooks.h. */
#define _GNU_SOURCE /* dladdr, malloc_usable_size, memalign, valloc, pvalloc */
#include "alloc-hooks.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MHA_TEST_NO_ALLOC_HOOKS

/* glibc's allocator under its internal names (exported, GLIBC_2.2.5). */
extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* ptr, size_t size);
extern void __libc_free(void* ptr);
extern void* __libc_memalign(size_t alignment, size_t size);
extern void* __libc_valloc(size_t size);
extern void* __libc_pvalloc(size_t size);

static atomic_long hook_attempts;
static atomic_long hook_fail_at; /* 0: no failure armed */
static atomic_int hook_did_fail;
static const void* _Atomic hook_failed_site;
static atomic_long hook_live;
static atomic_size_t hook_bytes;
static atomic_size_t hook_peak;

/* Counts one attempt; 1 if it is the one that must fail. */
static int hook_inject(const void* site) {
  const long n = atomic_fetch_add(&hook_attempts, 1) + 1;
  const long at = atomic_load(&hook_fail_at);
  if (at <= 0 || n != at) return 0;
  atomic_store(&hook_failed_site, site);
  atomic_store(&hook_did_fail, 1);
  return 1;
}

static void hook_add_bytes(size_t n) {
  const size_t now = atomic_fetch_add(&hook_bytes, n) + n;
  size_t peak = atomic_load(&hook_peak);
  while (now > peak && !atomic_compare_exchange_weak(&hook_peak, &peak, now)) {
  }
}

static void* hook_track(void* p) {
  if (p != NULL) {
    atomic_fetch_add(&hook_live, 1);
    hook_add_bytes(malloc_usable_size(p));
  }
  return p;
}

static void hook_untrack(void* p) {
  if (p != NULL) {
    atomic_fetch_sub(&hook_live, 1);
    atomic_fetch_sub(&hook_bytes, malloc_usable_size(p));
  }
}

#define HOOK_SITE() __builtin_extract_return_addr(__builtin_return_address(0))

void* malloc(size_t size) {
  if (hook_inject(HOOK_SITE())) {
    errno = ENOMEM;
    return NULL;
  }
  return hook_track(__libc_malloc(size));
}

void* calloc(size_t count, size_t size) {
  if (hook_inject(HOOK_SITE())) {
    errno = ENOMEM;
    return NULL;
  }
  return hook_track(__libc_calloc(count, size));
}

void* realloc(void* ptr, size_t size) {
  if (ptr == NULL) {
    if (hook_inject(HOOK_SITE())) {
      errno = ENOMEM;
      return NULL;
    }
    return hook_track(__libc_realloc(NULL, size));
  }
  if (size == 0) { /* glibc frees ptr and returns NULL */
    hook_untrack(ptr);
    return __libc_realloc(ptr, 0);
  }
  if (hook_inject(HOOK_SITE())) { /* ptr stays valid, as after a real failure */
    errno = ENOMEM;
    return NULL;
  }
  const size_t old = malloc_usable_size(ptr);
  void* p = __libc_realloc(ptr, size);
  if (p != NULL) {
    atomic_fetch_sub(&hook_bytes, old);
    hook_add_bytes(malloc_usable_size(p));
  }
  return p;
}

void free(void* ptr) {
  hook_untrack(ptr);
  __libc_free(ptr);
}

static int hook_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void* memalign(size_t alignment, size_t size) {
  if (hook_inject(HOOK_SITE())) {
    errno = ENOMEM;
    return NULL;
  }
  return hook_track(__libc_memalign(alignment, size));
}

void* aligned_alloc(size_t alignment, size_t size) {
  if (!hook_power_of_two(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  if (hook_inject(HOOK_SITE())) {
    errno = ENOMEM;
    return NULL;
  }
  return hook_track(__libc_memalign(alignment, size));
}

int posix_memalign(void** out, size_t alignment, size_t size) {
  if (!hook_power_of_two(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  if (hook_inject(HOOK_SITE())) return ENOMEM;
  void* p = hook_track(__libc_memalign(alignment, size));
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t size) {
  if (hook_inject(HOOK_SITE())) {
    errno = ENOMEM;
    return NULL;
  }
  return hook_track(__libc_valloc(size));
}

void* pvalloc(size_t size) {
  if (hook_inject(HOOK_SITE())) {
    errno = ENOMEM;
    return NULL;
  }
  return hook_track(__libc_pvalloc(size));
}

/* Whether the definitions above are the ones called: a tool that replaces
 * malloc in every object, the executable included (valgrind), bypasses them. */
int alloc_hooks_available(void) {
  static atomic_int state = -1;
  int s = atomic_load(&state);
  if (s < 0) {
    void* (*volatile allocate)(size_t) = malloc; /* a real call, not elided */
    alloc_hooks_fail_at(1);
    void* p = allocate(16);
    s = p == NULL && alloc_hooks_fired(NULL);
    alloc_hooks_fail_at(0);
    free(p);
    atomic_store(&state, s);
  }
  return s;
}

void alloc_hooks_fail_at(long n) {
  atomic_store(&hook_fail_at, 0);
  atomic_store(&hook_did_fail, 0);
  atomic_store(&hook_failed_site, NULL);
  atomic_store(&hook_attempts, 0);
  atomic_store(&hook_fail_at, n);
}

long alloc_hooks_attempts(void) { return atomic_load(&hook_attempts); }

int alloc_hooks_fired(const void** site) {
  if (site != NULL) *site = atomic_load(&hook_failed_site);
  return atomic_load(&hook_did_fail);
}

long alloc_hooks_live(void) { return atomic_load(&hook_live); }

size_t alloc_hooks_bytes(void) { return atomic_load(&hook_bytes); }

size_t alloc_hooks_peak(void) { return atomic_load(&hook_peak); }

size_t alloc_hooks_peak_reset(void) {
  const size_t now = atomic_load(&hook_bytes);
  atomic_store(&hook_peak, now);
  return now;
}

#else /* MHA_TEST_NO_ALLOC_HOOKS: a sanitizer build, which owns malloc */

int alloc_hooks_available(void) { return 0; }
void alloc_hooks_fail_at(long n) { (void)n; }
long alloc_hooks_attempts(void) { return 0; }
int alloc_hooks_fired(const void** site) {
  if (site != NULL) *site = NULL;
  return 0;
}
long alloc_hooks_live(void) { return 0; }
size_t alloc_hooks_bytes(void) { return 0; }
size_t alloc_hooks_peak(void) { return 0; }
size_t alloc_hooks_peak_reset(void) { return 0; }

#endif

int alloc_hooks_site_in_executable(const void* site) {
  Dl_info here, there;
  if (dladdr((const void*)&alloc_hooks_site_in_executable, &here) == 0) return 0;
  if (site == NULL || dladdr(site, &there) == 0) return 0;
  return here.dli_fbase == there.dli_fbase;
}

void alloc_hooks_site_name(const void* site, char* buf, size_t size) {
  Dl_info info;
  if (site == NULL || dladdr(site, &info) == 0 || info.dli_fname == NULL) {
    snprintf(buf, size, "%p", site);
    return;
  }
  const char* object = strrchr(info.dli_fname, '/');
  object = object != NULL ? object + 1 : info.dli_fname;
  if (info.dli_sname != NULL) {
    snprintf(buf, size, "%s: %s+0x%zx", object, info.dli_sname,
             (size_t)((uintptr_t)site - (uintptr_t)info.dli_saddr));
  } else {
    snprintf(buf, size, "%s+0x%zx", object,
             (size_t)((uintptr_t)site - (uintptr_t)info.dli_fbase));
  }
}
