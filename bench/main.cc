// The one C++ file of the suite: registers the C bodies with Google Benchmark.
//
//   mha_bench [--quick | --full | --smoke] [--benchmark_* flags]
//
// Two passes:
//   1. the machine probes (FMA peak per ISA and thread count, the BF16
//      unit's dot-product peak where there is one, read bandwidth per thread
//      count) run first; their results become the report's context and the
//      denominators of pct_peak and pct_bw;
//   2. everything else: micro-kernels per ISA, the presets for mha and its
//      peers. The probe rows are replayed at the top of the console table
//      and the JSON, so one report holds everything.
// Google Benchmark does all the timing; the bodies only call the C code.
// Exits 1 if any benchmark reported an error (a failed call or a peer whose
// output does not match mha's), so the smoke run is a test.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"

namespace {

using Run = benchmark::BenchmarkReporter::Run;

struct Options {
  mha_bench_mode mode = MHA_BENCH_QUICK;
  int max_threads = 1;
  std::vector<int> threads;  // full mode's sweep: 1 … 8, then powers of two, and the maximum
  bool console = true;       // the display format is the console table
  bool has_out = false;      // --benchmark_out given
  bool list_only = false;
};

Options g_opt;

// ---------------------------------------------------------------------------
// Probe results: peak GFLOP/s per (ISA, threads), read GB/s per threads
// ---------------------------------------------------------------------------

std::map<std::pair<int, int>, double> g_peak_isa;  // (isa, threads) -> GFLOP/s
std::map<int, double> g_peak;                      // threads -> best over ISAs
std::map<int, double> g_peak_bf16;                 // threads -> the BF16 unit's dot-product peak
std::map<int, double> g_bw;                        // threads -> GB/s
std::vector<Run> g_probe_rows;                     // replayed in pass 2
std::vector<std::string> g_skipped;                // what quick mode left out, and why

double Peak(int threads) {
  auto it = g_peak.find(threads);
  return it == g_peak.end() ? 0.0 : it->second;
}

const mha_isa kIsas[] = {MHA_ISA_SCALAR, MHA_ISA_AVX2, MHA_ISA_AVX512F, MHA_ISA_NEON};
// the sets with a BF16 unit that have a dot-product probe (bench/peak-probe-avx512bf16.c;
// amx_bf16: peak-probe-amxbf16.c, a build with -DMHA_AMX=ON)
const mha_isa kBf16Isas[] = {MHA_ISA_AVX512_BF16, MHA_ISA_AMX_BF16};

// A bf16 row (dtype:2 in its name) of the core or the layer runs the BF16
// form on a set with a BF16 unit: its products run at that unit's rate.
bool RunsBf16Form(const std::string& name) {
  const std::string isa = mha_bench_active_isa();
  return name.find("/dtype:2/") != std::string::npos &&
         (isa == "avx512_bf16" || isa == "amx_bf16" || isa == "neon_bf16");
}

// The peak a benchmark is measured against: a micro-kernel of a SIMD ISA
// ("ukernel/..__avx2") against that ISA's FMA probe; a bf16 row of the BF16
// form against the BF16 unit's probe (none on Arm yet: then the FMA's, as
// before); everything else (and the scalar kernels, which have no probe of
// their own) against the machine's best.
double PeakFor(const std::string& family, const std::string& name, int threads) {
  if (family.rfind("ukernel/", 0) == 0) {
    for (mha_isa isa : kIsas) {
      const std::string tag = std::string("__") + mha_isa_name(isa);
      if (family.size() >= tag.size() && family.compare(family.size() - tag.size(), tag.size(), tag) == 0) {
        auto it = g_peak_isa.find({int(isa), threads});
        if (it != g_peak_isa.end()) return it->second;
      }
    }
  }
  if (RunsBf16Form(name)) {
    auto it = g_peak_bf16.find(threads);
    if (it != g_peak_bf16.end()) return it->second;
  }
  return Peak(threads);
}

double Bandwidth(int threads) {
  auto it = g_bw.find(threads);
  return it == g_bw.end() ? 0.0 : it->second;
}


// The read probe's buffer: 4x this CPU's L3 (at least 256 MiB, at most
// 4 GiB), so that "% of the read probe" means DRAM, as the decode_dram rows
// (sized the same way) read it; MHA_BENCH_BW_MIB overrides. (A fixed 256 MiB
// fit a 480 MiB L3 and read 10.3 / 20.0 GB/s there against 14.0 / 24.2 from
// 2 GiB on the same VM.)
size_t BandwidthBytes() {
  if (g_opt.mode == MHA_BENCH_SMOKE) return size_t{16} << 20;
  const char* env = std::getenv("MHA_BENCH_BW_MIB");
  long mib = env ? std::strtol(env, nullptr, 10) : 0;
  if (mib > 0) return size_t(mib) << 20;
  const size_t want = 4 * mha_bench_l3_bytes(), lo = size_t{256} << 20, hi = size_t{4} << 30;
  const size_t bytes = want < lo ? lo : want > hi ? hi : want;
  return bytes >> 20 << 20;
}

double MaxStat(const std::vector<double>& v);

// The probes take the best of many short repetitions: on a shared VM a
// vCPU can lose its core for seconds, and a peak is a maximum.
void ProbeTiming(benchmark::internal::Benchmark* b) {
  const bool smoke = g_opt.mode == MHA_BENCH_SMOKE;
  b->Repetitions(smoke ? 2 : 10)->MinTime(smoke ? 0.005 : 0.02)->ComputeStatistics("max", MaxStat);
}

double MaxStat(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
}

// Every thread count a benchmark of this mode may run at.
std::vector<int> ProbeThreads() {
  const int tmax = g_opt.max_threads;
  std::vector<int> ts;
  if (g_opt.mode == MHA_BENCH_FULL) {
    for (int t = 1; t <= tmax; t++) ts.push_back(t);  // the heads study runs every count
  } else if (g_opt.mode == MHA_BENCH_QUICK) {
    for (int t = 1; t < tmax; t *= 2) ts.push_back(t);
  } else {
    ts.push_back(1);
  }
  if (ts.empty() || ts.back() != tmax) ts.push_back(tmax);
  return ts;
}

// One probe row per thread count: run(isa, threads, reps) executes `reps`
// rounds on `threads` threads and returns the FLOPs it executed.
void RegisterPeakProbe(const std::string& name, mha_isa isa, double (*run)(mha_isa, int, int64_t)) {
  for (int t : ProbeThreads()) {
    benchmark::RegisterBenchmark(name.c_str(), [isa, t, run](benchmark::State& state) {
      // 2^20 rounds of 12–16 independent FMAs (or dot products) per thread:
      // a few milliseconds a call
      const int64_t reps = int64_t{1} << 20;
      // untimed warm-up: on a VM an idle vCPU takes milliseconds to wake,
      // and the turbo clock takes a moment to settle
      for (int i = 0; i < 8; i++) run(isa, t, reps / 4);
      double flops = 0.0;
      for (auto _ : state) flops = run(isa, t, reps);
      state.counters["GFLOPS"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                                    benchmark::Counter::OneK::kIs1000);
      state.SetLabel(mha_isa_name(isa));
    })
        ->ArgNames({"threads"})
        ->Arg(t)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Apply(ProbeTiming);
  }
}

void RegisterProbes() {
  for (mha_isa isa : kIsas) {
    if (mha_bench_fma_available(isa)) RegisterPeakProbe(std::string("probe/fma_") + mha_isa_name(isa), isa, mha_bench_fma_run);
  }
  for (mha_isa isa : kBf16Isas) {
    if (mha_bench_dp_bf16_available(isa)) {
      RegisterPeakProbe(std::string("probe/dp_bf16_") + mha_isa_name(isa), isa, mha_bench_dp_bf16_run);
    }
  }
  const size_t bytes = BandwidthBytes();
  for (int t : ProbeThreads()) {
    benchmark::RegisterBenchmark("probe/mem_read", [bytes, t](benchmark::State& state) {
      mha_bench_membw* m = mha_bench_membw_create(bytes, t);
      if (m == nullptr) {
        state.SkipWithError("out of memory for the bandwidth buffer");
        return;
      }
      double read = mha_bench_membw_run(m);  // untimed warm-up pass (TLB, idle vCPUs)
      for (auto _ : state) read = mha_bench_membw_run(m);
      mha_bench_membw_destroy(m);
      state.counters["GBps"] = benchmark::Counter(read / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                                  benchmark::Counter::OneK::kIs1000);
    })
        ->ArgNames({"MiB", "threads"})
        ->Args({int64_t(bytes >> 20), t})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Apply(ProbeTiming);
  }
}

int ArgValue(const Run& r, const char* key) {
  const std::string name = r.run_name.str();
  const std::string k = std::string("/") + key + ":";
  size_t p = name.find(k);
  return p == std::string::npos ? 0 : std::atoi(name.c_str() + p + k.size());
}

// Keeps the probe results: the "max" aggregate (the peak is a maximum), or
// the single run when there are no repetitions.
class ProbeCapture : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    bool has_max = false;
    for (const Run& r : runs) has_max |= r.run_type == Run::RT_Aggregate && r.aggregate_name == "max";
    for (Run r : runs) {
      r.statistics = nullptr;  // points into pass 1's benchmark instances
      g_probe_rows.push_back(r);
      if (r.error_occurred) continue;
      const bool use = has_max ? (r.run_type == Run::RT_Aggregate && r.aggregate_name == "max")
                               : r.run_type == Run::RT_Iteration;
      if (!use) continue;
      const int t = ArgValue(r, "threads");
      const std::string fam = r.run_name.function_name;
      if (fam == "probe/mem_read") {
        g_bw[t] = r.counters.at("GBps").value;
      } else {
        for (mha_isa isa : kIsas) {
          if (fam == std::string("probe/fma_") + mha_isa_name(isa)) {
            const double g = r.counters.at("GFLOPS").value;
            g_peak_isa[{int(isa), t}] = g;
            g_peak[t] = std::max(g_peak[t], g);
          }
        }
        for (mha_isa isa : kBf16Isas) {
          // the peak of the unit the bf16 rows run on: the active set's
          if (fam == std::string("probe/dp_bf16_") + mha_isa_name(isa) && mha_bench_active_isa() == mha_isa_name(isa)) {
            g_peak_bf16[t] = r.counters.at("GFLOPS").value;
          }
        }
      }
    }
  }
};

