#!/usr/bin/env python3
"""Studying heads on a real model: all-MiniLM-L6-v2 with mha's attention.

Runs the 6 layers of all-MiniLM-L6-v2 (d = 384, 12 heads) on a batch of real
sentences of different lengths. Every attention sub-layer is one mha.Layer
(query/key/value/dense weights and biases as stored, PyTorch [out, in]
layout, kv_len for the padding, need_weights=True); embeddings, LayerNorm,
the GELU FFN and the mean pooling are NumPy.

  --check   compares mha's per-head attention weights and outputs, layer by
            layer, with an independent float64 NumPy attention on the same
            input, and the sentence embeddings with the float64 model; exits
            1 above the tolerances. Also against `transformers` when it is
            importable (optional; --transformers makes it required).
  --plots   writes under --out: heads-L<l>-s<i>.png (the 12 heads of one
            layer for one sentence), summary.png/.csv/.md (entropy, distance,
            attention to [CLS] and [SEP] for every layer x head), timing.png
            /.csv (the attention core head by head vs all heads, and the
            layer, at 1 and 2 threads).
Without either flag it does both.

Needs: PYTHONPATH=<repo>/python, MHA_LIBRARY=<build>/libmha.so (or a
libmha.so the mha package finds), and examples/minilm/requirements*.txt.
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

# NumPy's BLAS pool (OpenBLAS starts one thread per core) would compete with
# mha's OpenMP threads for the same cores: the timing study measures mha's
# threads, so NumPy runs on one. Set OPENBLAS_NUM_THREADS to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model as M  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Four pairs of paraphrases, of different lengths (so the batch has padding).
SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on a small stage.",
    "The new movie is awesome.",
    "The latest film was really great, I loved it!",
    "Interest rates were raised by the central bank today.",
    "The bank increased its lending rates this morning.",
    "A cat is sleeping on the warm windowsill.",
    "The kitten naps in the sun by the window.",
]
PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7)]

# Longer inputs for the timing study: the same attention at realistic lengths.
PARAGRAPHS = [
    "Attention lets every token of a sentence look at every other token and decide how much of "
    "each to take. A transformer layer computes, for each head, a query, a key and a value for "
    "every position, scores the queries against the keys, turns each row of scores into "
    "probabilities with a softmax and mixes the values with those probabilities. Heads learn "
    "different habits: some look at the previous or the next word, some at the separator, some "
    "spread their attention over the whole sentence. A small encoder such as this one has six "
    "layers of twelve heads, each only thirty-two numbers wide, so most of the time goes into "
    "the projections and the feed-forward network rather than into attention itself, unless "
    "the input is long. Sentence embeddings are then the mean of the last layer's vectors over "
    "the real tokens, normalized to unit length, and two sentences are compared by the cosine "
    "of their embeddings.",
    "The river rose during the night after three days of rain in the hills. By morning the water "
    "had covered the lower road, and the farmers moved their animals to the high fields. The "
    "bridge held, although branches and whole trees had piled against its pillars, and the "
    "engineers who came at noon said that it would need to be inspected before any lorry could "
    "cross it again. In the village the bakery opened as usual, the school closed for the day, "
    "and children watched from the church steps as the brown water carried away fences, "
    "barrels and a small boat that nobody claimed.",
    "To make bread, mix flour, water, salt and a little yeast, knead the dough until it is smooth "
    "and elastic, and leave it covered in a warm place until it has doubled in size. Shape it, "
    "let it rise again, and bake it in a hot oven until the crust is brown and the loaf sounds "
    "hollow when tapped underneath.",
    "Markets were calm on Tuesday as investors waited for the central bank's decision on "
    "interest rates, which most analysts expect to remain unchanged until the autumn.",
]

# Tolerances of --check (see examples/minilm/README.md for the figures measured).
# mha computes in float32; the reference in float64 on the same float32 input.
TOL_WEIGHTS = 1e-5       # max |P_mha - P_ref| (probabilities, in [0, 1])
TOL_OUT_REL = 1e-5       # max |out_mha - out_ref| / max |out_ref| per layer
TOL_EMB = 1e-5           # max |e_mha - e_ref| of the unit-norm sentence embeddings
TOL_COS = 1e-6           # 1 - cos(e_mha, e_ref), worst sentence
# Against transformers (float32 PyTorch, its own float32 error on top of mha's).
TOL_TF_WEIGHTS = 1e-5
TOL_TF_OUT_REL = 1e-5
TOL_TF_EMB = 1e-5


def log(*a):
    print(*a, flush=True)


def require(modules):
    """Exit with one clear message when a dependency of the study is missing."""
    missing = []
    for mod in modules:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise SystemExit(
            f"study.py: {sys.executable} lacks {', '.join(missing)}: run scripts/setup-python.sh, "
            "or pip install -r examples/minilm/requirements.txt and "
            "pip install --no-deps -r examples/minilm/requirements-nodeps.txt")


def import_mha():
    try:
        import mha
    except ImportError as e:
        raise SystemExit(
            f"cannot import mha ({e}): run with PYTHONPATH=<repo>/python and "
            "MHA_LIBRARY=<build>/libmha.so (see examples/minilm/README.md)") from e
    return mha


def make_layers(mha, m, isa):
    layers = []
    for lw in m.layers:
        layers.append(mha.Layer(
            m.cfg.d_model, m.cfg.num_heads,
            w_q=lw.w_q, w_k=lw.w_k, w_v=lw.w_v, w_o=lw.w_o,
            b_q=lw.b_q, b_k=lw.b_k, b_v=lw.b_v, b_o=lw.b_o,
            layout="out_in", isa=isa))
    return layers


def run_mha(m, layers, ids, lengths, num_threads=0):
    """The model in float32 with mha's attention. Returns (embeddings, inputs of
    each layer, mha's attention outputs, mha's weights)."""
    x = M.embed(m, ids, np.float32)
    xs, outs, weights = [], [], []
    for lw, layer in zip(m.layers, layers):
        out, w = layer.forward(x, kv_len=lengths, need_weights=True, num_threads=num_threads)
        xs.append(x)
        outs.append(out)
        weights.append(w)
        x = M.after_attention(m, lw, x, out)
    return M.mean_pool_normalize(x, lengths), xs, outs, weights


def valid_mask(lengths, T):
    """[B, 1, T, T] True where the query row and the key are real tokens."""
    r = np.arange(T)
    v = r[None, :] < lengths[:, None]
    return (v[:, :, None] & v[:, None, :])[:, None]


# --------------------------------------------------------------------------
# --check
# --------------------------------------------------------------------------

def check(m, layers, ids, lengths, tokens, args):
    failures = []
    t0 = time.perf_counter()
    emb, xs, outs, ws = run_mha(m, layers, ids, lengths)
    t_mha = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb_ref, hidden_ref, _ = M.encode_reference(m, ids, lengths)
    t_ref = time.perf_counter() - t0
    B, T = ids.shape
    sentences = args.sentences
    pad_keys = ~(np.arange(T)[None, :] < lengths[:, None])  # [B, T]

    log(f"\n== mha against the float64 NumPy attention, layer by layer "
        f"(B={B}, T={T}, lengths {lengths.tolist()}) ==")
    log("Each layer's reference gets the same float32 input as mha (mha's own hidden state).")
    log(f"{'layer':>5} {'max|dP|':>10} {'max|dOut|':>10} {'max|Out|':>9} {'rel':>9} "
        f"{'P pad':>7} {'rowsum-1':>9} {'drift':>9}")
    rows = []
    for l, (lw, x, out, w) in enumerate(zip(m.layers, xs, outs, ws)):
        ref_out, ref_p, _ = M.attention_reference(m, lw, x, lengths)
        dp = float(np.abs(w - ref_p).max())
        dout = float(np.abs(out - ref_out).max())
        scale = float(np.abs(ref_out).max())
        rel = dout / scale
        # Weights on padded keys must be exactly 0; rows must sum to 1.
        pad = float(np.abs(w * pad_keys[:, None, None, :]).max())
        rowsum = float(np.abs(w.astype(np.float64).sum(-1) - 1).max())
        # How far mha's float32 hidden state has drifted from the float64 model's.
        drift = float(np.abs(x - hidden_ref[l]).max())
        rows.append((l, dp, dout, scale, rel, pad, rowsum, drift))
        log(f"{l:>5} {dp:10.2e} {dout:10.2e} {scale:9.3f} {rel:9.2e} {pad:7.0e} {rowsum:9.2e} "
            f"{drift:9.2e}")
        if not dp <= TOL_WEIGHTS:
            failures.append(f"layer {l}: max |dP| {dp:.3e} > {TOL_WEIGHTS:.0e}")
        if not rel <= TOL_OUT_REL:
            failures.append(f"layer {l}: max |dOut|/max|Out| {rel:.3e} > {TOL_OUT_REL:.0e}")
        if pad != 0.0:
            failures.append(f"layer {l}: nonzero weight {pad} on a padded key")
        if not rowsum <= 1e-5:
            failures.append(f"layer {l}: a weight row sums to 1 +- {rowsum:.3e}")
    log(f"tolerances: max|dP| <= {TOL_WEIGHTS:.0e}, max|dOut|/max|Out| <= {TOL_OUT_REL:.0e}; "
        "drift = max |x_mha - x_ref| of the layer's input (float32 pipeline vs float64 model)")

    d_emb = float(np.abs(emb - emb_ref).max())
    cos = np.sum(emb.astype(np.float64) * emb_ref, axis=1)
    worst = float(1 - cos.min())
    log(f"\n== sentence embeddings (mean pooling + L2 norm, d={emb.shape[1]}) ==")
    log(f"mha float32 model vs float64 NumPy model: max |de| = {d_emb:.2e} (tol {TOL_EMB:.0e}), "
        f"worst 1 - cos = {worst:.1e} (tol {TOL_COS:.0e})")
    if not d_emb <= TOL_EMB:
        failures.append(f"embeddings: max |de| {d_emb:.3e} > {TOL_EMB:.0e}")
    if not worst <= TOL_COS:
        failures.append(f"embeddings: 1 - cos {worst:.3e} > {TOL_COS:.0e}")

    sim = emb.astype(np.float64) @ emb.astype(np.float64).T
    log("\ncosine similarity between the sentences (mha embeddings):")
    log("      " + " ".join(f"{j:>5}" for j in range(B)))
    for i in range(B):
        log(f"{i:>5} " + " ".join(f"{sim[i, j]:5.2f}" for j in range(B)) + f"   {sentences[i]}")
    for a, b in PAIRS:
        others = max(max(sim[a, k] for k in range(B) if k not in (a, b)),
                     max(sim[b, k] for k in range(B) if k not in (a, b)))
        ok = sim[a, b] > others
        log(f"pair ({a},{b}): cos {sim[a, b]:.3f} vs best other {others:.3f} "
            f"{'ok' if ok else 'WRONG'}")
        if not ok:
            failures.append(f"paraphrase pair ({a},{b}) is not the closest")

    tf = check_transformers(m, ids, lengths, emb, ws, outs, args, failures)
    log(f"\ntimes: mha float32 model {t_mha * 1e3:.0f} ms, float64 NumPy model {t_ref * 1e3:.0f} ms")
    return failures, dict(rows=rows, d_emb=d_emb, worst_cos=worst, sim=sim, tf=tf)


def check_transformers(m, ids, lengths, emb, ws, outs, args, failures):
    """transformers' BertModel on the same ids, if it is importable."""
    if args.no_transformers:
        return None
    try:
        import torch
        import transformers
    except ImportError:
        msg = "transformers/torch not importable: the transformers comparison is skipped"
        if args.transformers:
            failures.append(msg)
        log(f"\n({msg}; it is optional, see examples/minilm/README.md)")
        return None
    log(f"\n== against transformers {transformers.__version__} (torch {torch.__version__}), "
        "float32, attn_implementation='eager', output_attentions=True ==")
    bert = transformers.BertModel.from_pretrained(
        str(m.dir), attn_implementation="eager", local_files_only=True, add_pooling_layer=False)
    bert.eval()
    B, T = ids.shape
    am = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    # The attention sub-layer's output (after the dense projection, before the
    # residual and LayerNorm), caught with a hook on each layer's dense.
    dense_out = []
    hooks = [lay.attention.output.dense.register_forward_hook(
        lambda mod, inp, out: dense_out.append(out.detach().numpy().copy()))
        for lay in bert.encoder.layer]
    with torch.no_grad():
        r = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(am),
                 token_type_ids=torch.zeros_like(torch.from_numpy(ids)), output_attentions=True)
    for h in hooks:
        h.remove()
    hid = r.last_hidden_state.numpy().astype(np.float64)
    emb_tf = M.mean_pool_normalize(hid, lengths)
    keep = valid_mask(lengths, T)
    real = (np.arange(T)[None, :] < lengths[:, None])[..., None]  # [B, T, 1]
    out = []
    log("Each layer of transformers runs on its own hidden state; differences include the drift "
        "of the two float32 models.")
    log(f"{'layer':>5} {'max|dP|':>10} {'max|dOut|':>10} {'rel':>9}   (real tokens; padded query "
        "rows are not part of the model's output)")
    for l, (w, a, o_tf, o) in enumerate(zip(ws, r.attentions, dense_out, outs)):
        a = a.numpy()
        d_p = float(np.abs((w - a) * keep).max())
        d_o = float(np.abs((o - o_tf) * real).max())
        rel = d_o / float(np.abs(o_tf * real).max())
        out.append((l, d_p, d_o, rel))
        log(f"{l:>5} {d_p:10.2e} {d_o:10.2e} {rel:9.2e}")
        if not d_p <= TOL_TF_WEIGHTS:
            failures.append(f"transformers layer {l}: max |dP| {d_p:.3e} > {TOL_TF_WEIGHTS:.0e}")
        if not rel <= TOL_TF_OUT_REL:
            failures.append(f"transformers layer {l}: max |dOut|/max|Out| {rel:.3e} > "
                            f"{TOL_TF_OUT_REL:.0e}")
    d_emb = float(np.abs(emb - emb_tf).max())
    cos = float((np.sum(emb * emb_tf, axis=1)).min())
    log(f"embeddings: mha vs transformers max |de| = {d_emb:.2e} (tol {TOL_TF_EMB:.0e}), "
        f"worst 1 - cos = {1 - cos:.1e}")
    if not d_emb <= TOL_TF_EMB:
        failures.append(f"transformers embeddings: max |de| {d_emb:.3e} > {TOL_TF_EMB:.0e}")
    try:
        import sentence_transformers
        st = sentence_transformers.SentenceTransformer(str(m.dir), device="cpu")
        e_st = st.encode(args.sentences, convert_to_numpy=True, normalize_embeddings=False)
        d_st = float(np.abs(emb - e_st).max())
        log(f"embeddings: mha vs sentence-transformers {sentence_transformers.__version__} "
            f"model.encode(): max |de| = {d_st:.2e}")
        if not d_st <= TOL_TF_EMB:
            failures.append(f"sentence-transformers embeddings: max |de| {d_st:.3e}")
    except ImportError:
        log("(sentence-transformers not importable: its encode() comparison is skipped)")
    return dict(layers=out, d_emb=d_emb)


