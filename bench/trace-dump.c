/*
 * mha_trace_dump [--tiny] DIR: who ran which work unit, when, in one call:
 * the JSON that scripts/plot_trace.py draws as a timeline per worker.
 *
 * At OpenMP's thread count (OMP_NUM_THREADS, else every core), runs
 *   bert_base  the layer (mha_layer_forward): B 1, T 512, d_model 768, H 12,
 *              self-attention, no mask
 *   decode     the core (mha_attention_f32): B 1, H 32, Hkv 8, Tq 1, Tk 4096, D 128
 * each quiet and with one thread spinning on the process's first CPU
 * (busy-core.c: a core another process took). A run makes its plan and a
 * workspace (first touched), starts the busy thread, makes 3 warm-up calls,
 * then one call with a trace (desc.trace / args.trace, room for 2^18
 * units), and stops the busy thread. --tiny: small twins of both (CI).
 *
 * Writes DIR/trace-<preset>-<quiet|busy>.json:
 *   {"preset", "kind": "layer"|"core", "shape": {B, H, Hkv, Tq, Tk, D, d_model},
 *    "threads", "load": "quiet"|"busy", "busy_cpu" (null when quiet),
 *    "cpu_model", "isa", "call_us" (the traced call, wall clock), "count", "total",
 *    "stages": {"1": "pack_kt", ...},
 *    "fields": ["start_ns", "end_ns", "worker", "stage", "batch", "head", "heads",
 *               "q_begin", "q_end", "k_begin", "k_end"],
 *    "events": [[...], ...]}             one list per unit, in `fields` order
 * Exits 1 (with the reason on stderr) if anything fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

enum { WARMUP = 3 };
#define TRACE_CAPACITY ((int64_t)1 << 18)

typedef struct run_shape {
  const char* preset;
  int layer; /* 1: the layer (Tq = Tk = T, D = d_model / H); 0: the core */
  int64_t B, H, Hkv, Tq, Tk, D, d_model;
} run_shape;

static const run_shape real_shapes[] = {
    {"bert_base", 1, 1, 12, 12, 512, 512, 64, 768},
    {"decode", 0, 1, 32, 8, 1, 4096, 128, 0},
};
static const run_shape tiny_shapes[] = {
    {"bert_base", 1, 1, 4, 4, 48, 48, 16, 64},
    {"decode", 0, 1, 8, 2, 1, 100, 32, 0},
};

static const char* const stage_names[] = {"", "pack_kt", "attention", "weights_mean", "gemm"};

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* Uniform in [-scale, scale), a fixed seed: the trace does not depend on the values. */
static float* random_floats(size_t n, float scale, uint64_t* seed) {
  float* p = malloc((n ? n : 1) * sizeof(float));
  if (p == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    p[i] = scale * ((float)(*seed >> 40) * 0x1p-23f - 1.0f);
  }
  return p;
}

static void cpu_model(char* buf, size_t len) {
  snprintf(buf, len, "unknown");
  FILE* f = fopen("/proc/cpuinfo", "r");
  if (f == NULL) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0 || strncmp(line, "Model", 5) == 0) {
      const char* p = strchr(line, ':');
      if (p == NULL) continue;
      p += (p[1] == ' ') ? 2 : 1;
      snprintf(buf, len, "%s", p);
      buf[strcspn(buf, "\n")] = '\0';
      break;
    }
  }
  fclose(f);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE* f, const char* s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

typedef struct run_result {
  double call_us;
  mha_trace trace;
} run_result;

