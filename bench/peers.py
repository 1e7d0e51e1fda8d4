#!/usr/bin/env python3
"""mha beside the peers a user would pick instead, in one process, alternating.

On the presets of bench/presets.c (real sizes), at one thread count, with the
same NumPy inputs for everyone:
  layer presets   mha (plan made once, biases on all four projections),
                  torch_sdpa_layer (nn.Linear ×3 → SDPA → nn.Linear; enable_gqa for GQA),
                  torch_nn_mha (nn.MultiheadAttention, need_weights=False; H = Hkv only),
                  ort_attention_layer (com.microsoft Attention, fused QKV + bias → MatMul + Add;
                  H = Hkv only), ort_attention23_layer (MatMul + Add → Split → opset-23
                  Attention with q_num_heads / kv_num_heads → MatMul + Add)
  core presets    mha (mha_attention_f32), torch_sdpa, ort_mha (com.microsoft
                  MultiHeadAttention; H = Hkv only), ort_attention23 (opset 23)
Every peer's output is checked against mha's once before timing (normalized
RMS error < 1e-3). Then `rounds` rounds, each timing every system in turn
(repeat calls for at least `min_time` seconds, the median call); the
figure is the median over rounds.

Writes a JSON of rows and prints a Markdown table: median time, GFLOP/s,
% of the FMA peak (decode: GB/s and % of the read probe) and mha's speed-up
over each peer (peer time / mha time). Peaks come from the mha_bench JSON
(--probe-json), measured in the same run by scripts/bench.sh --peers.

mha runs through the Python front (python/mha, imported from this checkout)
over the library given by --lib (passed as MHA_LIBRARY), in a process of its
own.

Usage: bench/peers.py --lib build/libmha.so --threads 2 [--presets a,b] [--rounds 3]
                      [--min-time 0.3] [--probe-json out/bench/quick.json]
                      [--json out/bench/peers.json] [--md out/bench/quick-summary.md]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

# the Python front from this checkout; it loads libmha.so at its first call (in
# the mha worker only, with MHA_LIBRARY set from --lib)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))
import mha  # noqa: E402

# name, kind, B, H, Hkv, Tq, Tk, D, d_model, causal  (as bench/presets.c)
PRESETS = [
    ("bert_base", "layer", 8, 12, 12, 512, 512, 64, 768, False),
    ("gpt2", "layer", 1, 12, 12, 1024, 1024, 64, 768, True),
    ("llama_prefill", "layer", 1, 32, 32, 2048, 2048, 128, 4096, True),
    ("llama_prefill_gqa", "layer", 1, 32, 8, 2048, 2048, 128, 4096, True),
    ("long_core", "core", 1, 8, 8, 8192, 8192, 64, 0, False),
    ("decode", "core", 1, 32, 32, 1, 4096, 128, 0, False),
    ("decode_gqa", "core", 1, 32, 8, 1, 4096, 128, 0, False),
]


def visible_pairs(Tq, Tk, causal):
    if not causal:
        return Tq * Tk
    return sum(min(Tk, max(0, i + 1 + Tk - Tq)) for i in range(Tq))


def flops(p):
    """bench/flops.c: only matrix products count, 2 FLOPs per multiply-add."""
    _, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p
    core = 2.0 * B * H * visible_pairs(Tq, Tk, causal) * (D + D)
    if kind == "core":
        return core
    return 2.0 * B * Tq * dm * (H * D) + 2.0 * 2 * B * Tk * dm * (Hkv * D) + core + \
        2.0 * B * Tq * (H * D) * dm


def kv_bytes(p):
    _, _, B, _, Hkv, _, Tk, D, _, _ = p
    return 4.0 * B * Hkv * Tk * 2 * D


def nrmse(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.sqrt(np.mean((a - b) ** 2)) / (np.sqrt(np.mean(b ** 2)) + 1e-30))


# ---------------------------------------------------------------------------- systems


def make_inputs(p, rng):
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p
    f = np.float32
    if kind == "core":
        return dict(q=rng.uniform(-1, 1, (B, H, Tq, D)).astype(f),
                    k=rng.uniform(-1, 1, (B, Hkv, Tk, D)).astype(f),
                    v=rng.uniform(-1, 1, (B, Hkv, Tk, D)).astype(f))
    s = 1.0 / np.sqrt(dm)
    return dict(x=rng.uniform(-1, 1, (B, Tq, dm)).astype(f),
                wq=(rng.uniform(-1, 1, (H * D, dm)) * s).astype(f),
                wk=(rng.uniform(-1, 1, (Hkv * D, dm)) * s).astype(f),
                wv=(rng.uniform(-1, 1, (Hkv * D, dm)) * s).astype(f),
                wo=(rng.uniform(-1, 1, (dm, H * D)) * s).astype(f),
                bq=rng.uniform(-0.1, 0.1, H * D).astype(f),
                bk=rng.uniform(-0.1, 0.1, Hkv * D).astype(f),
                bv=rng.uniform(-0.1, 0.1, Hkv * D).astype(f),
                bo=rng.uniform(-0.1, 0.1, dm).astype(f))


def mha_system(p, x, threads):
    """(call, cleanup): a call returns mha's output, written into one preallocated array."""
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p
    if kind == "core":
        out = np.empty((B, H, Tq, D), np.float32)
        # workspace="auto": one buffer kept across calls, as an engine passes
        # one (mha_attention_workspace_size); PyTorch's and ONNX Runtime's
        # allocators cache their memory too
        return (lambda: mha.attention(x["q"], x["k"], x["v"], causal=causal, num_threads=threads,
                                      out=out, workspace="auto"), None)
    plan = mha.Layer(dm, H, num_kv_heads=Hkv, layout="out_in", w_q=x["wq"], w_k=x["wk"],
                     w_v=x["wv"], w_o=x["wo"], b_q=x["bq"], b_k=x["bk"], b_v=x["bv"],
                     b_o=x["bo"])
    out = np.empty((B, Tq, dm), np.float32)
    return (lambda: plan.forward(x["x"], causal=causal, num_threads=threads, out=out,
                                 workspace="auto"), plan.close)