class Null : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

// ---------------------------------------------------------------------------
// Pass 2 reporting: replay the probe rows, show medians only on the console,
// count errors.
// ---------------------------------------------------------------------------

int g_errors = 0;

// pct_peak = 100 · GFLOPS / peak(threads), pct_bw = 100 · GBps / bandwidth(threads),
// from the rates Google Benchmark computed: plain numbers, next to them in
// every report. Micro-kernels (no threads argument) count as one thread and
// are measured against their own ISA's peak (PeakFor).
void Derive(Run& r) {
  if (r.error_occurred || r.run_name.function_name.rfind("probe/", 0) == 0) return;
  int t = ArgValue(r, "threads");
  if (t <= 0) t = 1;
  const bool relative = r.run_type == Run::RT_Aggregate && r.aggregate_unit == benchmark::kPercentage;  // cv
  auto g = r.counters.find("GFLOPS");
  const double peak = PeakFor(r.run_name.function_name, r.run_name.str(), t);
  if (g != r.counters.end() && peak > 0) {
    r.counters["pct_peak"] = benchmark::Counter(relative ? g->second.value : 100.0 * g->second.value / peak);
  }
  auto b = r.counters.find("GBps");
  if (b != r.counters.end() && Bandwidth(t) > 0) {
    r.counters["pct_bw"] = benchmark::Counter(relative ? b->second.value : 100.0 * b->second.value / Bandwidth(t));
  }
}

