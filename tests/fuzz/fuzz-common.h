/*
 * Shared parts of the libFuzzer harnesses (fuzz-attention.c, fuzz-layer.c,
 * fuzz-kv-cache.c, fuzz-varlen.c).
 *
 *   - A cursor that decodes the fuzzer's bytes front to back. Every field has
 *     a default once the input runs out, so a short input is still a valid
 *     small problem and the fuzzer can reach deep paths by growing it.
 *   - Strided views: layouts, extents, the overlap and nesting tests.
 *   - The masks (causal, kv_len, additive) decoded and filled.
 *   - The status model: which statuses include/mha.h lets a call return.
 *   - Buffers of exactly the extent a view addresses, random finite inputs,
 *     NaN-poisoned outputs, snapshots to prove that a failed call wrote
 *     nothing.
 *   - Checks that print what went wrong and abort(): how libFuzzer records a
 *     finding.
 *
 * The byte format is mirrored by make_seeds.py: change both together.
 */
#ifndef MHA_FUZZ_COMMON_H
#define MHA_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"

/* ------------------------------------------------------------------------ */
/* Limits                                                                   */
/* ------------------------------------------------------------------------ */

/* A buffer larger than this is "unreasonable": the harness passes a tiny one
 * instead, and only when the contract says the call must fail. */
#define FUZZ_MAX_BUFFER_BYTES ((int64_t)64 << 20)
/* Problems above this many multiply-adds are only validated (workspace
 * query), not run: the fuzzer needs hundreds of executions a second, and
 * each run is three calls (tested set, scalar set, other thread count) and
 * the oracle, all instrumented. Decode with Tk = 2048, H = 4, D = Dv = 64
 * still fits. */
#define FUZZ_MAX_WORK ((int64_t)1 << 20)
/* ... and above this many query rows (B·H·Tq): a row costs its setup, a
 * softmax step and its output whatever its keys, and under the fuzzer's
 * comparison tracing about 13 µs over the run's calls on a Zen 4 — 16 × 16
 * × 2048 rows of one key each (2^20 multiply-adds) took 7–27 s, past the
 * 10 s timeout. */
#define FUZZ_MAX_ROWS ((int64_t)1 << 15)

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct fuzz_input {
  const uint8_t* data;
  size_t size;
} fuzz_input;

/* The next byte, or dflt once the input is exhausted. */
uint8_t fuzz_u8(fuzz_input* in, uint8_t dflt);
/* The next two bytes, little-endian, or dflt if fewer remain. */
uint16_t fuzz_u16(fuzz_input* in, uint16_t dflt);

/* A size: one byte. Below 0x70: 1 + byte % 8 (tiny: products of seven
 * sizes stay cheap); 0x70..0xDF: 1 + (byte - 0x70) % 70; 0xE0..0xEB are the
 * special values in make_seeds.py (0, -1, INT64_MIN, 2^62, INT64_MAX, 2^31,
 * 2^32 + 1, 1 + u16 % 2200, 2048, 2^40, 3037000500, INT32_MAX); above, tiny
 * again. */
int64_t fuzz_size(fuzz_input* in, int64_t dflt);

/* A kernel set: byte < 0xF0: byte % MHA_ISA_COUNT; else 5, -1 or 100 (not
 * an mha_isa). */
mha_isa fuzz_isa(fuzz_input* in);
/* num_threads: 0, 1, 2 mostly; 3, -1, INT_MIN. */
int fuzz_threads(fuzz_input* in);
/* scale: 0 (default) mostly, normal values, and 0, -0, NaN, ±inf, 3e38, ... */
float fuzz_scale(fuzz_input* in);

/* A deterministic generator seeded from the whole input. */
typedef struct fuzz_rng {
  uint64_t state;
} fuzz_rng;

fuzz_rng fuzz_rng_from(const uint8_t* data, size_t size);
uint64_t fuzz_next(fuzz_rng* r);
/* Uniform in [lo, hi), never exactly 0. */
float fuzz_uniform(fuzz_rng* r, float lo, float hi);

/* Where the logits land: q and k amplitudes. */
typedef enum fuzz_values {
  FUZZ_VALUES_UNIT,  /* q, k, v in [-1, 1) */
  FUZZ_VALUES_HIGH,  /* logits about 90..100: exp overflows without the max */
  FUZZ_VALUES_LARGE, /* q, k in [-8, 8): sharp, nearly one-hot softmax */
  FUZZ_VALUES_COUNT
} fuzz_values;

