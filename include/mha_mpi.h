/*
 * mha_mpi.h — attention beyond one machine, on MPI (an optional component:
 * CMake -DMHA_MPI=ON builds libmha_mpi beside libmha; libmha itself has no
 * MPI dependency).
 *
 *   mha_mpi_ring_attention_f32  one long sequence split by tokens over the
 *                               ranks (context parallelism): K/V blocks travel
 *                               around the ring, overlapped with the compute,
 *                               partial outputs merged by their log-sum-exp
 *   mha_mpi_decode_f32          sequence-parallel decode: each rank holds a
 *                               part of one sequence's K/V cache; one gather
 *                               and a merge give every rank the result
 *
 * Every function is collective over comm: every rank calls it with the same
 * shapes (each its own part of the data). The ranks first agree on the
 * shapes and on every rank's checks (one small all-reduce): a mismatch, or a
 * bad input on any rank, gives every rank the same status before any data
 * moves, so no rank waits for a partner that has returned. The merges run in
 * a fixed order of ranks, never in whatever order the MPI library reduces:
 * for a fixed rank count the bits do not change from run to run.
 *
 * Against one process on the whole sequence the result differs by the merge
 * of partial results (mha_merge_f32's rounding: a few ulps), not bitwise.
 */
#ifndef MHA_MPI_H
#define MHA_MPI_H

#include <mpi.h>

#include "mha.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a sequence's T tokens are split over the N ranks of a ring. */
typedef enum mha_mpi_split {
  /* rank r holds tokens [r·T/N, (r+1)·T/N) */
  MHA_MPI_SPLIT_CONTIGUOUS = 0,
  /* T in 2N chunks of c = T/(2N) tokens: rank r holds chunk r, then chunk
   * 2N−1−r (its local rows [0, c) and [c, 2c)). Under a causal mask each rank
   * then has the same work (an early chunk sees few keys, a late one many):
   * no rank idles while the last one computes. */
  MHA_MPI_SPLIT_BALANCED = 1
} mha_mpi_split;

/* Ring (context-parallel) attention of one sequence per batch entry over
 * comm's N ranks. desc describes this rank's local part: Tq = Tk = its T/N
 * tokens (the same on every rank; even with MHA_MPI_SPLIT_BALANCED), q, k, v
 * and out local views with desc's strides, in the split's token order. The
 * result: out (and desc->lse, when given) of the local query rows attending
 * over the whole sequence's keys, with the positions of the split: causal,
 * the window and ALiBi measure global positions (desc->mask.align must be
 * the default, bottom-right, which for Tq = Tk is i' = i); sinks count once
 * per row. GQA as in the core. Not supported (INVALID_ARGUMENT): kv_len, an
 * additive mask, weights, a rotary, another alignment.
 *
 * Per step each rank computes its queries against the K/V block it holds
 * (the core, on desc's threads) while it sends that block on to rank r+1
 * and receives the next from rank r−1 (MPI_Isend / MPI_Irecv); blocks that
 * the causal mask hides from every local row are not computed. Partial
 * results merge in ring order (the local block first). Memory: two K/V
 * blocks and one partial output per rank, beside the core's workspace.
 *
 * Returns SUCCESS, the core's statuses for this rank's inputs, INVALID_SHAPE
 * when the ranks' shapes differ, INVALID_ARGUMENT (above; or the split), and
 * MHA_STATUS_INTERNAL_ERROR when MPI fails (with its message): on every rank
 * alike for what the agreement sees (shapes, the checks). */
MHA_API mha_status mha_mpi_ring_attention_f32(MPI_Comm comm, mha_mpi_split split,
                                              const mha_attention_desc* desc, const float* q,
                                              const float* k, const float* v, float* out);

/* Sequence-parallel decode over comm: the keys of each batch entry's
 * sequence are split over the ranks in rank order (rank r holds desc->Tk
 * keys, which may differ between ranks, at least 1), and every rank holds
 * the same desc->Tq queries, which sit at the end of the whole sequence
 * (bottom-right over the sum of the ranks' Tk). Each rank attends over its
 * keys (the core), then one MPI_Allgather of the partial outputs and
 * log-sum-exps and a merge in rank order give every rank the same out (and
 * desc->lse). Sinks are counted once (the first rank's call). Masks:
 * causal, window, ALiBi, soft-cap, sinks at global positions; kv_len, an
 * additive mask, weights, a rotary and another alignment are
 * INVALID_ARGUMENT. Statuses as mha_mpi_ring_attention_f32's. */