class Forward : public benchmark::BenchmarkReporter {
 public:
  Forward(benchmark::BenchmarkReporter* inner, bool medians_only, bool count_errors)
      : inner_(inner), medians_only_(medians_only), count_errors_(count_errors) {}
  bool ReportContext(const Context& context) override {
    inner_->SetOutputStream(&GetOutputStream());
    inner_->SetErrorStream(&GetErrorStream());
    if (!inner_->ReportContext(context)) return false;
    if (!g_probe_rows.empty()) Pass(g_probe_rows, count_errors_);
    return true;
  }
  void ReportRuns(const std::vector<Run>& runs) override { Pass(runs, count_errors_); }
  void Finalize() override { inner_->Finalize(); }

 private:
  void Pass(const std::vector<Run>& runs, bool count) {
    bool has_median = false;
    for (const Run& r : runs) has_median |= r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
    std::vector<Run> keep;
    for (Run r : runs) {
      if (count && r.error_occurred) g_errors++;
      const bool agg = r.run_type == Run::RT_Aggregate;
      if (!medians_only_ || r.error_occurred || !has_median ||
          (agg && (r.aggregate_name == "median" || r.aggregate_name == "max"))) {
        Derive(r);
        keep.push_back(r);
      }
    }
    if (!keep.empty()) inner_->ReportRuns(keep);
  }
  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  bool medians_only_;
  bool count_errors_;
};

// ---------------------------------------------------------------------------
// Micro-kernels
// ---------------------------------------------------------------------------

