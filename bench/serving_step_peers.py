"""The serving_step preset (issue #22; bench/serving-step.c) beside PyTorch.

A continuously batching engine's step: 64 sequences, 4 prefilling 512-token
chunks (causal, aligned to the end of their keys) and 60 decoding one token,
histories in [1024, 8192] tokens, H 32 / Hkv 8, D 128, over one paged f16
cache in head-major blocks of 16 (--block) shuffled in the pool: the same
lengths as mha_serving_step (its xorshift generator, its seed). Timed,
alternating, each system in turn per round (medians):

  mha one call      mha.attention_varlen(q, k_pool, v_pool, cu_seqlens_q,
                    seqused_k=, block_table=): mha_attention_varlen_kv_f32
  mha per sequence  mha.attention_paged per sequence (mha_attention_kv_f32)
  torch loop        what a CPU user of PyTorch writes: per sequence, the
                    blocks gathered through the table (pool[table[b]]), K and
                    V upcast to fp32 and F.scaled_dot_product_attention with
                    GQA and, for a chunk, the bottom-right causal mask
                    (torch_sdpa_upcast; --f16 adds torch_sdpa on the f16
                    rows, which CPUs without fp16 arithmetic run slowly)

Every output is checked against mha's one call (nrmse). Prints the CPU, each
system's ms, GB/s of cache read and its time / mha one call; --json writes
the rows. Speed is reported, never asserted.

  .venv-peers/bin/python bench/serving_step_peers.py --lib build/libmha.so [--threads N]
      [--rounds 5] [--prefill 4] [--block 16] [--tiny] [--f16] [--json out/bench/serving-peers.json]
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

MASK64 = (1 << 64) - 1


class XorShift:
    """bench/serving-step.c's next_u64 (same seed): the same lengths."""

    def __init__(self):
        self.s = 0x9E3779B97F4A7C15

    def next(self):
        s = self.s
        s ^= (s << 13) & MASK64
        s ^= s >> 7
        s ^= (s << 17) & MASK64
        self.s = s
        return s


