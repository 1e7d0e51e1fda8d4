#!/usr/bin/env python3
"""Timelines of traced mha calls (bench/trace-dump.c's JSON), drawn by gnuplot (Debian's
gnuplot-nox), as scripts/plot_bench.py draws its figures.

Usage: plot_trace.py TRACE.json [TRACE.json ...]
Writes TRACE.png beside each JSON: y = worker (0 on top, its share of the call busy in
units beside it), x = µs since the call began, one bar per work unit: attention units in
their head's colour (a K/V head's group of query heads under GQA), GEMM tiles grey, Kᵀ
packing in a light tint of its K/V head's colour. The title names the preset and shape,
the threads, quiet or which CPU was busy, and the CPU. Exits 1 if any figure failed.
"""
import json
import os
import subprocess
import sys

PACK_KT, ATTENTION, WEIGHTS_MEAN, GEMM = 1, 2, 3, 4
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
GEMM_COLOR, MEAN_COLOR = "#9a9a9a", "#555555"
FONT = "DejaVu Sans"
MAX_KEYS = 16  # heads named in the legend; the rest share the palette unnamed


def light(color, f=0.6):
    """The colour mixed with white (f of white)."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join("%02x" % round(c + (255 - c) * f) for c in rgb)


def q(s):
    """A gnuplot double-quoted string (the script runs with noenhanced text)."""
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', "'")


def shape_text(t):
    s = t["shape"]
    if t["kind"] == "layer":
        return "B %d, T %d, d_model %d, H %d" % (s["B"], s["Tq"], s["d_model"], s["H"])
    return "B %d, H %d, Hkv %d, Tq %d, Tk %d, D %d" % (s["B"], s["H"], s["Hkv"], s["Tq"], s["Tk"],
                                                      s["D"])


def plot(path):
    with open(path) as f:
        t = json.load(f)
    fields = t["fields"]
    ev = [dict(zip(fields, e)) for e in t["events"]]
    if not ev:
        raise ValueError("no events")
    group = t["shape"]["H"] // max(1, t["shape"]["Hkv"])  # query heads per K/V head
    workers = max(int(t.get("threads", 1)), 1 + max(e["worker"] for e in ev))
    end_us = max(max(e["end_ns"] for e in ev) / 1e3, float(t.get("call_us", 0.0)))
    # one series per colour: the legend names each
    series = {}  # key -> (order, title, color, [lines])

    def add(key, order, title, color, e):
        s = series.setdefault(key, (order, title, color, []))
        x0, x1 = e["start_ns"] / 1e3, e["end_ns"] / 1e3
        y = e["worker"]
        s[3].append("%.4f %d %.4f %.4f %.2f %.2f" % ((x0 + x1) / 2, y, x0, x1, y - 0.4, y + 0.4))

    for e in ev:
        st = e["stage"]
        if st == GEMM:
            add("gemm", 0, "GEMM tile (projections)", GEMM_COLOR, e)
        elif st == WEIGHTS_MEAN:
            add("mean", 1, "head-mean weights", MEAN_COLOR, e)
        elif st == PACK_KT:  # head: the K/V head
            g = e["head"]
            add(("pack", g), 2 + 2 * g, None, light(PALETTE[g % len(PALETTE)]), e)
        else:  # head: the first query head of a K/V head's group
            g = e["head"] // group if group > 1 else e["head"]
            name = ("head %d" % g) if group == 1 else ("heads %d–%d" % (g * group, g * group + group - 1))
            add(("att", g), 3 + 2 * g, name if g < MAX_KEYS else None, PALETTE[g % len(PALETTE)], e)
    # Kᵀ packing: one legend entry (its colour follows the head)
    has_pack = any(isinstance(k, tuple) and k[0] == "pack" for k in series)
    busy_us = [0.0] * workers
    for e in ev:
        busy_us[e["worker"]] += (e["end_ns"] - e["start_ns"]) / 1e3
    ytics = ", ".join('"%d  %.0f%%%%" %d' % (w, 100 * busy_us[w] / end_us if end_us else 0, w)  # %% : a literal % in a tic label
                      for w in range(workers))
    load = ("CPU %s busy (a thread spinning on it)" % t["busy_cpu"]) if t.get("load") == "busy" else "quiet"
    title = "%s (%s): %s threads, OpenMP, %s | %s" % (
        t["preset"], shape_text(t), t.get("threads", "?"), load, t.get("cpu_model", "unknown CPU"))
    sub = ("one traced call after 3 warm-ups: %d units in %.0f µs (call %.0f µs), kernel set %s; "
           "left: worker and its share of the call in units" %
           (t.get("total", len(ev)), max(e["end_ns"] for e in ev) / 1e3, t.get("call_us", 0.0),
            t.get("isa", "?")))
    row_px = max(10, min(36, 900 // workers))
    keys = sum(1 for v in series.values() if v[1]) + has_pack
    # the plot's rows, or the legend (one column) if that is taller
    H = 150 + max(workers * row_px + 60, keys * 19 + 20)
    W = 1500
    blocks, plots = [], []
    for i, (key, (order, name, color, lines)) in enumerate(sorted(series.items(), key=lambda kv: kv[1][0])):
        blocks.append("$s%d << EOD\n%s\nEOD" % (i, "\n".join(lines)))
        plots.append("$s%d using 1:2:3:4:5:6 with boxxyerror fs solid 1.0 noborder lc rgb %s %s"
                     % (i, q(color), ("title " + q(name)) if name else "notitle"))
    if has_pack:
        plots.append("keyentry with boxes fs solid 1.0 noborder lc rgb %s title %s"
                     % (q(light(PALETTE[0])), q("Kᵀ packing (its K/V head's colour, light)")))
    out = os.path.splitext(path)[0] + ".png"
    script = """set terminal pngcairo size %d,%d font "%s,10" noenhanced
set output %s
%s
set tmargin at screen %.4f
set label 1 %s at screen 0.5, screen %.4f center
set label 2 %s at screen 0.5, screen %.4f center
set xlabel "µs since the call began"
set ylabel "worker"
set xrange [0:%.4f]
set yrange [%.2f:-0.6]
set ytics (%s)
set grid xtics lc rgb "#dddddd"
set key outside right top vertical Left reverse samplen 1.5 spacing 1.1
set lmargin 12
plot %s
""" % (W, H, FONT, q(out), "\n".join(blocks), 1 - 80.0 / H, q(title), 1 - 22.0 / H, q(sub),
       1 - 42.0 / H, end_us * 1.01, workers - 0.4,
       ytics, ", \\\n     ".join(plots))
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return out


def main():
    paths = sys.argv[1:]
    if not paths or any(p.startswith("-") for p in paths):
        sys.exit(__doc__)
    failed = 0
    for p in paths:
        try:
            print("plot: %s" % plot(p))
        except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as e:
            print("plot: %s failed: %s" % (p, e), file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