void RegisterUkernel(mha_isa isa, int kernel, int64_t m, int64_t n, int64_t k) {
  char name[96];
  const std::string family = std::string("ukernel/") + mha_bench_ukernel_name(isa, kernel, name, sizeof name);
  const bool softmax = kernel == MHA_BENCH_UK_SOFTMAX;
  auto* b = benchmark::RegisterBenchmark(family.c_str(), [=](benchmark::State& state) {
    mha_bench_ukernel* u = mha_bench_ukernel_create(isa, kernel, size_t(m), size_t(n), size_t(k));
    if (u == nullptr) {
      state.SkipWithError("micro-kernel setup failed");
      return;
    }
    for (auto _ : state) mha_bench_ukernel_run(u);
    const double work = mha_bench_ukernel_work(u);
    mha_bench_ukernel_destroy(u);
    if (softmax) {
      state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(work));  // keys per second
    } else {
      using C = benchmark::Counter;  // 2·m·n·k FLOPs per call
      state.counters["GFLOPS"] = C(work / 1e9, C::kIsIterationInvariantRate, C::OneK::kIs1000);
    }
    state.SetLabel(mha_isa_name(isa));
  });
  if (softmax) {
    b->ArgNames({"n"})->Arg(n);
  } else {
    b->ArgNames({"m", "n", "k"})->Args({m, n, k});
  }
  // A call takes 0.1-2 us: 0.1 s × 3 was at the mercy of a noisy VM's clock
  // ramp and neighbours (a k=256 tile read 50% of peak in quick mode, 75% in a
  // long run). Every mode but smoke gives them 0.3 s × 5 repetitions.
  if (g_opt.mode != MHA_BENCH_SMOKE) b->MinTime(g_opt.mode == MHA_BENCH_FULL ? 0.5 : 0.3)->Repetitions(5);
}

void RegisterUkernels() {
  for (mha_isa isa : kIsas) {
    size_t mr, nr, kc, nk;
    int has_nt;
    mha_bench_ukernel_tile(isa, &mr, &nr, &kc, &nk, &has_nt);
    if (mr == 0) continue;  // not built, or this CPU lacks it
    // the full tile at k = 64 (a head's D) and at the projection GEMM's k-block
    RegisterUkernel(isa, MHA_BENCH_UK_GEMM, int64_t(mr), int64_t(nr), 64);
    if (kc != 64) RegisterUkernel(isa, MHA_BENCH_UK_GEMM, int64_t(mr), int64_t(nr), int64_t(kc));
    // decode: one query row (MHA) and a group of 4 (GQA 32/8) against a key block, D = 128
    if (has_nt) {
      RegisterUkernel(isa, MHA_BENCH_UK_GEMM_NT, 1, int64_t(nk), 128);
      RegisterUkernel(isa, MHA_BENCH_UK_GEMM_NT, 4, int64_t(nk), 128);
    }
    RegisterUkernel(isa, MHA_BENCH_UK_SOFTMAX, 0, int64_t(nk), 0);
  }
}

// ---------------------------------------------------------------------------
// Presets: one shape's data (inputs + mha's reference output) is shared by all
// implementations and thread counts of that shape; one implementation's state
// (plans, buffers, the result of its check) by the calls Google Benchmark
// makes for one benchmark (iteration estimate, repetitions). Benchmarks are
// registered grouped by shape, so one slot of each suffices. A busy shape's
// spinning thread (busy-core.c) starts after the implementation's setup and
// stops before its teardown: it runs during that benchmark only.
// ---------------------------------------------------------------------------

struct Slot {
  int shape = -1;
  mha_bench_data* data = nullptr;
  std::string data_error;
  std::string key;
  const mha_bench_impl* impl = nullptr;
  void* state = nullptr;
  mha_bench_busy* busy = nullptr;  // a busy shape's stolen core
  std::string error;
  double nmse = 0.0;  // of the check

  void DropImpl() {
    mha_bench_busy_stop(busy);
    busy = nullptr;
    if (state != nullptr) impl->teardown(state);
    state = nullptr;
    impl = nullptr;
    key.clear();
    error.clear();
  }
  void DropAll() {
    DropImpl();
    mha_bench_data_destroy(data);
    data = nullptr;
    shape = -1;
  }
  ~Slot() { DropAll(); }
};

Slot g_slot;
std::vector<mha_bench_shape> g_shapes;