# --------------------------------------------------------------------------
# --plots
# --------------------------------------------------------------------------

def head_stats(w, lengths):
    """Per (layer, head) averages over the real query rows of every sentence:
    entropy (nats), mean |i - j| attended, weight on [CLS] (key 0), on [SEP]
    (the last real key), on the token itself, on the previous token, on the
    next one. w: list over layers of [B,H,T,T]."""
    stats = []
    for l, p in enumerate(w):
        p = p.astype(np.float64)
        B, H, T, _ = p.shape
        acc = np.zeros((H, len(STAT_COLS)))
        rows = 0
        for b in range(B):
            n = int(lengths[b])
            q = p[b, :, :n, :n]  # [H, n, n]
            ent = -(q * np.log(np.where(q > 0, q, 1))).sum(-1)
            dist = (q * np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])).sum(-1)
            acc[:, 0] += ent.sum(-1)
            acc[:, 1] += dist.sum(-1)
            acc[:, 2] += q[:, :, 0].sum(-1)
            acc[:, 3] += q[:, :, n - 1].sum(-1)
            acc[:, 4] += np.trace(q, axis1=1, axis2=2)
            acc[:, 5] += np.trace(q, offset=-1, axis1=1, axis2=2)  # key i-1 (row 0: none)
            acc[:, 6] += np.trace(q, offset=1, axis1=1, axis2=2)   # key i+1 (last row: none)
            rows += n
        acc /= rows
        for h in range(H):
            stats.append((l, h) + tuple(float(v) for v in acc[h]))
    return stats


