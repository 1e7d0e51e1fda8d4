#!/usr/bin/env python3
"""One table a person can read, at the end of every bench run.

Reads the mha_bench JSON (and, with --peers, bench/peers.py's JSON of the same
run) and prints one Markdown table: preset × system at the largest thread
count (and at every other thread count the peers ran, e.g. 1 with
`--threads 1,N`), median time, GFLOP/s, % of the FMA peak (decode: GB/s and % of
the read probe), the precision each system computes in, and mha's speed-up over
each other system at the same thread count (its time / mha's time).
With the peers, a second table names per shape and thread count the fastest fp32
peer (every peer computing in fp32: PyTorch, ONNX Runtime, OpenVINO with its f32
precision hint, the BLAS peer) and mha's speed-up over it, with OpenVINO at its
default precision (bf16 on a CPU with AVX512-BF16 or AMX) beside it, apart: not fp32.
The variant presets (var_*, gemma2, gpt_oss_*, window_scaling) group with
mha_bench's rows of the same shape; their settings (window, soft-cap, ALiBi,
sinks) are listed under the table from the peers' JSON, and so are the PyTorch
peers that peers.py left out for memory.
The stolen-core rows (preset stolen_core: decode at all threads, quiet and with a
thread spinning on the first CPU, on OpenMP and on the reference pthread pool)
get a small table of their own: quiet and busy times side by side and the
slowdown busy / quiet; with the JSON of `bench/peers.py --stolen-core` among the
--peers (preset stolen_core_peers), mha through the Python front and PyTorch SDPA
on the same shapes join that table, beside mha_bench's rows of each shape.

Usage: bench/summary.py out/bench/quick.json [--peers out/bench/quick-peers.json]
                        [--peers out/bench/stolen-peers.json] [--md out/bench/quick-summary.md]
  --peers may be given more than once (e.g. the presets' peers and the stolen-core ones).
"""
import argparse
import json
import os
import re
import sys

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def bench_rows(path):
    data = json.load(open(path))
    ctx = data.get("context", {})
    rows = []
    for b in data.get("benchmarks", []):
        if b.get("aggregate_name", "median") != "median" or b.get("error_occurred"):
            continue
        name = b.get("run_name") or b["name"]
        parts = name.split("/")
        if len(parts) < 3 or parts[0] in ("probe", "ukernel"):
            continue
        m = re.search(r"threads:(\d+)", name)
        busy = re.search(r"/busy:(\d+)", name)
        io16 = re.search(r"/dtype:([12])", name)  # the 16-bit rows (attn16, layer16)
        rows.append({"preset": parts[0], "system": parts[1],
                     "shape": "/".join(p for p in parts[2:] if ":" in p
                                       and not p.startswith(("threads", "min_time", "busy"))),
                     "threads": int(m.group(1)) if m else 1,
                     "busy": int(busy.group(1)) if busy else None,
                     "median_s": b["real_time"] * UNIT.get(b.get("time_unit", "ns"), 1e-9),
                     "gflops": b.get("GFLOPS"), "pct_peak": b.get("pct_peak"),
                     "gbps": b.get("GBps"), "pct_bw": b.get("pct_bw"),
                     "precision": {"1": "f16", "2": "bf16"}[io16.group(1)] if io16 else "f32"})
    return ctx, rows


def variant_text(r):
    """A peers.py row's variants in words, e.g. 'window 1024, soft-cap 50, ALiBi, sinks'."""
    parts = [f"window {r['window']}" if r.get("window") else "",
             f"soft-cap {r['softcap']:g}" if r.get("softcap") else "",
             "ALiBi" if r.get("alibi") else "", "sinks" if r.get("sinks") else ""]
    return ", ".join(p for p in parts if p) or "none"


def peer_precision(r):
    """What a peers.py row computes in: its "precision" (older JSONs: torch_sdpa on a
    16-bit cache computes in that type, an ov_*_default_<p> row in <p>, the rest in fp32)."""
    if r.get("precision"):
        return r["precision"]
    if r["system"] == "torch_sdpa" and r.get("kv_dtype") in ("f16", "bf16"):
        return r["kv_dtype"]
    if "_default_" in r["system"]:
        return r["system"].rsplit("_", 1)[1]
    return "f32"


