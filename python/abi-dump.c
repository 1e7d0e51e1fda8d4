/* Prints the size of every struct of mha.h that the Python front mirrors
 * (python/mha/_lib.py) and the offset and size of each of their fields, one
 * per line: "<struct> <field> <offset> <size>" ("<struct> - 0 <sizeof>" for
 * the whole), and the values of the enums it mirrors as constants, "enum
 * <enum> <name> <value>". python/tests/test_abi.py compares them with
 * ctypes' and _lib.py's. */
#include <stddef.h>
#include <stdio.h>

#include "mha.h"

#define S(T) printf("%s - 0 %zu\n", #T, sizeof(T))
#define F(T, f) printf("%s %s %zu %zu\n", #T, #f, offsetof(T, f), sizeof(((T*)0)->f))
#define E(T, c) printf("enum %s %s %d\n", #T, #c, (int)(c))

int main(void) {
  S(mha_strides);
  F(mha_strides, batch); F(mha_strides, head); F(mha_strides, row);

  S(mha_mask);
  F(mha_mask, causal); F(mha_mask, kv_len); F(mha_mask, additive); F(mha_mask, additive_strides);
  F(mha_mask, align); F(mha_mask, offset); F(mha_mask, window); F(mha_mask, window_left);
  F(mha_mask, window_right); F(mha_mask, alibi_slopes); F(mha_mask, softcap); F(mha_mask, sinks);

  S(mha_attention_desc);
  F(mha_attention_desc, struct_size);
  F(mha_attention_desc, B); F(mha_attention_desc, H); F(mha_attention_desc, Hkv);
  F(mha_attention_desc, Tq); F(mha_attention_desc, Tk); F(mha_attention_desc, D);
  F(mha_attention_desc, Dv); F(mha_attention_desc, q); F(mha_attention_desc, k);
  F(mha_attention_desc, v); F(mha_attention_desc, out); F(mha_attention_desc, scale);
  F(mha_attention_desc, mask); F(mha_attention_desc, num_threads); F(mha_attention_desc, isa);
  F(mha_attention_desc, lse); F(mha_attention_desc, weights_mode);
  F(mha_attention_desc, weights_heads); F(mha_attention_desc, weights_nheads);
  F(mha_attention_desc, workspace);
  F(mha_attention_desc, workspace_size); F(mha_attention_desc, threadpool); F(mha_attention_desc, trace);
  F(mha_attention_desc, rotary);

  S(mha_rotary);
  F(mha_rotary, struct_size); F(mha_rotary, style); F(mha_rotary, dim); F(mha_rotary, cos);
  F(mha_rotary, sin); F(mha_rotary, n_positions); F(mha_rotary, positions);
  E(mha_rotary_style, MHA_ROTARY_NEOX); E(mha_rotary_style, MHA_ROTARY_GPTJ);

  E(mha_dtype, MHA_DTYPE_F32); E(mha_dtype, MHA_DTYPE_F16); E(mha_dtype, MHA_DTYPE_BF16);
  E(mha_dtype, MHA_DTYPE_INT8);

  S(mha_trace_event);
  F(mha_trace_event, start_ns); F(mha_trace_event, end_ns); F(mha_trace_event, worker);
  F(mha_trace_event, stage); F(mha_trace_event, batch); F(mha_trace_event, head);
  F(mha_trace_event, heads); F(mha_trace_event, q_begin); F(mha_trace_event, q_end);
  F(mha_trace_event, k_begin); F(mha_trace_event, k_end); F(mha_trace_event, reserved);

  S(mha_trace);
  F(mha_trace, events); F(mha_trace, capacity); F(mha_trace, count); F(mha_trace, total);

  E(mha_trace_stage, MHA_TRACE_PACK_KT); E(mha_trace_stage, MHA_TRACE_ATTENTION);
  E(mha_trace_stage, MHA_TRACE_WEIGHTS_MEAN); E(mha_trace_stage, MHA_TRACE_GEMM);

  S(mha_kv_cache);
  F(mha_kv_cache, struct_size);
  F(mha_kv_cache, dtype); F(mha_kv_cache, k); F(mha_kv_cache, v); F(mha_kv_cache, k_strides);
  F(mha_kv_cache, v_strides); F(mha_kv_cache, capacity); F(mha_kv_cache, block_size);
  F(mha_kv_cache, num_blocks); F(mha_kv_cache, block_table); F(mha_kv_cache, max_blocks);
  F(mha_kv_cache, k_scales); F(mha_kv_cache, v_scales); F(mha_kv_cache, scale_strides);

  S(mha_layer_desc);
  F(mha_layer_desc, struct_size);
  F(mha_layer_desc, d_model); F(mha_layer_desc, d_kv); F(mha_layer_desc, H);
  F(mha_layer_desc, Hkv); F(mha_layer_desc, D); F(mha_layer_desc, Dv);
  F(mha_layer_desc, layout); F(mha_layer_desc, w_q); F(mha_layer_desc, w_k);
  F(mha_layer_desc, w_v); F(mha_layer_desc, w_o); F(mha_layer_desc, in_proj_weight);
  F(mha_layer_desc, b_q); F(mha_layer_desc, b_k); F(mha_layer_desc, b_v);
  F(mha_layer_desc, b_o); F(mha_layer_desc, in_proj_bias); F(mha_layer_desc, isa);
  F(mha_layer_desc, dtype);

  S(mha_layer_args);
  F(mha_layer_args, struct_size);
  F(mha_layer_args, B); F(mha_layer_args, Tq); F(mha_layer_args, Tk); F(mha_layer_args, x_q);
  F(mha_layer_args, x_k); F(mha_layer_args, x_v); F(mha_layer_args, out);
  F(mha_layer_args, mask); F(mha_layer_args, weights); F(mha_layer_args, weights_mode);
  F(mha_layer_args, weights_heads); F(mha_layer_args, weights_nheads); F(mha_layer_args, scale);
  F(mha_layer_args, num_threads); F(mha_layer_args, workspace);
  F(mha_layer_args, workspace_size); F(mha_layer_args, kv_cache); F(mha_layer_args, kv_pos);
  F(mha_layer_args, threadpool); F(mha_layer_args, trace); F(mha_layer_args, dtype);
  return 0;
}
