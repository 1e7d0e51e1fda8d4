/*
 * The AMX instructions the bf16 AMX kernel uses, written in C from the Intel
 * SDM's descriptions (LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TDPBF16PS,
 * TILERELEASE), for testing that kernel's tiling, edges and layout on CPUs
 * without AMX: a build with -DMHA_AMX_EMULATE=ON (scripts/test.sh
 * --amx-emulate) compiles the kernel against these instead of the
 * instructions. A test build only: such a library is never installed.
 *
 * What the model holds to, per thread as the hardware does: a palette-1
 * configuration (rows <= 16, bytes a row <= 64 and a multiple of 4, the
 * reserved bytes zero, rows and bytes both zero or both set) or the process
 * aborts (the #GP the instruction raises); an access to an unconfigured tile
 * or a TDPBF16PS whose shapes disagree (dst rows != A's rows, A's pairs !=
 * B's rows, dst bytes != B's bytes) aborts (#UD). Loads zero what lies past
 * a tile's rows and bytes. TDPBF16PS per the SDM: for each row, the even and
 * the odd products of the K pairs accumulated apart (each product exact,
 * each sum rounded to nearest even), the two sums added, then added to the
 * destination; bf16 inputs that are subnormal read as zero, fp32 results
 * that are subnormal flushed to zero. Whether a real unit rounds its sums in
 * that order the tests do not assume: they hold the AMX set to bounds and
 * to its own bits, which is what runs on the hardware too.
 */
#ifndef MHA_TESTS_AMX_EMULATE_H
#define MHA_TESTS_AMX_EMULATE_H

#include <stddef.h>

void mha_amx_emu_ldtilecfg(const void* cfg);
void mha_amx_emu_tilerelease(void);
void mha_amx_emu_tileloadd(int t, const void* base, size_t stride);
void mha_amx_emu_tilestored(int t, void* base, size_t stride);
void mha_amx_emu_tilezero(int t);
void mha_amx_emu_tdpbf16ps(int dst, int a, int b);
/* instructions run by this thread since it started (the tests' check that
 * the kernel under test really went through the model) */
unsigned long mha_amx_emu_count(void);

#endif
