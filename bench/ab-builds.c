/*
 * mha_ab: two builds of libmha side by side in one process — the core or a
 * layer timed through each build's public API, one call of each in turn (the
 * order swapped every pair), so that a noisy shared host slows both alike.
 * Prints the CPU, each build's median time and GFLOP/s, the median and
 * quartiles of the per-pair ratio time(A) / time(B) (> 1: B is faster), and
 * whether the two outputs are bitwise equal. No timing is asserted.
 *
 *   mha_ab LIB_A LIB_B core  H Hkv T D   [options]
 *   mha_ab LIB_A LIB_B layer B T d_model H Hkv [options]
 *   options: --threads N (1)  --pairs N (15)  --isa NAME (each build's
 *            default)  --causal  --bf16 (inputs, weights and out in bf16:
 *            the core through mha_attention, the layer from bf16 weights;
 *            the values are the fp32 run's rounded to bf16)
 *
 * LIB_A and LIB_B are paths to libmha.so files (a build of main and a build
 * of a branch, say); each is loaded with RTLD_LOCAL, so each runs its own
 * kernels. Given the same path twice it loads one library: an A/A run, whose
 * ratio shows the noise of the method (Emerald Rapids, 1 thread, H 2 T 4096
 * D 64: 0.993, quartiles 0.988–1.008). The builds must share this file's
 * mha.h ABI (structs only grow: an older build reads the fields it knows).
 * Exit status: 0, 1 when a call fails, 2 for bad arguments or a library
 * that cannot be loaded.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu-model.h"
#include "mha.h"

enum { MAX_PAIRS = 1001 };

typedef struct build {
  const char* path;
  void (*attention_desc_init)(mha_attention_desc*, size_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                              int64_t, int64_t);
  mha_status (*attention_workspace_size)(const mha_attention_desc*, int, size_t*);
  mha_status (*attention)(const mha_attention_desc*, mha_dtype, const void*, const void*, const void*, void*,
                          float*);
  void (*layer_desc_init)(mha_layer_desc*, size_t);
  void (*layer_args_init)(mha_layer_args*, size_t);
  mha_status (*layer_create)(const mha_layer_desc*, mha_layer**);
  void (*layer_destroy)(mha_layer*);
  mha_status (*layer_forward)(const mha_layer*, const mha_layer_args*);
  mha_status (*layer_workspace_size)(const mha_layer*, const mha_layer_args*, size_t*);
  mha_status (*set_isa_by_name)(const char*);
  const char* (*last_error)(void);
} build;

static int load(build* b, const char* path) {
  /* a bare file name means the one in this directory, not the loader's search path */
  char local[4096];
  if (strchr(path, '/') == NULL && strlen(path) + 3 <= sizeof local) {
    snprintf(local, sizeof local, "./%s", path);
    path = local;
  }
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "mha_ab: %s\n", dlerror());
    return 0;
  }
  b->path = strdup(path);
  *(void**)&b->attention_desc_init = dlsym(h, "mha_attention_desc_init_sized");
  *(void**)&b->attention_workspace_size = dlsym(h, "mha_attention_workspace_size");
  *(void**)&b->attention = dlsym(h, "mha_attention");
  *(void**)&b->layer_desc_init = dlsym(h, "mha_layer_desc_init_sized");
  *(void**)&b->layer_args_init = dlsym(h, "mha_layer_args_init_sized");
  *(void**)&b->layer_create = dlsym(h, "mha_layer_create");
  *(void**)&b->layer_destroy = dlsym(h, "mha_layer_destroy");
  *(void**)&b->layer_forward = dlsym(h, "mha_layer_forward");
  *(void**)&b->layer_workspace_size = dlsym(h, "mha_layer_workspace_size");
  *(void**)&b->set_isa_by_name = dlsym(h, "mha_set_isa_by_name");
  *(void**)&b->last_error = dlsym(h, "mha_last_error");
  if (b->attention_desc_init == NULL || b->attention_workspace_size == NULL || b->attention == NULL ||
      b->layer_desc_init == NULL || b->layer_args_init == NULL || b->layer_create == NULL ||
      b->layer_destroy == NULL || b->layer_forward == NULL || b->layer_workspace_size == NULL ||
      b->set_isa_by_name == NULL || b->last_error == NULL) {
    fprintf(stderr, "mha_ab: %s lacks a symbol of mha.h\n", path);
    return 0;
  }
  return 1;
}

