#!/usr/bin/env python3
"""PNG plots of an mha_bench JSON report, drawn by gnuplot (Debian's gnuplot-nox).

Usage: plot_bench.py REPORT.json PREFIX [--peers PEERS.json]
Writes PREFIX-presets.png  every preset at the largest thread count, as horizontal bars in
                           panels by kind: layers and the attention core in % of the FMA
                           peak (probe), decode and the K/V-cache decode rows in GB/s of K
                           and V read and % of the read-bandwidth probe, the variants
       PREFIX-speedup.png  with the peers' JSON (bench/peers.py): mha's speed-up over each
                           peer, peer time / mha time (> 1: mha is faster), 1.0 marked
       PREFIX-threads.png  GFLOP/s against threads (decode: GB/s against the read bandwidth)
       PREFIX-heads.png    the heads study: the fused layer against the wrapper layout
The peers' JSON is --peers, else PREFIX-peers.json when it is not older than REPORT.json
(the peers of the same run). A figure without data is skipped, and its old PNG removed.
Each benchmark is its median over repetitions (or its only run); errors are left out.
"""
import json
import math
import os
import subprocess
import sys

IMPLS = ["mha", "mha_kv", "mha_wrapper", "mha_scalar", "blas"]
TITLES = {"mha": "mha", "mha_kv": "mha_attention_kv_f32",
          "mha_wrapper": "mha, wrapper layout", "mha_scalar": "mha, scalar path",
          "blas": "OpenBLAS sgemm + softmax"}
COLORS = {"mha": "#1f77b4", "mha_kv": "#17becf", "mha_wrapper": "#2ca02c",
          "mha_scalar": "#7f7f7f", "blas": "#d62728"}
# bench/peers.py's systems (mha's own row there is the reference, not a bar)
PEER_TITLES = {
    "torch_sdpa_layer": "torch: nn.Linear + SDPA", "torch_nn_mha": "torch nn.MultiheadAttention",
    "ort_attention_layer": "ORT com.microsoft Attention", "ort_attention23_layer": "ORT opset-23 Attention layer",
    "torch_sdpa": "torch SDPA", "ort_mha": "ORT com.microsoft MultiHeadAttention",
    "ort_attention23": "ORT opset-23 Attention", "torch_sdpa_mask": "torch SDPA + float mask",
    "torch_eager": "torch eager composite", "torch_sdpa_upcast": "torch SDPA, K/V upcast to fp32",
    "ov_sdpa_f32": "OpenVINO SDPA, f32 hint", "ov_sdpa_layer_f32": "OpenVINO MatMul-SDPA-MatMul, f32 hint",
    "ov_sdpa_default_bf16": "OpenVINO SDPA, its default (bf16)",
    "ov_sdpa_layer_default_bf16": "OpenVINO layer, its default (bf16)"}
# one colour per kind of peer, the same in every panel: PyTorch's SDPA orange, its module
# purple, ONNX Runtime's contrib op brown and its opset-23 op pink; the variants' and the
# caches' own peers green, olive, red
PEER_COLOR = {"torch_sdpa_layer": "#ff7f0e", "torch_sdpa": "#ff7f0e", "torch_nn_mha": "#9467bd",
              "ort_attention_layer": "#8c564b", "ort_mha": "#8c564b",
              "ort_attention23_layer": "#e377c2", "ort_attention23": "#e377c2",
              "torch_sdpa_mask": "#bcbd22", "torch_eager": "#2ca02c",
              "torch_sdpa_upcast": "#d62728", "ov_sdpa_f32": "#17becf", "ov_sdpa_layer_f32": "#17becf",
              "ov_sdpa_default_bf16": "#7f7f7f", "ov_sdpa_layer_default_bf16": "#7f7f7f"}
PEER_COLORS = ["#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#d62728",
               "#2ca02c", "#7f7f7f", "#1f77b4"]
VARIANTS = ("gemma2", "gpt_oss_local", "gpt_oss_global", "window_scaling")
KV_TYPES = {0: "fp32", 1: "f16", 2: "bf16", "f32": "fp32"}
FONT = "DejaVu Sans"
CHAR_PX = 8.2    # width of a character of the 11 pt text in pngcairo, a little generous
ROW_PX = 22      # one bar
GAP = 0.45       # between groups of bars, in bars
GAP_BLOCK = 1.1  # between blocks of groups (another preset, or another shape of a K/V cache)


