/*
 * libFuzzer harness of the K/V cache API (include/mha.h, "KV caches: 16-bit
 * and paged"): mha_kv_cache_init, mha_kv_cache_init_paged,
 * mha_attention_kv_workspace_size, mha_kv_cache_write and
 * mha_attention_kv_f32 over fuzzed shapes, element types (invalid ones
 * too), contiguous and paged geometries (block sizes valid and not, pool
 * and table sizes, strides), block tables with arbitrary entries, kv_len,
 * the masks and variants, thread counts, kernel sets, caller workspaces and
 * NULL or shared pointers; and, in varlen mode, the same caches read by a
 * packed variable-length batch (mha_attention_varlen_kv_f32 and
 * mha_attention_varlen_kv_workspace_size: a serving step's decode rows and
 * prefill chunks, with hostile cu_seqlens_q, seqused_k and placements).
 *
 * Input bytes, front to back (every field has a default once the input runs
 * out: an empty input is a valid f16 contiguous decode; make_seeds.py
 * writes the same format):
 *   B, Hkv         1 + byte % 4
 *   H mode         < 0xF0: H = Hkv · (1 + byte % 4); else H = 1 + byte % 8
 *                  (H % Hkv may be != 0)                        default 2·Hkv
 *   Tq             1 + byte % 9; 0xFF: 0 (bad)                  default 1
 *   Tk             < 0xF0: byte % 81 (0 is bad); else -1, 81, 100, 129, 200,
 *                  300, 2^31, INT64_MAX                         default 5
 *   D, Dv          1 + byte % 40                                default 8
 *   dtype          < 0xF0: byte % 3 (F32, F16, BF16); else 4, -1, INT_MAX (3 is INT8, not fuzzed here)
 *                                                               default F16
 *   cache          bit 0: paged (mha_kv_cache_init_paged), else contiguous
 *                  (mha_kv_cache_init); (byte >> 1) % 8: the layout of both
 *                  pools: 0-3 as the init function set it, 4 padded (three
 *                  pad bytes follow), 5 token-major ([n, T, Hkv, W]), 6
 *                  token-major padded (three pad bytes), 7 changed (a kind
 *                  byte follows: % 7: row stride < row, negative row, negative
 *                  batch, head stride 0, batch stride 0, row stride 2^60, V's
 *                  row stride < row only)
 *   contiguous:    capacity: < 0xC0: max(Tk, 1) + byte % 6; < 0xF0:
 *                  max(Tk, 1) - 1 - byte % 4; else 0, -1, INT64_MIN, 2^40, 2^62
 *   paged:         block_size: < 0xC0: 16, 32, 64, 16, 16, 32, 128, 256
 *                  (byte % 8); else 0, 8, 24, 512, 1, -16, 48, 17, 2^62, 15,
 *                  257, 32768 (byte % 12)
 *                  max_blocks: < 0xF0 by byte % 5: need, need + 1, need + 2,
 *                  need - 1, 1 + (byte >> 3) % 6 (need = ceil(Tk / block));
 *                  else 0, -1, INT64_MIN
 *                  num_blocks: < 0xF0 by byte % 3: B·max_blocks, 1 + (byte
 *                  >> 2) % 12, B·max_blocks + (byte >> 2) % 4; else 0, -1
 *                  table: byte % 8: 0, 7 distinct blocks in random order, 1
 *                  random blocks, 2 entries share their first blocks, 3
 *                  unused slots hold garbage instead of -1, 4 one bad entry
 *                  in a slot some call reads, 5 one bad entry anywhere, 6 no
 *                  -1 at all; bad entries: -1, num_blocks, INT32_MIN,
 *                  INT32_MAX, num_blocks + 7, -2 ((byte >> 3) % 6)
 *   kv_len         % 8 < 4: none; 4 random in [0, Tk], 5 all Tk, 6 one 0 and
 *                  one Tk, 7 one bad: -1, Tk + 1, INT32_MAX, INT32_MIN
 *   causal         0xFF: 2 (bad); else bit 0
 *   align          < 0xF0: byte % 4; else 4 (bad)
 *   offset         byte % 64 - 32                               default 0
 *   window         0xFF: 2 (bad); else bit 0; left, right: 0xFF: -1 (bad),
 *                  else byte % 16
 *   alibi, sinks   % 4 (as fuzz-attention.c); softcap: < 0x80 off, < 0xF0
 *                  0.5 + (byte - 0x80) / 2, 0xF0 NaN, 0xF1 -1 (bad), else off
 *   scale          fuzz_scale (0, the default, mostly)
 *   num_threads    1 + byte % 3
 *   isa            < 0xF0: one of default and the sets available here
 *                  (byte % their count); 0xF0 neon, 0xF1 5, 0xF2 -1
 *   outputs        bit 0 weights (per head), bit 1 lse, bits 2-3 workspace:
 *                  none, exact, one byte short, exact at an odd address;
 *                  bits 4-5 q and out layouts: BHTD, BTHD, padded, BHTD
 *   values         % 4 the cache's contents: small finite, wider finite,
 *                  arbitrary bits (NaN, inf, subnormals), large finite with
 *                  some non-finite; bit 2: the rows no call uses (gaps, blocks
 *                  of no entry, rows past kv_len) hold NaN instead; bit 3: q
 *                  in [-4, 4) instead of [-1, 1)
 *   write          bit 0: call mha_kv_cache_write first (then the attention
 *                  reads what it wrote), T = 1 + (byte >> 1) % 9; 0xFF: T = 0
 *   pos            % 4: append (the last T rows an entry reads), random in
 *                  [0, limit - T], 0, one bad (-1, limit - T + 1, INT32_MAX,
 *                  INT32_MIN by (byte >> 2) % 4)
 *   new rows       % 4 layout of k_new and v_new: BHTD, BHTD, padded, BTHD;
 *                  (byte >> 2) % 4 values: [-2, 2), wide exponents (f16
 *                  overflow and subnormals), arbitrary bits, exact ties of
 *                  the cache's 16-bit format
 *   special        0xF0..0xF8: cache NULL, cache->k NULL, cache->v NULL,
 *                  block_table NULL, K and V in one buffer, desc NULL, q
 *                  NULL, out NULL, pos NULL
 *   varlen         bit 0: varlen mode (below; 0, the default, keeps the
 *                  single call); (byte >> 1) % 8 the lengths: 0-3 good,
 *                  4 cu_seqlens_q[0] = 1, -1, INT32_MIN or INT32_MAX, 5 a
 *                  decreasing pair, 6 cu_seqlens_q NULL, 7 seqused_k NULL;
 *                  (byte >> 4) % 8 a placement: 0-2 none, 3 out over
 *                  cu_seqlens_q, 4 out over seqused_k, 5 out over the block
 *                  table (contiguous: lse over seqused_k), 6 lse over the
 *                  block table (contiguous: lse over cu_seqlens_q), 7
 *                  mask.kv_len set (INVALID_ARGUMENT)
 *   len_q          varlen mode, per sequence b < B: < 0xF0: byte % (Tq + 1);
 *                  else Tq + 1 + byte % 4 (longer than the bound Tq: bad);
 *                  defaults 1 (a decode row) for b = 0, Tq (a chunk) after
 * desc's k and v strides are garbage in half of the cases (not used).
 *
 * Varlen mode: B sequences, sequence b's queries rows [cu_q[b], cu_q[b+1])
 * of packed q and out, its keys tokens [0, seqused_k[b]) of cache entry b;
 * seqused_k is the kv_len array above (all Tk where kv_len is none), the
 * bound Tk is desc's, the bound Tq is the Tq field. The q and out layout
 * (outputs bits 4-5) becomes one of the packed rows [1, H, total_q, width]:
 * packed [total, H, W], head-major [H, total, W], padded, packed with a
 * batch stride of INT64_MAX (not used). No weights.
 *
 * Per input: a model of include/mha.h says which statuses each call may
 * return. Every buffer has exactly the size its declared geometry implies
 * (pools: num_blocks blocks, or B·Hkv·capacity rows, as the strides
 * address them; the table B·max_blocks entries), from malloc, so ASan sees
 * any access outside; where that size is unreasonable (or undefined) a
 * one-element stand-in is passed, and only where the call must fail.
 * Outputs are poisoned. A failed call must leave every buffer as it was (the
 * cache too, for the writer). A successful write must store each new row as
 * the correctly rounded value (computed here in double, independently of
 * the library's conversion) at the address the cache's geometry gives, and
 * change nothing else. A successful attention call must write every element
 * of out (and nothing around it), weights and lse, and give bitwise (NaN
 * compares equal to NaN) the result of mha_attention_f32 with the same
 * descriptor on fp32 [B, Hkv, Tk, D] copies of K and V read through the
 * table and widened, with NaN in every row at or past an entry's length.
 * The workspace query must agree with the call and equal the core's.
 *
 * Varlen mode: out goes on for two packed rows and a few floats past its
 * view, lse ([total_q, H]) likewise, all poisoned; a failed call must leave
 * them, the lengths and every input as they were. A successful call must
 * write every packed row of out (and every lse entry) and nothing else, give
 * every sequence BITWISE the out rows and lse of mha_attention_kv_f32 on that
 * sequence alone (B = 1, Tq = len_q, Tk = seqused_k[b], q at its rows, the
 * cache's entry b as entry 0: the pools at entry b, or the table from row
 * b), zeros and lse -inf (or its sink) for a sequence without keys, and the
 * same bits again at another thread count and other bounds, whose workspace
 * query must not change either.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

/* ------------------------------------------------------------------------ */
/* The 16-bit formats                                                       */
/* ------------------------------------------------------------------------ */

/* (the widenings and the rounding reference are fuzz-common's) */
static float kv_bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Arbitrary bits as a cache value, except the two NaNs that are (or quiet
 * to) the output poison (fuzz-common.c): a V row holding one would carry it
 * into out, where "was not written" could not be told from a result. */
static float kv_arbitrary_f32(uint32_t u) {
  if ((u | 0x00400000u) == 0x7fc5a5a5u) u ^= 1u; /* another NaN payload */
  return kv_bits_to_f32(u);
}

/* ------------------------------------------------------------------------ */
/* The case                                                                 */
/* ------------------------------------------------------------------------ */

enum {
  SP_NONE,
  SP_NULL_CACHE,
  SP_NULL_K,
  SP_NULL_V,
  SP_NULL_TABLE,
  SP_K_IS_V,
  SP_NULL_DESC,
  SP_NULL_Q,
  SP_NULL_OUT,
  SP_NULL_POS,
  SP_COUNT
};
enum { WS_NONE, WS_EXACT, WS_SHORT, WS_ODD };

/* A buffer and its snapshot. */
typedef struct kv_buf {
  unsigned char* p;
  size_t bytes;
  unsigned char* snap;
  int tiny; /* a one-element stand-in for an unreasonable or undefined size */
} kv_buf;

/* Varlen mode's lengths and placements (the byte "varlen"). */
enum { VL_LENS_GOOD, VL_CU_FIRST = 4, VL_CU_DECREASING, VL_CU_NULL, VL_USED_NULL };
enum {
  VL_PLACE_NONE,
  VL_OUT_OVER_CU_Q = 3,
  VL_OUT_OVER_USED,
  VL_OUT_OVER_TABLE,
  VL_LSE_OVER_TABLE,
  VL_KV_LEN_SET,
  VL_LSE_OVER_USED, /* contiguous caches' stand-ins for the two over the table */
  VL_LSE_OVER_CU_Q
};
/* B is 1 + byte % 4 */
#define KV_MAX_B 4

