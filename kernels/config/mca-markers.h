/*
 * Region markers for llvm-mca. bench/mca.sh compiles the micro-kernels with
 * -DMHA_MCA -S so that their inner loops and store epilogues become named
 * "# LLVM-MCA-BEGIN name" / "# LLVM-MCA-END name" regions; in the library
 * build they expand to nothing and the code is unchanged.
 */
#ifndef MHA_KERNELS_CONFIG_MCA_MARKERS_H
#define MHA_KERNELS_CONFIG_MCA_MARKERS_H

#if defined(MHA_MCA)
#define MHA_MCA_BEGIN(name) __asm__ volatile("# LLVM-MCA-BEGIN " name)
#define MHA_MCA_END(name) __asm__ volatile("# LLVM-MCA-END " name)
#else
#define MHA_MCA_BEGIN(name) ((void)0)
#define MHA_MCA_END(name) ((void)0)
#endif

#endif