def load(path):
    with open(path) as f:
        report = json.load(f)
    best = {}
    for r in report["benchmarks"]:
        if r.get("error_occurred"):
            continue
        run = r.get("run_name", r["name"])
        if r.get("run_type") == "aggregate":
            if r.get("aggregate_name") == "median":
                best[run] = r
        else:
            best.setdefault(run, r)
    rows = []
    for run, r in best.items():
        parts = run.split("/")
        args = {}
        for p in parts[2:]:
            if ":" in p:
                k, v = p.split(":", 1)
                try:
                    args[k] = int(v)
                except ValueError:
                    pass
        if parts[0] in ("probe", "ukernel"):
            continue  # the machine probes and the micro-kernels are in the table and the JSON
        rows.append({"preset": parts[0], "impl": parts[1] if len(parts) > 1 else "",
                     "args": args, "r": r})
    return report.get("context", {}), rows


def num(v):
    try:
        return float(str(v).split()[0])
    except (TypeError, ValueError):
        return None


def peak(ctx, threads):
    """The best FMA probe over the ISAs at this thread count, or None."""
    vals = [num(v) for k, v in ctx.items()
            if k.startswith("peak_gflops_") and k.endswith("_t%d" % threads)]
    vals = [v for v in vals if v]
    return max(vals) if vals else None


def bandwidth(ctx, threads):
    return num(ctx.get("mem_read_GBps_t%d" % threads))


def shape_key(row):
    a = row["args"]
    return (row["preset"], a.get("B"), a.get("H"), a.get("Hkv"), a.get("Tq"), a.get("Tk"),
            a.get("D"), a.get("d_model"), a.get("kv"), a.get("page"), a.get("mixed"))


def kv_text(kv, page):
    """A K/V cache in words: element type and paging."""
    s = KV_TYPES.get(kv, kv if isinstance(kv, str) else "kv %s" % kv)
    if page:
        s += " paged %d" % page
    return s


SHAPE_ARGS = ["B", "H", "Hkv", "Tq", "Tk", "D", "d_model"]


def labels(rows):
    """A short label per shape: the preset, the arguments that tell its shapes apart (within
    the preset), and the K/V cache's element type and paging in words."""
    by_preset = {}
    for row in rows:
        by_preset.setdefault(row["preset"], set()).add(shape_key(row))
    out = {}
    for preset, keys in by_preset.items():
        varying = [i for i in range(len(SHAPE_ARGS)) if len({k[1 + i] for k in keys}) > 1]
        # Tq and Tk move together in self-attention: name T once
        both = all(k[4] == k[5] for k in keys)
        for k in keys:
            words = []
            for i in varying:
                if both and SHAPE_ARGS[i] == "Tk":
                    continue
                words.append("%s=%s" % ("T" if both and SHAPE_ARGS[i] == "Tq" else SHAPE_ARGS[i],
                                        k[1 + i]))
            if k[10]:
                words.append("mixed")  # the batch's lengths Tk - floor(b*Tk/2B)
            s = preset + (" " + " ".join(words) if words else "")
            if k[8] is not None:
                s += ": " + kv_text(k[8], k[9])
            out[k] = s
    return out


def cpu_line(ctx, threads):
    return "%s, %s thread%s" % (ctx.get("cpu_model", "unknown CPU"), threads,
                                "" if str(threads) == "1" else "s")


def header(ctx):
    """The subtitle under a title that names the CPU and the thread count."""
    return "mha kernel set %s | FMA peak %s GFLOP/s at %s threads (%s probe) | %s mode" % (
        ctx.get("mha_isa", "?"), ctx.get("peak_gflops", "?"), ctx.get("threads", "?"),
        ctx.get("peak_isa", "?"), ctx.get("mha_bench_mode", "?"))


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def q(s):
    """A gnuplot double-quoted string (the scripts run with noenhanced text)."""
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', "'")


# ---------------------------------------------------------------------------
# Horizontal bar panels, stacked in one figure
# ---------------------------------------------------------------------------
# A panel: title, groups [(label, [(series, value, text)])], series [(key, title, color)],
# xlabel, xmax (None: from the data), refs [(x, legend text)] as dashed vertical lines,
# x2 (factor, label): a top axis at x · factor (x2fmt), xfmt; log: a log2 axis of ratios, bars
# from 1.0, which is drawn as a solid line.

