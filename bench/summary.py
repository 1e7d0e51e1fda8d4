#!/usr/bin/env python3
"""One table a person can read, at the end of every bench run.

Reads the mha_bench JSON (and, with --peers, bench/peers.py's JSON of the same
run) and prints one Markdown table: preset × system at the largest thread
count, median time, GFLOP/s, % of the FMA peak (decode: GB/s and % of the read
probe), and mha's speed-up over each other system (its time / mha's time).
The variant presets (var_*, gemma2, gpt_oss_*, window_scaling) group with
mha_bench's rows of the same shape; their settings (window, soft-cap, ALiBi,
sinks) are listed under the table from the peers' JSON, and so are the PyTorch
peers that peers.py left out for memory.

Usage: bench/summary.py out/bench/quick.json [--peers out/bench/quick-peers.json]
                        [--md out/bench/quick-summary.md]
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
        rows.append({"preset": parts[0], "system": parts[1],
                     "shape": "/".join(p for p in parts[2:] if ":" in p and not p.startswith(("threads", "min_time"))),
                     "threads": int(m.group(1)) if m else 1,
                     "median_s": b["real_time"] * UNIT.get(b.get("time_unit", "ns"), 1e-9),
                     "gflops": b.get("GFLOPS"), "pct_peak": b.get("pct_peak"),
                     "gbps": b.get("GBps"), "pct_bw": b.get("pct_bw")})
    return ctx, rows


def variant_text(r):
    """A peers.py row's variants in words, e.g. 'window 1024, soft-cap 50, ALiBi, sinks'."""
    parts = [f"window {r['window']}" if r.get("window") else "",
             f"soft-cap {r['softcap']:g}" if r.get("softcap") else "",
             "ALiBi" if r.get("alibi") else "", "sinks" if r.get("sinks") else ""]
    return ", ".join(p for p in parts if p) or "none"


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
                     "gflops": r.get("gflops"), "pct_peak": r.get("pct_peak"),
                     "gbps": r.get("gbps"), "pct_bw": r.get("pct_bw"),
                     "variants": variant_text(r) if r.get("variant") else None})
    ctx = dict(data.get("context", {}), skipped=data.get("skipped", []))
    return ctx, rows


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(ctx, rows, peer_ctx):
    tmax = max((r["threads"] for r in rows), default=1)
    rows = [r for r in rows if r["threads"] == tmax]
    groups = {}
    for r in rows:
        groups.setdefault((r["preset"], r["shape"]), []).append(r)
    head = [f"CPU: {ctx.get('cpu_model', '?')}; {tmax} threads; mha kernel set "
            f"{ctx.get('mha_isa', '?')}; FMA peak {ctx.get('peak_gflops', '?')} GFLOP/s."]
    if peer_ctx:
        head.append(f"Peers: torch {peer_ctx.get('torch')}, onnxruntime "
                    f"{peer_ctx.get('onnxruntime')}, timed in their own processes, alternating "
                    "with mha (rows 'mha (ctypes)': the same library, same process layout).")
    head += ["speed-up = that system's time / mha's time (> 1: mha is faster).", "",
             "| preset | shape | system | median | GFLOP/s | % peak | GB/s | % read probe | mha speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (preset, shape), rs in groups.items():
        ref = next((r for r in rs if r["system"] == "mha (ctypes)"), None) or \
            next((r for r in rs if r["system"] == "mha"), None)
        for r in sorted(rs, key=lambda r: (not r["system"].startswith("mha"), r["median_s"])):
            t = r["median_s"]
            tm = f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"
            sp = "—" if ref is None or r is ref else f"{t / ref['median_s']:.2f}×"
            head.append(f"| {preset} | {shape} | {r['system']} | {tm} | {fmt(r['gflops'], '.1f')} | "
                        f"{fmt(r['pct_peak'], '.1f')} | {fmt(r['gbps'], '.1f')} | "
                        f"{fmt(r['pct_bw'], '.1f')} | {sp} |")
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_json")
    ap.add_argument("--peers")
    ap.add_argument("--md")
    args = ap.parse_args()
    ctx, rows = bench_rows(args.bench_json)
    peer_ctx = None
    if args.peers and os.path.exists(args.peers):
        peer_ctx, prow = peer_rows(args.peers, rows)
        rows += prow
    md = table(ctx, rows, peer_ctx)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