/* The layer: plan, workspace, warm-ups, one traced call. */
static int run_layer(const run_shape* s, int threads, mha_bench_busy** busy, int want_busy, run_result* r) {
  const int64_t dm = s->d_model, hd = s->H * s->D;
  uint64_t seed = 0x9E3779B97F4A7C15u;
  const float ws = 1.0f / sqrtf((float)dm);
  float* x = random_floats((size_t)(s->B * s->Tq * dm), 1.0f, &seed);
  float* w_q = random_floats((size_t)(hd * dm), ws, &seed);
  float* w_k = random_floats((size_t)(s->Hkv * s->D * dm), ws, &seed);
  float* w_v = random_floats((size_t)(s->Hkv * s->D * dm), ws, &seed);
  float* w_o = random_floats((size_t)(dm * hd), ws, &seed);
  float* out = malloc((size_t)(s->B * s->Tq * dm) * sizeof(float));
  mha_layer* layer = NULL;
  void* workspace = NULL;
  int rc = -1;
  if (!x || !w_q || !w_k || !w_v || !w_o || !out) {
    fprintf(stderr, "mha_trace_dump: out of memory\n");
    goto done;
  }
  mha_layer_desc desc;
  mha_layer_desc_init(&desc);
  desc.d_model = dm;
  desc.H = s->H;
  desc.Hkv = s->Hkv;
  desc.layout = MHA_WEIGHTS_OUT_IN;
  desc.w_q = w_q;
  desc.w_k = w_k;
  desc.w_v = w_v;
  desc.w_o = w_o;
  mha_status st = mha_layer_create(&desc, &layer);
  if (st != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "mha_trace_dump: mha_layer_create: %s: %s\n", mha_status_string(st), mha_last_error());
    goto done;
  }
  mha_layer_args args;
  mha_layer_args_init(&args);
  args.B = s->B;
  args.Tq = s->Tq; /* self-attention: x_k NULL, Tk = Tq */
  args.x_q = x;
  args.out = out;
  args.num_threads = threads;
  size_t bytes = 0;
  if ((st = mha_layer_workspace_size(layer, &args, &bytes)) != MHA_STATUS_SUCCESS ||
      (workspace = malloc(bytes ? bytes : 1)) == NULL) {
    fprintf(stderr, "mha_trace_dump: layer workspace: %s\n", mha_last_error());
    goto done;
  }
  memset(workspace, 0, bytes);
  args.workspace = workspace;
  args.workspace_size = bytes;
  int err;
  if (want_busy && (err = mha_bench_busy_start(busy)) != 0) {
    fprintf(stderr, "mha_trace_dump: busy loop: %s\n", strerror(err));
    goto done;
  }
  for (int i = 0; i <= WARMUP; i++) {
    if (i == WARMUP) args.trace = &r->trace;
    const double t0 = now_us();
    st = mha_layer_forward(layer, &args);
    r->call_us = now_us() - t0;
    if (st != MHA_STATUS_SUCCESS) {
      fprintf(stderr, "mha_trace_dump: mha_layer_forward: %s: %s\n", mha_status_string(st), mha_last_error());
      goto done;
    }
  }
  rc = 0;
done:
  mha_bench_busy_stop(*busy);
  *busy = NULL;
  mha_layer_destroy(layer);
  free(workspace);
  free(x);
  free(w_q);
  free(w_k);
  free(w_v);
  free(w_o);
  free(out);
  return rc;
}

/* The core: workspace, warm-ups, one traced call. */
static int run_core(const run_shape* s, int threads, mha_bench_busy** busy, int want_busy, run_result* r) {
  uint64_t seed = 0x2545F4914F6CDD1Du;
  float* q = random_floats((size_t)(s->B * s->H * s->Tq * s->D), 1.0f, &seed);
  float* k = random_floats((size_t)(s->B * s->Hkv * s->Tk * s->D), 1.0f, &seed);
  float* v = random_floats((size_t)(s->B * s->Hkv * s->Tk * s->D), 1.0f, &seed);
  float* out = malloc((size_t)(s->B * s->H * s->Tq * s->D) * sizeof(float));
  void* workspace = NULL;
  int rc = -1;
  if (!q || !k || !v || !out) {
    fprintf(stderr, "mha_trace_dump: out of memory\n");
    goto done;
  }
  mha_attention_desc desc;
  mha_attention_desc_init(&desc, s->B, s->H, s->Hkv, s->Tq, s->Tk, s->D, s->D);
  desc.num_threads = threads;
  size_t bytes = 0;
  mha_status st = mha_attention_workspace_size(&desc, 0, &bytes);
  if (st != MHA_STATUS_SUCCESS || (workspace = malloc(bytes ? bytes : 1)) == NULL) {
    fprintf(stderr, "mha_trace_dump: core workspace: %s\n", mha_last_error());
    goto done;
  }
  memset(workspace, 0, bytes);
  desc.workspace = workspace;
  desc.workspace_size = bytes;
  int err;
  if (want_busy && (err = mha_bench_busy_start(busy)) != 0) {
    fprintf(stderr, "mha_trace_dump: busy loop: %s\n", strerror(err));
    goto done;
  }
  for (int i = 0; i <= WARMUP; i++) {
    if (i == WARMUP) desc.trace = &r->trace;
    const double t0 = now_us();
    st = mha_attention_f32(&desc, q, k, v, out, NULL);
    r->call_us = now_us() - t0;
    if (st != MHA_STATUS_SUCCESS) {
      fprintf(stderr, "mha_trace_dump: mha_attention_f32: %s: %s\n", mha_status_string(st), mha_last_error());
      goto done;
    }
  }
  rc = 0;
done:
  mha_bench_busy_stop(*busy);
  *busy = NULL;
  free(workspace);
  free(q);
  free(k);
  free(v);
  free(out);
  return rc;
}

