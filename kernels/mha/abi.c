/*
 * The structs' growth rule (include/mha.h, "ABI"): a caller's struct is read
 * up to its struct_size into a zero-filled struct of this library's layout,
 * so fields appended after the caller's header read as 0, and fields this
 * library does not know must be 0.
 */
#include <stddef.h>
#include <string.h>

#include "mha/internal.h"

/* The sizes of the 0.5 layouts: up to and with their last 0.5 field, so
 * that they stay the same when fields are appended. */
#define MHA_SIZE_THROUGH(T, f) (offsetof(T, f) + sizeof(((T*)0)->f))
static const size_t mha_desc_size_0_5 = MHA_SIZE_THROUGH(mha_attention_desc, workspace_size);
static const size_t mha_cache_size_0_5 = MHA_SIZE_THROUGH(mha_kv_cache, max_blocks);
static const size_t mha_layer_desc_size_0_5 = MHA_SIZE_THROUGH(mha_layer_desc, isa);
static const size_t mha_layer_args_size_0_5 = MHA_SIZE_THROUGH(mha_layer_args, kv_pos);
#undef MHA_SIZE_THROUGH

/* dst[0..full) ← src[0..struct_size), zero-filled past it; struct_size as
 * described in mha.h. Names the struct in a refusal. */
static mha_status mha_struct_read(const char* fn, const char* what, const void* src, size_t base,
                                  size_t full, void* dst) {
  size_t n;
  memcpy(&n, src, sizeof n); /* struct_size is the first field of every such struct */
  if (n == 0) n = base;
  if (n < base) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: %s struct_size = %zu is smaller than the oldest layout (%zu bytes): fill it with "
                     "its *_init function",
                     fn, what, n, base);
  }
  if (n > full) {
    const unsigned char* extra = (const unsigned char*)src + full;
    for (size_t i = 0; i < n - full; i++) {
      if (extra[i] != 0) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: %s sets fields this library (%d.%d.%d, %zu bytes) does not know (struct_size %zu, "
                         "byte %zu is not 0): use a newer libmha",
                         fn, what, MHA_VERSION_MAJOR, MHA_VERSION_MINOR, MHA_VERSION_PATCH, full, n, full + i);
      }
    }
    n = full;
  }
  memset(dst, 0, full);
  memcpy(dst, src, n);
  memcpy(dst, &full, sizeof full);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_desc_read(const char* fn, const mha_attention_desc* src, mha_attention_desc* dst) {
  if (src == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: desc is NULL", fn);
  return mha_struct_read(fn, "desc", src, mha_desc_size_0_5, sizeof *dst, dst);
}

mha_status mha_kv_cache_read(const char* fn, const mha_kv_cache* src, mha_kv_cache* dst) {
  if (src == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: cache is NULL", fn);
  return mha_struct_read(fn, "cache", src, mha_cache_size_0_5, sizeof *dst, dst);
}

mha_status mha_layer_desc_read(const char* fn, const mha_layer_desc* src, mha_layer_desc* dst) {
  if (src == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: desc is NULL", fn);
  return mha_struct_read(fn, "desc", src, mha_layer_desc_size_0_5, sizeof *dst, dst);
}

mha_status mha_layer_args_read(const char* fn, const mha_layer_args* src, mha_layer_args* dst) {
  if (src == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: args is NULL", fn);
  return mha_struct_read(fn, "args", src, mha_layer_args_size_0_5, sizeof *dst, dst);
}

void mha_struct_init(void* dst, size_t size, const void* full, size_t full_size) {
  if (dst == NULL || size < sizeof(size_t)) return;
  const size_t n = size < full_size ? size : full_size;
  memcpy(dst, full, n);
  if (size > n) memset((char*)dst + n, 0, size - n);
  memcpy(dst, &size, sizeof size);
}

/* mha_rotary is new in 0.6: its oldest layout is the whole struct. */
mha_status mha_rotary_struct_read(const char* fn, const mha_rotary* src, mha_rotary* dst) {
  if (src == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: rotary is NULL", fn);
  return mha_struct_read(fn, "rotary", src, sizeof *dst, sizeof *dst, dst);
}