def preset(tiny, n_prefill, bs):
    B, chunk = (8, 16) if tiny else (64, 512)
    lo, hi = (32, 256) if tiny else (1024, 8192)
    if n_prefill is None or not 0 <= n_prefill <= B:
        n_prefill = 2 if tiny else 4
    rng = XorShift()
    lens_q, used = [], []
    for b in range(B):
        lq = chunk if b < n_prefill else 1
        hist = lo + rng.next() % (hi - lo + 1)
        lens_q.append(lq)
        used.append(hist + lq)
    return dict(B=B, chunk=chunk, lo=lo, hi=hi, n_prefill=n_prefill, bs=bs, H=32, Hkv=8, D=128,
                lens_q=np.array(lens_q), used=np.array(used, np.int32))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median(xs):
    return float(np.median(np.array(xs)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build/libmha.so")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prefill", type=int, default=None)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--f16", action="store_true", help="also torch_sdpa on the f16 rows")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["MHA_LIBRARY"] = os.path.abspath(args.lib)
    import mha
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)

    p = preset(args.tiny, args.prefill, args.block)
    B, H, Hkv, D, bs = p["B"], p["H"], p["Hkv"], p["D"], p["bs"]
    lens_q, used = p["lens_q"], p["used"]
    cu = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    per = [-(-int(u) // bs) for u in used]
    blocks, max_blocks = sum(per), max(per)
    rng = np.random.default_rng(1)
    perm = rng.permutation(blocks).astype(np.int32)
    table = np.full((B, max_blocks), -1, np.int32)
    at = 0
    for b in range(B):
        table[b, :per[b]] = perm[at:at + per[b]]
        at += per[b]
    k_pool = rng.uniform(-1, 1, (blocks, Hkv, bs, D)).astype(np.float16)
    v_pool = rng.uniform(-1, 1, (blocks, Hkv, bs, D)).astype(np.float16)
    q = rng.uniform(-1, 1, (int(cu[-1]), H, D)).astype(np.float32)
    tokens = int(used.sum())
    cache_bytes = 2.0 * tokens * Hkv * D * 2
    flops = sum(4.0 * H * D * (lq * (u - lq) + 0.5 * lq * (lq + 1)) for lq, u in zip(lens_q, used))

    def mha_one():
        return mha.attention_varlen(q, k_pool, v_pool, cu, seqused_k=used, block_table=table, causal=True,
                                    num_threads=args.threads)

    def mha_per():
        out = np.empty((int(cu[-1]), H, D), np.float32)
        for b in range(B):
            qb = q[cu[b]:cu[b + 1]].transpose(1, 0, 2)[None]  # [1, H, lq, D]
            o = mha.attention_paged(qb, k_pool, v_pool, table[b:b + 1], Tk=int(used[b]), causal=True,
                                    num_threads=args.threads)
            out[cu[b]:cu[b + 1]] = o[0].transpose(1, 0, 2)
        return out

    kp, vp = torch.from_numpy(k_pool), torch.from_numpy(v_pool)
    tq = torch.from_numpy(q)
    tables = [torch.from_numpy(table[b, :per[b]].astype(np.int64)) for b in range(B)]
    masks = []
    for b in range(B):
        lq, u = int(lens_q[b]), int(used[b])
        masks.append(None if lq == 1 else
                     torch.arange(u).view(1, u) <= torch.arange(lq).view(lq, 1) + (u - lq))

    def torch_loop(upcast):
        def run():
            outs = []
            with torch.inference_mode():
                for b in range(B):
                    u = int(used[b])
                    # [per, Hkv, bs, D] -> [Hkv, u, D]
                    kk = kp[tables[b]].transpose(0, 1).flatten(1, 2)[:, :u]
                    vv = vp[tables[b]].transpose(0, 1).flatten(1, 2)[:, :u]
                    qb = tq[cu[b]:cu[b + 1]].transpose(0, 1)  # [H, lq, D]
                    if upcast:
                        kk, vv = kk.float(), vv.float()
                    else:
                        qb = qb.half()
                    o = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=masks[b], enable_gqa=True)
                    outs.append(o.float().transpose(0, 1))
            return torch.cat(outs).numpy()
        return run

    systems = {"mha one call": mha_one, "mha per sequence": mha_per, "torch_sdpa_upcast loop": torch_loop(True)}
    if args.f16:
        systems["torch_sdpa f16 loop"] = torch_loop(False)
    ref = mha_one()
    times = {name: [] for name in systems}
    errors = {}
    for name, fn in systems.items():  # warm-up and check
        out = fn()
        errors[name] = float(np.sqrt(np.mean((out - ref) ** 2)) / (np.sqrt(np.mean(ref ** 2)) + 1e-30))
    for _ in range(args.rounds):
        for name, fn in systems.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    one = median(times["mha one call"])
    cpu = cpu_model()
    print(f"CPU: {cpu}; {args.threads} threads; torch {torch.__version__}; {args.rounds} rounds, medians")
    print(f"serving_step{' (tiny)' if args.tiny else ''}: {B} sequences ({p['n_prefill']} prefilling chunks of "
          f"{p['chunk']}, {B - p['n_prefill']} decoding), histories [{p['lo']}, {p['hi']}], H {H} / Hkv {Hkv}, "
          f"D {D}, paged f16 cache, blocks of {bs}: {cache_bytes / 1e9:.3f} GB, {flops / 1e9:.2f} GFLOP")
    print()
    print("| system | ms | GFLOP/s | GB/s of cache | time / mha one call | nrmse vs mha |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in systems:
        t = median(times[name])
        rows.append(dict(system=name, ms=t * 1e3, gflops=flops / t / 1e9, gbps=cache_bytes / t / 1e9,
                         ratio=t / one, nrmse=errors[name]))
        print(f"| {name} | {t * 1e3:.1f} | {flops / t / 1e9:.1f} | {cache_bytes / t / 1e9:.1f} | {t / one:.2f}× | "
              f"{errors[name]:.1e} |")
    bad = [r["system"] for r in rows if not r["nrmse"] < 1e-3]
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(cpu=cpu, threads=args.threads, torch=torch.__version__, preset=dict(
                B=B, n_prefill=p["n_prefill"], chunk=p["chunk"], block=bs, tiny=args.tiny,
                gb=cache_bytes / 1e9, gflop=flops / 1e9), rows=rows), f, indent=1)
    if bad:
        print(f"serving_step_peers: outputs differ from mha's: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