def layout(p):
    """The bars' y (in bars, growing downwards; a gap between groups, a wider one between
    blocks): ({series: [(y, value, text)]}, [(group label, y of its middle)], last y)."""
    blocks, tics = {}, []
    y, prev = 0.0, blocks  # prev: no group yet
    for g in p["groups"]:
        label, bars = g[0], g[1]
        block = g[2] if len(g) > 2 else None
        if prev is not blocks:
            y += GAP_BLOCK if block != prev else GAP
        prev = block
        tics.append((label, y + (len(bars) - 1) / 2))
        for s, v, text in bars:
            blocks.setdefault(s, []).append((y, v, text))
            y += 1
    return blocks, tics, y - 1


def panel_height(p):
    """Pixels: the bars, the title, the x axis and its label, the top axis if any; at least
    the legend's height."""
    rows = layout(p)[2] + 1 + 0.6
    keys = len(p["series"]) + len(p.get("refs", []))
    body = max(rows * ROW_PX, 24 * keys + 16, 80)
    return body + 52 + 62 + (48 if p.get("x2") else 0)


def bar_panel(p, n, top_px, H, W, lm_px, rm_px, extra=""):
    """The gnuplot commands of one panel, its plot area top_px below the figure's top edge;
    `extra` (the figure's title labels) comes after the reset."""
    h = panel_height(p)
    t_area = top_px + 52 + (48 if p.get("x2") else 0)
    b_area = top_px + h - 62
    out = ["reset", extra, "set termoption noenhanced",
           "set lmargin at screen %.5f" % (lm_px / W), "set rmargin at screen %.5f" % (1 - rm_px / W),
           "set tmargin at screen %.5f" % (1 - t_area / H), "set bmargin at screen %.5f" % (1 - b_area / H),
           "set title %s font \",13\"" % q(p["title"]),
           "set style textbox opaque noborder margins 1,1"]
    # bars: y grows downwards; a gap between groups
    blocks, tics, ymax = layout(p)
    vals = [v for g in p["groups"] for _, v, _ in g[1]]
    refs = p.get("refs", [])
    if p.get("log"):
        lo = min(vals + [1.0])
        hi = max(vals + [1.0])
        xmin = 2 ** math.floor(math.log2(lo) - 0.15)
        # room on the right for the value labels: a quarter of the axis
        span = math.log2(hi) - math.log2(xmin)
        xmax = 2 ** (math.log2(xmin) + max(span / 0.74, 2))
        out += ["set logscale x 2", "set xrange [%g:%g]" % (xmin, xmax)]
        tv = [2.0 ** e for e in range(int(math.log2(xmin)), int(math.log2(xmax)) + 1)]
        out.append("set xtics (%s)" % ", ".join(
            '"%s×" %g' % (("%g" % t) if t >= 1 else "1/%g" % (1 / t), t) for t in tv))
    else:
        xmax = p.get("xmax") or max(max(vals + [0]) / 0.78, max([r[0] for r in refs] + [0]) * 1.08,
                                    1e-9)
        out += ["set xrange [0:%g]" % xmax, "set xtics nomirror"]
        if p.get("xfmt"):
            out.append("set format x %s" % q(p["xfmt"]))
    out += ["set yrange [%g:%g]" % (ymax + 0.7, -0.7),
            "set ytics (%s) nomirror scale 0 font \",11\"" % ", ".join(
                "%s %g" % (q(l), v) for l, v in tics),
            "set grid xtics lc rgb \"#d0d0d0\" lw 1 dt 1", "set xlabel %s" % q(p["xlabel"]),
            "set border 3 lc rgb \"#404040\""]
    if p.get("x2"):
        f, lab = p["x2"]
        out += ["set x2range [0:%g]" % (xmax * f), "set x2tics nomirror",
                "set format x2 %s" % q(p.get("x2fmt", "%g")), "set x2label %s" % q(lab),
                "set border 7 lc rgb \"#404040\""]
    # the legend outside the bars, on the right, top aligned with the plot area
    out.append("set key at screen %.5f,%.5f left top vertical Left reverse samplen 3 spacing 1.2 "
               "box lc rgb \"#a0a0a0\" width 1 height 0.5"
               % (1 - (rm_px - 16) / W, 1 - t_area / H))
    out.append("set style fill solid 0.9 border lc rgb \"#303030\"")
    plots = []
    for key, title, color in p["series"]:
        if key not in blocks:
            continue
        name = "$p%d_%s" % (n, key)
        out.append("%s << EOD\n%s\nEOD" % (name, "\n".join(
            "%g %g %s" % (yy, v, q(text)) for yy, v, text in blocks[key])))
        x0 = 1.0 if p.get("log") else 0.0
        plots.append("%s using (%g):1:(%g<$2?%g:$2):(%g<$2?$2:%g):($1-0.4):($1+0.4) with boxxyerror "
                     "lc rgb \"%s\" title %s" % (name, x0, x0, x0, x0, x0, color, q(title)))
        xt = "($2>%g?$2:%g)" % (x0, x0) if p.get("log") else "2"
        plots.append("%s using %s:1:3 with labels boxed left offset char 0.6,0 font \",10\" notitle"
                     % (name, xt))
    for x, text in refs:
        out.append("set arrow from %g, graph 0 to %g, graph 1 nohead dt 2 lw 2 lc rgb \"black\" back"
                   % (x, x))
        plots.append("NaN with lines dt 2 lw 2 lc rgb \"black\" title %s" % q(text))
    if p.get("log"):
        out.append("set arrow from 1, graph 0 to 1, graph 1 nohead lw 2 lc rgb \"black\" back")
        plots.append("NaN with lines lw 2 lc rgb \"black\" title \"1.0: as fast as mha\"")
    out.append("plot " + ", \\\n  ".join(plots))
    return "\n".join(out), h


