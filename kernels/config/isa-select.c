/* Run-time choice of the kernel table: MHA_ISA, else the best the CPU runs. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(MHA_ENABLE_X86)
#include <cpuid.h>
#endif
#if defined(MHA_ENABLE_AMX) && !defined(MHA_AMX_EMULATE)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(MHA_ENABLE_NEON)
#include <sys/auxv.h>
#endif

#include "config/kernels.h"
#include "mha/internal.h"

static const char* const mha_isa_names[MHA_ISA_COUNT] = {"default", "scalar",    "avx2",        "avx512f",
                                                         "neon",    "neon_bf16", "avx512_bf16", "amx_bf16"};

const char* mha_isa_name(mha_isa isa) {
  if ((int)isa < 0 || (int)isa >= MHA_ISA_COUNT) return "unknown";
  return mha_isa_names[isa];
}

#if defined(MHA_ENABLE_X86)
/* F16C (vcvtph2ps, the AVX2 kernels' f16 widening): CPUID leaf 1, ECX bit
 * 29. Every AVX2 CPU has it; clang 14's __builtin_cpu_supports does not
 * know "f16c", so CPUID is read here. */
static int mha_cpu_has_f16c(void) {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

/* AVX512-BF16: CPUID leaf 7 subleaf 1, EAX bit 5 (the OS's zmm state is
 * checked by __builtin_cpu_supports("avx512f")); the set's packers also
 * need AVX512BW (leaf 7 subleaf 0, EBX bit 30), present on every such CPU. */
static int mha_cpu_has_avx512_bf16(void) {
  unsigned eax, ebx, ecx, edx;
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return 0;
  if (__get_cpuid_max(0, NULL) < 7) return 0;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  (void)ebx, (void)ecx, (void)edx;
  return (eax & (1u << 5)) != 0;
}

#if defined(MHA_ENABLE_AMX)
/* AMX-BF16 as the library uses it: AVX512-BF16 (the set's packers and
 * epilogues), CPUID leaf 7 EDX bits 24 (AMX-TILE) and 22 (AMX-BF16), the OS
 * saving the tile state (XCR0 bits 17 and 18, read by XGETBV once OSXSAVE,
 * leaf 1 ECX bit 27, says it may be), and Linux granting this process the
 * tile data: ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, asked once
 * (mha_isa_available keeps the answer; the grant is the process's, and
 * racing first calls ask twice, harmlessly). A
 * refusal (an old kernel, a too-small sigaltstack of some thread, a seccomp
 * filter) leaves the set unavailable, and the choice falls to avx512_bf16.
 * The test build MHA_AMX_EMULATE runs the instructions' C model: it needs
 * AVX512-BF16 only. */
static int mha_cpu_grants_amx(void) {
#if defined(MHA_AMX_EMULATE)
  return 1;
#else
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid_max(0, NULL) < 7) return 0;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || (ecx & (1u << 27)) == 0) return 0;
  unsigned xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  (void)xhi;
  if ((xlo & (3u << 17)) != (3u << 17)) return 0;
  /* ARCH_REQ_XCOMP_PERM (0x1023), XFEATURE_XTILEDATA (18): Linux >= 5.16 */
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#endif
}
#endif
#endif

/* Is the ISA compiled in, and can this CPU run it? */
static int mha_cpu_runs(mha_isa isa) {
  switch (isa) {
    case MHA_ISA_SCALAR: return 1;
#if defined(MHA_ENABLE_X86)
    case MHA_ISA_AVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             mha_cpu_has_f16c();
    case MHA_ISA_AVX512F:
      return __builtin_cpu_supports("avx512f");
    case MHA_ISA_AVX512_BF16: return mha_cpu_has_avx512_bf16();
#if defined(MHA_ENABLE_AMX)
    case MHA_ISA_AMX_BF16: return mha_cpu_has_avx512_bf16() && mha_cpu_grants_amx();
#endif
#endif
#if defined(MHA_ENABLE_NEON)
    case MHA_ISA_NEON: return 1; /* Advanced SIMD is mandatory on AArch64 */
    /* FEAT_BF16 as Linux reports it: HWCAP2_BF16 (bit 14 of AT_HWCAP2) */
    case MHA_ISA_NEON_BF16: return (getauxval(AT_HWCAP2) & (1ul << 14)) != 0;
#endif
    default: return 0;
  }
}

static const mha_kernels* mha_table_of(mha_isa isa) {
  switch (isa) {
    case MHA_ISA_SCALAR: return mha_kernels_scalar();
#if defined(MHA_ENABLE_X86)
    case MHA_ISA_AVX2: return mha_kernels_avx2();
    case MHA_ISA_AVX512F: return mha_kernels_avx512f();
    case MHA_ISA_AVX512_BF16: return mha_kernels_avx512_bf16();
#if defined(MHA_ENABLE_AMX)
    case MHA_ISA_AMX_BF16: return mha_kernels_amx_bf16();
#endif
#endif
#if defined(MHA_ENABLE_NEON)
    case MHA_ISA_NEON: return mha_kernels_neon();
    case MHA_ISA_NEON_BF16: return mha_kernels_neon_bf16();
#endif
    default: return NULL;
  }
}

/* Each set's answer, found once: a CPU's features do not change while the
 * process runs, and CPUID is slow where it traps to a hypervisor (4.8 µs a
 * CPUID on a Zen 4 VM: two of them on every call that named avx512_bf16 in
 * its descriptor). 0 unknown, 1 no, 2 yes; racing first calls find the same. */