typedef struct kv_case {
  mha_attention_desc desc;
  mha_kv_cache cache; /* k, v and block_table set with the buffers */
  size_t dsize;       /* bytes of a cache element as the library counts them */
  int layout, kind;
  uint8_t pad[3];
  int table_mode;
  int values;
  int weights, lse, ws, qo;
  int special;
  int garbage_kv_strides;
  /* the write */
  int write;
  int64_t T;
  int pos_mode, new_layout, new_values;
  mha_strides kn, vn; /* k_new, v_new */
  /* arrays */
  int32_t* kv_len;
  int kv_len_ok; /* NULL, or every entry in [0, Tk] */
  float* slopes;
  float* sinks;
  int32_t* pos;
  int32_t* table;
  size_t table_n;
  /* the model */
  fuzz_expect shape;       /* the descriptor's rules */
  fuzz_expect cache_rules; /* the cache's own (geometry, pointers) */
  int cache_ok;            /* no rule of cache_rules broken */
  int64_t limit;           /* tokens an entry can hold (when cache_ok) */
  fuzz_view kview, vview;  /* the pools: [n0, Hkv, rows, D or Dv] */
  int64_t k_ext, v_ext;    /* elements they address; 0: unknown */
  int small;
  /* buffers */
  kv_buf kpool, vpool, q, out, w, lse_buf, tab, knew, vnew;
  void* ws_mem;
  /* varlen mode (mha_attention_varlen_kv_f32); seqused_k is kv_len */
  int varlen;
  int vl_lens, vl_place;
  int64_t len_q[KV_MAX_B];
  int32_t* cu_q;          /* [B + 1], malloc'd to its size */
  int64_t total_q;
  int cu_ok;              /* cu_seqlens_q is passed and good: total_q rows are the call's */
  fuzz_view qview, oview; /* q and out over the packed rows, [1, H, max(total_q, 1), width] */
  int64_t q_ext, o_ext;   /* their extents (0: unknown) */
  const int32_t* cu_arg;  /* what the call receives: cu_q, NULL, or a copy inside out or lse */
  const int32_t* used_arg;
  unsigned char* cu_snap;
} kv_case;

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

static int64_t kv_clamp(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }

static void kv_decode_shape(fuzz_input* in, kv_case* c) {
  const int64_t B = 1 + fuzz_u8(in, 0) % 4, Hkv = 1 + fuzz_u8(in, 0) % 4;
  const uint8_t hm = fuzz_u8(in, 1);
  const int64_t H = hm < 0xF0 ? Hkv * (1 + hm % 4) : 1 + hm % 8;
  const uint8_t tq = fuzz_u8(in, 0);
  const int64_t Tq = tq == 0xFF ? 0 : 1 + tq % 9;
  static const int64_t big_tk[] = {-1, 81, 100, 129, 200, 300, (int64_t)1 << 31, INT64_MAX};
  const uint8_t tk = fuzz_u8(in, 5);
  const int64_t Tk = tk < 0xF0 ? tk % 81 : big_tk[tk % 8];
  const int64_t D = 1 + fuzz_u8(in, 7) % 40, Dv = 1 + fuzz_u8(in, 7) % 40;
  mha_attention_desc_init(&c->desc, B, H, Hkv, Tq, Tk, D, Dv);
}

/* The strides of one pool [n0, Hkv, rows, w] in the decoded layout (s: what
 * the init function set). */
static mha_strides kv_pool_strides(const kv_case* c, int is_v, int64_t Hkv, int64_t rows, int64_t w,
                                   mha_strides s) {
  const int64_t* p = (const int64_t[]){c->pad[0], c->pad[1], c->pad[2]};
  switch (c->layout) {
    case 4: /* padded head-major */
      s.row = fuzz_add_sat(w, p[0]);
      s.head = fuzz_add_sat(fuzz_mul_sat(rows, s.row), p[1]);
      s.batch = fuzz_add_sat(fuzz_mul_sat(Hkv, s.head), p[2]);
      break;
    case 5: /* token-major [n, rows, Hkv, w] (vLLM's pools) */
      s.head = w;
      s.row = fuzz_mul_sat(Hkv, w);
      s.batch = fuzz_mul_sat(rows, s.row);
      break;
    case 6: /* token-major, padded */
      s.head = fuzz_add_sat(w, p[0]);
      s.row = fuzz_add_sat(fuzz_mul_sat(Hkv, s.head), p[1]);
      s.batch = fuzz_add_sat(fuzz_mul_sat(rows, s.row), p[2]);
      break;
    case 7:
      switch (c->kind) {
        case 0: s.row = w - 1; break;
        case 1: s.row = s.row > 0 ? -s.row : -1; break;
        case 2: s.batch = -1; break;
        case 3: s.head = 0; break;  /* heads share their rows: fine to read */
        case 4: s.batch = 0; break; /* so do entries (blocks) */
        case 5: s.row = (int64_t)1 << 60; break;
        default: if (is_v) s.row = w - 1; break;
      }
      break;
    default: break;
  }
  return s;
}

static void kv_decode_cache(fuzz_input* in, kv_case* c) {
  const mha_attention_desc* d = &c->desc;
  const int64_t B = d->B, Hkv = d->Hkv, D = d->D, Dv = d->Dv;
  const uint8_t dt = fuzz_u8(in, 1);
  static const int bad_dtype[] = {4, -1, INT_MAX};
  const mha_dtype dtype = dt < 0xF0 ? (mha_dtype)(dt % 3) : (mha_dtype)bad_dtype[dt % 3];
  c->dsize = dtype == MHA_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t);
  const uint8_t cb = fuzz_u8(in, 0);
  const int paged = cb & 1;
  c->layout = (cb >> 1) % 8;
  if (c->layout == 4 || c->layout == 6) {
    for (int i = 0; i < 3; i++) c->pad[i] = fuzz_u8(in, (uint8_t)(i + 1)) % 8;
  }
  if (c->layout == 7) c->kind = fuzz_u8(in, 0) % 7;
  const int64_t tk1 = kv_clamp(d->Tk, 1, 4096);
  int64_t n0, rows;
  if (!paged) {
    static const int64_t odd[] = {0, -1, INT64_MIN, (int64_t)1 << 40, (int64_t)1 << 62};
    const uint8_t cap = fuzz_u8(in, 0);
    const int64_t capacity = cap < 0xC0 ? tk1 + cap % 6 : cap < 0xF0 ? tk1 - 1 - cap % 4 : odd[cap % 5];
    mha_kv_cache_init(&c->cache, dtype, NULL, NULL, Hkv, capacity, D, Dv);
    n0 = B;
    rows = capacity;
  } else {
    static const int64_t good[] = {16, 32, 64, 16, 16, 32, 128, 256};
    static const int64_t bad[] = {0, 8, 24, 512, 1, -16, 48, 17, (int64_t)1 << 62, 15, 257, 32768};
    const uint8_t bb = fuzz_u8(in, 0);
    const int64_t bs = bb < 0xC0 ? good[bb % 8] : bad[bb % 12];
    const int64_t bs_eff = bs >= 1 && bs <= 512 ? bs : 16;
    const int64_t need = (tk1 + bs_eff - 1) / bs_eff;
    const uint8_t mbb = fuzz_u8(in, 0);
    static const int64_t odd_mb[] = {0, -1, INT64_MIN};
    int64_t mb;
    if (mbb >= 0xF0) {
      mb = odd_mb[mbb % 3];
    } else {
      const int64_t pick[5] = {need, need + 1, need + 2, need - 1, 1 + (mbb >> 3) % 6};
      mb = pick[mbb % 5];
    }
    if (mb > 64) mb = 64;
    const int64_t mb1 = mb >= 1 ? mb : 1;
    const uint8_t nbb = fuzz_u8(in, 0);
    int64_t nb;
    if (nbb >= 0xF0) {
      nb = nbb & 1 ? -1 : 0;
    } else {
      const int64_t pick[3] = {B * mb1, 1 + (nbb >> 2) % 12, B * mb1 + (nbb >> 2) % 4};
      nb = pick[nbb % 3];
    }
    if (nb > 64) nb = 64;
    c->table_mode = fuzz_u8(in, 0);
    mha_kv_cache_init_paged(&c->cache, dtype, NULL, NULL, nb, bs, Hkv, D, Dv, NULL, mb);
    n0 = nb;
    rows = bs;
  }
  c->cache.k_strides = kv_pool_strides(c, 0, Hkv, rows, D, c->cache.k_strides);
  c->cache.v_strides = kv_pool_strides(c, 1, Hkv, rows, Dv, c->cache.v_strides);
  c->kview = (fuzz_view){n0, Hkv, rows, D, c->cache.k_strides};
  c->vview = (fuzz_view){n0, Hkv, rows, Dv, c->cache.v_strides};
}

static void kv_decode_kv_len(fuzz_input* in, fuzz_rng* r, kv_case* c) {
  const int64_t B = c->desc.B, Tk = c->desc.Tk;
  const uint8_t k = fuzz_u8(in, 0);
  if (k % 8 < 4) return;
  c->kv_len = malloc((size_t)B * sizeof(int32_t));
  if (c->kv_len == NULL) exit(2);
  const int64_t top = kv_clamp(Tk, 0, INT32_MAX);
  for (int64_t b = 0; b < B; b++) {
    c->kv_len[b] = k % 8 == 5 ? (int32_t)top : (int32_t)(fuzz_next(r) % (uint64_t)(top + 1));
  }
  if (k % 8 == 6) {
    c->kv_len[0] = 0;
    c->kv_len[B - 1] = (int32_t)top;
  }
  if (k % 8 == 7) {
    const int64_t bad[4] = {-1, kv_clamp(fuzz_add_sat(Tk, 1), INT32_MIN, INT32_MAX), INT32_MAX, INT32_MIN};
    c->kv_len[fuzz_next(r) % (uint64_t)B] = (int32_t)bad[(k >> 3) % 4];
  }
  c->desc.mask.kv_len = c->kv_len;
}

static float* kv_head_array(int64_t H, fuzz_rng* r, float lo, float hi) {
  float* x = fuzz_alloc((size_t)H);
  for (int64_t h = 0; h < H; h++) x[h] = fuzz_uniform(r, lo, hi);
  return x;
}

static void kv_decode_mask(fuzz_input* in, fuzz_rng* r, kv_case* c) {
  mha_mask* m = &c->desc.mask;
  const uint8_t causal = fuzz_u8(in, 0);
  m->causal = causal == 0xFF ? 2 : causal & 1;
  const uint8_t align = fuzz_u8(in, 0);
  m->align = align < 0xF0 ? (mha_align)(align % 4) : (mha_align)4;
  m->offset = (int64_t)(fuzz_u8(in, 0x20) % 64) - 32;
  const uint8_t win = fuzz_u8(in, 0);
  m->window = win == 0xFF ? 2 : win & 1;
  const uint8_t left = fuzz_u8(in, 0), right = fuzz_u8(in, 0);
  m->window_left = left == 0xFF ? -1 : left % 16;
  m->window_right = right == 0xFF ? -1 : right % 16;
  const int64_t H = c->desc.H;
  const uint8_t alibi = fuzz_u8(in, 0) % 4;
  if (alibi != 0) {
    static const float range[4][2] = {{0, 0}, {0, 1}, {0, 0.0625f}, {-1, 1}};
    c->slopes = kv_head_array(H, r, range[alibi][0], range[alibi][1]);
    m->alibi_slopes = c->slopes;
  }
  const uint8_t cap = fuzz_u8(in, 0);
  m->softcap = cap < 0x80 ? 0.0f : cap < 0xF0 ? 0.5f + 0.5f * (float)(cap - 0x80)
               : cap == 0xF0 ? NAN : cap == 0xF1 ? -1.0f : 0.0f;
  const uint8_t sinks = fuzz_u8(in, 0) % 4;
  if (sinks != 0) {
    c->sinks = sinks == 3 ? kv_head_array(H, r, 80, 100) : kv_head_array(H, r, -4, 4);
    if (sinks == 2) {
      for (int64_t h = 0; h < H; h++) {
        if (fuzz_next(r) % 3 == 0) c->sinks[h] = -INFINITY;
      }
    }
    m->sinks = c->sinks;
  }
}