/* Uniform values in [-scale, scale) from a fixed LCG: the same inputs for both builds. */
static float* random_floats(size_t n, uint32_t seed, float scale) {
  float* x = malloc((n ? n : 1) * sizeof(float));
  if (x == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = ((float)(seed >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
  }
  return x;
}

/* x[0..n) rounded to bf16 (nearest even; the inputs are finite), packed
 * into the first n 16-bit values of the same array */
static void to_bf16(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    const uint16_t h = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    memcpy((char*)x + i * sizeof h, &h, sizeof h); /* bytes of x[0 .. i/2]: read already */
  }
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* One problem on one build: prepared once, then run(ctx) is one timed call. */
typedef struct job {
  const build* b;
  int is_layer;
  mha_attention_desc ad;
  mha_layer* layer;
  mha_layer_args la;
  mha_dtype dtype;
  const void *q, *k, *v;
  void* out;
  void* workspace;
} job;

static int run(job* j) {
  const mha_status st = j->is_layer ? j->b->layer_forward(j->layer, &j->la)
                                    : j->b->attention(&j->ad, j->dtype, j->q, j->k, j->v, j->out, NULL);
  if (st != MHA_STATUS_SUCCESS) fprintf(stderr, "mha_ab: %s: %s\n", j->b->path, j->b->last_error());
  return st == MHA_STATUS_SUCCESS;
}

static long parse_positive(const char* s, const char* what) {
  char* end;
  const long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1) {
    fprintf(stderr, "mha_ab: %s must be a positive integer, not '%s'\n", what, s);
    exit(2);
  }
  return v;
}

static int usage(void) {
  fprintf(stderr,
          "usage: mha_ab LIB_A LIB_B core H Hkv T D [options]\n"
          "       mha_ab LIB_A LIB_B layer B T d_model H Hkv [options]\n"
          "options: --threads N (1) --pairs N (15) --isa NAME --causal --bf16\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const int is_layer = strcmp(argv[3], "layer") == 0;
  if (!is_layer && strcmp(argv[3], "core") != 0) return usage();
  const int nshape = is_layer ? 5 : 4;
  if (argc < 4 + nshape) return usage();
  long shape[5];
  static const char* const names[2][5] = {{"H", "Hkv", "T", "D", ""}, {"B", "T", "d_model", "H", "Hkv"}};
  for (int i = 0; i < nshape; i++) shape[i] = parse_positive(argv[4 + i], names[is_layer][i]);
  long threads = 1, pairs = 15;
  const char* isa = NULL;
  int causal = 0, bf16 = 0;
  for (int i = 4 + nshape; i < argc; i++) {
    if (strcmp(argv[i], "--causal") == 0) {
      causal = 1;
    } else if (strcmp(argv[i], "--bf16") == 0) {
      bf16 = 1;
    } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
      threads = parse_positive(argv[++i], "--threads");
    } else if (i + 1 < argc && strcmp(argv[i], "--pairs") == 0) {
      pairs = parse_positive(argv[++i], "--pairs");
    } else if (i + 1 < argc && strcmp(argv[i], "--isa") == 0) {
      isa = argv[++i];
    } else {
      return usage();
    }
  }
  if (pairs > MAX_PAIRS || threads > 4096) {
    fprintf(stderr, "mha_ab: at most %d pairs and 4096 threads\n", MAX_PAIRS);
    return 2;
  }
  build b[2];
  memset(b, 0, sizeof b);
  if (!load(&b[0], argv[1]) || !load(&b[1], argv[2])) {
    free((char*)b[0].path), free((char*)b[1].path);
    return 2;
  }
  for (int x = 0; x < 2; x++) {
    if (isa != NULL && b[x].set_isa_by_name(isa) != MHA_STATUS_SUCCESS) {
      fprintf(stderr, "mha_ab: %s: %s\n", b[x].path, b[x].last_error());
      return 2;
    }
  }

  /* inputs shared by both builds; FLOPs of the call (the GEMMs' multiply-adds ×2) */
  double flops;
  size_t nq, nkv, nout;
  long H, Hkv, T, D, B = 1, dm = 0;
  if (is_layer) {
    B = shape[0], T = shape[1], dm = shape[2], H = shape[3], Hkv = shape[4];
    if (dm % H != 0 || H % Hkv != 0) {
      fprintf(stderr, "mha_ab: d_model must be a multiple of H, H of Hkv\n");
      return 2;
    }
    D = dm / H;
    nq = (size_t)(B * T * dm), nkv = 0, nout = nq;
    flops = 2.0 * B * T * dm * (double)(H * D + 2 * Hkv * D) + 2.0 * B * T * (double)(H * D) * dm +
            4.0 * B * H * (double)T * T * D * (causal ? 0.5 : 1.0);
  } else {
    H = shape[0], Hkv = shape[1], T = shape[2], D = shape[3];
    if (H % Hkv != 0) {
      fprintf(stderr, "mha_ab: H must be a multiple of Hkv\n");
      return 2;
    }
    nq = (size_t)(H * T * D), nkv = (size_t)(Hkv * T * D), nout = nq;
    flops = 4.0 * H * (double)T * T * D * (causal ? 0.5 : 1.0);
  }
  float* q = random_floats(nq, 1, is_layer ? 1.0f : 0.5f);
  float* k = random_floats(nkv, 2, 0.5f);
  float* v = random_floats(nkv, 3, 0.5f);
  float* w[4] = {NULL, NULL, NULL, NULL};
  if (is_layer) {
    const size_t ws[4] = {(size_t)(dm * H * D), (size_t)(dm * Hkv * D), (size_t)(dm * Hkv * D),
                          (size_t)(H * D * dm)};
    for (int i = 0; i < 4; i++) w[i] = random_floats(ws[i], 10 + (uint32_t)i, 0.05f);
  }
  int ok = q != NULL && k != NULL && v != NULL && (!is_layer || (w[0] && w[1] && w[2] && w[3]));
  /* --bf16: every array rounded to bf16 in place (the first half of each
   * fp32 array's bytes then holds its bf16 values) */
  const mha_dtype dtype = bf16 ? MHA_DTYPE_BF16 : MHA_DTYPE_F32;
  const size_t esz = bf16 ? sizeof(uint16_t) : sizeof(float);
  if (ok && bf16) {
    to_bf16(q, nq), to_bf16(k, nkv), to_bf16(v, nkv);
    if (is_layer) {
      to_bf16(w[0], (size_t)(dm * H * D)), to_bf16(w[1], (size_t)(dm * Hkv * D));
      to_bf16(w[2], (size_t)(dm * Hkv * D)), to_bf16(w[3], (size_t)(H * D * dm));
    }
  }
  job j[2];
  memset(j, 0, sizeof j);
  for (int x = 0; x < 2 && ok; x++) {
    job* jb = &j[x];
    jb->b = &b[x], jb->is_layer = is_layer, jb->dtype = dtype, jb->q = q, jb->k = k, jb->v = v;
    jb->out = malloc(nout * esz);
    size_t wsize = 0;
    if (jb->out == NULL) {
      ok = 0;
      break;
    }
    if (is_layer) {
      mha_layer_desc ld;
      b[x].layer_desc_init(&ld, sizeof ld);
      ld.d_model = dm, ld.H = H, ld.Hkv = Hkv;
      ld.w_q = w[0], ld.w_k = w[1], ld.w_v = w[2], ld.w_o = w[3];
      ld.dtype = dtype;
      if (b[x].layer_create(&ld, &jb->layer) != MHA_STATUS_SUCCESS) {
        fprintf(stderr, "mha_ab: %s: %s\n", b[x].path, b[x].last_error());
        ok = 0;
        break;
      }
      b[x].layer_args_init(&jb->la, sizeof jb->la);
      jb->la.B = B, jb->la.Tq = T, jb->la.x_q = q, jb->la.out = jb->out;
      jb->la.mask.causal = causal, jb->la.num_threads = (int)threads;
      jb->la.dtype = dtype;
      ok = b[x].layer_workspace_size(jb->layer, &jb->la, &wsize) == MHA_STATUS_SUCCESS;
      jb->workspace = ok ? malloc(wsize ? wsize : 1) : NULL;
      jb->la.workspace = jb->workspace, jb->la.workspace_size = wsize;
    } else {
      b[x].attention_desc_init(&jb->ad, sizeof jb->ad, 1, H, Hkv, T, T, D, D);
      jb->ad.mask.causal = causal, jb->ad.num_threads = (int)threads;
      ok = b[x].attention_workspace_size(&jb->ad, 0, &wsize) == MHA_STATUS_SUCCESS;
      jb->workspace = ok ? malloc(wsize ? wsize : 1) : NULL;
      jb->ad.workspace = jb->workspace, jb->ad.workspace_size = wsize;
    }
    ok = ok && jb->workspace != NULL;
  }
  int rc = ok ? 0 : 1;
  static double t[2][MAX_PAIRS], ratio[MAX_PAIRS];
  /* one warm-up call each, then the pairs */
  if (rc == 0 && (!run(&j[0]) || !run(&j[1]))) rc = 1;
  for (long i = 0; i < pairs && rc == 0; i++) {
    for (int s = 0; s < 2 && rc == 0; s++) {
      const int x = (i & 1) ? 1 - s : s;
      const double t0 = now_s();
      if (!run(&j[x])) rc = 1;
      t[x][i] = now_s() - t0;
    }
    ratio[i] = t[0][i] / t[1][i];
  }
  if (rc == 0) {
    const int same = memcmp(j[0].out, j[1].out, nout * esz) == 0;
    qsort(t[0], (size_t)pairs, sizeof(double), cmp_double);
    qsort(t[1], (size_t)pairs, sizeof(double), cmp_double);
    qsort(ratio, (size_t)pairs, sizeof(double), cmp_double);
    char cpu[256];
    mha_bench_cpu_model(cpu, sizeof cpu);
    printf("CPU: %s; %ld thread(s); %ld pairs; isa %s; %s\n", cpu, threads, pairs, isa ? isa : "(default)",
           bf16 ? "bf16" : "fp32");
    if (is_layer) {
      printf("layer B %ld T %ld d_model %ld H %ld/%ld%s\n", B, T, dm, H, Hkv, causal ? " causal" : "");
    } else {
      printf("core H %ld/%ld T %ld D %ld%s\n", H, Hkv, T, D, causal ? " causal" : "");
    }
    for (int x = 0; x < 2; x++) {
      const double med = t[x][pairs / 2];
      printf("  %c %s: median %.3f ms, %.1f GFLOP/s\n", 'A' + x, b[x].path, med * 1e3, flops / med * 1e-9);
    }
    printf("  time(A)/time(B) per pair: median %.3f, quartiles %.3f-%.3f (> 1: B faster)\n", ratio[pairs / 2],
           ratio[pairs / 4], ratio[(3 * pairs) / 4]);
    printf("  outputs: %s\n", same ? "bitwise equal" : "differ");
  }
  for (int x = 0; x < 2; x++) {
    if (j[x].layer != NULL) b[x].layer_destroy(j[x].layer);
    free(j[x].workspace);
    free(j[x].out);
  }
  for (int i = 0; i < 4; i++) free(w[i]);
  free(q), free(k), free(v);
  free((char*)b[0].path), free((char*)b[1].path);
  return rc;
}