def bar_figure(out, title, subtitle, panels):
    panels = [p for p in panels if p["groups"]]
    if not panels:
        return False
    label_chars = max(len(g[0]) for p in panels for g in p["groups"])
    key_chars = max([len(s[1]) for p in panels for s in p["series"]] +
                    [len(r[1]) for p in panels for r in p.get("refs", [])])
    if any(p.get("log") for p in panels):
        key_chars = max(key_chars, len("1.0: as fast as mha"))
    lm_px = int(label_chars * CHAR_PX) + 50
    rm_px = int(key_chars * CHAR_PX) + 110
    W = max(1400, lm_px + rm_px + 700)
    head = 78
    H = head + sum(panel_height(p) for p in panels) + 10
    parts = []
    top = head
    titles = "set label 901 %s at screen 0.5,%.5f center font \",15\"\n" \
             "set label 902 %s at screen 0.5,%.5f center font \",11\"" % (
                 q(title), 1 - 26 / H, q(subtitle), 1 - 52 / H)
    for n, p in enumerate(panels):
        s, h = bar_panel(p, n, top, H, W, lm_px, rm_px, titles if n == 0 else "")
        parts.append(s)
        top += h
    gnuplot("""set terminal pngcairo size %d,%d font "%s,11" noenhanced
set output %s
set multiplot
%s
unset multiplot
""" % (W, H, FONT, q(out), "\n".join(parts)))
    return True


# ---------------------------------------------------------------------------
# The presets figure
# ---------------------------------------------------------------------------
def kind(row):
    if row["preset"] in ("heads", "stolen_core"):  # stolen_core: the summary's table
        return None
    if row["preset"].startswith("var_") or row["preset"] in VARIANTS:
        return "variants"
    if "GBps" in row["r"]:
        return "decode"
    if "d_model" in row["args"]:
        return "layer"
    return "core"


def fmt_pct(v):
    return ("%.0f%%" if v >= 9.95 else "%.1f%%") % v


def pct(row, counter, limit, value):
    v = row["r"].get(counter)
    if v is not None:
        return float(v)
    return 100.0 * value / limit if limit else None