static mha_isa kv_decode_isa(fuzz_input* in) {
  const uint8_t b = fuzz_u8(in, 0);
  if (b >= 0xF0) {
    static const int odd[] = {MHA_ISA_NEON, MHA_ISA_COUNT, -1};
    return (mha_isa)odd[b % 3];
  }
  mha_isa list[MHA_ISA_COUNT];
  int n = 0;
  list[n++] = MHA_ISA_DEFAULT;
  for (int i = MHA_ISA_SCALAR; i < MHA_ISA_COUNT; i++) {
    if (mha_isa_available((mha_isa)i)) list[n++] = (mha_isa)i;
  }
  return list[b % n];
}

static mha_strides kv_io_strides(int qo, int64_t H, int64_t T, int64_t w) {
  switch (qo) {
    case 1: return mha_strides_bthd(H, T, w);
    case 2: {
      mha_strides s;
      s.row = w + 1;
      s.head = fuzz_add_sat(fuzz_mul_sat(T, s.row), 2);
      s.batch = fuzz_add_sat(fuzz_mul_sat(H, s.head), 3);
      return s;
    }
    default: return mha_strides_bhtd(H, T, w);
  }
}

/* The packed rows' strides [1, H, rows, W] of q or out by the layout (qo). */
static mha_strides kv_packed_strides(int qo, int64_t H, int64_t rows, int64_t w) {
  mha_strides s = {0, w, fuzz_mul_sat(H, w)};
  switch (qo) {
    case 1: s.head = fuzz_mul_sat(rows, w); s.row = w; break;                /* head-major */
    case 2: s.head = w + 1; s.row = fuzz_add_sat(fuzz_mul_sat(H, w + 1), 2); break; /* padded */
    case 3: s.batch = INT64_MAX; break;                                      /* not used */
    default: break;
  }
  return s;
}

/* Varlen mode: the lengths, cu_seqlens_q (broken as the mode says), seqused_k
 * (kv_len, or all Tk), the placement and the packed views of q and out. */
static void kv_decode_varlen(fuzz_input* in, fuzz_rng* r, kv_case* c, uint8_t vl) {
  mha_attention_desc* d = &c->desc;
  const int64_t B = d->B, Tq = d->Tq, H = d->H;
  c->vl_lens = (vl >> 1) % 8;
  c->vl_place = (vl >> 4) % 8;
  if (c->vl_place < VL_OUT_OVER_CU_Q) c->vl_place = VL_PLACE_NONE;
  c->weights = 0; /* the varlen call has no weights output */
  const int64_t tq = Tq > 0 ? Tq : 0;
  for (int64_t b = 0; b < B; b++) {
    const uint8_t x = fuzz_u8(in, (uint8_t)(b == 0 ? 1 : tq));
    c->len_q[b] = x < 0xF0 ? x % (tq + 1) : tq + 1 + x % 4;
  }
  c->cu_q = malloc((size_t)(B + 1) * sizeof(int32_t));
  if (c->cu_q == NULL) exit(2);
  c->cu_q[0] = 0;
  for (int64_t b = 0; b < B; b++) c->cu_q[b + 1] = c->cu_q[b] + (int32_t)c->len_q[b];
  c->total_q = c->cu_q[B];
  if (c->vl_lens == VL_CU_FIRST) {
    static const int32_t first[4] = {1, -1, INT32_MIN, INT32_MAX};
    c->cu_q[0] = first[fuzz_next(r) % 4];
  }
  if (c->vl_lens == VL_CU_DECREASING) {
    const int64_t i = 1 + (int64_t)(fuzz_next(r) % (uint64_t)B);
    c->cu_q[i] = c->cu_q[i - 1] - 1;
  }
  /* seqused_k: the decoded kv_len, or every entry's Tk */
  if (c->kv_len == NULL) {
    c->kv_len = malloc((size_t)B * sizeof(int32_t));
    if (c->kv_len == NULL) exit(2);
    for (int64_t b = 0; b < B; b++) c->kv_len[b] = (int32_t)kv_clamp(d->Tk, 0, INT32_MAX);
  }
  d->mask.kv_len = c->vl_place == VL_KV_LEN_SET ? c->kv_len : NULL;
  /* placements over the table need a paged cache: a contiguous one gets lse
   * over the lengths instead */
  if (c->cache.block_size == 0 && c->vl_place == VL_OUT_OVER_TABLE) c->vl_place = VL_LSE_OVER_USED;
  if (c->cache.block_size == 0 && c->vl_place == VL_LSE_OVER_TABLE) c->vl_place = VL_LSE_OVER_CU_Q;
  if (c->vl_place == VL_LSE_OVER_TABLE || c->vl_place == VL_LSE_OVER_USED || c->vl_place == VL_LSE_OVER_CU_Q) {
    c->lse = 1;
  }
  const int64_t rows = c->total_q > 0 ? c->total_q : 1;
  d->q = kv_packed_strides(c->qo, H, rows, d->D);
  d->out = kv_packed_strides(c->qo, H, rows, d->Dv);
  c->qview = (fuzz_view){1, H, rows, d->D, {0, d->q.head, d->q.row}};
  c->oview = (fuzz_view){1, H, rows, d->Dv, {0, d->out.head, d->out.row}};
}

static void kv_decode(fuzz_input* in, fuzz_rng* r, kv_case* c) {
  memset(c, 0, sizeof *c);
  kv_decode_shape(in, c);
  kv_decode_cache(in, c);
  kv_decode_kv_len(in, r, c);
  kv_decode_mask(in, r, c);
  mha_attention_desc* d = &c->desc;
  d->scale = fuzz_scale(in);
  d->num_threads = 1 + fuzz_u8(in, 0) % 3;
  d->isa = kv_decode_isa(in);
  const uint8_t o = fuzz_u8(in, 0);
  c->weights = o & 1;
  c->lse = (o >> 1) & 1;
  c->ws = (o >> 2) % 4;
  c->qo = (o >> 4) % 4;
  d->q = kv_io_strides(c->qo, d->H, d->Tq, d->D);
  d->out = kv_io_strides(c->qo, d->H, d->Tq, d->Dv);
  c->values = fuzz_u8(in, 0);
  const uint8_t w = fuzz_u8(in, 0);
  c->write = w & 1;
  c->T = w == 0xFF ? 0 : 1 + (w >> 1) % 9;
  c->pos_mode = fuzz_u8(in, 0);
  const uint8_t nl = fuzz_u8(in, 0);
  c->new_layout = nl % 4;
  c->new_values = (nl >> 2) % 4;
  const uint8_t sp = fuzz_u8(in, 0);
  c->special = sp >= 0xF0 && sp < 0xF0 + SP_COUNT - 1 ? 1 + (sp - 0xF0) : SP_NONE;
  const uint8_t vl = fuzz_u8(in, 0);
  c->varlen = vl & 1;
  if (c->varlen) kv_decode_varlen(in, r, c, vl);
  /* "desc's k and v strides are not used (the cache's are)" */
  c->garbage_kv_strides = fuzz_next(r) & 1;
  if (c->garbage_kv_strides) {
    d->k = (mha_strides){-7, INT64_MAX, -1};
    d->v = (mha_strides){INT64_MIN, 0, 1};
  }
}

/* ------------------------------------------------------------------------ */
/* The model                                                                */
/* ------------------------------------------------------------------------ */

static int kv_block_size_ok(int64_t bs) { return bs >= 16 && bs <= 256 && (bs & (bs - 1)) == 0; }

/* Varlen mode's own rules: cu_seqlens_q (from 0, never decreasing, each
 * length <= Tq), the pointers to the lengths, no mask.kv_len, and the views
 * of q and out over the packed rows, required where those rows are the
 * call's. seqused_k in [0, Tk] is kv_len's rule (kv_expect_shape). */
static void kv_expect_varlen(kv_case* c, fuzz_expect* e) {
  const mha_attention_desc* d = &c->desc;
  if (c->vl_lens == VL_CU_NULL) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cu_seqlens_q is NULL");
  if (c->vl_lens == VL_USED_NULL) fuzz_require(e, MHA_STATUS_NULL_POINTER, "seqused_k is NULL");
  if (d->mask.kv_len != NULL) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.kv_len is set");
  c->cu_ok = c->vl_lens != VL_CU_NULL;
  if (c->cu_q[0] != 0) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "cu_seqlens_q[0] = %d", (int)c->cu_q[0]);
    c->cu_ok = 0;
  }
  for (int64_t b = 0; b < d->B; b++) {
    const int64_t len = (int64_t)c->cu_q[b + 1] - c->cu_q[b];
    if (len < 0 || len > d->Tq) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "cu_seqlens_q gives sequence %lld the length %lld, "
                   "outside [0, Tq = %lld]", (long long)b, (long long)len, (long long)d->Tq);
      c->cu_ok = 0;
      break;
    }
  }
  fuzz_expect soft;
  fuzz_expect_init(&soft);
  fuzz_expect* ve = c->cu_ok && c->total_q > 0 ? e : &soft;
  c->q_ext = fuzz_expect_view(ve, "q", &c->qview, 0, 0);
  c->o_ext = fuzz_expect_view(ve, "out", &c->oview, 1, 0);
  e->allowed |= soft.required | soft.allowed;
}

/* The descriptor's rules (the core's, k and v aside). */
static void kv_expect_shape(kv_case* c) {
  const mha_attention_desc* d = &c->desc;
  fuzz_expect* e = &c->shape;
  fuzz_expect_init(e);
  const struct { const char* name; int64_t value; } sizes[] = {
      {"B", d->B}, {"H", d->H}, {"Hkv", d->Hkv}, {"Tq", d->Tq}, {"Tk", d->Tk}, {"D", d->D}, {"Dv", d->Dv}};
  int sizes_ok = 1;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      fuzz_require(e, MHA_STATUS_INVALID_SIZE, "%s = %lld", sizes[i].name, (long long)sizes[i].value);
      sizes_ok = 0;
    }
  }
  if (sizes_ok && d->H % d->Hkv != 0) fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "H %% Hkv != 0");
  if (!isfinite(d->scale)) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "scale is not finite");
  fuzz_expect_isa(e, d->isa);
  const mha_mask* m = &d->mask;
  if (m->causal != 0 && m->causal != 1) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "causal = %d", m->causal);
  fuzz_expect_variant_fields(e, m);
  c->kv_len_ok = 1;
  if (c->kv_len) {
    for (int64_t b = 0; b < d->B; b++) {
      if (c->kv_len[b] < 0 || c->kv_len[b] > d->Tk) {
        fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "kv_len[%lld] = %d outside [0, Tk]", (long long)b,
                     (int)c->kv_len[b]);
        c->kv_len_ok = 0;
        break;
      }
    }
  }
  if (c->varlen) {
    kv_expect_varlen(c, e);
  } else {
    const fuzz_view qv = {d->B, d->H, d->Tq, d->D, d->q}, ov = {d->B, d->H, d->Tq, d->Dv, d->out};
    (void)fuzz_expect_view(e, "q", &qv, 0, 0);
    (void)fuzz_expect_view(e, "out", &ov, 1, 0);
  }
  int64_t wext;
  const fuzz_view wv = {d->B, d->H, d->Tq, d->Tk, mha_strides_bhtd(d->H, d->Tq, d->Tk)};
  if (c->weights && sizes_ok && !fuzz_view_extent(&wv, &wext)) {
    fuzz_require(e, MHA_STATUS_SIZE_OVERFLOW, "weights [B, H, Tq, Tk] overflows");
  }
  c->small = sizes_ok && d->Tk <= 300;
  if (!c->small) { /* a valid but huge problem may not fit in memory or size_t */
    fuzz_allow(e, MHA_STATUS_SIZE_OVERFLOW);
    fuzz_allow(e, MHA_STATUS_OUT_OF_MEMORY);
  }
}