// The state of (shape, impl, threads), made and checked once; nullptr with
// *error set when setup or the check failed.
void* Prepare(int shape, const mha_bench_impl* impl, int threads, const std::string& key, std::string* error) {
  Slot& s = g_slot;
  if (s.key == key) {
    *error = s.error;
    return s.error.empty() ? s.state : nullptr;
  }
  s.DropImpl();
  if (s.shape != shape) {
    s.DropAll();
    s.shape = shape;
    s.data_error.clear();
    if (mha_bench_data_create(&g_shapes[shape], g_opt.max_threads, &s.data) != 0) {
      s.data_error = std::string("reference: ") + mha_bench_error();
    }
  }
  s.key = key;
  s.impl = impl;
  int err = 0;
  if (!s.data_error.empty()) {
    s.error = s.data_error;
  } else if (impl->setup(s.data, threads, &s.state) != 0) {
    s.state = nullptr;
    s.error = mha_bench_error();
  } else if (g_shapes[shape].busy && (err = mha_bench_busy_start(&s.busy)) != 0) {
    s.error = std::string("busy loop on CPU ") + std::to_string(mha_bench_busy_first_cpu()) + ": " +
              std::strerror(err);
  } else if (impl->run(s.state) != 0) {
    s.error = mha_bench_error();
  } else {  // the check: once, untimed
    const mha_bench_shape& sh = g_shapes[shape];
    const bool io16 = (sh.flags & MHA_BENCH_IO16) != 0 && sh.kv_dtype != MHA_DTYPE_F32;
    const int bad = mha_bench_check(impl->name, impl->output(s.state), s.data->ref, s.data->out_len,
                                    io16 ? MHA_BENCH_NMSE_LIMIT_16 : MHA_BENCH_NMSE_LIMIT);
    s.nmse = mha_bench_last_nmse();
    if (bad) s.error = mha_bench_error();
  }
  if (!s.error.empty()) {  // a skipped benchmark leaves no core busy
    mha_bench_busy_stop(s.busy);
    s.busy = nullptr;
  }
  *error = s.error;
  return s.error.empty() ? s.state : nullptr;
}

// Seconds one call is expected to take, for the budgets only: the scalar
// path at ~4 GFLOP/s per thread, anything vectorized at half the measured
// peak (mha and OpenBLAS reach 30–65% of it on the presets).
double EstimateSeconds(const mha_bench_shape& s, bool scalar, int threads) {
  double rate = scalar ? 4e9 * threads : 0.5e9 * Peak(threads);
  if (rate <= 0) rate = 10e9 * threads;
  return mha_bench_flops(&s) / rate;
}

std::string ShapeText(const mha_bench_shape& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld", s.preset, (long long)s.B,
                (long long)s.H, (long long)s.Hkv, (long long)s.Tq, (long long)s.Tk, (long long)s.D);
  return buf;
}

