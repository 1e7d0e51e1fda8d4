#!/usr/bin/env python3
"""PNG plots of an mha_bench JSON report, drawn by gnuplot (Debian's gnuplot-nox).

Usage: plot_bench.py REPORT.json PREFIX
Writes PREFIX-presets.png  GFLOP/s per preset, mha and each peer, the peak as a line
       PREFIX-threads.png  GFLOP/s against threads (decode: GB/s against the read bandwidth)
       PREFIX-heads.png    the heads study: the fused layer against the wrapper layout
Each benchmark is its median over repetitions (or its only run); errors are left out.
"""
import json
import subprocess
import sys

IMPLS = ["mha", "mha_wrapper", "mha_scalar", "blas"]
TITLES = {"mha": "mha (fused layer)", "mha_wrapper": "mha, wrapper layout",
          "mha_scalar": "mha, scalar path", "blas": "OpenBLAS sgemm + softmax"}
COLORS = {"mha": "#1f77b4", "mha_wrapper": "#2ca02c", "mha_scalar": "#7f7f7f", "blas": "#d62728"}


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


def peak(ctx, threads):
    """The best FMA probe over the ISAs at this thread count, or None."""
    vals = [float(v) for k, v in ctx.items()
            if k.startswith("peak_gflops_") and k.endswith("_t%d" % threads)]
    return max(vals) if vals else None


def bandwidth(ctx, threads):
    v = ctx.get("mem_read_GBps_t%d" % threads)
    return float(v) if v is not None else None


def shape_key(row):
    a = row["args"]
    return (row["preset"], a.get("B"), a.get("H"), a.get("Hkv"), a.get("Tq"), a.get("Tk"),
            a.get("D"), a.get("d_model"))


def labels(rows):
    """A short label per shape: the preset, plus the arguments that tell its shapes apart."""
    by_preset = {}
    for row in rows:
        by_preset.setdefault(row["preset"], set()).add(shape_key(row))
    out = {}
    for preset, keys in by_preset.items():
        names = ["B", "H", "Hkv", "Tq", "Tk", "D", "d_model"]
        varying = [i for i in range(len(names)) if len({k[1 + i] for k in keys}) > 1]
        for k in keys:
            out[k] = preset + "".join(" %s=%s" % (names[i], k[1 + i]) for i in varying)
    return out


def header(ctx):
    cpu = ctx.get("cpu_model", "unknown CPU")
    return "%s | mha ISA %s | %s threads | peak %s GFLOP/s (%s FMA probe) | %s mode" % (
        cpu, ctx.get("mha_isa", "?"), ctx.get("threads", "?"), ctx.get("peak_gflops", "?"),
        ctx.get("peak_isa", "?"), ctx.get("mha_bench_mode", "?"))


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def esc(s):
    return s.replace('"', "'").replace("_", "\\\\_")


def plot_presets(ctx, rows, out):
    tmax = int(ctx.get("threads", "1"))
    sel = [r for r in rows if r["preset"] not in ("heads",) and "threads" in r["args"]
           and r["args"]["threads"] == tmax and "GFLOPS" in r["r"]]
    if not sel:
        return False
    lab = labels(sel)
    shapes = []
    for r in sel:
        k = shape_key(r)
        if k not in shapes:
            shapes.append(k)
    impls = [i for i in IMPLS if any(r["impl"] == i for r in sel)]
    val = {(shape_key(r), r["impl"]): r["r"]["GFLOPS"] for r in sel}
    data = "\n".join('"%s" %s' % (lab[k], " ".join(
        "%.3f" % val[(k, i)] if (k, i) in val else "NaN" for i in impls)) for k in shapes)
    p = peak(ctx, tmax)
    plots = ["$data using %d:xtic(1) title \"%s\" lc rgb \"%s\"" % (2 + n, TITLES[i], COLORS[i])
             for n, i in enumerate(impls)]
    if p:
        plots.append("%f with lines lw 2 dt 2 lc rgb \"black\" title \"peak %.0f GFLOP/s (FMA probe, %d threads)\""
                     % (p, p, tmax))
    gnuplot("""
set terminal pngcairo size 1200,750 font "DejaVu Sans,11"
set output "%s"
$data << EOD
%s
EOD
set title "GFLOP/s per preset at %d threads (median; useful FLOPs of bench/flops.c)\\n{/*0.8 %s}"
set ylabel "GFLOP/s (log scale)"
set xlabel "preset"
set logscale y
set yrange [1:%f]
set grid ytics
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -25 noenhanced
set key inside right top vertical box opaque
plot %s
""" % (out, data, tmax, esc(header(ctx)),
       4 * max([p or 0] + [v for v in val.values()]), ", ".join(plots)))
    return True