/* The cache's own rules: pointers, dtype, geometry, the pools' views. */
static void kv_expect_cache(kv_case* c) {
  const mha_kv_cache* k = &c->cache;
  fuzz_expect* e = &c->cache_rules;
  fuzz_expect_init(e);
  if (c->special == SP_NULL_CACHE) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cache is NULL");
  if (c->special == SP_NULL_K) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cache->k is NULL");
  if (c->special == SP_NULL_V) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cache->v is NULL");
  if ((int)k->dtype < 0 || (int)k->dtype > 3) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "dtype = %d", (int)k->dtype);
  }
  const int64_t bs = k->block_size;
  if (bs != 0 && !kv_block_size_ok(bs)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "block_size = %lld", (long long)bs);
  }
  if (bs == 0) {
    if (k->capacity < 1) fuzz_require(e, MHA_STATUS_INVALID_SIZE, "capacity = %lld", (long long)k->capacity);
    c->limit = k->capacity;
  } else {
    if (k->num_blocks < 1) fuzz_require(e, MHA_STATUS_INVALID_SIZE, "num_blocks = %lld", (long long)k->num_blocks);
    if (k->max_blocks < 1) fuzz_require(e, MHA_STATUS_INVALID_SIZE, "max_blocks = %lld", (long long)k->max_blocks);
    if (c->special == SP_NULL_TABLE) fuzz_require(e, MHA_STATUS_NULL_POINTER, "block_table is NULL");
    c->limit = fuzz_mul_sat(k->max_blocks, bs); /* small when both are valid */
  }
  if (c->kview.n0 >= 1 && c->kview.n2 >= 1) { /* else the extents are undefined */
    c->k_ext = fuzz_expect_view(e, "cache->k", &c->kview, 0, 0);
    c->v_ext = fuzz_expect_view(e, "cache->v", &c->vview, 0, 0);
  }
  c->cache_ok = e->required == 0;
}

/* The rules of B entries reading or writing tokens [first[b], first[b] + T)
 * (first NULL: 0), of which the table must cover [first[b], end) with end =
 * lens[b] (lens non-NULL, valid) or first[b] + T. */
static void kv_expect_range(const kv_case* c, fuzz_expect* e, const int32_t* first, const int32_t* lens,
                            int64_t T) {
  if (!c->cache_ok || T < 1) return;
  if (T > c->limit) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "%lld tokens, past the %lld the cache holds", (long long)T,
                 (long long)c->limit);
    return;
  }
  const mha_kv_cache* k = &c->cache;
  for (int64_t b = 0; b < c->desc.B; b++) {
    const int64_t start = first ? first[b] : 0;
    if (start < 0 || start > c->limit - T) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "entry %lld: tokens [%lld, +%lld) outside [0, %lld)",
                   (long long)b, (long long)start, (long long)T, (long long)c->limit);
      return;
    }
    const int64_t end = lens ? lens[b] : start + T;
    if (k->block_size == 0 || end <= start) continue;
    for (int64_t s = start / k->block_size; s <= (end - 1) / k->block_size; s++) {
      const int32_t blk = c->table[b * k->max_blocks + s];
      if (blk < 0 || blk >= k->num_blocks) {
        fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "block_table[%lld][%lld] = %d", (long long)b,
                     (long long)s, (int)blk);
        return;
      }
    }
  }
}

/* e also breaks the rules of from (whose reasons it appends once). */
static void kv_merge(fuzz_expect* e, const fuzz_expect* from) {
  for (int st = 0; st < 32; st++) {
    if (from->required & FUZZ_BIT(st)) {
      fuzz_require(e, (mha_status)st, "cache: %s", from->why);
      break;
    }
  }
  e->required |= from->required;
  e->allowed |= from->allowed;
}

static int kv_pools_tiny(const kv_case* c) { return c->kpool.tiny || c->vpool.tiny; }

/* Varlen mode: out or lse lies over an input (the placement byte). */
static int kv_placed(const kv_case* c) { return c->vl_place != VL_PLACE_NONE && c->vl_place != VL_KV_LEN_SET; }

static int kv_attention_tiny(const kv_case* c) {
  return kv_pools_tiny(c) || c->q.tiny || c->out.tiny || (c->weights && c->w.tiny) ||
         (c->lse && c->lse_buf.tiny) || c->tab.tiny;
}

/* The workspace query: the descriptor and the cache, other pointers aside. */
static fuzz_expect kv_expect_query(const kv_case* c) {
  fuzz_expect e = c->shape;
  if (c->special == SP_NULL_DESC) {
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "desc is NULL");
    return e;
  }
  kv_merge(&e, &c->cache_rules);
  kv_expect_range(c, &e, NULL, c->kv_len_ok ? c->kv_len : NULL, c->desc.Tk);
  return e;
}

static fuzz_expect kv_expect_attention(const kv_case* c, size_t ws_needed, int ws_known) {
  fuzz_expect e = kv_expect_query(c);
  if (c->special == SP_NULL_DESC || c->special == SP_NULL_CACHE) {
    /* checked first, before anything else */
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "%s is NULL", c->special == SP_NULL_DESC ? "desc" : "cache");
    return e;
  }
  if (c->special == SP_NULL_Q) fuzz_require(&e, MHA_STATUS_NULL_POINTER, "q is NULL");
  if (c->special == SP_NULL_OUT) fuzz_require(&e, MHA_STATUS_NULL_POINTER, "out is NULL");
  if (kv_attention_tiny(c)) {
    /* a stand-in's span, as the library computes it from the strides, may
     * cover another buffer */
    fuzz_allow(&e, MHA_STATUS_INVALID_STRIDE);
  }
  if (c->ws == WS_SHORT || (c->ws != WS_NONE && !ws_known)) {
    fuzz_require(&e, MHA_STATUS_INVALID_ARGUMENT, "workspace_size %zu < the %zu needed",
                 c->desc.workspace_size, ws_needed);
  }
  if (c->varlen && kv_placed(c)) {
    /* "INVALID_STRIDE when out or lse overlaps an input": where the written
     * buffer spans real rows (a batch of no rows may pass or refuse it) */
    static const char* const what[] = {
        [VL_OUT_OVER_CU_Q] = "out lies over cu_seqlens_q", [VL_OUT_OVER_USED] = "out lies over seqused_k",
        [VL_OUT_OVER_TABLE] = "out lies over cache->block_table",
        [VL_LSE_OVER_TABLE] = "lse lies over cache->block_table", [VL_LSE_OVER_USED] = "lse lies over seqused_k",
        [VL_LSE_OVER_CU_Q] = "lse lies over cu_seqlens_q"};
    if (c->cu_ok && c->total_q > 0) {
      fuzz_require(&e, MHA_STATUS_INVALID_STRIDE, "%s", what[c->vl_place]);
    } else {
      fuzz_allow(&e, MHA_STATUS_INVALID_STRIDE);
    }
  }
  return e;
}