def plot_presets(ctx, rows, out):
    tmax = int(ctx.get("threads", "1"))
    sel = [r for r in rows if kind(r) and r["args"].get("threads") == tmax and "GFLOPS" in r["r"]]
    if not sel:
        return False
    lab = labels(sel)
    p, bw = peak(ctx, tmax), bandwidth(ctx, tmax)
    panels = []
    specs = [("layer", "Layers: projections + attention, in % of the FMA peak"),
             ("core", "Attention core, in % of the FMA peak"),
             ("decode", "Decode (one query row) and K/V-cache decode: GB/s of K and V read"),
             ("variants", "Variants (attention core), in % of the FMA peak")]
    for k, title in specs:
        rs = [r for r in sel if kind(r) == k]
        groups, order = {}, []
        for r in rs:
            key = shape_key(r)
            if key not in groups:
                groups[key] = []
                order.append(key)
            if k == "decode":
                gb = float(r["r"]["GBps"])
                pb = pct(r, "pct_bw", bw, gb)
                text = "%.1f GB/s" % gb + (", " + fmt_pct(pb) if pb is not None else "")
                groups[key].append((r["impl"], gb, text))
            else:
                gf = float(r["r"]["GFLOPS"])
                pp = pct(r, "pct_peak", p, gf)
                if pp is None:
                    continue
                groups[key].append((r["impl"], pp, "%s, %.1f GFLOP/s" % (fmt_pct(pp), gf)))
        for key in order:
            groups[key].sort(key=lambda b: IMPLS.index(b[0]) if b[0] in IMPLS else 99)
        present = [i for i in IMPLS if any(b[0] == i for g in groups.values() for b in g)]
        present += sorted({b[0] for g in groups.values() for b in g} - set(present))
        names = dict(TITLES, mha="mha_layer_forward" if k == "layer" else "mha_attention_f32")
        series = [(i, names.get(i, i), COLORS.get(i, "#444444")) for i in present]
        panel = {"title": title, "series": series,
                 # a wider gap between shapes; between the element types of one K/V cache
                 # shape, and between the variants, the narrow one
                 "groups": [(lab[key], groups[key],
                             key[:8] if key[8] is not None else None if k == "variants" else key)
                            for key in order if groups[key]]}
        if k == "decode":
            panel["xlabel"] = "GB/s of K and V read (as stored: 2 bytes an element in f16 / bf16)"
            if bw:
                panel["refs"] = [(bw, "read probe %.1f GB/s = 100%%" % bw)]
                panel["x2"] = (100.0 / bw, "%% of the read-bandwidth probe (%.1f GB/s at %d threads)"
                               % (bw, tmax))
                panel["x2fmt"] = "%g%%"
        else:
            panel["xlabel"] = ("% of the FMA peak" + (" (%.1f GFLOP/s at %d threads, %s probe)"
                               % (p, tmax, ctx.get("peak_isa", "?")) if p else ""))
            panel["xfmt"] = "%g%%"
            panel["refs"] = [(100.0, "FMA peak = 100%")]
        panels.append(panel)
    return bar_figure(
        out, "mha presets on %s (median of %s mode)" % (cpu_line(ctx, tmax),
                                                      ctx.get("mha_bench_mode", "?")),
        "mha kernel set %s | FMA peak %s GFLOP/s (%s probe) | read probe %s GB/s | useful FLOPs "
        "of bench/flops.c" % (ctx.get("mha_isa", "?"), "%.1f" % p if p else "?",
                              ctx.get("peak_isa", "?"), "%.1f" % bw if bw else "?"),
        panels)


# ---------------------------------------------------------------------------
# The speed-up figure (bench/peers.py's JSON)
# ---------------------------------------------------------------------------
def peer_label(r, keys):
    """A label for a peers.py row, in the words of labels() (kv_decode: the cache in words)."""
    preset = r["preset"]
    args = {"B": r.get("B"), "H": r.get("H"), "Hkv": r.get("Hkv"), "Tq": r.get("Tq"),
            "Tk": r.get("Tk"), "D": r.get("D"),
            "d_model": r.get("d_model") if r.get("kind") == "layer" else None}
    mine = [k for k in keys if k[0] == preset]
    varying = [n for n in SHAPE_ARGS if len({k[1][n] for k in mine}) > 1]
    both = all(k[1]["Tq"] == k[1]["Tk"] for k in mine)
    words = []
    for n in varying:
        if both and n == "Tk":
            continue
        words.append("%s=%s" % ("T" if both and n == "Tq" else n, args[n]))
    if not r.get("kv_dtype") and r.get("B", 1) != 1 and "B" not in varying:
        words.insert(0, "B=%s" % r["B"])  # bert_base: the peers run B=8 only
    if r.get("mixed"):
        words.append("mixed")
    s = preset + (" " + " ".join(words) if words else "")
    if r.get("kv_dtype"):
        s += ": " + kv_text(r["kv_dtype"], r.get("page"))
    if r.get("variant"):  # the settings, as bench/summary.py lists them
        v = [("window %s" % r["window"]) if r.get("window") else "",
             ("soft-cap %g" % r["softcap"]) if r.get("softcap") else "",
             "ALiBi" if r.get("alibi") else "", "sinks" if r.get("sinks") else ""]
        s += ": " + (", ".join(x for x in v if x) or "none")
    return s