MHA_API mha_status mha_mpi_decode_f32(MPI_Comm comm, const mha_attention_desc* desc, const float* q,
                                      const float* k, const float* v, float* out);

/* mha_mpi_decode_f32 over each rank's K/V cache (mha_attention_kv_f32's
 * cache: contiguous or paged, fp32, f16, bf16 or int8): rank r's keys are the
 * first desc->Tk tokens of each entry of its cache. Each rank's part is
 * bitwise mha_attention_kv_f32's, so the result is bitwise
 * mha_mpi_decode_f32's on the caches' values widened to fp32. */
MHA_API mha_status mha_mpi_decode_kv_f32(MPI_Comm comm, const mha_attention_desc* desc, const float* q,
                                         const mha_kv_cache* cache, float* out);

/* A tensor-parallel layer over comm's N ranks (Megatron-LM's split of the
 * heads): rank r runs query heads [r·H/N, (r+1)·H/N) and their K/V heads
 * [r·Hkv/N, (r+1)·Hkv/N) with the ordinary plan, and the rows of W_o that
 * read them; the output projection's N partial sums are added in rank order
 * on every rank (b_o once), so every rank gets the same out, and for a fixed
 * rank count the same bits from run to run.
 *
 * MHA_MPI_WEIGHTS_WHOLE: desc describes the whole layer, its weights given
 * whole on every rank; each rank slices its part and packs only that (IN_OUT
 * W_q/W_k/W_v and OUT_IN W_o column blocks are copied for the packing, rows
 * are read in place; in_proj_weight works). H and Hkv must be multiples of N
 * (INVALID_SHAPE). MHA_MPI_WEIGHTS_SLICED: desc describes this rank's slice
 * as a layer of its own — H/N query heads, Hkv/N K/V heads, W_q/W_k/W_v and
 * biases of those heads, W_o's rows (IN_OUT; OUT_IN: columns) that read them
 * — the same sizes on every rank, rank r holding heads [r·H/N, (r+1)·H/N);
 * b_o given on every rank, added once. 16-bit weights (desc->dtype) are
 * taken pre-sliced only (WHOLE: INVALID_ARGUMENT). w_o must be non-NULL
 * (INVALID_ARGUMENT: the concatenated heads are not gathered). Collective:
 * the ranks agree as above; on failure *layer is NULL on every rank. */
typedef enum mha_mpi_weights {
  MHA_MPI_WEIGHTS_WHOLE = 0,
  MHA_MPI_WEIGHTS_SLICED = 1
} mha_mpi_weights;
typedef struct mha_mpi_layer mha_mpi_layer;
MHA_API mha_status mha_mpi_layer_create(MPI_Comm comm, const mha_layer_desc* desc, mha_mpi_weights weights,
                                        mha_mpi_layer** layer);

/* One forward pass (collective): args as mha_layer_forward's, with the
 * whole layer's masks (additive over all H heads, slopes and sinks [H]:
 * each rank reads its heads' part), out [B, Tq, d_model] on every rank.
 * Each rank exchanges its partial out with every other (an MPI_Allgather of
 * B·Tq·d_model floats per rank: bytes N× a ring all-reduce's; the order of
 * the sum is what makes the bits fixed). Not supported (INVALID_ARGUMENT):
 * weights, a kv_cache; args->workspace is not used. A 16-bit args->dtype
 * (x_q, x_k, x_v and out f16 / bf16): each rank widens the inputs exactly,
 * the partials are summed in fp32 and each value of out rounded once —
 * out = round(the fp32 forward on the widened inputs), bit for bit. */
MHA_API mha_status mha_mpi_layer_forward(const mha_mpi_layer* layer, const mha_layer_args* args);

/* Frees a layer (not collective; NULL is allowed). */
MHA_API void mha_mpi_layer_destroy(mha_mpi_layer* layer);

/* Where the calling thread's last mha_mpi_* call spent its time (seconds,
 * MPI_Wtime): computing (the core's parts and the merges), waiting (for the
 * ring's transfers after a step's compute, for the gather, and in the ranks'
 * agreements: time another rank's work or the network kept this rank idle),
 * and the whole call. A ring whose wait_s is near 0 hid its communication
 * behind its compute. Zeros before any call. */
typedef struct mha_mpi_timing {
  double compute_s, wait_s, total_s;
} mha_mpi_timing;
MHA_API void mha_mpi_last_timing(mha_mpi_timing* timing);

#ifdef __cplusplus
}
#endif

#endif