def plot_threads(ctx, rows, out):
    sel = [r for r in rows if r["preset"] not in ("heads",) and "threads" in r["args"]
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
    parts = []
    for k, rs in panels.items():
        decode = "GBps" in rs[0]["r"]
        metric = "GBps" if decode else "GFLOPS"
        ts = sorted({r["args"]["threads"] for r in rs})
        blocks, plots = [], []
        for i in IMPLS:
            pts = sorted((r["args"]["threads"], r["r"][metric]) for r in rs if r["impl"] == i)
            if not pts:
                continue
            name = "$%s_%d" % (i, len(parts))
            blocks.append("%s << EOD\n%s\nEOD" % (name, "\n".join("%d %.4f" % p for p in pts)))
            plots.append("%s using 1:2 with linespoints lw 2 pt 7 lc rgb \"%s\" title \"%s\""
                         % (name, COLORS[i], TITLES[i]))
        limit = [(t, bandwidth(ctx, t) if decode else peak(ctx, t)) for t in ts]
        limit = [(t, v) for t, v in limit if v]
        if limit:
            name = "$limit_%d" % len(parts)
            blocks.append("%s << EOD\n%s\nEOD" % (name, "\n".join("%d %.4f" % p for p in limit)))
            plots.append("%s using 1:2 with lines lw 2 dt 2 lc rgb \"black\" title \"%s\""
                         % (name, "read bandwidth (probe)" if decode else "peak (FMA probe)"))
        parts.append("""%s
set title "%s"
set ylabel "%s"
set xtics (%s)
set xrange [%f:%f]
plot %s
""" % ("\n".join(blocks), lab[k], "GB/s of K and V read" if decode else "GFLOP/s",
       ", ".join("\"%d\" %d" % (t, t) for t in ts), ts[0] - 0.25, ts[-1] + 0.25, ", ".join(plots)))
    gnuplot("""
set terminal pngcairo size %d,%d font "DejaVu Sans,11"
set output "%s"
set grid
set key below
set xlabel "threads" offset 0,0.4
set yrange [0:*]
set termoption noenhanced
set multiplot layout %d,%d title "Scaling with threads (median)\\n%s"
%s
unset multiplot
""" % (700 * cols, 480 * rows_ + 80, out, rows_, cols, header(ctx).replace('"', "'"), "\n".join(parts)))
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
    gnuplot("""
set terminal pngcairo size 1200,700 font "DejaVu Sans,11"
set output "%s"
%s
set title "The heads study: d\\\\_model = %s, T = %s, B = 1, no mask, head width d\\\\_model / H (median)\\n{/*0.8 %s}"
set xlabel "heads H (head width d\\\\_model / H)"
set ylabel "GFLOP/s"
set logscale x 2
set xtics (%s)
set xrange [%f:%f]
set yrange [0:*]
set grid
set key outside bottom center horizontal maxrows 2
plot %s
""" % (out, "\n".join(blocks), dm, T, esc(header(ctx)),
       ", ".join("\"%d\" %d" % (h, h) for h in hs), hs[0] / 1.3, hs[-1] * 1.3, ", ".join(plots)))
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ctx, rows = load(sys.argv[1])
    prefix = sys.argv[2]
    for name, fn in (("presets", plot_presets), ("threads", plot_threads), ("heads", plot_heads)):
        out = "%s-%s.png" % (prefix, name)
        if fn(ctx, rows, out):
            print("plot: %s" % out)
        else:
            print("plot: %s skipped (no data for it in this report)" % out)


if __name__ == "__main__":
    main()