def torch_systems(p, x, threads):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    gqa = Hkv != H
    systems = {}
    if kind == "core":
        def sdpa():
            with torch.inference_mode():
                return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=causal,
                                                      enable_gqa=gqa).numpy()
        systems["torch_sdpa"] = sdpa
        return systems

    def sdpa_layer():
        with torch.inference_mode():
            q = F.linear(t["x"], t["wq"], t["bq"]).view(B, Tq, H, D).transpose(1, 2)
            k = F.linear(t["x"], t["wk"], t["bk"]).view(B, Tk, Hkv, D).transpose(1, 2)
            v = F.linear(t["x"], t["wv"], t["bv"]).view(B, Tk, Hkv, D).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
            return F.linear(o.transpose(1, 2).reshape(B, Tq, H * D), t["wo"], t["bo"]).numpy()
    systems["torch_sdpa_layer"] = sdpa_layer
    if not gqa:
        m = torch.nn.MultiheadAttention(dm, H, batch_first=True, bias=True).eval()
        with torch.no_grad():
            m.in_proj_weight.copy_(torch.cat([t["wq"], t["wk"], t["wv"]]))
            m.in_proj_bias.copy_(torch.cat([t["bq"], t["bk"], t["bv"]]))
            m.out_proj.weight.copy_(t["wo"])
            m.out_proj.bias.copy_(t["bo"])
        mask = torch.nn.Transformer.generate_square_subsequent_mask(Tq) if causal else None

        def nn_mha():
            with torch.inference_mode():
                return m(t["x"], t["x"], t["x"], need_weights=False, attn_mask=mask,
                         is_causal=causal)[0].numpy()
        systems["torch_nn_mha"] = nn_mha
    return systems