static int write_json(const char* path, const run_shape* s, int threads, int busy_cpu, const char* cpu,
                      const run_result* r) {
  FILE* f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "mha_trace_dump: %s: %s\n", path, strerror(errno));
    return -1;
  }
  mha_isa isa = MHA_ISA_SCALAR;
  const char* isa_name = mha_get_isa(&isa) == MHA_STATUS_SUCCESS ? mha_isa_name(isa) : "?";
  fprintf(f, "{\"preset\": \"%s\", \"kind\": \"%s\",\n", s->preset, s->layer ? "layer" : "core");
  fprintf(f, " \"shape\": {\"B\": %lld, \"H\": %lld, \"Hkv\": %lld, \"Tq\": %lld, \"Tk\": %lld, \"D\": %lld, "
             "\"d_model\": %lld},\n",
          (long long)s->B, (long long)s->H, (long long)s->Hkv, (long long)s->Tq, (long long)s->Tk,
          (long long)s->D, (long long)s->d_model);
  fprintf(f, " \"threads\": %d, \"load\": \"%s\", \"busy_cpu\": ", threads, busy_cpu >= 0 ? "busy" : "quiet");
  if (busy_cpu >= 0) fprintf(f, "%d", busy_cpu);
  else fputs("null", f);
  fputs(",\n \"cpu_model\": ", f);
  json_string(f, cpu);
  fprintf(f, ", \"isa\": \"%s\", \"call_us\": %.3f, \"count\": %lld, \"total\": %lld,\n", isa_name, r->call_us,
          (long long)r->trace.count, (long long)r->trace.total);
  fputs(" \"stages\": {", f);
  for (int i = 1; i < 5; i++) fprintf(f, "%s\"%d\": \"%s\"", i > 1 ? ", " : "", i, stage_names[i]);
  fputs("},\n \"fields\": [\"start_ns\", \"end_ns\", \"worker\", \"stage\", \"batch\", \"head\", \"heads\", "
        "\"q_begin\", \"q_end\", \"k_begin\", \"k_end\"],\n \"events\": [",
        f);
  for (int64_t i = 0; i < r->trace.count; i++) {
    const mha_trace_event* e = &r->trace.events[i];
    fprintf(f, "%s\n  [%lld, %lld, %d, %d, %d, %d, %d, %d, %d, %d, %d]", i ? "," : "", (long long)e->start_ns,
            (long long)e->end_ns, e->worker, e->stage, e->batch, e->head, e->heads, e->q_begin, e->q_end,
            e->k_begin, e->k_end);
  }
  fputs("]}\n", f);
  if (fclose(f) != 0) {
    fprintf(stderr, "mha_trace_dump: %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

int main(int argc, char** argv) {
  int tiny = 0;
  const char* dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--tiny") == 0) {
      tiny = 1;
    } else if (dir == NULL && argv[i][0] != '-') {
      dir = argv[i];
    } else {
      dir = NULL;
      break;
    }
  }
  if (dir == NULL) {
    fprintf(stderr, "usage: mha_trace_dump [--tiny] DIR\n");
    return 2;
  }
  const run_shape* shapes = tiny ? tiny_shapes : real_shapes;
  const int nshapes = 2;
  const int threads = omp_get_max_threads();
  char cpu[256];
  cpu_model(cpu, sizeof cpu);
  run_result r;
  memset(&r, 0, sizeof r);
  r.trace.capacity = TRACE_CAPACITY;
  r.trace.events = malloc((size_t)TRACE_CAPACITY * sizeof(mha_trace_event));
  if (r.trace.events == NULL) {
    fprintf(stderr, "mha_trace_dump: out of memory for the trace\n");
    return 1;
  }
  int failed = 0;
  for (int i = 0; i < nshapes; i++) {
    for (int want_busy = 0; want_busy <= 1; want_busy++) {
      const run_shape* s = &shapes[i];
      mha_bench_busy* busy = NULL;
      r.trace.count = r.trace.total = 0;
      const int rc = s->layer ? run_layer(s, threads, &busy, want_busy, &r) : run_core(s, threads, &busy, want_busy, &r);
      char path[4096];
      snprintf(path, sizeof path, "%s/trace-%s-%s.json", dir, s->preset, want_busy ? "busy" : "quiet");
      const int busy_cpu = want_busy ? mha_bench_busy_first_cpu() : -1;
      if (rc != 0 || write_json(path, s, threads, busy_cpu, cpu, &r) != 0) {
        failed = 1;
        continue;
      }
      printf("mha_trace_dump: %s: %lld units, %.1f us, %d threads, %s\n", path, (long long)r.trace.total,
             r.call_us, threads, want_busy ? "busy" : "quiet");
      if (r.trace.total > r.trace.count) {
        fprintf(stderr, "mha_trace_dump: %s: %lld of %lld units kept (the buffer is full)\n", path,
                (long long)r.trace.count, (long long)r.trace.total);
      }
    }
  }
  free(r.trace.events);
  return failed;
}