static fuzz_expect kv_expect_write(const kv_case* c) {
  fuzz_expect e;
  fuzz_expect_init(&e);
  if (c->T < 1) fuzz_require(&e, MHA_STATUS_INVALID_SIZE, "T = %lld", (long long)c->T);
  if (c->special == SP_NULL_POS) fuzz_require(&e, MHA_STATUS_NULL_POINTER, "pos is NULL");
  kv_merge(&e, &c->cache_rules);
  if (c->special != SP_NULL_POS) kv_expect_range(c, &e, c->pos, NULL, c->T);
  if (c->special == SP_K_IS_V) fuzz_require(&e, MHA_STATUS_INVALID_STRIDE, "cache->k is cache->v");
  if (kv_pools_tiny(c) || c->tab.tiny) fuzz_allow(&e, MHA_STATUS_INVALID_STRIDE);
  return e;
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */
/* ------------------------------------------------------------------------ */

static void kv_buf_alloc(kv_buf* b, size_t bytes, int tiny) {
  b->bytes = bytes ? bytes : 1;
  b->p = malloc(b->bytes);
  if (b->p == NULL) {
    fprintf(stderr, "mha-fuzz: cannot allocate %zu bytes\n", b->bytes);
    exit(2);
  }
  b->tiny = tiny;
}

/* count elements of size bytes, or a tiny stand-in when count is unknown or
 * unreasonable. */
static void kv_buf_elems(kv_buf* b, int64_t count, size_t size) {
  const int ok = count >= 1 && count <= FUZZ_MAX_BUFFER_BYTES / (int64_t)size;
  kv_buf_alloc(b, ok ? (size_t)count * size : size, !ok);
}

static void kv_buf_snap(kv_buf* b) {
  free(b->snap);
  b->snap = b->p ? fuzz_snapshot(b->p, b->bytes) : NULL;
}

static void kv_buf_unchanged(const char* what, const kv_buf* b) {
  if (b->p != NULL && b->snap != NULL) fuzz_check_unchanged(what, b->p, b->snap, b->bytes);
}

static void kv_buf_free(kv_buf* b) {
  free(b->p);
  free(b->snap);
  memset(b, 0, sizeof *b);
}

/* One random cache element at index i of a pool, by the values mode. */
static void kv_random_elem(const kv_case* c, unsigned char* p, int64_t i, fuzz_rng* r) {
  const int mode = c->values % 4;
  const uint64_t x = fuzz_next(r);
  if (c->cache.dtype == MHA_DTYPE_F32) {
    float f;
    switch (mode) {
      case 0: f = fuzz_uniform(r, -1, 1); break;
      case 1: f = fuzz_uniform(r, -8, 8); break;
      case 2: f = kv_arbitrary_f32((uint32_t)(x >> 16)); break;
      default:
        f = x % 16 == 0 ? NAN : x % 16 == 1 ? ((x >> 8) & 1 ? INFINITY : -INFINITY) : fuzz_uniform(r, -100, 100);
        break;
    }
    memcpy(p + (size_t)i * sizeof f, &f, sizeof f);
    return;
  }
  const int f16 = c->cache.dtype != MHA_DTYPE_BF16; /* bad dtypes: any 16 bits */
  const unsigned mbits = f16 ? 10 : 7, bias = f16 ? 15 : 127, emax = f16 ? 30 : 254;
  const unsigned sign = (unsigned)(x >> 63) << 15, man = (unsigned)x & ((1u << mbits) - 1u);
  unsigned e;
  uint16_t h;
  switch (mode) {
    case 0: e = bias - 4 + (unsigned)((x >> 20) % 5); break;  /* [2^-4, 2) */
    case 1: e = bias - 8 + (unsigned)((x >> 20) % 12); break; /* [2^-8, 16) */
    case 2: e = 0xFFFFu; break;
    default: /* large finite mostly; zeros, subnormals, inf and NaN */
      e = (x >> 20) % 8 == 0 ? ((x >> 24) % 3 == 0 ? 0u : emax + 1) : emax - (unsigned)((x >> 20) % 6);
      break;
  }
  h = e == 0xFFFFu ? (uint16_t)(x >> 24) : (uint16_t)(sign | e << mbits | man);
  memcpy(p + (size_t)i * sizeof h, &h, sizeof h);
}

static void kv_nan_elem(const kv_case* c, unsigned char* p, int64_t i) {
  if (c->cache.dtype == MHA_DTYPE_F32) {
    const float f = NAN;
    memcpy(p + (size_t)i * sizeof f, &f, sizeof f);
  } else {
    const uint16_t h = c->cache.dtype == MHA_DTYPE_BF16 ? 0x7fc0u : 0x7e00u;
    memcpy(p + (size_t)i * sizeof h, &h, sizeof h);
  }
}

/* The element offset of token t of entry b, head g, in K (is_v 0) or V;
 * 0 if the table slot is outside [0, num_blocks). cache_ok only. */
static int kv_row_offset(const kv_case* c, int is_v, int64_t b, int64_t g, int64_t t, int64_t* off) {
  const mha_kv_cache* k = &c->cache;
  const mha_strides* s = is_v ? &k->v_strides : &k->k_strides;
  int64_t n = b;
  if (k->block_size != 0) {
    const int32_t blk = c->table[b * k->max_blocks + t / k->block_size];
    if (blk < 0 || blk >= k->num_blocks) return 0;
    n = blk;
    t %= k->block_size;
  }
  *off = n * s->batch + g * s->head + t * s->row;
  return 1;
}

/* The tokens [0, end) entry b reads (its kv_len, or Tk), within the cache. */
static int64_t kv_entry_end(const kv_case* c, int64_t b) {
  const int64_t end = c->kv_len && c->kv_len_ok ? c->kv_len[b] : c->desc.Tk;
  return kv_clamp(end, 0, c->limit);
}

/* The block table: valid blocks in every slot that covers tokens some call
 * uses, -1 (or garbage) in the others, and maybe one bad entry. */
static void kv_fill_table(kv_case* c, fuzz_rng* r) {
  const mha_kv_cache* k = &c->cache;
  const int64_t B = c->desc.B, mb = k->max_blocks, bs = k->block_size;
  const int64_t nb = k->num_blocks >= 1 ? k->num_blocks : 1;
  const int mode = c->table_mode % 8;
  const int bs_ok = kv_block_size_ok(bs);
  int32_t* perm = malloc((size_t)(B * mb) * sizeof(int32_t));
  if (perm == NULL) exit(2);
  for (int64_t i = 0; i < B * mb; i++) perm[i] = (int32_t)(i % nb);
  for (int64_t i = B * mb - 1; i > 0; i--) { /* Fisher-Yates */
    const int64_t j = (int64_t)(fuzz_next(r) % (uint64_t)(i + 1));
    const int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  const int64_t shared = 1 + (c->table_mode >> 3) % 3;
  for (int64_t b = 0; b < B; b++) {
    int64_t cover = bs_ok ? kv_clamp(c->kv_len && c->kv_len_ok ? c->kv_len[b] : c->desc.Tk, 0,
                                     fuzz_mul_sat(mb, bs))
                          : 0;
    if (c->write && c->pos && bs_ok) {
      const int64_t wend = kv_clamp(fuzz_add_sat(c->pos[b], c->T), 0, fuzz_mul_sat(mb, bs));
      if (wend > cover) cover = wend;
    }
    for (int64_t s = 0; s < mb; s++) {
      int32_t* slot = &c->table[b * mb + s];
      const int used = bs_ok && s * bs < cover;
      if (!used && mode != 6) {
        *slot = mode == 3 ? (int32_t)fuzz_next(r) : -1;
        continue;
      }
      switch (mode) {
        case 1: case 6: *slot = (int32_t)(fuzz_next(r) % (uint64_t)nb); break;
        case 2: *slot = b > 0 && s < shared ? c->table[s] : perm[b * mb + s]; break;
        default: *slot = perm[b * mb + s]; break;
      }
    }
  }
  if (mode == 4 || mode == 5) {
    const int32_t bad[6] = {-1, (int32_t)kv_clamp(nb, 0, INT32_MAX), INT32_MIN, INT32_MAX,
                            (int32_t)kv_clamp(nb + 7, 0, INT32_MAX), -2};
    int64_t at = (int64_t)(fuzz_next(r) % (uint64_t)(B * mb));
    if (mode == 4 && bs_ok) { /* a slot some call reads: slot 0 of an entry that uses any */
      const int64_t b = (int64_t)(fuzz_next(r) % (uint64_t)B);
      const int64_t end = kv_entry_end(c, b);
      at = b * mb + (end > 0 ? (int64_t)(fuzz_next(r) % (uint64_t)((end - 1) / bs + 1)) : 0);
    }
    c->table[at] = bad[(c->table_mode >> 3) % 6];
  }
  free(perm);
}

/* pos for the write, by its mode. */
static void kv_fill_pos(kv_case* c, fuzz_rng* r) {
  const int64_t B = c->desc.B, T = c->T;
  const int64_t lim = c->limit >= 1 ? kv_clamp(c->limit, 1, INT32_MAX) : kv_clamp(c->desc.Tk, 1, 4096);
  const int mode = c->pos_mode % 4;
  for (int64_t b = 0; b < B; b++) {
    int64_t p;
    if (mode == 1) {
      p = lim >= T ? (int64_t)(fuzz_next(r) % (uint64_t)(lim - T + 1)) : 0;
    } else if (mode == 2) {
      p = 0;
    } else { /* append: the last T tokens the entry reads */
      const int64_t end = c->kv_len && c->kv_len_ok ? c->kv_len[b] : kv_clamp(c->desc.Tk, 0, lim);
      p = end - T > 0 ? end - T : 0;
    }
    c->pos[b] = (int32_t)kv_clamp(p, INT32_MIN, INT32_MAX);
  }
  if (mode == 3) {
    const int64_t bad[4] = {-1, kv_clamp(lim - T + 1, INT32_MIN, INT32_MAX), INT32_MAX, INT32_MIN};
    c->pos[fuzz_next(r) % (uint64_t)B] = (int32_t)bad[(c->pos_mode >> 2) % 4];
  }
}

/* A new row value for the write, by its mode. */
static float kv_new_value(const kv_case* c, fuzz_rng* r) {
  const uint64_t x = fuzz_next(r);
  switch (c->new_values) {
    case 1: { /* exponents from 2^-30 to 2^20: f16 subnormals, overflow */
      const float f = ldexpf(1.0f + (float)(x >> 41) * 0x1.0p-23f, (int)((x >> 8) % 51) - 30);
      return x & 1 ? -f : f;
    }
    case 2: return kv_arbitrary_f32((uint32_t)(x >> 16));
    case 3: { /* exactly halfway between two neighbouring 16-bit values */
      if (c->cache.dtype != MHA_DTYPE_F16 && c->cache.dtype != MHA_DTYPE_BF16) break;
      const int f16 = c->cache.dtype == MHA_DTYPE_F16;
      const unsigned mbits = f16 ? 10 : 7, emax = f16 ? 30 : 254;
      const unsigned e = (unsigned)((x >> 20) % emax); /* below the largest binade: h + 1 is finite */
      const uint16_t h = (uint16_t)(((unsigned)(x >> 63) << 15) | e << mbits |
                                    ((unsigned)x & ((1u << mbits) - 1u)));
      const double a = fuzz_widen16(h, f16), b = fuzz_widen16((uint16_t)(h + 1), f16);
      return (float)(0.5 * (a + b)); /* exact: one bit more than the format */
    }
    default: break;
  }
  return fuzz_uniform(r, -2, 2);
}

static mha_strides kv_new_strides(int layout, int64_t Hkv, int64_t T, int64_t w) {
  switch (layout) {
    case 2: {
      mha_strides s;
      s.row = w + 3;
      s.head = fuzz_add_sat(fuzz_mul_sat(T, s.row), 1);
      s.batch = fuzz_add_sat(fuzz_mul_sat(Hkv, s.head), 5);
      return s;
    }
    case 3: return mha_strides_bthd(Hkv, T, w);
    default: return mha_strides_bhtd(Hkv, T, w);
  }
}

/* Varlen mode's floats of out past its view, and of lse past [total_q, H]:
 * two packed rows and a few floats, poisoned guards. */
#define VL_GUARD 7

/* A copy of n int32 values at a random float offset below span inside buf
 * (at least that large), or NULL when there is no span. */
static const int32_t* kv_place_copy(kv_buf* buf, int64_t span, const int32_t* src, size_t n, fuzz_rng* r) {
  if (src == NULL || span < 1 || buf->tiny) return NULL;
  const size_t at = (size_t)(fuzz_next(r) % (uint64_t)span);
  if ((at + n) * sizeof(float) > buf->bytes) return NULL;
  int32_t* dst = (int32_t*)(buf->p + at * sizeof(float));
  memcpy(dst, src, n * sizeof(int32_t));
  return dst;
}

/* Varlen mode: q and out over the packed rows (out and lse with guards),
 * the lengths the call receives, and the placements over them. */
static void kv_make_varlen_buffers(kv_case* c, fuzz_rng* r) {
  mha_attention_desc* d = &c->desc;
  const int64_t B = d->B, H = d->H, rows = c->total_q > 0 ? c->total_q : 1;
  const size_t ncu = (size_t)(B + 1), table_n = c->cache.block_size != 0 && !c->tab.tiny ? c->table_n : 0;
  c->cu_arg = c->vl_lens == VL_CU_NULL ? NULL : c->cu_q;
  c->used_arg = c->vl_lens == VL_USED_NULL ? NULL : c->kv_len;
  /* what a placement copies, and how many int32 */
  const int32_t* src = NULL;
  size_t n = 0;
  switch (c->vl_place) {
    case VL_OUT_OVER_CU_Q: case VL_LSE_OVER_CU_Q: src = c->cu_arg; n = ncu; break;
    case VL_OUT_OVER_USED: case VL_LSE_OVER_USED: src = c->used_arg; n = (size_t)B; break;
    case VL_OUT_OVER_TABLE: case VL_LSE_OVER_TABLE: src = table_n ? c->cache.block_table : NULL; n = table_n; break;
    default: break;
  }
  if (kv_placed(c) && src == NULL) c->vl_place = VL_PLACE_NONE; /* nothing to lie over */
  const int over_out = c->vl_place >= VL_OUT_OVER_CU_Q && c->vl_place <= VL_OUT_OVER_TABLE;
  const int over_lse = kv_placed(c) && !over_out;

  kv_buf_elems(&c->q, c->q_ext, sizeof(float));
  fuzz_fill_nan((float*)c->q.p, c->q.bytes / sizeof(float));
  const float qr = (c->values >> 3) & 1 ? 4.0f : 1.0f;
  if (!c->q.tiny) fuzz_fill_view((float*)c->q.p, c->q_ext, &c->qview, r, -qr, qr);
  /* out: its view, then two packed rows and a few floats that must keep their poison */
  int64_t n_out = 0;
  if (c->o_ext >= 1) n_out = fuzz_add_sat(c->o_ext, fuzz_add_sat(fuzz_mul_sat(2, fuzz_mul_sat(H, d->Dv)), VL_GUARD));
  if (over_out && fuzz_reasonable(n_out)) n_out = fuzz_add_sat(n_out, (int64_t)n);
  kv_buf_elems(&c->out, n_out, sizeof(float));
  fuzz_poison((float*)c->out.p, c->out.bytes / sizeof(float));
  if (c->lse) { /* [total_q, H], then two rows and a few floats */
    const int64_t n_lse = rows * H + 2 * H + VL_GUARD + (over_lse ? (int64_t)n : 0);
    kv_buf_elems(&c->lse_buf, n_lse, sizeof(float));
    fuzz_poison((float*)c->lse_buf.p, c->lse_buf.bytes / sizeof(float));
    d->lse = (float*)c->lse_buf.p;
  }
  /* the placements: a copy of the input inside the span the call writes */
  const int32_t* at = NULL;
  if (over_out) at = kv_place_copy(&c->out, c->o_ext, src, n, r);
  if (over_lse) at = kv_place_copy(&c->lse_buf, rows * H, src, n, r);
  if (kv_placed(c) && at == NULL) c->vl_place = VL_PLACE_NONE;
  switch (c->vl_place) {
    case VL_OUT_OVER_CU_Q: case VL_LSE_OVER_CU_Q: c->cu_arg = at; break;
    case VL_OUT_OVER_USED: case VL_LSE_OVER_USED: c->used_arg = at; break;
    case VL_OUT_OVER_TABLE: case VL_LSE_OVER_TABLE: c->cache.block_table = at; break;
    default: break;
  }
}

/* Allocates and fills every buffer at its declared size. */
static void kv_make_buffers(kv_case* c, fuzz_rng* r) {
  mha_attention_desc* d = &c->desc;
  mha_kv_cache* k = &c->cache;
  const int64_t B = d->B, H = d->H, Hkv = d->Hkv;
  /* the pools */
  kv_buf_elems(&c->kpool, c->k_ext, c->dsize);
  if (c->special == SP_K_IS_V) {
    /* one buffer for both: as large as the larger */
    kv_buf_free(&c->kpool);
    const int64_t ext = c->k_ext > 0 && c->v_ext > 0 ? (c->k_ext > c->v_ext ? c->k_ext : c->v_ext) : 0;
    kv_buf_elems(&c->kpool, ext, c->dsize);
    c->vpool = c->kpool;
    c->vpool.snap = NULL;
  } else {
    kv_buf_elems(&c->vpool, c->v_ext, c->dsize);
  }
  /* the table: B·max_blocks entries */
  if (k->block_size != 0) {
    const int64_t n = k->max_blocks >= 1 ? fuzz_mul_sat(B, k->max_blocks) : 0;
    kv_buf_elems(&c->tab, n, sizeof(int32_t));
    c->table = (int32_t*)c->tab.p;
    c->table_n = c->tab.bytes / sizeof(int32_t);
    for (size_t i = 0; i < c->table_n; i++) c->table[i] = -1;
  }
  /* pos before the table: the table covers what the write writes */
  if (c->write) {
    c->pos = malloc((size_t)B * sizeof(int32_t));
    if (c->pos == NULL) exit(2);
    kv_fill_pos(c, r);
  }
  if (k->block_size != 0 && !c->tab.tiny) kv_fill_table(c, r);

  /* the pools' contents: random everywhere, or NaN but in the rows used */
  const int nan_gaps = (c->values >> 2) & 1;
  const int shared = c->special == SP_K_IS_V;
  for (int is_v = 0; is_v < 2 - shared; is_v++) {
    kv_buf* pool = is_v ? &c->vpool : &c->kpool;
    const int64_t n = (int64_t)(pool->bytes / c->dsize);
    for (int64_t i = 0; i < n; i++) {
      if (nan_gaps) {
        kv_nan_elem(c, pool->p, i);
      } else {
        kv_random_elem(c, pool->p, i, r);
      }
    }
  }
  if (nan_gaps && c->cache_ok && !kv_pools_tiny(c)) {
    for (int is_v = 0; is_v < 2; is_v++) {
      kv_buf* pool = is_v ? &c->vpool : &c->kpool;
      const int64_t w = is_v ? d->Dv : d->D;
      for (int64_t b = 0; b < B; b++) {
        for (int64_t g = 0; g < Hkv; g++) {
          for (int64_t t = 0; t < kv_entry_end(c, b); t++) {
            int64_t off;
            if (!kv_row_offset(c, is_v, b, g, t, &off)) continue;
            for (int64_t x = 0; x < w; x++) kv_random_elem(c, pool->p, off + x, r);
          }
        }
      }
    }
  }
  k->k = c->special == SP_NULL_K ? NULL : c->kpool.p;
  k->v = c->special == SP_NULL_V ? NULL : c->vpool.p;
  k->block_table = c->special == SP_NULL_TABLE ? NULL : c->table;

  /* q, out, weights, lse (varlen mode: over the packed rows, no weights) */
  int64_t ext;
  if (c->varlen) {
    kv_make_varlen_buffers(c, r);
  } else {
    const fuzz_view qv = {B, H, d->Tq, d->D, d->q}, ov = {B, H, d->Tq, d->Dv, d->out};
    kv_buf_elems(&c->q, fuzz_view_extent(&qv, &ext) ? ext : 0, sizeof(float));
    const float qr = (c->values >> 3) & 1 ? 4.0f : 1.0f;
    fuzz_fill_nan((float*)c->q.p, c->q.bytes / sizeof(float));
    if (!c->q.tiny) fuzz_fill_view((float*)c->q.p, ext, &qv, r, -qr, qr);
    kv_buf_elems(&c->out, fuzz_view_extent(&ov, &ext) ? ext : 0, sizeof(float));
    fuzz_poison((float*)c->out.p, c->out.bytes / sizeof(float));
    if (c->weights) {
      const fuzz_view wv = {B, H, d->Tq, d->Tk, mha_strides_bhtd(H, d->Tq, d->Tk)};
      kv_buf_elems(&c->w, fuzz_view_extent(&wv, &ext) ? ext : 0, sizeof(float));
      fuzz_poison((float*)c->w.p, c->w.bytes / sizeof(float));
    }
    if (c->lse) {
      kv_buf_elems(&c->lse_buf, fuzz_mul_sat(fuzz_mul_sat(B, H), d->Tq), sizeof(float));
      fuzz_poison((float*)c->lse_buf.p, c->lse_buf.bytes / sizeof(float));
      d->lse = (float*)c->lse_buf.p;
    }
  }
  /* the new rows */
  if (c->write) {
    const int64_t T = c->T >= 1 ? c->T : 1;
    c->kn = kv_new_strides(c->new_layout, Hkv, T, d->D);
    c->vn = kv_new_strides(c->new_layout, Hkv, T, d->Dv);
    const fuzz_view kv = {B, Hkv, T, d->D, c->kn}, vv = {B, Hkv, T, d->Dv, c->vn};
    for (int is_v = 0; is_v < 2; is_v++) {
      kv_buf* nb = is_v ? &c->vnew : &c->knew;
      const fuzz_view* v = is_v ? &vv : &kv;
      kv_buf_elems(nb, fuzz_view_extent(v, &ext) ? ext : 0, sizeof(float));
      float* f = (float*)nb->p;
      fuzz_fill_nan(f, nb->bytes / sizeof(float));
      for (int64_t b = 0; b < B; b++) {
        for (int64_t g = 0; g < Hkv; g++) {
          for (int64_t t = 0; t < T; t++) {
            for (int64_t x = 0; x < v->width; x++) {
              f[b * v->s.batch + g * v->s.head + t * v->s.row + x] = kv_new_value(c, r);
            }
          }
        }
      }
    }
  }
}

static void kv_snap_all(kv_case* c) {
  kv_buf_snap(&c->kpool);
  if (c->special != SP_K_IS_V) kv_buf_snap(&c->vpool);
  kv_buf_snap(&c->tab);
  kv_buf_snap(&c->q);
  kv_buf_snap(&c->out);
  kv_buf_snap(&c->w);
  kv_buf_snap(&c->lse_buf);
  kv_buf_snap(&c->knew);
  kv_buf_snap(&c->vnew);
  if (c->varlen) {
    free(c->cu_snap);
    c->cu_snap = fuzz_snapshot(c->cu_q, (size_t)(c->desc.B + 1) * sizeof(int32_t));
  }
}

static void kv_free(kv_case* c) {
  kv_buf_free(&c->kpool);
  if (c->special == SP_K_IS_V) {
    memset(&c->vpool, 0, sizeof c->vpool);
  } else {
    kv_buf_free(&c->vpool);
  }
  kv_buf_free(&c->tab);
  kv_buf_free(&c->q);
  kv_buf_free(&c->out);
  kv_buf_free(&c->w);
  kv_buf_free(&c->lse_buf);
  kv_buf_free(&c->knew);
  kv_buf_free(&c->vnew);
  free(c->kv_len);
  free(c->slopes);
  free(c->sinks);
  free(c->pos);
  free(c->ws_mem);
  free(c->cu_q);
  free(c->cu_snap);
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static void kv_describe(const kv_case* c) {
  const mha_attention_desc* d = &c->desc;
  const mha_kv_cache* k = &c->cache;
  const mha_mask* m = &d->mask;
  char vl[160] = "";
  if (c->varlen) {
    const int64_t B = d->B;
    snprintf(vl, sizeof vl, " varlen lens=%d place=%d len_q=[%lld,%lld,%lld,%lld] cu_q[0]=%d total_q=%lld "
             "seqused_k=[%d,%d,%d,%d]", c->vl_lens, c->vl_place, (long long)c->len_q[0],
             (long long)(B > 1 ? c->len_q[1] : -1), (long long)(B > 2 ? c->len_q[2] : -1),
             (long long)(B > 3 ? c->len_q[3] : -1), (int)c->cu_q[0], (long long)c->total_q,
             (int)c->kv_len[0], B > 1 ? (int)c->kv_len[1] : -1, B > 2 ? (int)c->kv_len[2] : -1,
             B > 3 ? (int)c->kv_len[3] : -1);
  }
  fuzz_describe(
      "kv-cache B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld dtype=%d block_size=%lld "
      "capacity=%lld num_blocks=%lld max_blocks=%lld table_mode=0x%x table[0]=%d "
      "k{%lld,%lld,%lld} v{%lld,%lld,%lld} layout=%d/%d kv_len=%s%d causal=%d align=%d offset=%lld "
      "window=%d{%lld,%lld} alibi=%s softcap=%a sinks=%s scale=%a threads=%d isa=%d weights=%d "
      "lse=%d workspace=%d qo=%d values=0x%x special=%d write=%d T=%lld pos_mode=0x%x pos[0]=%d "
      "new=%d/%d%s",
      (long long)d->B, (long long)d->H, (long long)d->Hkv, (long long)d->Tq, (long long)d->Tk,
      (long long)d->D, (long long)d->Dv, (int)k->dtype, (long long)k->block_size, (long long)k->capacity,
      (long long)k->num_blocks, (long long)k->max_blocks, c->table_mode,
      c->table && c->table_n ? (int)c->table[0] : 0, (long long)k->k_strides.batch,
      (long long)k->k_strides.head, (long long)k->k_strides.row, (long long)k->v_strides.batch,
      (long long)k->v_strides.head, (long long)k->v_strides.row, c->layout, c->kind,
      c->kv_len ? "[0]=" : "none/", c->kv_len ? (int)c->kv_len[0] : 0, m->causal, (int)m->align,
      (long long)m->offset, m->window, (long long)m->window_left, (long long)m->window_right,
      m->alibi_slopes ? "on" : "off", (double)m->softcap, m->sinks ? "on" : "off", (double)d->scale,
      d->num_threads, (int)d->isa, c->weights, c->lse, c->ws, c->qo, c->values, c->special, c->write,
      (long long)c->T, c->pos_mode, c->pos ? (int)c->pos[0] : 0, c->new_layout, c->new_values, vl);
}

/* Bitwise equal, a NaN equal to any NaN (include/mha.h: "A NaN is a NaN"). */
static void kv_check_bits(const char* what, const float* got, const float* ref, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (isnan(got[i]) && isnan(ref[i])) continue;
    if (memcmp(&got[i], &ref[i], sizeof(float)) != 0) {
      fuzz_finding("%s: element %zu of %zu is %a, mha_attention_f32 on the widened K/V gives %a", what, i,
                   n, (double)got[i], (double)ref[i]);
    }
  }
}

static float kv_load(const kv_case* c, const unsigned char* pool, int64_t i) {
  if (c->cache.dtype == MHA_DTYPE_F32) {
    float f;
    memcpy(&f, pool + (size_t)i * sizeof f, sizeof f);
    return f;
  }
  uint16_t h;
  memcpy(&h, pool + (size_t)i * sizeof h, sizeof h);
  return fuzz_widen16(h, c->cache.dtype == MHA_DTYPE_F16);
}

/* After a successful write: every written element holds its new value,
 * rounded to the dtype; every other byte of the pools is as before.
 * Elements written more than once (the header's "must not write the same
 * block rows", or strides that share rows) are not checked. */
static void kv_check_write(const kv_case* c) {
  const mha_attention_desc* d = &c->desc;
  for (int is_v = 0; is_v < 2; is_v++) {
    const kv_buf* pool = is_v ? &c->vpool : &c->kpool;
    const kv_buf* nb = is_v ? &c->vnew : &c->knew;
    const mha_strides* ns = is_v ? &c->vn : &c->kn;
    const int64_t w = is_v ? d->Dv : d->D;
    const size_t n = pool->bytes / c->dsize;
    uint8_t* count = calloc(n, 1);
    int64_t* src = malloc(n * sizeof(int64_t));
    if (count == NULL || src == NULL) exit(2);
    for (int64_t b = 0; b < d->B; b++) {
      for (int64_t g = 0; g < d->Hkv; g++) {
        for (int64_t t = 0; t < c->T; t++) {
          int64_t off;
          if (!kv_row_offset(c, is_v, b, g, c->pos[b] + t, &off)) fuzz_finding("harness: a written row has no block");
          for (int64_t x = 0; x < w; x++) {
            const int64_t i = off + x;
            if (i < 0 || (size_t)i >= n) fuzz_finding("harness: a written element outside the pool");
            if (count[i] < 255) count[i]++;
            src[i] = b * ns->batch + g * ns->head + t * ns->row + x;
          }
        }
      }
    }
    const float* f = (const float*)nb->p;
    for (size_t i = 0; i < n; i++) {
      const unsigned char* now = pool->p + i * c->dsize;
      if (count[i] == 0) {
        const unsigned char* was = (is_v ? c->vpool.snap : c->kpool.snap) + i * c->dsize;
        if (memcmp(now, was, c->dsize) != 0) {
          fuzz_finding("mha_kv_cache_write changed cache->%s element %zu, which no new row maps to", is_v ? "v" : "k", i);
        }
        continue;
      }
      if (count[i] > 1) continue;
      const float x = f[src[i]];
      const float got = kv_load(c, pool->p, (int64_t)i);
      int ok;
      float want = x;
      if (isnan(x)) {
        ok = isnan(got);
      } else if (c->cache.dtype == MHA_DTYPE_F32) {
        ok = memcmp(&got, &x, sizeof got) == 0;
      } else {
        want = fuzz_round16(x, c->cache.dtype == MHA_DTYPE_F16);
        ok = memcmp(&got, &want, sizeof got) == 0;
      }
      if (!ok) {
        fuzz_finding("mha_kv_cache_write stored %a (from %a) at cache->%s element %zu; the rounding to dtype %d is %a",
                     (double)got, (double)x, is_v ? "v" : "k", i, (int)c->cache.dtype, (double)want);
      }
    }
    free(count);
    free(src);
  }
}

/* The floats of a buffer. */
static int64_t kv_floats(const kv_buf* b) { return (int64_t)(b->bytes / sizeof(float)); }

/* After a successful attention call: the outputs against mha_attention_f32
 * on K/V widened into fp32 [B, Hkv, Tk, D] (NaN past each entry's length). */
static void kv_check_attention(const kv_case* c) {
  const mha_attention_desc* d = &c->desc;
  const int64_t B = d->B, H = d->H, Hkv = d->Hkv, Tq = d->Tq, Tk = d->Tk, D = d->D, Dv = d->Dv;
  /* out: every element of the view written, nothing around it */
  const fuzz_view ov = {B, H, Tq, Dv, d->out};
  const size_t n_out = (size_t)(B * H * Tq * Dv);
  float* got = fuzz_alloc(n_out);
  fuzz_gather((const float*)c->out.p, &ov, got);
  for (size_t i = 0; i < n_out; i++) {
    if (fuzz_is_poison(got[i])) fuzz_finding("out element %zu of %zu was not written", i, n_out);
  }
  fuzz_poison_view((float*)c->out.p, &ov);
  for (int64_t i = 0; i < kv_floats(&c->out); i++) {
    if (!fuzz_is_poison(((float*)c->out.p)[i])) fuzz_finding("out offset %lld, outside the view, was written", (long long)i);
  }
  const size_t n_w = c->weights ? (size_t)(B * H * Tq * Tk) : 0, n_lse = c->lse ? (size_t)(B * H * Tq) : 0;
  for (size_t i = 0; i < n_w; i++) {
    if (fuzz_is_poison(((float*)c->w.p)[i])) fuzz_finding("weights element %zu was not written", i);
  }
  for (size_t i = 0; i < n_lse; i++) {
    if (fuzz_is_poison(((float*)c->lse_buf.p)[i])) fuzz_finding("lse element %zu was not written", i);
  }

  /* the reference K and V */
  const size_t nk = (size_t)(B * Hkv * Tk * D), nv = (size_t)(B * Hkv * Tk * Dv);
  float* kr = fuzz_alloc(nk);
  float* vr = fuzz_alloc(nv);
  fuzz_fill_nan(kr, nk);
  fuzz_fill_nan(vr, nv);
  for (int64_t b = 0; b < B; b++) {
    const int64_t end = c->kv_len ? c->kv_len[b] : Tk;
    for (int64_t g = 0; g < Hkv; g++) {
      for (int64_t t = 0; t < end; t++) {
        int64_t ko, vo;
        if (!kv_row_offset(c, 0, b, g, t, &ko) || !kv_row_offset(c, 1, b, g, t, &vo)) {
          fuzz_finding("harness: a key the call read has no block");
        }
        for (int64_t x = 0; x < D; x++) kr[((b * Hkv + g) * Tk + t) * D + x] = kv_load(c, c->kpool.p, ko + x);
        for (int64_t x = 0; x < Dv; x++) vr[((b * Hkv + g) * Tk + t) * Dv + x] = kv_load(c, c->vpool.p, vo + x);
      }
    }
  }
  mha_attention_desc rd = *d;
  rd.k = mha_strides_bhtd(Hkv, Tk, D);
  rd.v = mha_strides_bhtd(Hkv, Tk, Dv);
  rd.workspace = NULL;
  rd.workspace_size = 0;
  float* rout = fuzz_alloc(c->out.bytes / sizeof(float));
  fuzz_poison(rout, c->out.bytes / sizeof(float));
  float* rw = n_w ? fuzz_alloc(n_w) : NULL;
  float* rlse = n_lse ? fuzz_alloc(n_lse) : NULL;
  rd.lse = rlse;
  const mha_status st = mha_attention_f32(&rd, (const float*)c->q.p, kr, vr, rout, rw);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("mha_attention_kv_f32 succeeded, but mha_attention_f32 on the widened K/V failed: %s: %s",
                 mha_status_string(st), mha_last_error());
  }
  float* ref = fuzz_alloc(n_out);
  fuzz_gather(rout, &ov, ref);
  kv_check_bits("out", got, ref, n_out);
  if (n_w) kv_check_bits("weights", (const float*)c->w.p, rw, n_w);
  if (n_lse) kv_check_bits("lse", (const float*)c->lse_buf.p, rlse, n_lse);
  free(got);
  free(kr);
  free(vr);
  free(rout);
  free(rw);
  free(rlse);
  free(ref);
}

/* ------------------------------------------------------------------------ */
/* Varlen mode's checks                                                     */
/* ------------------------------------------------------------------------ */

/* The index of the first element whose bits differ, or -1 (a NaN is a NaN). */
static int64_t kv_diff(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (int64_t)i;
  }
  return -1;
}