STAT_COLS = ["entropy_nats", "mean_distance", "to_cls", "to_sep", "to_self", "to_prev", "to_next"]


def write_stats(stats, out_dir, lengths):
    with open(out_dir / "summary.csv", "w") as f:
        f.write("layer,head," + ",".join(STAT_COLS) + "\n")
        for s in stats:
            f.write(f"{s[0]},{s[1]}," + ",".join(f"{v:.4f}" for v in s[2:]) + "\n")
    lines = [
        "| layer | head | entropy (nats) | mean distance | to [CLS] | to [SEP] | to self "
        "| to previous | to next |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(f"| {s[0]} | {s[1]} | " + " | ".join(f"{v:.2f}" for v in s[2:]) + " |")
    head = (f"Per-head attention statistics of all-MiniLM-L6-v2 (mha's weights), averaged over "
            f"the real query rows of {len(lengths)} sentences of {lengths.min()}-{lengths.max()} "
            f"tokens. Uniform attention over n keys has entropy ln n "
            f"({math.log(lengths.min()):.2f}-{math.log(lengths.max()):.2f} here).\n\n")
    (out_dir / "summary.md").write_text(head + "\n".join(lines) + "\n")
    return lines


def plot_heads(plt, w_layer, tokens, n, layer, sent_idx, sentence, path):
    """A 3x4 grid: the 12 heads of one layer for one sentence (real tokens only)."""
    from matplotlib.colors import PowerNorm

    H = w_layer.shape[0]
    cols = 4
    rows = (H + cols - 1) // cols
    fs = 9 if n <= 16 else (7 if n <= 28 else 5)
    side = min(7.0, max(3.6, 0.22 * n + 1.0))  # inches per head
    fig, axes = plt.subplots(rows, cols, figsize=(cols * side + 1.5, rows * side + 1.6),
                             squeeze=False, layout="constrained")
    # Room between the rows for the rotated key labels and the next row's titles.
    fig.get_layout_engine().set(h_pad=0.12, hspace=0.04)
    # A square-root colour scale, so that weights of 0.05-0.2 stay visible
    # next to the heads that put 0.9 on one key.
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    im = None
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= H:
            ax.axis("off")
            continue
        p = w_layer[h, :n, :n]
        im = ax.imshow(p, cmap="viridis", norm=norm, interpolation="nearest")
        ent = float(-(p * np.log(np.where(p > 0, p, 1))).sum(-1).mean())
        ax.set_title(f"head {h}  (entropy {ent:.2f})", fontsize=fs + 2)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(tokens[:n], rotation=90, fontsize=fs)
        ax.set_yticklabels(tokens[:n], fontsize=fs)
        ax.tick_params(length=2, pad=1)
        if h % cols == 0:
            ax.set_ylabel("query", fontsize=fs + 1)
        if h // cols == rows - 1:
            ax.set_xlabel("key", fontsize=fs + 1)
    fig.suptitle(f"all-MiniLM-L6-v2, layer {layer}: attention weights of the {H} heads "
                 f"(rows = queries, sum to 1)\nsentence {sent_idx}: \"{sentence}\"",
                 fontsize=13)
    cb = fig.colorbar(im, ax=axes, shrink=0.6, pad=0.01, aspect=40)
    cb.set_label("attention weight (square-root scale)", fontsize=10)
    cb.set_ticks([0, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_summary(plt, stats, L, H, path):
    titles = {"entropy_nats": "entropy (nats)", "mean_distance": "mean distance |i - j| attended",
              "to_cls": "weight on [CLS]", "to_sep": "weight on [SEP]",
              "to_self": "weight on the token itself",
              "to_prev": "weight on the previous token", "to_next": "weight on the next token"}
    arr = np.array([s[2:] for s in stats]).reshape(L, H, len(STAT_COLS))
    ncol = 2
    nrow = (len(STAT_COLS) + 1 + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(10 * ncol, 3.1 * nrow), constrained_layout=True,
                             squeeze=False)
    for c in range(len(STAT_COLS), nrow * ncol):
        axes[c // ncol][c % ncol].axis("off")
    # The last free panel explains the layout.
    axes[-1][-1].text(0.02, 0.5, "Each cell: one head, averaged over the real query rows\n"
                      "of the sentences (padding excluded).\n"
                      "entropy: ln n is uniform over n keys, 0 is one key.\n"
                      "mean distance: the average |query - key| position gap.\n"
                      "[CLS] is key 0, [SEP] the last real key.", fontsize=11, va="center")
    for c, name in enumerate(STAT_COLS):
        ax = axes[c // ncol][c % ncol]
        a = arr[:, :, c]
        cmap = "magma" if c < 2 else "viridis"
        vmax = None if c < 2 else 1.0
        im = ax.imshow(a, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
        hi = a.max() if vmax is None else vmax
        for l in range(L):
            for h in range(H):
                ax.text(h, l, f"{a[l, h]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if a[l, h] > 0.6 * hi else "white")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(titles[name])
        fig.colorbar(im, ax=ax, pad=0.01)
    fig.suptitle("all-MiniLM-L6-v2: every layer x head, averaged over the real query rows "
                 "of the sentences", fontsize=12)
    fig.savefig(path, dpi=100)
    plt.close(fig)


ROUNDS = 5


def best_times(fns, min_time, rounds=ROUNDS):
    """{key: seconds of one call of fns[key]}, the best of `rounds` rounds, each
    round timing every function in turn (so that a change of load on a shared
    machine hits all of them alike) by calling it until min_time has passed
    (at least once), so a round costs min_time plus one call whatever the load."""
    best = {key: math.inf for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            fn()  # untimed: a change of thread count makes OpenMP resize its team once
            n = 0
            t0 = time.perf_counter()
            while True:
                fn()
                n += 1
                el = time.perf_counter() - t0
                if el >= min_time:
                    break
            best[key] = min(best[key], el / n)
    return best


def time_workload(mha, m, layer_mha, lw, x, lengths, threads, isa, min_time):
    """Times of one layer's attention: the core head by head, all heads at once,
    and the whole mha.Layer, per thread count. x: that layer's float32 input."""
    H, D = m.cfg.num_heads, m.cfg.head_dim
    B, T, d = x.shape

    def heads(y):  # [B, T, d] -> [B, H, T, D] contiguous
        return np.ascontiguousarray(y.reshape(B, T, H, D).transpose(0, 2, 1, 3))

    q = heads(M.linear(x, lw.w_q, lw.b_q))
    k = heads(M.linear(x, lw.w_k, lw.b_k))
    v = heads(M.linear(x, lw.w_v, lw.b_v))
    per = [(np.ascontiguousarray(q[:, h:h + 1]), np.ascontiguousarray(k[:, h:h + 1]),
            np.ascontiguousarray(v[:, h:h + 1]), np.empty((B, 1, T, D), np.float32))
           for h in range(H)]
    out_all = np.empty_like(q)
    # The head-by-head calls compute what the all-heads call computes.
    full = mha.attention(q, k, v, kv_len=lengths, isa=isa)
    for h, (qh, kh, vh, oh) in enumerate(per):
        mha.attention(qh, kh, vh, kv_len=lengths, isa=isa, out=oh)
        if not np.allclose(oh[:, 0], full[:, h], rtol=1e-5, atol=1e-6):
            raise SystemExit(f"head {h} alone differs from head {h} of the all-heads call")
    # One thread count at a time: after a call on 2 threads, OpenMP's idle
    # worker spins for a while and would slow whatever 1-thread call came next.
    best = {}
    for t in threads:
        fns = {}
        for h, a in enumerate(per):
            fns[t, h] = lambda a=a, t=t: mha.attention(a[0], a[1], a[2], kv_len=lengths,
                                                        num_threads=t, isa=isa, out=a[3])
        fns[t, "all"] = lambda t=t: mha.attention(q, k, v, kv_len=lengths, num_threads=t,
                                                  isa=isa, out=out_all)
        fns[t, "layer"] = lambda t=t: layer_mha.forward(x, kv_len=lengths, num_threads=t)
        best.update(best_times(fns, min_time))
    return {t: dict(per_head=[best[t, h] for h in range(H)], all_heads=best[t, "all"],
                    layer=best[t, "layer"]) for t in threads}


def machine_line():
    """The CPU, its cores and the load when measured: timings on a shared
    machine mean little without them."""
    cpu = "unknown CPU"
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at the end of the run"


def fmt_t(s):
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def plot_timing(plt, workloads, threads, H, path):
    fig, axes = plt.subplots(len(workloads), 2, figsize=(15, 4.8 * len(workloads)),
                             constrained_layout=True, squeeze=False,
                             gridspec_kw=dict(width_ratios=[1.5, 1]))
    colors = {t: c for t, c in zip(threads, ["tab:blue", "tab:orange", "tab:green", "tab:red"])}
    width = 0.8 / len(threads)
    for r, (name, res) in enumerate(workloads):
        top = max(max(res[t]["layer"], sum(res[t]["per_head"])) for t in threads)
        unit, mul = ("ms", 1e3) if top >= 2e-3 else ("us", 1e6)
        small = max(max(max(res[t]["per_head"]), res[t]["all_heads"] / H) for t in threads)
        hunit, hmul = ("ms", 1e3) if small >= 2e-3 else ("us", 1e6)
        ax = axes[r][0]
        for i, t in enumerate(threads):
            ts = "s" if t > 1 else ""
            xs = np.arange(H) + (i - (len(threads) - 1) / 2) * width
            ax.bar(xs, np.array(res[t]["per_head"]) * hmul, width, color=colors[t],
                   label=f"head alone, {t} thread{ts}")
            ax.axhline(res[t]["all_heads"] / H * hmul, color=colors[t], ls="--", lw=1.5,
                       label=f"(all {H} heads in one call) / {H}, {t} thread{ts}")
        ax.set_xticks(range(H))
        ax.set_xlabel("head")
        ax.set_ylabel(f"time of one call ({hunit})")
        ax.set_title(f"{name}\nattention core (mha.attention), one head per call", fontsize=11)
        vals = [v for t in threads for v in res[t]["per_head"] + [res[t]["all_heads"] / H]]
        if max(vals) > 20 * min(vals):  # a contended thread count: a log scale keeps both visible
            ax.set_yscale("log")
            ax.set_ylim(min(vals) * hmul * 0.5, max(vals) * hmul * 8)
        else:
            ax.set_ylim(0, small * hmul * 1.45)
        ax.legend(fontsize=8, loc="upper center", ncol=2, framealpha=0.9)
        ax = axes[r][1]
        groups = [f"{H} calls of\none head (sum)", f"one call\nof {H} heads",
                  "the layer\n(mha.Layer.forward)"]
        for i, t in enumerate(threads):
            vals = [sum(res[t]["per_head"]), res[t]["all_heads"], res[t]["layer"]]
            xs = np.arange(3) + (i - (len(threads) - 1) / 2) * width
            ax.bar(xs, np.array(vals) * mul, width, color=colors[t],
                   label=f"{t} thread{'s' if t > 1 else ''}")
            for bx, vv in zip(xs, vals):
                ax.text(bx, vv * mul, fmt_t(vv), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(3))
        ax.set_xticklabels(groups)
        ax.set_ylabel(f"time ({unit})")
        ax.set_title(f"{name}\nall heads of the layer", fontsize=11)
        vals = [v for t in threads for v in (sum(res[t]["per_head"]), res[t]["all_heads"],
                                             res[t]["layer"])]
        if max(vals) > 20 * min(vals):
            ax.set_yscale("log")
            ax.set_ylim(min(vals) * mul * 0.5, max(vals) * mul * 4)
        else:
            ax.set_ylim(0, top * mul * 1.2)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("all-MiniLM-L6-v2 attention with mha: how time splits across heads and threads "
                 f"(best of {ROUNDS} rounds)\n{machine_line()}", fontsize=12)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plots(mha, m, layers, ids, lengths, tokens, args, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L, H = m.cfg.num_layers, m.cfg.num_heads
    _, xs, _, ws = run_mha(m, layers, ids, lengths)
    # The pictures only make sense on weights that are probabilities (a stale
    # libmha.so under a newer package gives noise): check that much here too.
    for l, w in enumerate(ws):
        bad = np.abs(w.astype(np.float64).sum(-1) - 1).max()
        if not bad <= 1e-5:
            raise SystemExit(f"layer {l}: mha's attention weights do not sum to 1 per row "
                             f"(off by {bad:.3g}); is MHA_LIBRARY a build of this checkout?")

    for l in args.layers:
        if not 0 <= l < L:
            raise SystemExit(f"--layer must be in 0..{L - 1}")
    s = args.sentence_index
    for l in args.layers:
        path = out_dir / f"heads-L{l}-s{s}.png"
        plot_heads(plt, ws[l][s], tokens[s], int(lengths[s]), l, s, args.sentences[s], path)
        log(f"wrote {path}")

    stats = head_stats(ws, lengths)
    lines = write_stats(stats, out_dir, lengths)
    log(f"\n== per-head summary (mha's weights, {len(lengths)} sentences), also "
        f"{out_dir / 'summary.md'} and summary.csv ==")
    for ln in lines:
        log(ln)
    plot_summary(plt, stats, L, H, out_dir / "summary.png")
    log(f"wrote {out_dir / 'summary.png'}")

    # Timing: the (first) chosen layer, on the sentence batch and on longer paragraphs.
    lt = args.layers[0]
    ids_p, len_p, _ = m.tokenize(PARAGRAPHS)
    _, xs_p, _, _ = run_mha(m, layers, ids_p, len_p)
    threads = args.threads
    workloads = [
        (f"{len(lengths)} sentences, T={ids.shape[1]}",
         time_workload(mha, m, layers[lt], m.layers[lt], xs[lt],
                       lengths, threads, args.isa, args.min_time)),
        (f"{len(len_p)} paragraphs, T={ids_p.shape[1]} (lengths {', '.join(map(str, len_p))})",
         time_workload(mha, m, layers[lt], m.layers[lt], xs_p[lt],
                       len_p, threads, args.isa, args.min_time)),
    ]
    with open(out_dir / "timing.csv", "w") as f:
        f.write("workload,threads,what,head,seconds\n")
        for name, res in workloads:
            for t in threads:
                for h, v in enumerate(res[t]["per_head"]):
                    f.write(f"\"{name}\",{t},core_one_head,{h},{v:.9f}\n")
                f.write(f"\"{name}\",{t},core_sum_of_heads,,{sum(res[t]['per_head']):.9f}\n")
                f.write(f"\"{name}\",{t},core_all_heads,,{res[t]['all_heads']:.9f}\n")
                f.write(f"\"{name}\",{t},layer,,{res[t]['layer']:.9f}\n")
    log(f"\n== time of layer {lt}'s attention (best of {ROUNDS} rounds; isa "
        f"{layers[0].isa}) ==")
    log(machine_line())
    for name, res in workloads:
        log(name)
        for t in threads:
            r = res[t]
            log(f"  {t} thread{'s' if t > 1 else ' '}: {H} one-head core calls {fmt_t(sum(r['per_head']))}"
                f" (head {int(np.argmin(r['per_head']))}..{int(np.argmax(r['per_head']))}: "
                f"{fmt_t(min(r['per_head']))}..{fmt_t(max(r['per_head']))}), "
                f"one {H}-head call {fmt_t(r['all_heads'])}, layer {fmt_t(r['layer'])}")
    plot_timing(plt, workloads, threads, H, out_dir / "timing.png")
    log(f"wrote {out_dir / 'timing.png'} and timing.csv")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="agreement checks; exit 1 on failure")
    ap.add_argument("--plots", action="store_true", help="PNG heatmaps, summary and timing")
    ap.add_argument("--out", default=str(REPO / "out" / "study"), help="output folder")
    ap.add_argument("--layer", default="0,1",
                    help="layers of the heads pictures, 0-5, comma-separated (the first one is "
                         "also the layer timed)")
    ap.add_argument("--sentence", default="5",
                    help="sentence of the heads picture: an index into the batch, or a text "
                         "(added to the batch)")
    ap.add_argument("--isa", default=None, help="mha kernel set (scalar, avx2, avx512f, neon)")
    ap.add_argument("--threads", default="1,2", help="thread counts of the timing plot")
    ap.add_argument("--min-time", type=float, default=0.01,
                    help="seconds per timing round (5 rounds per point)")
    ap.add_argument("--transformers", action="store_true",
                    help="require the transformers comparison (fail if not importable)")
    ap.add_argument("--no-transformers", action="store_true",
                    help="skip the transformers comparison even if importable")
    args = ap.parse_args()
    if not args.check and not args.plots:
        args.check = args.plots = True
    args.threads = [int(t) for t in args.threads.split(",")]
    args.layers = [int(l) for l in args.layer.split(",")]

    t_start = time.perf_counter()
    require(["safetensors", "tokenizers"] + (["matplotlib"] if args.plots else []))
    mha = import_mha()
    m = M.MiniLM()
    args.sentences = list(SENTENCES)
    if args.sentence.isdigit():
        args.sentence_index = int(args.sentence)
        if args.sentence_index >= len(SENTENCES):
            raise SystemExit(f"--sentence must be < {len(SENTENCES)} or a text")
    else:
        args.sentences.append(args.sentence)
        args.sentence_index = len(args.sentences) - 1
    ids, lengths, tokens = m.tokenize(args.sentences)
    layers = make_layers(mha, m, args.isa)
    log(f"all-MiniLM-L6-v2 from {m.dir}")
    log(f"{m.cfg.num_layers} layers, d={m.cfg.d_model}, {m.cfg.num_heads} heads of "
        f"{m.cfg.head_dim}; mha {mha.__name__} kernel set {layers[0].isa}; "
        f"{len(args.sentences)} sentences, {ids.shape[1]} tokens max")

    failures = []
    if args.check:
        f, _ = check(m, layers, ids, lengths, tokens, args)
        failures += f
    if args.plots:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        plots(mha, m, layers, ids, lengths, tokens, args, out_dir)
    for layer in layers:
        layer.close()
    log(f"\nstudy took {time.perf_counter() - t_start:.1f} s")
    if failures:
        log("\nFAILED:")
        for f in failures:
            log("  " + f)
        return 1
    if args.check:
        log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