/* ------------------------------------------------------------------------ */
/* Views                                                                    */
/* ------------------------------------------------------------------------ */

/* A 4-D view [n0, n1, n2, width] whose element (a, b, c, d) is at
 * a·s.batch + b·s.head + c·s.row + d. */
typedef struct fuzz_view {
  int64_t n0, n1, n2, width;
  mha_strides s;
} fuzz_view;

/* a · b and a + b, saturating at INT64_MAX / INT64_MIN instead of
 * overflowing (the harness builds strides from fuzzed sizes). */
int64_t fuzz_mul_sat(int64_t a, int64_t b);
int64_t fuzz_add_sat(int64_t a, int64_t b);

/* Decodes a layout of a [n0, n1, n2, width] tensor: contiguous [B, H, T, W]
 * mostly; [B, T, H, W]; padded; zero, negative, overlapping, huge or
 * explicit strides. */
mha_strides fuzz_layout(fuzz_input* in, int64_t n1, int64_t n2, int64_t width);

/* Largest offset + 1, in elements, as the library defines a view's extent.
 * Returns 0 if a size is < 1, a stride is negative, or the extent in bytes
 * overflows int64. */
int fuzz_view_extent(const fuzz_view* v, int64_t* extent);

/* 1 if the dimensions of size > 1 nest (sorted by stride, each stride at
 * least the span of those below it): the rule of an output view, which then
 * addresses every element once. */
int fuzz_view_nested(const fuzz_view* v);

/* ------------------------------------------------------------------------ */
/* The status model                                                         */
/* ------------------------------------------------------------------------ */

#define FUZZ_BIT(status) (1u << (unsigned)(status))

/* required: the statuses of the rules the call breaks; when non-empty the
 * call must fail with one of them. allowed: statuses a valid call may still
 * return (SIZE_OVERFLOW or OUT_OF_MEMORY for a huge problem, INVALID_STRIDE
 * for an exotic layout). why: the broken rules, for the report. */
typedef struct fuzz_expect {
  unsigned required;
  unsigned allowed;
  char why[512];
} fuzz_expect;

