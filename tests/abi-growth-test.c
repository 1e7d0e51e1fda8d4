/*
 * The structs' growth rule (include/mha.h, "ABI"), for each struct a call
 * reads (mha_attention_desc, mha_kv_cache, mha_layer_desc, mha_layer_args):
 *   - an older caller: the struct of the 0.5 layout (the first with
 *     struct_size) in a heap buffer of exactly that size, struct_size = that
 *     size: the call reads nothing past it (ASan's redzone; valgrind) and
 *     gives the bits of the full struct. Today the 0.5 layout is the whole
 *     struct; once a field is appended this is the old-caller test as is;
 *   - a newer caller: struct_size past this library's sizeof with the
 *     unknown bytes 0 → the same bits; one unknown byte set →
 *     INVALID_ARGUMENT naming the struct, outputs untouched;
 *   - struct_size 0 (a zero-filled struct) reads as the 0.5 layout;
 *     1 .. below the 0.5 layout → INVALID_ARGUMENT;
 *   - the initializers (inline wrappers over the exported *_sized ones) set
 *     struct_size to the caller's sizeof and write no byte past it, zeroing
 *     a newer caller's unknown tail.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tester.h"

/* The 0.5 layouts' sizes, as the library defines them: through their last
 * 0.5 field. They must never change. */
#define SIZE_THROUGH(T, f) (offsetof(T, f) + sizeof(((T*)0)->f))

enum { B = 2, H = 4, HKV = 2, TQ = 5, TK = 37, D = 16, DM = 32, TC = 64 };

/* A copy of `full` (sizeof bytes) as a caller of struct_size `size` holds
 * it: `size` bytes in a buffer of exactly that size (extra bytes past sizeof
 * zero-filled, then byte `poke` set to 1 if poke >= 0). */
static void* caller_copy(const void* full, size_t full_size, size_t size, long poke) {
  unsigned char* p = tester_alloc(size);
  memset(p, 0, size);
  memcpy(p, full, size < full_size ? size : full_size);
  memcpy(p, &size, sizeof size);
  if (poke >= 0) p[poke] = 1;
  return p;
}

typedef struct fixture {
  float *q, *k, *v, *out, *ref;
  uint16_t *kc, *vc;
  mha_kv_cache cache;
  float *x, *w, *lout, *lref;
  uint16_t *lk, *lv;
  mha_kv_cache lcache;
  mha_layer* L;
} fixture;

static const size_t NQ = (size_t)B * H * TQ * D, NK = (size_t)B * HKV * TK * D;

/* Runs the core through the desc buffer `d`, the cache call through `d`
 * and the cache buffer `c`, the layer through `ld` and `la`, into fresh
 * poisoned outputs; returns 1 if every call returned want and, on success,
 * matched the reference bits (on failure: left the outputs poisoned). */
static int run_all(tester* t, fixture* f, const mha_attention_desc* d, const mha_kv_cache* c,
                   const mha_layer_desc* ld, const mha_layer_args* la, mha_status want, const char* name) {
  int ok = 1;
  for (int call = 0; call < 4; call++) {
    tester_poison(f->out, NQ);
    tester_poison(f->lout, (size_t)B * TQ * DM);
    tester_stale_error();
    mha_status st;
    const float* expect = f->ref;
    size_t n = NQ;
    float* got = f->out;
    if (call == 0) {
      st = mha_attention_f32(d, f->q, f->k, f->v, f->out, NULL);
    } else if (call == 1) {
      st = mha_attention_kv_f32(d, f->q, c, f->out, NULL);
      expect = NULL; /* a 16-bit cache: its own reference below */
    } else if (call == 2) {
      mha_layer* L = NULL;
      st = mha_layer_create(ld, &L);
      mha_layer_destroy(L);
      got = NULL;
      expect = NULL;
    } else {
      st = mha_layer_forward(f->L, la);
      expect = f->lref;
      got = f->lout;
      n = (size_t)B * TQ * DM;
    }
    if (want != MHA_STATUS_SUCCESS) {
      /* each call is given the struct under test only where it reads one */
      ok &= tester_check_failure(t, name, st, want, NULL);
      if (got != NULL) ok &= tester_check(t, tester_is_poison(got[0]) && tester_is_poison(got[n - 1]), "%s: output written", name);
      continue;
    }
    ok &= tester_check(t, st == MHA_STATUS_SUCCESS, "%s (call %d): %s", name, call, mha_last_error());
    if (st == MHA_STATUS_SUCCESS && expect != NULL) {
      ok &= tester_check(t, memcmp(got, expect, n * sizeof(float)) == 0, "%s (call %d): bits differ", name, call);
    }
  }
  return ok;
}