def peer_rows(path, shapes):
    data = json.load(open(path))
    rows = []
    for r in data.get("rows", []):
        # peers.py names the GQA twins preset_gqa; mha_bench tells them apart by Hkv
        preset = r["preset"].replace("_gqa", "")
        shape = f"B:{r['B']}/H:{r['H']}/Hkv:{r['Hkv']}/Tq:{r['Tq']}/Tk:{r['Tk']}/D:{r['D']}"
        if r["kind"] == "layer":
            shape += f"/d_model:{r['d_model']}"
        if r.get("kv_dtype"):  # mha_bench's kv presets: element type (an mha_dtype), page, lengths
            shape += (f"/kv:{ {'f32': 0, 'f16': 1, 'bf16': 2}[r['kv_dtype']] }"
                      f"/page:{r.get('page', 0)}/mixed:{int(bool(r.get('mixed')))}")
        rows.append({"preset": preset, "system": r["system"] if r["system"] != "mha" else "mha (ctypes)",
                     "shape": shape, "threads": r["threads"], "median_s": r["median_s"],
                     "precision": peer_precision(r), "peer": r["system"] != "mha",
                     "gflops": r.get("gflops"), "pct_peak": r.get("pct_peak"),
                     "gbps": r.get("gbps"), "pct_bw": r.get("pct_bw"), "busy": r.get("busy"),
                     "variants": variant_text(r) if r.get("variant") else None})
    ctx = dict(data.get("context", {}), skipped=data.get("skipped", []))
    return ctx, rows


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def is_peer(r):
    """A peer of mha (PyTorch, ONNX Runtime, OpenVINO, the BLAS peer), not one of mha's rows."""
    return not r["system"].startswith("mha")