def ort_systems(p, x, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    F32 = TensorProto.FLOAT
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)]

    def session(nodes, inputs, outputs, inits):
        g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
        model = helper.make_model(g, opset_imports=opsets, ir_version=10)
        return ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

    def init(n, a):
        return numpy_helper.from_array(np.ascontiguousarray(a, np.float32), n)

    systems = {}
    if kind == "core":
        q3 = x["q"].transpose(0, 2, 1, 3).reshape(B, Tq, H * D).copy()
        k3 = x["k"].transpose(0, 2, 1, 3).reshape(B, Tk, Hkv * D).copy()
        v3 = x["v"].transpose(0, 2, 1, 3).reshape(B, Tk, Hkv * D).copy()
        feeds = {"q": q3, "k": k3, "v": v3}
        ins = [helper.make_tensor_value_info("q", F32, [B, Tq, H * D]),
               helper.make_tensor_value_info("k", F32, [B, Tk, Hkv * D]),
               helper.make_tensor_value_info("v", F32, [B, Tk, Hkv * D])]
        out = [helper.make_tensor_value_info("y", F32, [B, Tq, H * D])]

        def back(y):
            return y.reshape(B, Tq, H, D).transpose(0, 2, 1, 3)
        if Hkv == H and not causal:
            s = session([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"],
                                          domain="com.microsoft", num_heads=H)], ins, out, [])
            systems["ort_mha"] = lambda: back(s.run(None, feeds)[0])
        s23 = session([helper.make_node("Attention", ["q", "k", "v"], ["y"], q_num_heads=H,
                                        kv_num_heads=Hkv, is_causal=int(causal))], ins, out, [])
        systems["ort_attention23"] = lambda: back(s23.run(None, feeds)[0])
        return systems

    feeds = {"x": x["x"]}
    ins = [helper.make_tensor_value_info("x", F32, [B, Tq, dm])]
    out = [helper.make_tensor_value_info("y", F32, [B, Tq, dm])]
    out_proj = [helper.make_node("MatMul", ["a", "wo"], ["ao"]),
                helper.make_node("Add", ["ao", "bo"], ["y"])]
    o_inits = [init("wo", x["wo"].T), init("bo", x["bo"])]
    if Hkv == H:
        w = np.concatenate([x["wq"], x["wk"], x["wv"]]).T  # [dm, 3·dm]
        b = np.concatenate([x["bq"], x["bk"], x["bv"]])
        s = session([helper.make_node("Attention", ["x", "w", "b"], ["a"], domain="com.microsoft",
                                      num_heads=H, unidirectional=int(causal))] + out_proj,
                    ins, out, [init("w", w), init("b", b)] + o_inits)
        systems["ort_attention_layer"] = lambda: s.run(None, feeds)[0]
    w = np.concatenate([x["wq"], x["wk"], x["wv"]]).T
    b = np.concatenate([x["bq"], x["bk"], x["bv"]])
    split = np.array([H * D, Hkv * D, Hkv * D], np.int64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["qkv"]),
             helper.make_node("Split", ["qkv", "split"], ["q", "k", "v"], axis=2),
             helper.make_node("Attention", ["q", "k", "v"], ["a"], q_num_heads=H,
                              kv_num_heads=Hkv, is_causal=int(causal))] + out_proj
    s23 = session(nodes, ins, out, [init("w", w), init("b", b),
                                    numpy_helper.from_array(split, "split")] + o_inits)
    systems["ort_attention23_layer"] = lambda: s23.run(None, feeds)[0]
    return systems


# ---------------------------------------------------------------------------- timing


def time_call(fn, min_time):
    fn()  # warm
    times, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_time and len(times) >= 2:
            break
    return statistics.median(times)


def probe_peaks(path, threads):
    """(FMA peak GFLOP/s, read GB/s) at `threads`, from an mha_bench JSON's context
    (peak_gflops_<isa>_t<n>, mem_read_GBps_t<n>: the probes of the same run)."""
    if not path or not os.path.exists(path):
        return None, None
    ctx = json.load(open(path)).get("context", {})

    def num(v):
        try:
            return float(str(v).split()[0])
        except (TypeError, ValueError):
            return None
    peaks = [num(v) for k, v in ctx.items()
             if k.startswith("peak_gflops_") and k.endswith(f"_t{threads}")]
    peaks = [v for v in peaks if v]
    return (max(peaks) if peaks else num(ctx.get("peak_gflops")),
            num(ctx.get(f"mem_read_GBps_t{threads}")))


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# Each family of systems runs in a process of its own: PyTorch and ONNX Runtime
# bring their own OpenMP runtime or thread pool, which must not share a
# process with mha's libgomp (two runtimes spinning on the same cores slow
# each other down by integer factors). The driver alternates between them.
FAMILIES = ("mha", "torch", "ort")