int main(void) {
  tester t;
  tester_init(&t, "abi-growth-test");
  fixture f;
  f.q = tester_alloc(NQ * sizeof(float));
  f.k = tester_alloc(NK * sizeof(float));
  f.v = tester_alloc(NK * sizeof(float));
  f.out = tester_alloc(NQ * sizeof(float));
  f.ref = tester_alloc(NQ * sizeof(float));
  tester_fill(&t, f.q, NQ);
  tester_fill(&t, f.k, NK);
  tester_fill(&t, f.v, NK);
  f.kc = tester_alloc((size_t)B * HKV * TC * D * sizeof(uint16_t));
  f.vc = tester_alloc((size_t)B * HKV * TC * D * sizeof(uint16_t));
  for (size_t i = 0; i < (size_t)B * HKV * TC * D; i++) {
    f.kc[i] = (uint16_t)(0x3000 + tester_below(&t, 0x800)); /* finite halves */
    f.vc[i] = (uint16_t)(0x3000 + tester_below(&t, 0x800));
  }
  mha_kv_cache_init(&f.cache, MHA_DTYPE_F16, f.kc, f.vc, HKV, TC, D, D);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, TQ, TK, D, D);
  d.mask.causal = 1;
  d.num_threads = 2;
  tester_context(&t, "the initializers");
  mha_layer_desc ld;
  mha_layer_desc_init(&ld);
  mha_layer_args la;
  mha_layer_args_init(&la);
  tester_check(&t, d.struct_size == sizeof d && f.cache.struct_size == sizeof f.cache && ld.struct_size == sizeof ld &&
                       la.struct_size == sizeof la,
               "an initializer left struct_size unset");
  tester_check(&t, mha_attention_f32(&d, f.q, f.k, f.v, f.ref, NULL) == MHA_STATUS_SUCCESS, "%s", mha_last_error());

  /* the layer: self-attention with a cache output */
  f.w = tester_alloc((size_t)4 * DM * DM * sizeof(float));
  tester_fill(&t, f.w, (size_t)4 * DM * DM);
  ld.d_model = DM;
  ld.H = H;
  ld.w_q = f.w;
  ld.w_k = f.w + DM * DM;
  ld.w_v = f.w + 2 * DM * DM;
  ld.w_o = f.w + 3 * DM * DM;
  tester_check(&t, mha_layer_create(&ld, &f.L) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
  f.x = tester_alloc((size_t)B * TQ * DM * sizeof(float));
  f.lout = tester_alloc((size_t)B * TQ * DM * sizeof(float));
  f.lref = tester_alloc((size_t)B * TQ * DM * sizeof(float));
  tester_fill(&t, f.x, (size_t)B * TQ * DM);
  f.lk = tester_alloc((size_t)B * H * TC * (DM / H) * sizeof(uint16_t));
  f.lv = tester_alloc((size_t)B * H * TC * (DM / H) * sizeof(uint16_t));
  mha_kv_cache_init(&f.lcache, MHA_DTYPE_BF16, f.lk, f.lv, H, TC, DM / H, DM / H);
  la.B = B;
  la.Tq = TQ;
  la.x_q = f.x;
  la.out = f.lref;
  la.kv_cache = &f.lcache;
  tester_check(&t, mha_layer_forward(f.L, &la) == MHA_STATUS_SUCCESS, "%s", mha_last_error());
  la.out = f.lout;

  const size_t base[4] = {SIZE_THROUGH(mha_attention_desc, workspace_size), SIZE_THROUGH(mha_kv_cache, max_blocks),
                          SIZE_THROUGH(mha_layer_desc, isa), SIZE_THROUGH(mha_layer_args, kv_pos)};
  const size_t full[4] = {sizeof d, sizeof f.cache, sizeof ld, sizeof la};
  const void* src[4] = {&d, &f.cache, &ld, &la};
  static const char* const names[4] = {"desc", "cache", "layer desc", "args"};
  for (int s = 0; s < 4; s++) {
    /* the struct under test in a caller's buffer, the others full */
    const struct {
      const char* what;
      size_t size;
      long poke;
      mha_status want;
    } cases[] = {
        {"an older caller (the 0.5 layout, exactly its size)", base[s], -1, MHA_STATUS_SUCCESS},
        {"a newer caller, unknown bytes 0", full[s] + 24, -1, MHA_STATUS_SUCCESS},
        {"a newer caller, an unknown field set", full[s] + 24, (long)full[s] + 9, MHA_STATUS_INVALID_ARGUMENT},
        {"struct_size 0 (zero-filled)", 0, -1, MHA_STATUS_SUCCESS},
        {"struct_size below the 0.5 layout", base[s] - 8, -1, MHA_STATUS_INVALID_ARGUMENT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
      tester_context(&t, "%s: %s", names[s], cases[c].what);
      const size_t alloc = cases[c].size == 0 ? full[s] : cases[c].size;
      unsigned char* p = caller_copy(src[s], full[s], alloc, cases[c].poke);
      if (cases[c].size == 0) memset(p, 0, sizeof(size_t));
      const mha_attention_desc* dd = s == 0 ? (const mha_attention_desc*)p : &d;
      const mha_kv_cache* cc = s == 1 ? (const mha_kv_cache*)p : &f.cache;
      const mha_layer_desc* lld = s == 2 ? (const mha_layer_desc*)p : &ld;
      mha_layer_args lla = la;
      const mha_layer_args* pla = &lla;
      if (s == 3) pla = (const mha_layer_args*)p;
      /* the layer's cache output reads a cache struct too: its own, as the caller holds it */
      unsigned char* p2 = caller_copy(&f.lcache, sizeof f.lcache, alloc, cases[c].poke);
      if (cases[c].size == 0) memset(p2, 0, sizeof(size_t));
      if (s == 1) lla.kv_cache = (const mha_kv_cache*)p2;
      if (cases[c].want == MHA_STATUS_SUCCESS) {
        run_all(&t, &f, dd, cc, lld, pla, MHA_STATUS_SUCCESS, cases[c].what);
      } else {
        /* only the calls that read this struct */
        tester_poison(f.out, NQ);
        tester_stale_error();
        mha_status st = s == 0   ? mha_attention_f32(dd, f.q, f.k, f.v, f.out, NULL)
                        : s == 1 ? mha_attention_kv_f32(&d, f.q, cc, f.out, NULL)
                        : s == 2 ? mha_layer_create(lld, &(mha_layer*){NULL})
                                 : mha_layer_forward(f.L, pla);
        tester_check_failure(&t, cases[c].what, st, MHA_STATUS_INVALID_ARGUMENT, "struct_size");
        tester_check(&t, tester_is_poison(f.out[0]), "out written");
        if (s == 1) {
          tester_stale_error();
          tester_check_failure(&t, "layer cache output", mha_layer_forward(f.L, pla), MHA_STATUS_INVALID_ARGUMENT,
                               "struct_size");
        }
      }
      free(p);
      free(p2);
    }
  }
  /* the initializers write the caller's size, no more: an older caller's
   * struct in a buffer of exactly its size (ASan, valgrind), and a newer
   * caller's, whose unknown tail they zero (poisoned first) */
  for (int older = 1; older >= 0; older--) {
    tester_context(&t, "the initializers, %s caller", older ? "an older" : "a newer");
    const size_t sizes[5] = {older ? base[0] : full[0] + 24, older ? base[1] : full[1] + 24,
                             older ? base[1] : full[1] + 24, older ? base[2] : full[2] + 24,
                             older ? base[3] : full[3] + 24};
    unsigned char* p[5];
    for (int i = 0; i < 5; i++) {
      p[i] = tester_alloc(sizes[i]);
      memset(p[i], 0xA5, sizes[i]);
    }
    mha_attention_desc_init_sized((mha_attention_desc*)p[0], sizes[0], B, H, HKV, TQ, TK, D, D);
    mha_kv_cache_init_sized((mha_kv_cache*)p[1], sizes[1], MHA_DTYPE_F16, f.kc, f.vc, HKV, TC, D, D);
    mha_kv_cache_init_paged_sized((mha_kv_cache*)p[2], sizes[2], MHA_DTYPE_F16, f.kc, f.vc, 4, 16, HKV, D, D,
                                  NULL, 4);
    mha_layer_desc_init_sized((mha_layer_desc*)p[3], sizes[3]);
    mha_layer_args_init_sized((mha_layer_args*)p[4], sizes[4]);
    for (int i = 0; i < 5; i++) {
      size_t got;
      memcpy(&got, p[i], sizeof got);
      int tail_zero = 1;
      const size_t known = i == 0 ? full[0] : i <= 2 ? full[1] : i == 3 ? full[2] : full[3];
      for (size_t j = known; j < sizes[i]; j++) tail_zero &= p[i][j] == 0;
      tester_check(&t, got == sizes[i] && tail_zero, "initializer %d: struct_size %zu (want %zu), unknown tail %s", i,
                   got, sizes[i], tail_zero ? "zero" : "not zeroed");
    }
    /* a desc so initialized works: the core's reference bits */
    mha_attention_desc* pd = (mha_attention_desc*)p[0];
    pd->mask.causal = 1;
    pd->num_threads = 2;
    tester_poison(f.out, NQ);
    tester_check(&t, mha_attention_f32(pd, f.q, f.k, f.v, f.out, NULL) == MHA_STATUS_SUCCESS &&
                         memcmp(f.out, f.ref, NQ * sizeof(float)) == 0,
                 "an initialized desc: %s", mha_last_error());
    for (int i = 0; i < 5; i++) free(p[i]);
  }
  mha_layer_destroy(f.L);
  free(f.q);
  free(f.k);
  free(f.v);
  free(f.out);
  free(f.ref);
  free(f.kc);
  free(f.vc);
  free(f.w);
  free(f.x);
  free(f.lout);
  free(f.lref);
  free(f.lk);
  free(f.lv);
  return tester_finish(&t);
}