void RegisterCase(int shape, const mha_bench_impl* impl, int threads) {
  const mha_bench_shape& s = g_shapes[shape];
  const std::string family = std::string(s.preset) + "/" + impl->name;
  std::vector<int64_t> args = {s.B, s.H, s.Hkv, s.Tq, s.Tk, s.D};
  std::vector<std::string> names = {"B", "H", "Hkv", "Tq", "Tk", "D"};
  if (s.kind == MHA_BENCH_LAYER) {
    args.push_back(s.d_model);
    names.push_back("d_model");
  }
  if (s.flags & MHA_BENCH_KVCACHE) {  // the cache: element type (0 fp32, 1 f16, 2 bf16), page, lengths
    args.insert(args.end(), {s.kv_dtype, s.page, s.mixed});
    names.insert(names.end(), {"kv", "page", "mixed"});
  }
  if (s.flags & MHA_BENCH_IO16) {  // Q, K, V and out: 0 fp32, 1 f16, 2 bf16
    args.push_back(s.kv_dtype);
    names.push_back("dtype");
  }
  args.push_back(threads);
  names.push_back("threads");
  if (s.flags & MHA_BENCH_STOLEN) {  // 0 quiet, 1 a thread spinning on the first CPU
    args.push_back(s.busy);
    names.push_back("busy");
  }
  std::string key = family;
  for (size_t i = 0; i < args.size(); i++) key += "/" + names[i] + ":" + std::to_string(args[i]);
  const double flops = mha_bench_flops(&s);
  const double kv_bytes = mha_bench_kv_bytes(&s);
  const bool decode = (s.flags & MHA_BENCH_DECODE) != 0;
  const std::string busy_text = s.busy ? ", CPU " + std::to_string(mha_bench_busy_first_cpu()) + " busy" : "";

  benchmark::RegisterBenchmark(family.c_str(), [=](benchmark::State& state) {
    std::string error;
    void* st = Prepare(shape, impl, threads, key, &error);
    if (st == nullptr) {
      state.SkipWithError(error.c_str());
      return;
    }
    for (auto _ : state) {
      if (impl->run(st) != 0) {
        state.SkipWithError(mha_bench_error());
        break;
      }
    }
    using C = benchmark::Counter;
    // FLOPs per call: bench/flops.c writes the formula out term by term
    state.counters["GFLOPS"] = C(flops / 1e9, C::kIsIterationInvariantRate, C::OneK::kIs1000);
    if (decode) {  // K and V read once per call: the memory-bound floor
      state.counters["GBps"] = C(kv_bytes / 1e9, C::kIsIterationInvariantRate, C::OneK::kIs1000);
    }
    state.counters["nmse"] = C(g_slot.nmse);  // the check against mha's output (<= 1e-5 passes)
    // pct_peak and pct_bw are derived from these by the reporters (Derive)
    state.SetLabel(impl->label() + busy_text);
  })
      ->ArgNames(names)
      ->Args(args)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

// The thread counts a shape runs at. Full: every count up to 8, then powers of
// two and the maximum (the heads study: every count, as it asks). Quick:
// sweeps at 1, 2, 4, … and the maximum, the heads study at 1 and the maximum,
// the rest at the maximum. Smoke: 1 and the maximum. The stolen-core rows: the
// maximum only, in every mode (a stolen core is one of all the threads).
std::vector<int> ThreadsFor(const mha_bench_shape& s) {
  const int tmax = g_opt.max_threads;
  const bool heads = (s.flags & MHA_BENCH_HEADS) != 0;
  if (s.flags & MHA_BENCH_STOLEN) return {tmax};
  std::vector<int> ts;
  if (g_opt.mode == MHA_BENCH_FULL) {
    if (!heads) return g_opt.threads;
    for (int t = 1; t <= tmax; t++) ts.push_back(t);
    return ts;
  }
  if (g_opt.mode == MHA_BENCH_SMOKE || heads) {
    ts = {1};
  } else if (s.flags & MHA_BENCH_SWEEP) {
    for (int t = 1; t < tmax; t *= 2) ts.push_back(t);
  }
  if (ts.empty() || ts.back() != tmax) ts.push_back(tmax);
  return ts;
}

// mha and the peers of a shape: the fused layer (or the core); the scalar path
// (not when mha itself runs it); the wrapper layout (layers; quick mode leaves
// it out on the big presets); BLAS. The heads study: fused and wrapper only.
// The stolen-core rows: the core on OpenMP and on the reference pthread pool.
std::vector<const mha_bench_impl*> ImplsFor(const mha_bench_shape& s, bool active_scalar) {
  const bool layer = s.kind == MHA_BENCH_LAYER, smoke = g_opt.mode == MHA_BENCH_SMOKE;
  const bool heads = (s.flags & MHA_BENCH_HEADS) != 0;
  const bool big = g_opt.mode == MHA_BENCH_QUICK && (s.flags & MHA_BENCH_BIG) != 0;
  if (s.flags & MHA_BENCH_KVCACHE) {  // the fp32 contiguous row through the core, the others a cache
    if (s.kv_dtype == MHA_DTYPE_F32 && s.page == 0) return {&mha_bench_core};
    return {&mha_bench_core_kv};
  }
  if (s.flags & MHA_BENCH_IO16) {  // the fp32 row through the core or layer, the 16-bit ones in the type
    if (layer) return {s.kv_dtype == MHA_DTYPE_F32 ? &mha_bench_layer : &mha_bench_layer_16};
    return {s.kv_dtype == MHA_DTYPE_F32 ? &mha_bench_core : &mha_bench_core_16};
  }
  if (s.flags & MHA_BENCH_STOLEN) return {&mha_bench_core, &mha_bench_core_pool};
  std::vector<const mha_bench_impl*> impls = {layer ? &mha_bench_layer : &mha_bench_core};
  if (s.flags & MHA_BENCH_VARIANT) {  // the C peers have no variants: mha (and its scalar path in smoke)
    if (smoke) impls.push_back(&mha_bench_core_scalar);
    return impls;
  }
  if (!heads && (smoke || !active_scalar)) impls.push_back(layer ? &mha_bench_layer_scalar : &mha_bench_core_scalar);
  if (layer && (heads || smoke || !big)) impls.push_back(&mha_bench_wrapper);
  const mha_bench_impl* blas = layer ? &mha_bench_blas_layer : &mha_bench_blas_core;
  if (!heads && blas->name != nullptr) impls.push_back(blas);
  return impls;
}

bool IsScalarPeer(const mha_bench_impl* impl) {
  return impl == &mha_bench_layer_scalar || impl == &mha_bench_core_scalar;
}

void RegisterPresets() {
  const mha_bench_shape* shapes;
  const size_t n = mha_bench_presets(g_opt.mode, &shapes);
  g_shapes.assign(shapes, shapes + n);
  mha_isa active = MHA_ISA_SCALAR;
  const bool isa_ok = mha_get_isa(&active) == MHA_STATUS_SUCCESS;
  const bool active_scalar = isa_ok && active == MHA_ISA_SCALAR;
  const bool smoke = g_opt.mode == MHA_BENCH_SMOKE, quick = g_opt.mode == MHA_BENCH_QUICK;
  const int tmax = g_opt.max_threads;
  // Budgets, in estimated seconds per call (smoke has none): quick mode keeps
  // calls under 3 s, and the scalar peer under 2 s (quick) or 20 s (full).
  const double budget = 3.0, scalar_budget = quick ? 2.0 : 20.0;
  if (active_scalar && !smoke) g_skipped.push_back("mha_scalar peer (mha itself runs the scalar path)");

  for (size_t i = 0; i < n; i++) {
    const mha_bench_shape& s = g_shapes[i];
    char why[96];
    // the reference output costs one mha call at all threads
    const double ref = EstimateSeconds(s, active_scalar, tmax);
    if (quick && ref > budget) {
      std::snprintf(why, sizeof why, " (~%.0f s a call on %s)", ref, isa_ok ? mha_isa_name(active) : "?");
      g_skipped.push_back(ShapeText(s) + why);
      continue;
    }
    // thread count outer, implementation inner: peers of a shape and thread
    // count run back to back, so their ratios hold on a noisy machine
    const std::vector<const mha_bench_impl*> impls = ImplsFor(s, active_scalar);
    for (int t : ThreadsFor(s)) {
      for (const mha_bench_impl* impl : impls) {
        const bool scalar_peer = IsScalarPeer(impl);
        if (quick && scalar_peer && t != tmax) continue;  // quick: the scalar path at all threads only
        const bool scalar =
            scalar_peer || (active_scalar && impl != &mha_bench_blas_layer && impl != &mha_bench_blas_core);
        const double est = EstimateSeconds(s, scalar, t);
        if (!smoke && ((scalar_peer && est > scalar_budget) || (quick && est > budget))) {
          std::snprintf(why, sizeof why, " %s threads=%d (~%.0f s a call)", impl->name, t, est);
          g_skipped.push_back(ShapeText(s) + why);
          continue;
        }
        RegisterCase(int(i), impl, t);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      size_t p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  }
  return "unknown";
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

void AddContext() {
  const char* modes[] = {"smoke", "quick", "full"};
  benchmark::AddCustomContext("mha_bench_mode", modes[g_opt.mode]);
  benchmark::AddCustomContext("cpu_model", CpuModel());
  benchmark::AddCustomContext("mha_isa", mha_bench_active_isa());
  std::string isas;
  for (mha_isa isa : kIsas) {
    if (mha_isa_available(isa)) isas += std::string(isas.empty() ? "" : ",") + mha_isa_name(isa);
  }
  benchmark::AddCustomContext("mha_isas_available", isas);
  benchmark::AddCustomContext("threads", std::to_string(g_opt.max_threads));
  benchmark::AddCustomContext("cores", std::to_string(mha_bench_cores()));
  // the stolen-core rows' busy thread spins here (the first CPU of the process's mask)
  benchmark::AddCustomContext("busy_cpu", std::to_string(mha_bench_busy_first_cpu()));
  std::string peak_isa;
  double best = 0.0;
  for (const auto& kv : g_peak_isa) {
    const std::string isa = mha_isa_name(mha_isa(kv.first.first));
    benchmark::AddCustomContext("peak_gflops_" + isa + "_t" + std::to_string(kv.first.second), Fixed(kv.second, 1));
    if (kv.first.second == g_opt.max_threads && kv.second > best) {
      best = kv.second;
      peak_isa = isa;
    }
  }
  benchmark::AddCustomContext("peak_gflops", best > 0 ? Fixed(best, 1) : "unmeasured (no FMA probe for this ISA)");
  benchmark::AddCustomContext("peak_isa", peak_isa.empty() ? "none" : peak_isa);
  // not peak_gflops_*: readers take the best of those as the FMA peak
  for (const auto& kv : g_peak_bf16) {
    benchmark::AddCustomContext("bf16_peak_gflops_t" + std::to_string(kv.first), Fixed(kv.second, 1));
  }
  for (const auto& kv : g_bw) {
    benchmark::AddCustomContext("mem_read_GBps_t" + std::to_string(kv.first), Fixed(kv.second, 1));
  }
  benchmark::AddCustomContext("mem_read_MiB", std::to_string(BandwidthBytes() >> 20));
  benchmark::AddCustomContext("blas", mha_bench_blas_info());
  std::string skipped;
  for (const std::string& s : g_skipped) skipped += (skipped.empty() ? "" : "; ") + s;
  if (!skipped.empty()) benchmark::AddCustomContext("skipped", skipped);
}

bool HasFlag(const std::vector<std::string>& args, const char* prefix) {
  for (const std::string& a : args) {
    if (a.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// the path of --benchmark_out=PATH (the last one given)
std::string OutPath(const std::vector<std::string>& args) {
  std::string path;
  for (const std::string& a : args) {
    if (a.rfind("--benchmark_out=", 0) == 0) path = a.substr(std::strlen("--benchmark_out="));
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  // Our flags out, Google Benchmark's defaults for the mode in front of the
  // user's own (later flags win, so the user's override ours).
  std::vector<std::string> user;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--smoke") g_opt.mode = MHA_BENCH_SMOKE;
    else if (a == "--quick") g_opt.mode = MHA_BENCH_QUICK;
    else if (a == "--full") g_opt.mode = MHA_BENCH_FULL;
    else user.push_back(a);
  }
  std::vector<std::string> args = {argv[0]};
  switch (g_opt.mode) {
    case MHA_BENCH_SMOKE: args.push_back("--benchmark_min_time=0.01"); break;
    case MHA_BENCH_QUICK:
      args.push_back("--benchmark_min_time=0.1");
      args.push_back("--benchmark_repetitions=3");
      break;
    case MHA_BENCH_FULL:
      args.push_back("--benchmark_min_time=0.5");
      args.push_back("--benchmark_repetitions=5");
      break;
  }
  args.push_back("--benchmark_report_aggregates_only=true");
  args.insert(args.end(), user.begin(), user.end());
  g_opt.has_out = HasFlag(user, "--benchmark_out=");
  g_opt.list_only = HasFlag(user, "--benchmark_list_tests=true") || HasFlag(user, "--benchmark_list_tests=1") ||
                    std::find(user.begin(), user.end(), "--benchmark_list_tests") != user.end();
  g_opt.console = !HasFlag(user, "--benchmark_format=") || HasFlag(user, "--benchmark_format=console");
  std::vector<char*> cargv;
  for (std::string& a : args) cargv.push_back(&a[0]);
  int cargc = int(cargv.size());
  cargv.push_back(nullptr);
  benchmark::Initialize(&cargc, cargv.data());
  if (benchmark::ReportUnrecognizedArguments(cargc, cargv.data())) return 1;
  if (HasFlag(user, "--benchmark_out_format=") && !HasFlag(user, "--benchmark_out_format=json")) {
    std::fprintf(stderr, "mha_bench: the file report is always JSON\n");
  }

  g_opt.max_threads = std::max(1, mha_bench_max_threads());
  const int tmax = g_opt.max_threads;
  for (int t = 1; t <= tmax; t = t < 8 ? t + 1 : t * 2) g_opt.threads.push_back(t);
  if (g_opt.threads.back() != tmax) g_opt.threads.push_back(tmax);

  // Pass 1: the probes.
  if (!g_opt.list_only) {
    std::fprintf(stderr, "mha_bench: probing the FMA peak and the read bandwidth...\n");
    RegisterProbes();
    ProbeCapture capture;
    Null sink;  // swallows the JSON file pass 1 would write (pass 2 rewrites it)
    benchmark::RunSpecifiedBenchmarks(&capture, g_opt.has_out ? &sink : nullptr, "^probe/");
    benchmark::ClearRegisteredBenchmarks();
  }

  // Pass 2: everything else.
  RegisterUkernels();
  RegisterPresets();
  AddContext();
  Forward display(benchmark::CreateDefaultDisplayReporter(), g_opt.console, true);
  if (g_opt.has_out) {
    Forward file(new benchmark::JSONReporter, false, false);
    if (benchmark::RunSpecifiedBenchmarks(&display, &file) == 0 && !g_opt.list_only) {
      // a filter that matched only probes: Google Benchmark wrote no file, so
      // the report is the context and the probe rows alone
      std::ofstream out(OutPath(user));
      file.SetOutputStream(&out);
      file.SetErrorStream(&std::cerr);
      file.ReportContext(benchmark::BenchmarkReporter::Context());
      file.Finalize();
    }
  } else {
    benchmark::RunSpecifiedBenchmarks(&display);
  }
  g_slot.DropAll();
  benchmark::Shutdown();
  if (g_errors > 0) {
    std::fprintf(stderr, "mha_bench: %d benchmark(s) reported an error\n", g_errors);
    return 1;
  }
  return 0;
}