static atomic_int mha_runs_found[MHA_ISA_COUNT];

int mha_isa_available(mha_isa isa) {
  if ((int)isa < (int)MHA_ISA_SCALAR || (int)isa >= MHA_ISA_COUNT) return 0;
  int found = atomic_load_explicit(&mha_runs_found[isa], memory_order_relaxed);
  if (found == 0) {
    found = mha_cpu_runs(isa) && mha_table_of(isa) != NULL ? 2 : 1;
    atomic_store_explicit(&mha_runs_found[isa], found, memory_order_relaxed);
  }
  return found == 2;
}

const mha_kernels* mha_kernels_for(mha_isa isa) {
  return mha_isa_available(isa) ? mha_table_of(isa) : NULL;
}

/* The selection: an ISA index >= 0, or -1 before the first look, or
 * -(status) - 1 after a bad MHA_ISA. Racing first calls compute the same. */
static atomic_int mha_selected = ATOMIC_VAR_INIT(-1);

static int mha_parse_isa(const char* name, mha_isa* out) {
  for (int i = 0; i < MHA_ISA_COUNT; i++) {
    if (strcmp(name, mha_isa_names[i]) == 0) {
      *out = (mha_isa)i;
      return 1;
    }
  }
  return 0;
}

static int mha_select_from_env(void) {
  const char* env = getenv("MHA_ISA");
  if (env != NULL && env[0] != '\0') {
    mha_isa isa;
    if (!mha_parse_isa(env, &isa)) return -(int)MHA_STATUS_UNKNOWN_ISA - 1;
    if (isa != MHA_ISA_DEFAULT) {
      if (!mha_isa_available(isa)) return -(int)MHA_STATUS_UNSUPPORTED_ISA - 1;
      return (int)isa;
    }
  }
  static const mha_isa best_first[] = {MHA_ISA_AMX_BF16,  MHA_ISA_AVX512_BF16, MHA_ISA_AVX512F,
                                       MHA_ISA_AVX2,      MHA_ISA_NEON_BF16,   MHA_ISA_NEON};
  for (size_t i = 0; i < sizeof best_first / sizeof best_first[0]; i++) {
    if (mha_isa_available(best_first[i])) return (int)best_first[i];
  }
  return (int)MHA_ISA_SCALAR;
}

static int mha_selection(void) {
  int sel = atomic_load(&mha_selected);
  if (sel == -1) {
    sel = mha_select_from_env();
    int expected = -1;
    if (!atomic_compare_exchange_strong(&mha_selected, &expected, sel)) sel = expected;
  }
  return sel;
}

static mha_status mha_selection_error(int sel) {
  const char* env = getenv("MHA_ISA");
  if (env == NULL) env = "";
  mha_status st = (mha_status)(-sel - 1);
  if (st == MHA_STATUS_UNKNOWN_ISA) {
    return mha_error(st, "MHA_ISA=%.40s is not a known ISA (default, scalar, avx2, avx512f, neon, neon_bf16, avx512_bf16, amx_bf16)", env);
  }
  return mha_error(st, "MHA_ISA=%.40s: this CPU or this build cannot run it", env);
}

mha_status mha_kernels_active(const mha_kernels** out) {
  int sel = mha_selection();
  if (sel < 0) return mha_selection_error(sel);
  *out = mha_table_of((mha_isa)sel);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_kernels_resolve(const char* fn, mha_isa requested, const mha_kernels** out) {
  if (requested == MHA_ISA_DEFAULT) return mha_kernels_active(out);
  if ((int)requested < 0 || (int)requested >= MHA_ISA_COUNT) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: isa = %d is not an mha_isa", fn,
                     (int)requested);
  }
  if (!mha_isa_available(requested)) {
    return mha_error(MHA_STATUS_UNSUPPORTED_ISA,
                     "%s: isa = %s is not available on this CPU or in this build", fn,
                     mha_isa_name(requested));
  }
  *out = mha_table_of(requested);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_get_isa(mha_isa* isa) {
  if (isa == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "mha_get_isa: isa is NULL");
  int sel = mha_selection();
  if (sel < 0) return mha_selection_error(sel);
  *isa = (mha_isa)sel;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_set_isa(mha_isa isa) {
  if ((int)isa < 0 || (int)isa >= MHA_ISA_COUNT) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "mha_set_isa: %d is not an mha_isa", (int)isa);
  }
  if (isa == MHA_ISA_DEFAULT) { /* choose again at the next call */
    atomic_store(&mha_selected, -1);
    return MHA_STATUS_SUCCESS;
  }
  if (!mha_isa_available(isa)) {
    return mha_error(MHA_STATUS_UNSUPPORTED_ISA,
                     "mha_set_isa: %s is not available on this CPU or in this build",
                     mha_isa_name(isa));
  }
  atomic_store(&mha_selected, (int)isa);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_set_isa_by_name(const char* name) {
  if (name == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "mha_set_isa_by_name: name is NULL");
  mha_isa isa;
  if (!mha_parse_isa(name, &isa)) {
    return mha_error(MHA_STATUS_UNKNOWN_ISA,
                     "mha_set_isa_by_name: '%.40s' is not a known ISA (default, scalar, avx2, avx512f, neon, neon_bf16, avx512_bf16, amx_bf16)",
                     name);
  }
  return mha_set_isa(isa);
}