def peer_kind(r):
    if r.get("kv_dtype"):
        return "kv"
    if r.get("variant"):
        return "variants"
    return "layer" if r.get("kind") == "layer" else "core"


def plot_speedup(ctx, peers_path, out):
    if not peers_path:
        return False
    if not os.path.exists(peers_path):
        print("plot: %s: no such file" % peers_path, file=sys.stderr)
        return False
    with open(peers_path) as f:
        data = json.load(f)
    pctx = data.get("context", {})
    # the largest thread count only (peers.py --threads 1,N also times 1)
    threads_max = pctx.get("threads")
    rows = [r for r in data.get("rows", []) if r.get("threads", threads_max) == threads_max]
    ident = ("preset", "B", "H", "Hkv", "Tq", "Tk", "D", "d_model", "kv_dtype", "page", "mixed",
             "window", "softcap", "alibi", "sinks")
    groups, order = {}, []
    for r in rows:
        key = tuple(r.get(k) for k in ident)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(r)
    keys = [(r["preset"], {n: (r.get(n) if n != "d_model" or r.get("kind") == "layer" else None)
                           for n in SHAPE_ARGS}) for r in rows]
    peers = []
    for r in rows:
        if r["system"] != "mha" and r["system"] not in peers:
            peers.append(r["system"])
    color = {s: PEER_COLOR.get(s, PEER_COLORS[i % len(PEER_COLORS)]) for i, s in enumerate(peers)}
    specs = [("layer", "Layers (mha_layer_forward against the layer peers)"),
             ("core", "Attention core (mha_attention_f32)"),
             ("variants", "Variants: window, ALiBi, soft-cap, sinks (causal cores)"),
             ("kv", "K/V-cache decode (fp32, f16, bf16; paged)")]
    panels = []
    for k, title in specs:
        gs = []
        for key in order:
            rs = groups[key]
            if peer_kind(rs[0]) != k:
                continue
            ref = next((r for r in rs if r["system"] == "mha"), None)
            if ref is None:
                continue
            bars = []
            for r in rs:
                if r["system"] == "mha":
                    continue
                sp = r["median_s"] / ref["median_s"]
                bars.append((r["system"], sp, "%.2f×" % sp))
            bars.sort(key=lambda b: peers.index(b[0]))
            if bars:  # a wide gap between shapes, a narrow one between a cache's types
                gs.append((peer_label(rs[0], keys), bars,
                           key[:8] + key[10:11] if k == "kv" else key))
        present = [s for s in peers if any(b[0] == s for g in gs for b in g[1])]
        panels.append({"title": title, "groups": gs, "log": True,
                       "series": [(s, PEER_TITLES.get(s, s), color[s]) for s in present],
                       "xlabel": "mha's speed-up = peer time / mha time (log scale; right of 1: "
                                 "mha is faster)"})
    threads = pctx.get("threads", ctx.get("threads", "?"))
    rounds = sorted({len(r.get("rounds_s", [])) for r in rows} - {0})
    versions = ", ".join("%s %s" % (k, pctx[k]) for k in ("torch", "onnxruntime", "openvino") if pctx.get(k))
    return bar_figure(
        out, "mha against its peers on %s" % cpu_line({"cpu_model": pctx.get("cpu") or
                                                        ctx.get("cpu_model")}, threads),
        "peer time / mha time, medians of %s alternating round%s | mha %s%s%s" % (
            "/".join(map(str, rounds)) or "?", "" if rounds == [1] else "s",
            pctx.get("mha_isa", ctx.get("mha_isa", "?")), " | " + versions if versions else "",
            " | --tiny: smoke shapes, not a benchmark" if pctx.get("tiny") else ""),
        panels)


