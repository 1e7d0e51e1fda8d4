// cpp-caller: mha from C++17. The header is plain C with extern "C" (a C++
// program links the C symbols unmangled); here a small RAII wrapper makes a
// plan an object, buffers std::vectors and failures exceptions carrying
// mha_status_string() and mha_last_error().
//
// The checks: the wrapper's forward gives the same bits as the C call
// mha_layer_forward_once() on the same inputs (mha is deterministic for a
// kernel set), and a bad description throws mha::error with its status.
// Exits 1 when a check fails.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mha.h"

namespace mha {

// A failed call: the status, and mha's message naming the bad argument.
class error : public std::runtime_error {
 public:
  error(mha_status status, const char* call)
      : std::runtime_error(std::string(call) + ": " + mha_status_string(status) + ": " +
                           mha_last_error()),
        status_(status) {}
  mha_status status() const noexcept { return status_; }

 private:
  mha_status status_;
};

inline void check(mha_status status, const char* call) {
  if (status != MHA_STATUS_SUCCESS) throw error(status, call);
}

// A layer plan: packed once in the constructor, freed by the destructor.
// Movable, not copyable; forward() is const and may run on several threads.
class layer {
 public:
  explicit layer(const mha_layer_desc& desc) {
    mha_layer* plan = nullptr;
    check(mha_layer_create(&desc, &plan), "mha_layer_create");
    plan_.reset(plan);
  }

  int64_t output_width() const { return mha_layer_output_width(plan_.get()); }

  // Self-attention on x [B, T, d_model]; returns [B, T, output_width()].
  std::vector<float> forward(const std::vector<float>& x, int64_t B, int64_t T,
                             bool causal = false) const {
    std::vector<float> out(static_cast<size_t>(B * T * output_width()));
    mha_layer_args args;
    mha_layer_args_init(&args);
    args.B = B;
    args.Tq = T;
    args.x_q = x.data();
    args.out = out.data();
    args.mask.causal = causal ? 1 : 0;
    check(mha_layer_forward(plan_.get(), &args), "mha_layer_forward");
    return out;
  }

 private:
  struct destroy {
    void operator()(mha_layer* plan) const noexcept { mha_layer_destroy(plan); }
  };
  std::unique_ptr<mha_layer, destroy> plan_;
};

}  // namespace mha

int main() {
  static_assert(MHA_VERSION_MAJOR >= 0, "mha.h's version macros");
  constexpr int64_t B = 2, T = 10, d_model = 32, H = 4;
  uint32_t seed = 1;
  auto frand = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return static_cast<float>(seed >> 8) / 8388608.0f - 1.0f;
  };
  std::vector<float> wq(d_model * d_model), wk(wq.size()), wv(wq.size()), wo(wq.size());
  std::vector<float> x(B * T * d_model);
  for (auto* w : {&wq, &wk, &wv, &wo})
    for (float& e : *w) e = 0.2f * frand();
  for (float& e : x) e = frand();

  mha_layer_desc desc{};  // zero: IN_OUT weights, Hkv = H, D = d_model / H, default kernel set
  desc.d_model = d_model;
  desc.H = H;
  desc.w_q = wq.data();
  desc.w_k = wk.data();
  desc.w_v = wv.data();
  desc.w_o = wo.data();

  try {
    const mha::layer layer(desc);
    const std::vector<float> out = layer.forward(x, B, T, /*causal=*/true);

    // the same forward through the C entry point
    std::vector<float> ref(out.size());
    mha_layer_args args;
    mha_layer_args_init(&args);
    args.B = B;
    args.Tq = T;
    args.x_q = x.data();
    args.out = ref.data();
    args.mask.causal = 1;
    mha::check(mha_layer_forward_once(&desc, &args), "mha_layer_forward_once");
    if (std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)) != 0) {
      std::fprintf(stderr, "cpp-caller: the wrapper's output differs from the C call's\n");
      return 1;
    }
    for (float v : out)
      if (!std::isfinite(v)) {
        std::fprintf(stderr, "cpp-caller: non-finite output\n");
        return 1;
      }
    mha_isa isa = MHA_ISA_SCALAR;
    mha::check(mha_get_isa(&isa), "mha_get_isa");
    std::printf("cpp-caller: B=%lld T=%lld d_model=%lld H=%lld on %s: out[0..2] = %.5f %.5f %.5f,"
                " same bits as mha_layer_forward_once\n",
                (long long)B, (long long)T, (long long)d_model, (long long)H, mha_isa_name(isa),
                out[0], out[1], out[2]);
  } catch (const mha::error& e) {
    std::fprintf(stderr, "cpp-caller: %s\n", e.what());
    return 1;
  }

  // A failure is an exception: 5 heads do not divide d_model = 32.
  desc.H = 5;
  try {
    mha::layer bad(desc);
    std::fprintf(stderr, "cpp-caller: H = 5 with d_model = 32 was accepted\n");
    return 1;
  } catch (const mha::error& e) {
    std::printf("cpp-caller: as expected, %s\n", e.what());
    if (e.status() != MHA_STATUS_INVALID_SHAPE) return 1;
  }
  return 0;
}
