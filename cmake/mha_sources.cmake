# The library's sources, and the compile flags of each ISA's files.

set(MHA_SOURCES
  kernels/config/isa-select.c
  kernels/config/table-scalar.c
  kernels/f32-gemm/f32-gemm-4x8-scalar.c
  kernels/f32-softmax/f32-softmax-online-scalar.c
  kernels/mha/attention.c
  kernels/mha/checks.c
  kernels/mha/error.c
  kernels/mha/gemm.c
  kernels/mha/heads.c
  kernels/mha/layer.c)

# The scalar kernels are the reference: keep the compiler from vectorizing them.
set_source_files_properties(
  kernels/f32-gemm/f32-gemm-4x8-scalar.c
  kernels/f32-softmax/f32-softmax-online-scalar.c
  PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")

set(MHA_ISA_DEFINES "")
set(MHA_SIMD_LIBS "")