def table(ctx, rows, peer_ctx):
    tmax = max((r["threads"] for r in rows), default=1)
    # the largest thread count, and each other one the peers ran at (their shapes only)
    peer_at = {(r["preset"], r["shape"], r["threads"]) for r in rows if r.get("peer")}
    rows = [r for r in rows if r["threads"] == tmax or (r["preset"], r["shape"], r["threads"])
            in peer_at]
    groups = {}
    for r in rows:
        groups.setdefault((r["preset"], r["shape"]), {}).setdefault(r["threads"], []).append(r)
    counts = sorted({r["threads"] for r in rows})
    head = [f"CPU: {ctx.get('cpu_model', '?')}; {tmax} threads"
            + (f" (peers also at {', '.join(str(n) for n in counts if n != tmax)})"
               if len(counts) > 1 else "")
            + f"; mha kernel set {ctx.get('mha_isa', '?')}; FMA peak "
            f"{ctx.get('peak_gflops', '?')} GFLOP/s (at {ctx.get('threads', tmax)} threads)."]
    if peer_ctx:
        head.append("Peers: " + ", ".join(f"{k} {peer_ctx[k]}" for k in ("torch", "onnxruntime")
                                          if peer_ctx.get(k))
                    + (f", openvino {peer_ctx['openvino']} (CPU plugin)"
                       if peer_ctx.get("openvino") else "")
                    + ", timed in their own processes, alternating with mha (rows 'mha (ctypes)': "
                    "the same library, same process layout).")
    head += ["speed-up = that system's time / mha's time at the same thread count (> 1: mha is "
             "faster). precision: what the system computes in; % peak is of the fp32 FMA peak "
             "at the row's thread count, a bf16 row's of the BF16 unit's dot-product peak where "
             "it was probed (vdpbf16ps: bf16_peak_gflops in the context; else the FMA's, and "
             "a bf16 row can pass 100).", "",
             "| preset | shape | threads | system | precision | median | GFLOP/s | % peak | GB/s | "
             "% read probe | mha speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    best = []  # (preset, shape, threads, mha row, fastest fp32 peer, 16-bit OpenVINO rows)
    for (preset, shape), by_t in groups.items():
        for n in sorted(by_t):
            rs = by_t[n]
            ref = next((r for r in rs if r["system"] == "mha (ctypes)"), None) or \
                next((r for r in rs if r["system"] == "mha"), None)
            for r in sorted(rs, key=lambda r: (not r["system"].startswith("mha"), r["median_s"])):
                t = r["median_s"]
                tm = f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"
                sp = "—" if ref is None or r is ref else f"{t / ref['median_s']:.2f}×"
                head.append(f"| {preset} | {shape} | {n} | {r['system']} | "
                            f"{r.get('precision', 'f32')} | {tm} | {fmt(r['gflops'], '.1f')} | "
                            f"{fmt(r['pct_peak'], '.1f')} | {fmt(r['gbps'], '.1f')} | "
                            f"{fmt(r['pct_bw'], '.1f')} | {sp} |")
            fp32 = [r for r in rs if is_peer(r) and r.get("precision", "f32") == "f32"]
            low = [r for r in rs if is_peer(r) and r["system"].startswith("ov_")
                   and r.get("precision", "f32") != "f32"]
            if ref and peer_ctx and (fp32 or low):
                best.append((preset, shape, n, ref,
                             min(fp32, key=lambda r: r["median_s"]) if fp32 else None, low))
    if best:
        def cell(r, ref):
            if r is None:
                return "— | — | —"
            t = r["median_s"]
            return (f"{r['system']} | {t * 1e3:.2f} ms | {t / ref['median_s']:.2f}×" if t < 10
                    else f"{r['system']} | {t:.2f} s | {t / ref['median_s']:.2f}×")
        head += ["", "mha against the fastest fp32 peer of each shape and thread count (PyTorch, "
                 "ONNX Runtime, OpenVINO with INFERENCE_PRECISION_HINT f32, the BLAS peer; not "
                 "the 16-bit rows), and OpenVINO at its default inference precision apart "
                 "(the precision it chose is in its name; checked against mha with a 16-bit "
                 "tolerance, 8 units of roundoff: 8·2^-8 ≈ 3.1e-2 for bf16, instead of 1e-3):", "",
                 "| preset | shape | threads | mha | fastest fp32 peer | its median | mha speed-up "
                 "| OpenVINO default precision | its median | mha speed-up |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for preset, shape, n, ref, fast, low in best:
            tm = ref["median_s"]
            tm = f"{tm * 1e3:.2f} ms" if tm < 10 else f"{tm:.2f} s"
            lows = low or [None]
            for i, r in enumerate(lows):
                head.append(f"| {preset} | {shape} | {n} | {tm} | {cell(fast, ref)} | "
                            f"{cell(r, ref)} |" if i == 0 else
                            f"| {preset} | {shape} | {n} | {tm} | — | — | — | {cell(r, ref)} |")
    # the variant presets' settings (causal self-attention cores, B 1, from peers.py's rows)
    variants = {}
    for r in rows:
        if r.get("variants"):
            variants.setdefault(r["preset"], r["variants"])
    if variants:
        head += ["", "Variant presets (causal self-attention cores, B 1; peers: torch_sdpa_mask = "
                 "SDPA with the equivalent explicit float mask, without soft-cap and sinks only; "
                 "torch_eager = the composite Q·Kᵀ → soft-cap → + mask/ALiBi → sink column → "
                 "softmax → ·V): " + "; ".join(f"{k} {v}" for k, v in variants.items()) + "."]
    if peer_ctx and peer_ctx.get("skipped"):
        head += ["", "Peers left out: " + "; ".join(peer_ctx["skipped"]) + "."]
    return "\n".join(head)


def ms(t):
    return f"{t * 1e6:.1f} µs" if t < 1e-3 else f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"


STOLEN = ("stolen_core", "stolen_core_peers")  # mha_bench's rows, bench/peers.py --stolen-core's


def stolen_table(ctx, rows, peer_ctx=None):
    """The stolen-core rows: per shape and system, quiet and busy medians and busy / quiet;
    peers.py's (stolen_core_peers) after mha_bench's of the same shape."""
    cells = {}
    for r in rows:
        if r["preset"] in STOLEN and r.get("busy") is not None:
            cells.setdefault(r["shape"], {}).setdefault(
                (r["preset"] != "stolen_core", r["threads"], r["system"]), {})[r["busy"]] = \
                r["median_s"]
    if not cells:
        return ""
    names = {"mha": "OpenMP", "mha_pool": "pthread pool",
             "mha (ctypes)": "OpenMP, through the Python front (peers.py)",
             "torch_sdpa": "PyTorch SDPA (peers.py)"}
    out = [f"Stolen core: decode at all threads, quiet and with one thread spinning on CPU "
           f"{ctx.get('busy_cpu', '0')} (the process's first CPU) from the benchmark's setup to its "
           f"teardown; mha on OpenMP and on the reference pthread pool "
           f"(examples/threadpool/pthread-pool.c). CPU: {ctx.get('cpu_model', '?')}; "
           f"{ctx.get('threads', '?')} threads; medians.", "",
           "| shape | threads | workers on | quiet | CPU busy | busy / quiet |",
           "|---|---|---|---|---|---|"]
    peers = False
    for shape, by in cells.items():
        for (peer, n, system), t in sorted(by.items(), key=lambda c: c[0][0]):
            peers |= peer
            q, b = t.get(0), t.get(1)
            out.append(f"| {shape} | {n} | {names.get(system, system)} | {ms(q) if q else '—'} | "
                       f"{ms(b) if b else '—'} | {f'{b / q:.2f}×' if q and b else '—'} |")
    if peers:
        pc = peer_ctx or {}
        out += ["", f"Rows marked peers.py: `bench/peers.py --stolen-core`, its own run (CPU "
                f"{pc.get('cpu', '?')}; torch {pc.get('torch', '?')}): mha_attention_f32 and "
                f"torch_sdpa in processes of their own, alternating, medians of rounds; busy = "
                f"a separate Python process spinning on CPU {pc.get('busy_cpu', '?')} (pinned "
                f"with os.sched_setaffinity), started before each busy timing and killed after it."]
    return "\n".join(out)


def scaling_table(ctx, rows):
    """mha from 1 thread to the most it ran, per preset and shape: the speed-up and the
    parallel efficiency t1 / (N·tN) (issue #21: the layers, the core and decode)."""
    cells = {}
    for r in rows:
        if r["system"] == "mha" and r["preset"] != "stolen_core" and r.get("busy") is None:
            cells.setdefault((r["preset"], r["shape"]), {})[r["threads"]] = r["median_s"]
    out = []
    for (preset, shape), t in cells.items():
        n = max(t)
        if n > 1 and 1 in t:
            out.append(f"| {preset} | {shape} | {ms(t[1])} | {n} | {ms(t[n])} | {t[1] / t[n]:.2f}× | "
                       f"{100 * t[1] / (n * t[n]):.0f}% |")
    if not out:
        return ""
    return "\n".join([f"Scaling of mha from 1 thread to the most each row ran (CPU: {ctx.get('cpu_model', '?')}; "
                      f"medians; efficiency = t1 / (N·tN)):", "",
                      "| preset | shape | 1 thread | N | N threads | speed-up | efficiency |",
                      "|---|---|---|---|---|---|---|"] + out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_json")
    ap.add_argument("--peers", action="append",
                    help="bench/peers.py's JSON; may be given more than once")
    ap.add_argument("--md")
    args = ap.parse_args()
    ctx, rows = bench_rows(args.bench_json)
    peer_ctx = None
    for path in args.peers or []:
        if os.path.exists(path):
            pctx, prow = peer_rows(path, rows)
            rows += prow
            if peer_ctx is None:
                peer_ctx = pctx
            else:  # the later JSON's context, the notes of both
                skipped = peer_ctx["skipped"] + pctx["skipped"]
                peer_ctx.update((k, v) for k, v in pctx.items() if v is not None)
                peer_ctx["skipped"] = skipped
    # the stolen-core rows have a table of their own
    main_rows = [r for r in rows if r["preset"] not in STOLEN]
    md = "\n\n".join(t for t in (table(ctx, main_rows, peer_ctx) if main_rows else "",
                                  scaling_table(ctx, main_rows),
                                  stolen_table(ctx, rows, peer_ctx)) if t)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