/* One successful varlen call's outputs, dense: out [H, total_q, Dv] (the
 * view's order) and lse [total_q, H] (or NULL). */
typedef struct kv_vl_result {
  float* out;
  float* lse;
} kv_vl_result;

/* Every packed row of out (and lse entry) written, and nothing else: not the
 * gaps of out's view, not the guards past it, not lse past total_q·H. */
static kv_vl_result kv_vl_take(const kv_case* c, float* out, size_t n_out, const float* lse, size_t n_lse,
                               const char* what) {
  const int64_t H = c->desc.H, Dv = c->desc.Dv, tq = c->total_q;
  kv_vl_result res = {fuzz_alloc((size_t)(H * tq * Dv)), NULL};
  if (tq > 0) {
    fuzz_gather(out, &c->oview, res.out);
    for (int64_t i = 0; i < H * tq * Dv; i++) {
      if (fuzz_is_poison(res.out[i])) {
        fuzz_finding("%s: out row %lld, head %lld, column %lld (of %lld packed rows) was not written", what,
                     (long long)(i / Dv % tq), (long long)(i / (tq * Dv)), (long long)(i % Dv), (long long)tq);
      }
    }
    fuzz_poison_view(out, &c->oview);
  }
  for (size_t i = 0; i < n_out; i++) {
    if (!fuzz_is_poison(out[i])) {
      fuzz_finding("%s: out offset %zu, outside the view of its %lld packed rows (a gap or a guard), was "
                   "written", what, i, (long long)tq);
    }
  }
  if (lse != NULL) {
    const size_t n = (size_t)(tq * H);
    res.lse = fuzz_alloc(n);
    memcpy(res.lse, lse, n * sizeof(float));
    for (size_t i = 0; i < n_lse; i++) {
      if (i < n && fuzz_is_poison(lse[i])) {
        fuzz_finding("%s: lse of row %zu, head %zu was not written", what, i / (size_t)H, i % (size_t)H);
      }
      if (i >= n && !fuzz_is_poison(lse[i])) {
        fuzz_finding("%s: lse entry %zu, past total_q·H = %zu, was written", what, i, n);
      }
    }
  }
  return res;
}