def worker(family, lib_path, threads, conn):
    if family == "mha":
        os.environ["MHA_LIBRARY"] = os.path.abspath(lib_path)
    systems, cleanup = {}, None
    while True:
        cmd, arg = conn.recv()
        try:
            if cmd == "quit":
                break
            if cmd == "versions":
                if family == "mha":
                    conn.send(("ok", {"mha_isa": mha.get_isa()}))
                elif family == "torch":
                    import torch
                    conn.send(("ok", {"torch": torch.__version__}))
                else:
                    import onnxruntime
                    conn.send(("ok", {"onnxruntime": onnxruntime.__version__}))
            elif cmd == "setup":
                if cleanup:
                    cleanup()
                    cleanup = None
                p = arg
                x = make_inputs(p, np.random.default_rng(0x6d6861))
                if family == "mha":
                    fn, cleanup = mha_system(p, x, threads)
                    systems = {"mha": fn}
                elif family == "torch":
                    systems = torch_systems(p, x, threads)
                else:
                    systems = ort_systems(p, x, threads)
                conn.send(("ok", sorted(systems)))
            elif cmd == "output":
                conn.send(("ok", np.ascontiguousarray(systems[arg]())))
            elif cmd == "time":
                name, min_time = arg
                conn.send(("ok", time_call(systems[name], min_time)))
        except Exception as e:  # reported by the driver, never fatal to the run
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Family:
    def __init__(self, ctx, family, lib_path, threads):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(family, lib_path, threads, child), daemon=True)
        self.proc.start()

    def call(self, cmd, arg=None):
        self.conn.send((cmd, arg))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self):
        self.conn.send(("quit", None))
        self.proc.join(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build/libmha.so")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--presets", default=",".join(p[0] for p in PRESETS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--probe-json")
    ap.add_argument("--peak-gflops", type=float)
    ap.add_argument("--read-gbps", type=float)
    ap.add_argument("--json", default="out/bench/peers.json")
    ap.add_argument("--md")
    args = ap.parse_args()

    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    fams = {f: Family(ctx, f, args.lib, args.threads) for f in FAMILIES}
    peak, bw = probe_peaks(args.probe_json, args.threads)
    peak = args.peak_gflops or peak
    bw = args.read_gbps or bw
    versions = {"numpy": np.__version__}
    for f in fams.values():
        versions.update(f.call("versions"))
    cpu = cpu_model()
    print(f"peers: CPU {cpu}; {args.threads} threads; mha {versions['mha_isa']}, torch "
          f"{versions['torch']}, onnxruntime {versions['onnxruntime']}; FMA peak {peak} GFLOP/s, "
          f"read {bw} GB/s", flush=True)

    wanted = args.presets.split(",")
    rows, errors = [], []
    for p in PRESETS:
        if p[0] not in wanted:
            continue
        owner = {}
        for fname, fam in fams.items():
            try:
                for n in fam.call("setup", p):
                    owner[n] = fam
            except RuntimeError as e:
                errors.append(f"{p[0]}: {fname} setup: {e}")
        if "mha" not in owner:
            continue
        ref = owner["mha"].call("output", "mha")
        ok = ["mha"]
        for n, fam in owner.items():
            if n == "mha":
                continue
            try:
                err = nrmse(fam.call("output", n), ref)
            except RuntimeError as e:
                errors.append(f"{p[0]}: {n}: {e}")
                continue
            if err < 1e-3:
                ok.append(n)
            else:
                errors.append(f"{p[0]}: {n}: output differs from mha's (nrmse {err:.3g})")
        times = {n: [] for n in ok}
        for _ in range(args.rounds):
            for n in ok:
                time.sleep(0.2)  # let the previous system's spinning threads go to sleep
                times[n].append(owner[n].call("time", (n, args.min_time)))
        fl = flops(p)
        for n, ts in times.items():
            t = statistics.median(ts)
            row = {"preset": p[0], "kind": p[1], "B": p[2], "H": p[3], "Hkv": p[4], "Tq": p[5],
                   "Tk": p[6], "D": p[7], "d_model": p[8], "causal": p[9], "system": n,
                   "threads": args.threads, "median_s": t, "rounds_s": ts, "gflops": fl / t / 1e9}
            if peak:
                row["pct_peak"] = 100.0 * row["gflops"] / peak
            if p[5] == 1:
                row["gbps"] = kv_bytes(p) / t / 1e9
                if bw:
                    row["pct_bw"] = 100.0 * row["gbps"] / bw
            rows.append(row)
            print(f"peers: {p[0]:18s} {n:22s} {t * 1e3:10.2f} ms  {row['gflops']:8.1f} GFLOP/s",
                  flush=True)
    for f in fams.values():
        f.close()

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"context": {"cpu": cpu, "threads": args.threads, "peak_gflops": peak,
                               "read_gbps": bw, **versions}, "rows": rows, "errors": errors}, f,
                  indent=1)
    md = summary(rows, cpu, args.threads, versions)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    for e in errors:
        print("peers: ERROR: " + e, file=sys.stderr)
    return 1 if errors else 0


def summary(rows, cpu, threads, versions):
    lines = [f"CPU: {cpu}; {threads} threads; mha kernel set {versions['mha_isa']}; "
             f"torch {versions['torch']}, onnxruntime {versions['onnxruntime']}.",
             "Medians of alternating rounds in one run. speed-up = peer time / mha time "
             "(> 1: mha is faster).", "",
             "| preset | system | median | GFLOP/s | % peak | GB/s | % read probe | mha speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    by_preset = {}
    for r in rows:
        by_preset.setdefault(r["preset"], []).append(r)
    for preset, rs in by_preset.items():
        mha = next((r for r in rs if r["system"] == "mha"), None)
        for r in rs:
            t = r["median_s"]
            tm = f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"
            sp = "—" if r["system"] == "mha" or mha is None else f"{t / mha['median_s']:.2f}×"
            pct = f"{r['pct_peak']:.1f}" if "pct_peak" in r else "—"
            gb = f"{r['gbps']:.1f}" if "gbps" in r else "—"
            pbw = f"{r['pct_bw']:.1f}" if "pct_bw" in r else "—"
            lines.append(f"| {preset} | {r['system']} | {tm} | {r['gflops']:.1f} | {pct} | {gb} | "
                         f"{pbw} | {sp} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
