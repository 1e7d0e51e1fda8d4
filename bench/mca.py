#!/usr/bin/env python3
"""Predicted speed of mha's micro-kernels on CPUs this machine is not.

Compiles each SIMD micro-kernel file with -DMHA_MCA -S (kernels/config/mca-markers.h
turns its inner loop and store epilogue into named llvm-mca regions), runs
llvm-mca-16 on every region for each CPU model, and prints the predicted
cycles per k step against the bound of that model: the FMA bound, measured
by llvm-mca itself on a block of the same number of independent FMAs of the
same width, so it is the model's own peak (two 256-bit FMA pipes on Zen 3/4 and
Intel; 512-bit FMAs double-pumped on Zen 4) — or, for an x86 k step that
loads more vectors than it has FMAs (the AVX-512 dot-product kernel takes one
key at a time and reloads the rows of A from L1), the larger of that and the
load bound, a block of as many independent loads of that width.

The NEON kernels are compiled with aarch64-linux-gnu-gcc (Debian's
gcc-aarch64-linux-gnu, scripts/setup.sh --cross; skipped with a note when it
is missing) and run through llvm-mca-16 -march=aarch64 for neoverse-n1,
neoverse-v1, neoverse-v2 and apple-m1. LLVM 16 prices the two forms of a
128-bit FMLA differently on some of these models (Apple M1, the Cyclone
model: by element 0.33 cycles, vector 0.5), so a NEON bound is the smaller of
a block of vector FMLAs and a block of the region's own FMLAs (same count,
same forms), never the cost of the loads around them. LLVM 16's models are
approximations of those cores: neoverse-n1 uses the Cortex-A57 model (the
vector and by-element forms on different pipes, one 128-bit FMLA per cycle),
neoverse-v1 and -v2 the Neoverse N2 one (two 128-bit FMLA pipes). The BF16
kernel (BFMMLA, built with -march=armv8.2-a+bf16, llvm-mca with -mattr=+bf16)
runs on neoverse-v1 and -v2 only; its bound is a block of as many BFMMLAs.
The AVX512-BF16 kernel (vdpbf16ps) runs on znver4 and sapphirerapids; its
bound is a block of as many independent zmm vdpbf16ps. LLVM 16's znver4 model
prices one at 3 cycles; measured on a Zen 4 it issues once a cycle
(kernels/README.md), so the ratio, not the cycles, is what to read there.

Usage: bench/mca.py [--check] [--cc gcc] [--cc-aarch64 aarch64-linux-gnu-gcc] [--out FILE.md]
  --check   exit 1 if a full-tile k step is predicted more than 15% above its
            bound on any model (the CTest performance guard: it does not
            depend on the CPU that runs it)
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NEON_MODELS = ["neoverse-n1", "neoverse-v1", "neoverse-v2", "apple-m1"]

# kernel file, compile flags, vector width (bits), the models that can run it;
# width 128 is a NEON file (aarch64 compiler, llvm-mca -march=aarch64)
KERNELS = [
    ("kernels/f32-gemm/f32-gemm-6x16-avx2.c", ["-mavx2", "-mfma", "-mf16c"], 256,
     ["znver3", "znver4", "skylake", "icelake-server", "sapphirerapids"]),
    ("kernels/f32-gemm/f32-gemm-nt-4x1-avx2.c", ["-mavx2", "-mfma", "-mf16c"], 256,
     ["znver3", "znver4", "skylake", "icelake-server", "sapphirerapids"]),
    ("kernels/f32-gemm/f32-gemm-12x32-avx512f.c", ["-mavx512f", "-mfma"], 512,
     ["znver4", "icelake-server", "sapphirerapids"]),
    ("kernels/f32-gemm/f32-gemm-nt-4x1-avx512f.c", ["-mavx512f", "-mfma"], 512,
     ["znver4", "icelake-server", "sapphirerapids"]),
    ("kernels/f32-gemm/f32-gemm-8x12-neon.c", [], 128, NEON_MODELS),
    ("kernels/f32-gemm/f32-gemm-nt-4x4-neon.c", [], 128, NEON_MODELS),
    # the BF16 unit (FEAT_BF16): Neoverse V1 and V2 have it, N1 and Apple M1 do not
    ("kernels/bf16-gemm/bf16-gemm-mmla-8x8-neonbf16.c", ["-march=armv8.2-a+bf16"], 128,
     ["neoverse-v1", "neoverse-v2"]),
    # AVX512-BF16: Zen 4/5 and Sapphire Rapids have it, Ice Lake does not
    ("kernels/bf16-gemm/bf16-gemm-dp-12x32-avx512bf16.c",
     ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma"], 512,
     ["znver4", "sapphirerapids"]),
]
# regions whose k step is a full tile: guarded by --check
GUARDED = {"f32_gemm_6x16__avx2.kstep", "f32_gemm_at_6x16__avx2.kstep", "f32_gemm_12x32__avx512f.kstep", "f32_gemm_at_12x32__avx512f.kstep",
           "f32_gemm_nt_4x1__avx2.kstep", "f32_gemm_nt_4x1__avx512f.kstep",
           "f32_gemm_8x12__neon.kstep", "f32_gemm_nt_4x4__neon.kstep",
           "bf16_gemm_mmla_8x8__neonbf16.kstep", "bf16_gemm_dp_12x32__avx512bf16.kstep"}
LIMIT = 1.15

FMA_RE = re.compile(r"^\s*vfmadd\w+", re.M)
# AVX512-BF16's dot product: the "FMAs" of its k step
DPBF16_RE = re.compile(r"^\s*vdpbf16ps\s", re.M)
# x86 instructions with a memory operand: the loads of a k step (it stores nothing)
LOAD_RE = re.compile(r"^\s*v\w+\s+.*\(%\w+.*$", re.M)
FMLA_RE = re.compile(r"^\s*fmla\s+v\d+\.4s.*$", re.M)
# the BF16 unit's matrix multiply-accumulate: the "FMAs" of a BF16 k step
BFMMLA_RE = re.compile(r"^\s*bfmmla\s+v\d+\.4s.*$", re.M)


def region_asm(asm):
    """{name: instructions} of each LLVM-MCA region in an assembly file."""
    regions, cur, body = {}, None, []
    for line in asm.splitlines():
        m = re.search(r"LLVM-MCA-BEGIN\s+(\S+)", line)
        if m:
            cur, body = m.group(1), []
            continue
        if cur and "LLVM-MCA-END" in line:
            regions.setdefault(cur, "\n".join(body))
            cur = None
            continue
        if cur is not None:
            s = line.strip()
            if s and not s.startswith((".", "#", "//")) and not s.endswith(":"):
                body.append(line)
    return regions


def mca_cycles(mca, cpu, asm_text, march=None):
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write(asm_text + "\n")
        path = f.name
    try:
        arch = [f"-march={march}"] if march else []
        if march == "aarch64" and BFMMLA_RE.search(asm_text):
            arch.append("-mattr=+bf16")
        out = subprocess.run([mca, *arch, f"-mcpu={cpu}", "-iterations=200", path],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    m = re.search(r"Block RThroughput:\s*([\d.]+)", out)
    return float(m.group(1)) if m else float("nan")


def fma_bound(mca, cpu, width, n_fma, op="vfmadd231ps"):
    """Cycles of n_fma independent FMAs (or op) of the given width on the model."""
    reg = "zmm" if width == 512 else "ymm"
    lines = [f"{op} %{reg}{30 if width == 512 else 14}, %{reg}{15}, %{reg}{i % 12}"
             for i in range(n_fma)]
    return mca_cycles(mca, cpu, "\n".join(lines))


def load_bound(mca, cpu, width, n_loads):
    """Cycles of n_loads independent vector loads of the given width on the
    model: a k step that reads more vectors than it has FMAs (the dot-product
    kernel that takes one key at a time reloads the rows of A from L1) is
    bound by the load ports, not the FMA pipes."""
    reg = "zmm" if width == 512 else "ymm"
    lines = [f"vmovups {64 * i}(%rsi), %{reg}{i % 12}" for i in range(n_loads)]
    return mca_cycles(mca, cpu, "\n".join(lines))


def fma_bound_neon(mca, cpu, fmlas):
    """Cycles of the region's 128-bit FMLAs (or BFMMLAs) alone, or of as many
    independent ones of the vector form, whichever the model prices lower."""
    if fmlas and BFMMLA_RE.match(fmlas[0]):
        vector = [f"bfmmla v{i % 24}.4s, v30.8h, v31.8h" for i in range(len(fmlas))]
    else:
        vector = [f"fmla v{i % 24}.4s, v30.4s, v31.4s" for i in range(len(fmlas))]
    return min(mca_cycles(mca, cpu, "\n".join(vector), "aarch64"),
               mca_cycles(mca, cpu, "\n".join(fmlas), "aarch64"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    ap.add_argument("--cc-aarch64", default="aarch64-linux-gnu-gcc")
    ap.add_argument("--out")
    args = ap.parse_args()
    mca = shutil.which("llvm-mca-16")
    if mca is None:
        # exit 77: CTest reports the guard as skipped, with this reason
        print("mca: SKIPPED: llvm-mca-16 not found (Debian package llvm-16, installed by "
              "scripts/setup.sh)", file=sys.stderr)
        return 77
    rows, failures, notes = [], [], []
    have_cc_aarch64 = shutil.which(args.cc_aarch64) is not None
    for src, flags, width, cpus in KERNELS:
        neon = width == 128
        if neon and not have_cc_aarch64:
            notes.append(f"{src}: not compiled, {args.cc_aarch64} not found (Debian package "
                         "gcc-aarch64-linux-gnu: scripts/setup.sh --cross)")
            continue
        cc = args.cc_aarch64 if neon else args.cc
        cmd = [cc, "-O3", "-S", "-o", "-", "-DMHA_MCA", "-std=c11", "-D_DEFAULT_SOURCE",
               f"-I{ROOT}/kernels", f"-I{ROOT}/include", *flags, os.path.join(ROOT, src)]
        asm = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for name, body in sorted(region_asm(asm).items()):
            fmlas = (FMLA_RE.findall(body) or BFMMLA_RE.findall(body)) if neon else []
            n_dp = 0 if neon else len(DPBF16_RE.findall(body))
            n_fma = len(fmlas) if neon else (n_dp or len(FMA_RE.findall(body)))
            for cpu in cpus:
                cyc = mca_cycles(mca, cpu, body, "aarch64" if neon else None)
                if not n_fma:
                    bound = float("nan")
                elif neon:
                    bound = fma_bound_neon(mca, cpu, fmlas)
                else:
                    n_loads = len(LOAD_RE.findall(body))
                    bound = fma_bound(mca, cpu, width, n_fma, "vdpbf16ps" if n_dp else "vfmadd231ps")
                    if n_loads > n_fma:
                        bound = max(bound, load_bound(mca, cpu, width, n_loads))
                ratio = cyc / bound if n_fma else float("nan")
                rows.append((name, cpu, n_fma, cyc, bound, ratio))
                if args.check and name in GUARDED and not ratio <= LIMIT:
                    failures.append(f"{name} on {cpu}: {cyc:.2f} cycles vs bound {bound:.2f} "
                                    f"({ratio:.2f}x > {LIMIT}x)")
    lines = ["| region | model | FMAs | predicted cycles | bound | ratio |",
             "|---|---|---|---|---|---|"]
    for name, cpu, n_fma, cyc, bound, ratio in rows:
        b = f"{bound:.2f}" if n_fma else "—"
        r = f"{ratio:.2f}" if n_fma else "—"
        lines.append(f"| {name} | {cpu} | {n_fma} | {cyc:.2f} | {b} | {r} |")
    table = "\n".join(lines)
    print(f"llvm-mca-16 predictions ({args.cc} -O3; NEON: {args.cc_aarch64} -O3), "
          "cycles per region iteration:")
    print(table)
    for msg in notes:
        print("mca: note: " + msg)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    for msg in failures:
        print("mca: FAILED: " + msg, file=sys.stderr)
    if args.check:
        guarded = sum(1 for r in rows if r[0] in GUARDED)
        if guarded == 0:
            print("mca: FAILED: no guarded region found (markers missing?)", file=sys.stderr)
            return 1
        print(f"mca: {guarded - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