static void kv_vl_free(kv_vl_result* r) {
  free(r->out);
  free(r->lse);
}

/* Sequence b must have exactly the bits of mha_attention_kv_f32 on that
 * sequence alone: B = 1, Tq = len_q, Tk = seqused_k[b], q at its rows, the
 * cache's entry b as entry 0; without keys, zeros and lse -inf or its sink. */
static void kv_vl_alone(const kv_case* c, const kv_vl_result* got, int64_t b) {
  const mha_attention_desc* d = &c->desc;
  const int64_t H = d->H, Dv = d->Dv, tq = c->total_q;
  const int64_t lq = c->len_q[b], lk = c->kv_len[b], cq = c->cu_q[b];
  if (lq == 0) return;
  if (lk == 0) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t i = 0; i < lq; i++) {
        for (int64_t j = 0; j < Dv; j++) {
          const float x = got->out[(h * tq + cq + i) * Dv + j];
          if (x != 0.0f) {
            fuzz_finding("sequence %lld has no keys, but out row %lld, head %lld, column %lld is %a", (long long)b,
                         (long long)i, (long long)h, (long long)j, (double)x);
          }
        }
        if (got->lse == NULL) continue;
        const float want = d->mask.sinks ? d->mask.sinks[h] : -INFINITY, x = got->lse[(cq + i) * H + h];
        if (memcmp(&x, &want, sizeof x) != 0) {
          fuzz_finding("sequence %lld has no keys, but lse of row %lld, head %lld is %a, not %a", (long long)b,
                       (long long)i, (long long)h, (double)x, (double)want);
        }
      }
    }
    return;
  }
  mha_attention_desc sd = *d;
  sd.B = 1;
  sd.Tq = lq;
  sd.Tk = lk;
  sd.q = (mha_strides){0, d->q.head, d->q.row};
  sd.out = mha_strides_bhtd(H, lq, Dv);
  sd.mask.kv_len = NULL;
  sd.workspace = NULL;
  sd.workspace_size = 0;
  const size_t n_o = (size_t)(H * lq * Dv), n_l = (size_t)(H * lq);
  float* so = fuzz_alloc(n_o);
  fuzz_poison(so, n_o);
  float* sl = NULL;
  if (got->lse != NULL) {
    sl = fuzz_alloc(n_l);
    fuzz_poison(sl, n_l);
  }
  sd.lse = sl;
  mha_kv_cache e = c->cache; /* entry b as entry 0 */
  if (e.block_size != 0) {
    e.block_table = c->table + b * e.max_blocks;
  } else {
    e.k = (unsigned char*)e.k + (size_t)(b * e.k_strides.batch) * c->dsize;
    e.v = (unsigned char*)e.v + (size_t)(b * e.v_strides.batch) * c->dsize;
  }
  const mha_status st = mha_attention_kv_f32(&sd, (const float*)c->q.p + cq * d->q.row, &e, so, NULL);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("sequence %lld (len_q %lld, seqused_k %lld) alone through mha_attention_kv_f32 failed with %s: %s",
                 (long long)b, (long long)lq, (long long)lk, mha_status_string(st), mha_last_error());
  }
  for (int64_t h = 0; h < H; h++) {
    for (int64_t i = 0; i < lq; i++) {
      const float* g = got->out + (h * tq + cq + i) * Dv;
      const float* a = so + (h * lq + i) * Dv;
      const int64_t j = kv_diff(g, a, (size_t)Dv);
      if (j >= 0) {
        fuzz_finding("sequence %lld (len_q %lld, seqused_k %lld, rows from %lld): out row %lld, head %lld, "
                     "column %lld is %a in the batch but %a alone", (long long)b, (long long)lq, (long long)lk,
                     (long long)cq, (long long)i, (long long)h, (long long)j, (double)g[j], (double)a[j]);
      }
      if (sl != NULL && kv_diff(&got->lse[(cq + i) * H + h], &sl[h * lq + i], 1) >= 0) {
        fuzz_finding("sequence %lld (len_q %lld, seqused_k %lld): lse of row %lld, head %lld is %a in the batch "
                     "but %a alone", (long long)b, (long long)lq, (long long)lk, (long long)i, (long long)h,
                     (double)got->lse[(cq + i) * H + h], (double)sl[h * lq + i]);
      }
    }
  }
  free(so);
  free(sl);
}

