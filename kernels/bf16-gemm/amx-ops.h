/*
 * The AMX instructions of the bf16 AMX kernel (bf16-gemm-amx-32x32-amxbf16.c):
 * tile numbers are immediates, so these are statement macros over inline
 * assembly (binutils >= 2.36 assembles them; no -mamx-* flag is needed).
 * Every one clobbers "memory": a tile load reads, and a tile store writes,
 * memory the compiler cannot see through the operands (GCC 12's own
 * intrinsics pass only the base address, so a buffer written just before a
 * load or read just after a store could be reordered or dropped).
 *
 * Built with MHA_AMX_EMULATE (a test build, scripts/test.sh --amx-emulate),
 * the same names call tests/amx/amx-emulate.c's model of the instructions
 * instead, so the kernel's tiling and edges run on CPUs without AMX.
 */
#ifndef MHA_KERNELS_BF16_GEMM_AMX_OPS_H
#define MHA_KERNELS_BF16_GEMM_AMX_OPS_H

#include <stddef.h>

/* LDTILECFG's 64-byte operand, palette 1 (Intel SDM, "TILECFG") */
typedef struct mha_amx_tilecfg {
  unsigned char palette_id;
  unsigned char start_row;
  unsigned char reserved[14];
  unsigned short colsb[16]; /* bytes a row of tmm0..15 (8 exist) */
  unsigned char rows[16];
} mha_amx_tilecfg;

#if defined(MHA_AMX_EMULATE)
#include "amx-emulate.h"
#define MHA_AMX_LDTILECFG(cfg) mha_amx_emu_ldtilecfg(cfg)
#define MHA_AMX_TILERELEASE() mha_amx_emu_tilerelease()
#define MHA_AMX_TILELOADD(t, base, stride) mha_amx_emu_tileloadd(t, base, (size_t)(stride))
#define MHA_AMX_TILESTORED(t, base, stride) mha_amx_emu_tilestored(t, base, (size_t)(stride))
#define MHA_AMX_TILEZERO(t) mha_amx_emu_tilezero(t)
#define MHA_AMX_TDPBF16PS(dst, a, b) mha_amx_emu_tdpbf16ps(dst, a, b)
#else
#define MHA_AMX_LDTILECFG(cfg) __asm__ volatile("ldtilecfg %0" ::"m"(*(const mha_amx_tilecfg*)(cfg)) : "memory")
#define MHA_AMX_TILERELEASE() __asm__ volatile("tilerelease" ::: "memory")
#define MHA_AMX_TILELOADD(t, base, stride) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void*)(base)), "r"((long)(stride)) : "memory")
#define MHA_AMX_TILESTORED(t, base, stride) \
  __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"((void*)(base)), "r"((long)(stride)) : "memory")
#define MHA_AMX_TILEZERO(t) __asm__ volatile("tilezero %%tmm" #t ::: "memory")
/* dst += A·B: AT&T order is B, A, dst */
#define MHA_AMX_TDPBF16PS(dst, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #dst ::: "memory")
#endif

#endif