void fuzz_expect_init(fuzz_expect* e);
/* Records a broken rule. */
void fuzz_require(fuzz_expect* e, mha_status status, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fuzz_allow(fuzz_expect* e, mha_status status);

/* The rules of one view (include/mha.h, "Strided views"): no negative
 * stride, a row stride >= the row (or 0 on a mask row), an extent that
 * fits, and an output's dimensions must nest. Inputs may broadcast (batch or
 * head stride 0) and overlap freely. Returns the extent (0 if unknown). */
int64_t fuzz_expect_view(fuzz_expect* e, const char* name, const fuzz_view* v, int is_output,
                         int is_mask);

/* The rules of a descriptor's isa field: an mha_isa value, available here;
 * MHA_ISA_DEFAULT needs a valid process choice (MHA_ISA). */
void fuzz_expect_isa(fuzz_expect* e, mha_isa isa);

/* Decodes a mask's position fields, five bytes (make_seeds.py writes the
 * same): align (< 0xF0 byte % 4; 0xF0: 4, else -1: bad), offset (default
 * 0x20; < 0xF8 byte % 64 - 32; 0xF8.. 2^60, -2^60, INT64_MAX, INT64_MIN,
 * 2^60 - 1, -(2^60 - 1), 1000, -1000), window (< 0xF0 byte & 1; 0xF0: 2,
 * else -1), then window_left and window_right (< 0xF0 byte % 16; 0xF0..
 * -1, INT64_MIN, INT64_MAX, 2^62, 2^62 + 1, 64, 300). */
void fuzz_decode_position(fuzz_input* in, mha_mask* m);

/* The rules of a mask's variant fields (include/mha.h, mha_mask): align and
 * its offset (|offset| < 2^60), the window and its sides, the soft-cap. */
void fuzz_expect_variant_fields(fuzz_expect* e, const mha_mask* m);

/* Checks a call's status against the model and mha_last_error(). */
void fuzz_check_status(const char* call, mha_status st, const fuzz_expect* e);

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */
/* ------------------------------------------------------------------------ */

/* n >= 1 floats (exactly: ASan sees one past the end). Exits on failure. */
float* fuzz_alloc(size_t n);
/* 1 if a buffer of this many floats is reasonable to allocate. */
int fuzz_reasonable(int64_t floats);

/* Fills the elements a view addresses with uniform values in [lo, hi).
 * Fill the buffer with NaN first: the gaps are then NaN, which a correct
 * kernel never reads, and a NaN that leaks into a result shows that it did. */
void fuzz_fill_view(float* base, int64_t extent, const fuzz_view* v, fuzz_rng* r, float lo,
                    float hi);
/* Fills n floats with NaN: gaps that a correct kernel never uses. */
void fuzz_fill_nan(float* x, size_t n);
/* Fills n floats with the output poison (a NaN with a payload of its own). */
void fuzz_poison(float* x, size_t n);
int fuzz_is_poison(float x);

/* A random element of the view (sizes >= 1). */
float* fuzz_view_pick(float* base, const fuzz_view* v, fuzz_rng* r);

/* dst [n0, n1, n2, width] contiguous ← the view. */
void fuzz_gather(const float* base, const fuzz_view* v, float* dst);
/* Writes the poison over every element of the view (to find gap writes). */
void fuzz_poison_view(float* base, const fuzz_view* v);

/* ------------------------------------------------------------------------ */
/* Masks                                                                    */
/* ------------------------------------------------------------------------ */

/* A decoded mask over [B, H, Tq, Tk], its buffers and what it breaks. */
typedef struct fuzz_mask {
  mha_mask mask;      /* what the call receives */
  int32_t* kv_len;    /* owned, or NULL */
  float* additive;    /* owned, or NULL */
  fuzz_view view;     /* of the additive mask */
  int64_t extent;     /* floats of additive */
  int tiny;           /* additive is one float standing in for an unreasonable extent */
} fuzz_mask;

/* Decodes causal, kv_len and the additive mask (layout and contents), fills
 * them from r and records their rules in e. Sizes may be invalid: arrays are
 * then left out or tiny. */
void fuzz_mask_make(fuzz_input* in, fuzz_rng* r, int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                    fuzz_mask* m, fuzz_expect* e);
void fuzz_mask_free(fuzz_mask* m);

/* ------------------------------------------------------------------------ */
/* The 16-bit formats                                                       */
/* ------------------------------------------------------------------------ */

/* The widenings of kernels/kv-gemm/kv-convert.h (not on the harnesses'
 * include path): exact, a NaN stays a NaN. */
float fuzz_bf16_to_f32(uint16_t h);
float fuzz_f16_to_f32(uint16_t h);

/* x rounded to f16 (f16 != 0) or bf16 as the library must do it: to
 * nearest, ties to even, past the range ±inf; computed in double (x / ulp
 * is exact there, rint rounds ties to even), not by bit tricks. NaN is not
 * handled here. The result is a float holding the 16-bit value. */
float fuzz_round16(float x, int f16);

/* x as a 16-bit value: bf16 truncated (any value will do; a NaN stays one),
 * f16 rounded (fuzz_round16) and encoded, a NaN as the quiet NaN; widen it
 * for the value it holds. */
uint16_t fuzz_to16(float x, int f16);

/* h widened: fuzz_f16_to_f32 (f16 != 0) or fuzz_bf16_to_f32 */
float fuzz_widen16(uint16_t h, int f16);

/* n values of x as 16-bit copies (*x16, fuzz_to16) and their widened values
 * (*xw), each a fresh allocation of n elements (exits when out of memory) */
void fuzz_copy16(const float* x, size_t n, int f16, uint16_t** x16, float** xw);

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

/* A one-line description of the current case, printed with any finding
 * (and at once when MHA_FUZZ_VERBOSE is set, to triage a crash inside the
 * library). */
void fuzz_describe(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "mha-fuzz finding: ..." with the case, then abort(). */
_Noreturn void fuzz_finding(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* A copy of bytes bytes; free() it. */
void* fuzz_snapshot(const void* x, size_t bytes);
/* x must equal its snapshot bit for bit (nothing written). */
void fuzz_check_unchanged(const char* what, const void* x, const void* snapshot, size_t bytes);

/* Compares a result (dims [d0, d1, d2, d3], contiguous) of the tested
 * kernel set (got), of the scalar set (ref, or NULL) and of the naive double
 * oracle, within tol, the derived bound of any correct float evaluation
 * (tests/tolerance.c): got and ref within tol of the oracle, and each other
 * within 2·tol. An element whose bound is not finite is not compared; where
 * the oracle is NaN both must be NaN. */
void fuzz_check_close(const char* what, const int64_t dims[4], const float* got, const float* ref,
                      const double* oracle, const double* tol);

/* got and again must be bitwise equal (a rerun that must not change the bits). */
void fuzz_check_identical(const char* what, const float* got, const float* again, size_t n);

#endif