/* After a successful varlen call: the rows, each sequence against itself
 * alone, and the same bits (and workspace) at another thread count and
 * other bounds. */
static void kv_check_varlen(const kv_case* c, size_t needed, int known, fuzz_rng* r) {
  const mha_attention_desc* d = &c->desc;
  kv_vl_result got = kv_vl_take(c, (float*)c->out.p, c->out.bytes / sizeof(float),
                                d->lse ? (const float*)c->lse_buf.p : NULL, c->lse_buf.bytes / sizeof(float),
                                "the call");
  for (int64_t b = 0; b < d->B; b++) kv_vl_alone(c, &got, b);
  /* other bounds ("a function of the real lengths, not of Tq and Tk"):
   * Tq larger, Tk the whole cache */
  static const int64_t big_tq[3] = {0, (int64_t)1 << 62, INT64_MAX};
  const uint64_t pick = fuzz_next(r) % 3;
  mha_attention_desc dd = *d;
  dd.Tq = pick == 0 ? d->Tq + 3 : big_tq[pick];
  dd.Tk = c->limit;
  dd.workspace = NULL;
  dd.workspace_size = 0;
  if (known) {
    size_t other = 0;
    const mha_status st = mha_attention_varlen_kv_workspace_size(&dd, c->cu_arg, c->used_arg, &c->cache, &other);
    if (st != MHA_STATUS_SUCCESS || other != needed) {
      fuzz_finding("the workspace query with bounds Tq = %lld, Tk = %lld gave %s, %zu bytes; with Tq = %lld, "
                   "Tk = %lld %zu", (long long)dd.Tq, (long long)dd.Tk, mha_status_string(st), other,
                   (long long)d->Tq, (long long)d->Tk, needed);
    }
  }
  dd.num_threads = 1 + d->num_threads % 3;
  const size_t n_out = c->out.bytes / sizeof(float), n_lse = c->lse_buf.bytes / sizeof(float);
  float* out = fuzz_alloc(n_out);
  fuzz_poison(out, n_out);
  float* lse = NULL;
  if (d->lse != NULL) {
    lse = fuzz_alloc(n_lse);
    fuzz_poison(lse, n_lse);
  }
  dd.lse = lse;
  const mha_status st = mha_attention_varlen_kv_f32(&dd, c->cu_arg, c->used_arg, (const float*)c->q.p,
                                                    &c->cache, out);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("the rerun at %d threads, Tq = %lld, Tk = %lld failed with %s: %s", dd.num_threads,
                 (long long)dd.Tq, (long long)dd.Tk, mha_status_string(st), mha_last_error());
  }
  kv_vl_result again = kv_vl_take(c, out, n_out, lse, n_lse, "the rerun");
  const int64_t H = d->H, Dv = d->Dv, tq = c->total_q;
  int64_t i = kv_diff(got.out, again.out, (size_t)(H * tq * Dv));
  if (i >= 0) {
    fuzz_finding("out at %d threads, Tq = %lld, Tk = %lld: row %lld, head %lld, column %lld is %a, was %a",
                 dd.num_threads, (long long)dd.Tq, (long long)dd.Tk, (long long)(i / Dv % tq),
                 (long long)(i / (tq * Dv)), (long long)(i % Dv), (double)again.out[i], (double)got.out[i]);
  }
  if (got.lse != NULL && (i = kv_diff(got.lse, again.lse, (size_t)(tq * H))) >= 0) {
    fuzz_finding("lse at %d threads: row %lld, head %lld is %a, was %a", dd.num_threads, (long long)(i / H),
                 (long long)(i % H), (double)again.lse[i], (double)got.lse[i]);
  }
  kv_vl_free(&again);
  kv_vl_free(&got);
  free(out);
  free(lse);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/* With MHA_FUZZ_VERBOSE set, each call's status (after the case line). */
static void kv_trace(const char* call, mha_status st) {
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("MHA_FUZZ_VERBOSE") != NULL;
  if (verbose) fprintf(stderr, "mha-fuzz   %s: %s\n", call, mha_status_string(st));
}

static void kv_run_write(kv_case* c) {
  const fuzz_expect e = kv_expect_write(c);
  if (e.required == 0 && (kv_pools_tiny(c) || c->tab.tiny)) return; /* valid, but over stand-ins */
  const mha_attention_desc* d = &c->desc;
  const mha_status st =
      mha_kv_cache_write(c->special == SP_NULL_CACHE ? NULL : &c->cache, d->B, d->Hkv, c->T, d->D, d->Dv,
                         c->special == SP_NULL_POS ? NULL : c->pos, (const float*)c->knew.p, c->kn,
                         (const float*)c->vnew.p, c->vn);
  kv_trace("mha_kv_cache_write", st);
  fuzz_check_status("mha_kv_cache_write", st, &e);
  kv_buf_unchanged("k_new", &c->knew);
  kv_buf_unchanged("v_new", &c->vnew);
  kv_buf_unchanged("block_table", &c->tab);
  if (st != MHA_STATUS_SUCCESS) {
    kv_buf_unchanged("cache->k after a failed write", &c->kpool);
    kv_buf_unchanged("cache->v after a failed write", &c->vpool);
    return;
  }
  kv_check_write(c);
  kv_buf_snap(&c->kpool); /* what the attention call must leave as it is */
  if (c->special != SP_K_IS_V) kv_buf_snap(&c->vpool);
}

static void kv_run(kv_case* c, fuzz_rng* r) {
  kv_expect_shape(c);
  kv_expect_cache(c);
  mha_attention_desc* d = &c->desc;
  kv_make_buffers(c, r);
  kv_describe(c);

  /* the workspace query */
  const fuzz_expect qe = kv_expect_query(c);
  size_t needed = 0;
  const mha_attention_desc* desc_arg = c->special == SP_NULL_DESC ? NULL : d;
  const mha_kv_cache* cache_arg = c->special == SP_NULL_CACHE ? NULL : &c->cache;
  const char* query = c->varlen ? "mha_attention_varlen_kv_workspace_size" : "mha_attention_kv_workspace_size";
  const mha_status qst =
      c->varlen ? mha_attention_varlen_kv_workspace_size(desc_arg, c->cu_arg, c->used_arg, cache_arg, &needed)
                : mha_attention_kv_workspace_size(desc_arg, cache_arg, c->weights, &needed);
  kv_trace(query, qst);
  fuzz_check_status(query, qst, &qe);
  if (qst == MHA_STATUS_SUCCESS && !c->varlen) {
    /* "the core's for desc (the layout and dtype of the cache do not change it)" */
    mha_attention_desc cd = *d;
    cd.k = mha_strides_bhtd(d->Hkv, d->Tk, d->D);
    cd.v = mha_strides_bhtd(d->Hkv, d->Tk, d->Dv);
    size_t core = 0;
    const mha_status cst = mha_attention_workspace_size(&cd, c->weights, &core);
    if (cst != MHA_STATUS_SUCCESS || core != needed) {
      fuzz_finding("mha_attention_kv_workspace_size gave %zu bytes, mha_attention_workspace_size %s %zu",
                   needed, mha_status_string(cst), core);
    }
  }
  const int known = qst == MHA_STATUS_SUCCESS;
  if (c->ws != WS_NONE) {
    if (known && (int64_t)needed > FUZZ_MAX_BUFFER_BYTES) {
      c->ws = WS_NONE;
    } else {
      const size_t size = !known ? 1 : c->ws == WS_SHORT ? needed - 1 : needed;
      const size_t offset = c->ws == WS_ODD ? 1 + needed % 63 : 0;
      c->ws_mem = malloc(size + offset);
      if (c->ws_mem == NULL) exit(2);
      d->workspace = (char*)c->ws_mem + offset;
      d->workspace_size = size;
    }
  }
  kv_snap_all(c);
  int32_t* kv_len_snap = c->kv_len ? fuzz_snapshot(c->kv_len, (size_t)d->B * sizeof(int32_t)) : NULL;

  if (c->write) kv_run_write(c);

  const fuzz_expect ae = kv_expect_attention(c, needed, known);
  if (ae.required == 0 && kv_attention_tiny(c)) { /* valid, but over stand-ins */
    free(kv_len_snap);
    return;
  }
  const float* q_arg = c->special == SP_NULL_Q ? NULL : (const float*)c->q.p;
  float* out_arg = c->special == SP_NULL_OUT ? NULL : (float*)c->out.p;
  const char* call = c->varlen ? "mha_attention_varlen_kv_f32" : "mha_attention_kv_f32";
  const mha_status st =
      c->varlen ? mha_attention_varlen_kv_f32(desc_arg, c->cu_arg, c->used_arg, q_arg, cache_arg, out_arg)
                : mha_attention_kv_f32(desc_arg, q_arg, cache_arg, out_arg, c->weights ? (float*)c->w.p : NULL);
  kv_trace(call, st);
  fuzz_check_status(call, st, &ae);
  kv_buf_unchanged("q", &c->q);
  kv_buf_unchanged("cache->k", &c->kpool);
  kv_buf_unchanged("cache->v", &c->vpool);
  kv_buf_unchanged("block_table", &c->tab);
  if (kv_len_snap) {
    fuzz_check_unchanged(c->varlen ? "seqused_k" : "kv_len", c->kv_len, kv_len_snap, (size_t)d->B * sizeof(int32_t));
  }
  free(kv_len_snap);
  if (c->varlen) fuzz_check_unchanged("cu_seqlens_q", c->cu_q, c->cu_snap, (size_t)(d->B + 1) * sizeof(int32_t));
  if (st != MHA_STATUS_SUCCESS) {
    kv_buf_unchanged("out after a failed call", &c->out);
    kv_buf_unchanged("weights after a failed call", &c->w);
    kv_buf_unchanged("lse after a failed call", &c->lse_buf);
  }
  /* "Checks desc like the call does (pointers aside)": where they are fine */
  const int pointers_fine = c->special != SP_NULL_DESC && c->special != SP_NULL_CACHE &&
                            c->special != SP_NULL_Q && c->special != SP_NULL_OUT &&
                            c->ws == WS_NONE && !kv_attention_tiny(c) && !(c->varlen && kv_placed(c));
  if (pointers_fine && st != qst && st != MHA_STATUS_OUT_OF_MEMORY) {
    fuzz_finding("%s returned %s but the workspace query %s", call, mha_status_string(st), mha_status_string(qst));
  }
  if (st != MHA_STATUS_SUCCESS) return;
  if (!c->varlen) {
    kv_check_attention(c);
  } else if (kv_placed(c)) { /* allowed only for a batch of no rows: nothing written */
    kv_buf_unchanged("out (no rows, over an input)", &c->out);
    kv_buf_unchanged("lse (no rows, over an input)", &c->lse_buf);
  } else {
    kv_check_varlen(c, needed, known, r);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_input in = {data, size};
  fuzz_rng rng = fuzz_rng_from(data, size);
  kv_case c;
  kv_decode(&in, &rng, &c);
  kv_run(&c, &rng);
  kv_free(&c);
  return 0;
}