# ---------------------------------------------------------------------------
# Threads and heads
# ---------------------------------------------------------------------------
def plot_threads(ctx, rows, out):
    sel = [r for r in rows if r["preset"] not in ("heads", "stolen_core") and "threads" in r["args"]
           and "GFLOPS" in r["r"]]
    lab = labels(sel)
    panels = {}
    for r in sel:
        panels.setdefault(shape_key(r), []).append(r)
    panels = {k: v for k, v in panels.items() if len({r["args"]["threads"] for r in v}) > 1}
    if not panels:
        return False
    n = len(panels)
    cols = 2 if n > 1 else 1
    rows_ = (n + cols - 1) // cols
    pw, ph, head, foot = 700, 430, 80, 70
    W, H = pw * cols, ph * rows_ + head + foot
    parts, used = [], []
    for idx, (k, rs) in enumerate(panels.items()):
        decode = "GBps" in rs[0]["r"]
        metric = "GBps" if decode else "GFLOPS"
        ts = sorted({r["args"]["threads"] for r in rs})
        blocks, plots = [], []
        for i in IMPLS:
            pts = sorted((r["args"]["threads"], r["r"][metric]) for r in rs if r["impl"] == i)
            if not pts:
                continue
            if i not in used:
                used.append(i)
            name = "$%s_%d" % (i, idx)
            blocks.append("%s << EOD\n%s\nEOD" % (name, "\n".join("%d %.4f" % p for p in pts)))
            plots.append("%s using 1:2 with linespoints lw 2 pt 7 lc rgb \"%s\" notitle"
                         % (name, COLORS[i]))
        limit = [(t, bandwidth(ctx, t) if decode else peak(ctx, t)) for t in ts]
        limit = [(t, v) for t, v in limit if v]
        if limit:
            name = "$limit_%d" % idx
            blocks.append("%s << EOD\n%s\nEOD" % (name, "\n".join("%d %.4f" % p for p in limit)))
            plots.append("%s using 1:2 with linespoints lw 2 dt 2 pt 6 lc rgb \"black\" notitle"
                         % name)
            used.append("limit_bw" if decode else "limit_peak")
        r_, c_ = divmod(idx, cols)
        x0, y0 = c_ * pw, head + r_ * ph
        parts.append("""%s
set lmargin at screen %.5f
set rmargin at screen %.5f
set tmargin at screen %.5f
set bmargin at screen %.5f
set title %s font ",12"
set ylabel %s
set xtics (%s)
set xrange [%f:%f]
plot %s
unset label 901
unset label 902
""" % ("\n".join(blocks), (x0 + 80) / W, (x0 + pw - 30) / W, 1 - (y0 + 40) / H,
       1 - (y0 + ph - 60) / H, q(lab[k]), q("GB/s of K and V read" if decode else "GFLOP/s"),
       ", ".join("\"%d\" %d" % (t, t) for t in ts), ts[0] - 0.25, ts[-1] + 0.25,
       ", ".join(plots)))
    # one legend for every panel, below them
    key = []
    for u in dict.fromkeys(used):
        if u == "limit_peak":
            key.append("NaN with linespoints lw 2 dt 2 pt 6 lc rgb \"black\" "
                       "title \"FMA peak probe (GFLOP/s panels)\"")
        elif u == "limit_bw":
            key.append("NaN with linespoints lw 2 dt 2 pt 6 lc rgb \"black\" "
                       "title \"read-bandwidth probe (GB/s panels)\"")
        else:
            key.append("NaN with linespoints lw 2 pt 7 lc rgb \"%s\" title %s" % (COLORS[u], q(TITLES[u])))
    tmax = ctx.get("threads", "?")
    gnuplot("""set terminal pngcairo size %d,%d font "%s,11" noenhanced
set output %s
set multiplot
set label 901 %s at screen 0.5,%.5f center font ",15"
set label 902 %s at screen 0.5,%.5f center font ",11"
set grid lc rgb "#d0d0d0"
set key off
set xlabel "threads"
set yrange [0:*]
%s
unset label
unset title
unset border
unset tics
unset xlabel
unset ylabel
unset grid
unset arrow
set xrange [0:1]
set yrange [0:1]
set lmargin at screen 0.02
set rmargin at screen 0.98
set bmargin at screen 0.005
set tmargin at screen %.5f
set key at screen 0.5,%.5f center top horizontal maxrows 2 samplen 3 spacing 1.2 width 2
plot %s
unset multiplot
""" % (W, H, FONT, q(out), q("Scaling from 1 to %s threads on %s (median)" % (tmax, ctx.get("cpu_model", "unknown CPU"))),
       1 - 26 / H, q(header(ctx)), 1 - 52 / H, "\n".join(parts), (foot - 10) / H,
       (foot - 12) / H, ", ".join(key)))
    return True


def plot_heads(ctx, rows, out):
    sel = [r for r in rows if r["preset"] == "heads" and "GFLOPS" in r["r"]]
    if not sel:
        return False
    ts = sorted({r["args"]["threads"] for r in sel})
    hs = sorted({r["args"]["H"] for r in sel})
    dm = sel[0]["args"].get("d_model")
    T = sel[0]["args"].get("Tq")
    blocks, plots = [], []
    dashes = {t: n + 1 for n, t in enumerate(ts)}
    for t in ts:
        for i in ("mha", "mha_wrapper"):
            pts = sorted((r["args"]["H"], r["r"]["GFLOPS"]) for r in sel
                         if r["impl"] == i and r["args"]["threads"] == t)
            if not pts:
                continue
            name = "$%s_t%d" % (i, t)
            blocks.append("%s << EOD\n%s\nEOD" % (name, "\n".join("%d %.4f" % p for p in pts)))
            title = ("fused layer" if i == "mha" else "wrapper: H single-head layers + concat + W_o")
            plots.append("%s using 1:2 with linespoints lw 2 pt %d dt %d lc rgb \"%s\" title \"%s, %d thread%s\""
                         % (name, 7 if i == "mha" else 5, dashes[t], COLORS[i], title, t, "" if t == 1 else "s"))
        pk = peak(ctx, t)
        if pk:  # the FMA probe at this thread count, a level line
            plots.append("%g with lines lw 1.5 dt %d lc rgb \"black\" title \"FMA peak probe, %d thread%s: "
                         "%.0f GFLOP/s\"" % (pk, dashes[t], t, "" if t == 1 else "s", pk))
    top = max([r["r"]["GFLOPS"] for r in sel] + [peak(ctx, t) or 0 for t in ts])
    H = 760
    gnuplot("""set terminal pngcairo size 1200,%d font "%s,11" noenhanced
set output %s
%s
set label 901 %s at screen 0.5,%.5f center font ",15"
set label 902 %s at screen 0.5,%.5f center font ",11"
set tmargin at screen %.5f
set bmargin at screen %.5f
set lmargin at screen 0.07
set rmargin at screen 0.97
set title %s font ",12"
set xlabel "heads H (head width d_model / H)"
set ylabel "GFLOP/s"
set logscale x 2
set xtics (%s)
set xrange [%f:%f]
set yrange [0:%g]
set grid lc rgb "#d0d0d0"
set key at screen 0.5,%.5f center top vertical maxrows 3 samplen 3 spacing 1.2 width 3
plot %s
""" % (H, FONT, q(out), "\n".join(blocks),
       q("The heads study at %s threads on %s (median)" % (
           " and ".join(str(t) for t in ts), ctx.get("cpu_model", "unknown CPU"))),
       1 - 26 / H, q(header(ctx)),
       1 - 52 / H, 1 - 110 / H, 170 / H,
       q("d_model = %s, T = %s, B = 1, no mask, head width d_model / H" % (dm, T)),
       ", ".join("\"%d\" %d" % (h, h) for h in hs), hs[0] / 1.3, hs[-1] * 1.3, top * 1.1, 85 / H,
       ", ".join(plots)))
    return True


def main():
    argv = sys.argv[1:]
    peers_path = None
    if "--peers" in argv:
        i = argv.index("--peers")
        if i + 1 >= len(argv):
            sys.exit(__doc__)
        peers_path = argv[i + 1]
        del argv[i:i + 2]
    if len(argv) != 2:
        sys.exit(__doc__)
    report, prefix = argv
    ctx, rows = load(report)
    if peers_path is None:
        guess = prefix + "-peers.json"
        if os.path.exists(guess) and os.path.getmtime(guess) >= os.path.getmtime(report):
            peers_path = guess
    figures = (("presets", lambda out: plot_presets(ctx, rows, out)),
               ("speedup", lambda out: plot_speedup(ctx, peers_path, out)),
               ("threads", lambda out: plot_threads(ctx, rows, out)),
               ("heads", lambda out: plot_heads(ctx, rows, out)))
    for name, fn in figures:
        out = "%s-%s.png" % (prefix, name)
        if fn(out):
            print("plot: %s" % out)
        else:
            if os.path.exists(out):
                os.remove(out)  # an old figure would be read as this run's
            print("plot: %s skipped (%s)" % (out, "no data for it in this report" if name != "speedup"
                                             else "no peers' JSON of this run: --peers FILE"))


if __name__ == "__main__":
    main()
