#!/usr/bin/env python3
"""Runs the code blocks of README.md against the built library (CTest readme-snippets).

Every fenced block with a language tag is run, or carries a mark that says why
not. Untagged fences (``` alone: a directory tree, a console transcript) are
text and are not run.

  ```python  All python blocks of a file run in order in one interpreter,
             as a reader types them (a later block may use the names of an
             earlier one), with the project's venv (.venv-py), the package
             from python/ and MHA_LIBRARY set to the built libmha.so. An
             exception fails the block, with the README's own line numbers.
  ```c       A complete program (it has a main): compiled with -std=c11
             -Wall -Wextra -Werror against include/mha.h, linked with the
             built libmha.so, and run; it must exit 0.
  ```sh      Run by bash -euo pipefail in a scratch directory, where $HOME
  ```cmake   is a scratch home with the build installed at $HOME/opt/mha and
             app.c is the README's first C program. A cmake block is the
             body of a project (after project() and add_executable(app
             app.c)), configured with CMAKE_PREFIX_PATH=$HOME/opt/mha, built
             and its app run.

Marks are HTML comments on the last non-blank line before the fence, so
they do not show on GitHub:
  <!-- snippet: skip (reason) -->   not run; the reason is printed
Keep them rare: a skipped block is a block that can go wrong unnoticed.

Docstring examples (>>> lines in the modules of python/mha) run with
doctest, in the same interpreter set-up as the python blocks.

Usage: run.py --source <checkout> --build <build dir> --library <libmha.so>
              --python <venv python> --cc <C compiler> --cmake <cmake>
              --work <scratch dir> [--libdir <CMAKE_INSTALL_LIBDIR>]
Exit status 0 when every block that runs passes, 1 otherwise.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap

FENCE = re.compile(r"^(\s*)```([A-Za-z0-9_+-]*)\s*$")
MARK = re.compile(r"^\s*<!--\s*snippet:\s*(\w[\w-]*)\s*(?:\((.*)\))?\s*-->\s*$")
RUN_LANGS = {"python", "c", "sh", "bash", "cmake"}


class Block:
    def __init__(self, path, line, lang, text, mark, reason):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.mark, self.reason = mark, reason

    @property
    def where(self):
        return f"{self.path}:{self.line}"


def blocks_of(path, display):
    """The fenced blocks of a Markdown file: (line of the first code line, ...)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise SystemExit(f"{display}:{i + 1}: a fence that is never closed")
        body = [l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = reason = None
        if k >= 0:
            mm = MARK.match(lines[k])
            if mm:
                mark, reason = mm.group(1), (mm.group(2) or "").strip()
        out.append(Block(display, i + 2, lang, "\n".join(body) + "\n", mark, reason))
        i = j + 1
    return out


def run(cmd, cwd, env, timeout=300):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout


PY_DRIVER = r'''
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
failed = 0
for b in blocks:
    # blank lines in front: tracebacks carry the README's line numbers
    src = "\n" * (b["line"] - 1) + b["text"]
    try:
        exec(compile(src, b["path"], "exec"), ns)
        print(f"PASS {b['path']}:{b['line']} (python)", flush=True)
    except BaseException:
        failed += 1
        print(f"FAIL {b['path']}:{b['line']} (python)", flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
sys.exit(1 if failed else 0)
'''

DOCTEST_DRIVER = r'''
# Only the modules whose docstrings hold >>> examples are imported (found with
# ast, without importing): a module with an optional dependency (mha.torch
# imports torch) costs nothing unless it has examples, and then, when the
# dependency is missing here, its examples are listed as skipped.
import ast, doctest, importlib, os, sys
import mha
root = os.path.dirname(mha.__file__)
finder = doctest.DocTestFinder()
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
modules = sorted(f[:-3] for f in os.listdir(root) if f.endswith(".py"))
examples, skipped = 0, []
for m in modules:
    tree = ast.parse(open(os.path.join(root, m + ".py"), encoding="utf-8").read())
    docs = [ast.get_docstring(n) or "" for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    if not any(">>>" in d for d in docs):
        continue
    name = "mha" if m == "__init__" else "mha." + m
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != "mha":
            skipped.append(f"{name} (needs {e.name}, not installed here)")
            continue
        raise
    for test in finder.find(module, name):
        if test.examples:
            examples += len(test.examples)
            runner.run(test)
r = runner.summarize(verbose=False)
print(f"docstrings: {examples} examples run from {len(modules)} modules of python/mha, "
      f"{r.failed} failed")
for s in skipped:
    print(f"docstrings: skipped {s}")
sys.exit(1 if r.failed else 0)
'''

SH_PRELUDE = "set -euo pipefail\n"

CMAKE_WRAPPER = """cmake_minimum_required(VERSION 3.22)
project(readme_snippet LANGUAGES C)
add_executable(app app.c)
# ---- the README's block ({where}) ----
{text}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--library", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--cc", required=True)
    ap.add_argument("--cmake", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--libdir", default="lib")
    ap.add_argument("--readme", action="append",
                    help="Markdown files, relative to --source (default: README.md)")
    args = ap.parse_args()
    source = os.path.abspath(args.source)
    work = os.path.abspath(args.work)
    library = os.path.abspath(args.library)
    args.build = os.path.abspath(args.build)
    for name in ("python", "cc", "cmake"):  # paths, not names looked up in PATH
        if os.sep in getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    env = dict(os.environ)
    env.pop("MHA_ISA", None)
    env.update(MHA_LIBRARY=library, PYTHONPATH=os.path.join(source, "python"),
               PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")

    blocks = []
    for rel in args.readme or ["README.md"]:
        blocks += blocks_of(os.path.join(source, rel), rel)

    results = []  # (block or label, status, note)
    failures = []

    def report(where, lang, status, note=""):
        results.append((where, lang, status, note))
        print(f"{status} {where} ({lang}){': ' + note if note else ''}", flush=True)

    runnable = []
    for b in blocks:
        if not b.lang:
            continue  # text
        if b.mark is not None:
            if b.mark != "skip" or not b.reason:
                report(b.where, b.lang, "FAIL", f"unknown mark '{b.mark}' or a skip without a "
                                                "reason: <!-- snippet: skip (reason) -->")
                failures.append(b.where)
            else:
                report(b.where, b.lang, "SKIP", b.reason)
            continue
        if b.lang not in RUN_LANGS:
            report(b.where, b.lang, "FAIL", f"a ```{b.lang} block this runner cannot run: mark it "
                                            "<!-- snippet: skip (reason) --> or untag it")
            failures.append(b.where)
            continue
        runnable.append(b)

    python_ok = os.access(args.python, os.X_OK)

    # python: one interpreter for all blocks, in order
    py = [b for b in runnable if b.lang == "python"]
    if py:
        if not python_ok:
            for b in py:
                report(b.where, "python", "FAIL", f"{args.python} is missing: run "
                                                  "scripts/setup-python.sh")
                failures.append(b.where)
        else:
            import json
            bdir = os.path.join(work, "python")
            os.makedirs(bdir)
            with open(os.path.join(bdir, "blocks.json"), "w") as f:
                json.dump([{"path": b.path, "line": b.line, "text": b.text} for b in py], f)
            with open(os.path.join(bdir, "driver.py"), "w") as f:
                f.write(PY_DRIVER)
            rc, out = run([args.python, "driver.py", "blocks.json"], bdir, env)
            sys.stdout.write(out)
            for b in py:
                ok = f"PASS {b.where} (python)" in out
                results.append((b.where, "python", "PASS" if ok else "FAIL", ""))
                if not ok:
                    failures.append(b.where)

    # C programs: the first one is also app.c for the sh and cmake blocks
    first_c = None
    for n, b in enumerate(b for b in runnable if b.lang == "c"):
        cdir = os.path.join(work, f"c{n}")
        os.makedirs(cdir)
        src = os.path.join(cdir, "snippet.c")
        with open(src, "w") as f:
            f.write(f"#line {b.line} \"{b.path}\"\n" + b.text)
        if not re.search(r"\bint\s+main\s*\(", b.text):
            report(b.where, "c", "FAIL", "not a complete program (no main): make it one, or "
                                         "mark it <!-- snippet: skip (reason) -->")
            failures.append(b.where)
            continue
        if first_c is None:
            first_c = b
        libdir = os.path.dirname(library)
        rc, out = run([args.cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-o",
                       os.path.join(cdir, "snippet"), src, "-I", os.path.join(source, "include"),
                       "-L", libdir, "-l:" + os.path.basename(library), "-Wl,-rpath," + libdir],
                      cdir, env)
        if rc != 0:
            report(b.where, "c", "FAIL", "does not compile:\n" + textwrap.indent(out, "    "))
            failures.append(b.where)
            continue
        rc, out = run([os.path.join(cdir, "snippet")], cdir, env)
        sys.stdout.write(textwrap.indent(out, "    "))
        if rc != 0:
            report(b.where, "c", "FAIL", f"exit status {rc}")
            failures.append(b.where)
        else:
            report(b.where, "c", "PASS")

    # sh and cmake: a scratch home with the build installed at $HOME/opt/mha
    shell = [b for b in runnable if b.lang in ("sh", "bash", "cmake")]
    if shell:
        home = os.path.join(work, "home")
        prefix = os.path.join(home, "opt", "mha")
        rc, out = run([args.cmake, "--install", args.build, "--prefix", prefix], work, env)
        if rc != 0:
            print(out)
            raise SystemExit("readme-snippets: cmake --install failed")
        if args.libdir != "lib" and not os.path.exists(os.path.join(prefix, "lib")):
            os.symlink(args.libdir, os.path.join(prefix, "lib"))
        senv = dict(env, HOME=home)
        senv.pop("PKG_CONFIG_PATH", None)
        senv.pop("CMAKE_PREFIX_PATH", None)
        for n, b in enumerate(shell):
            sdir = os.path.join(work, f"{b.lang}{n}")
            os.makedirs(sdir)
            if first_c is not None:
                with open(os.path.join(sdir, "app.c"), "w") as f:
                    f.write(first_c.text)
            if b.lang == "cmake":
                with open(os.path.join(sdir, "CMakeLists.txt"), "w") as f:
                    f.write(CMAKE_WRAPPER.format(where=b.where, text=b.text))
                steps = [[args.cmake, "-S", ".", "-B", "build", "-DCMAKE_C_COMPILER=" + args.cc,
                          "-DCMAKE_PREFIX_PATH=" + prefix],
                         [args.cmake, "--build", "build", "-j", "1"],
                         [os.path.join(sdir, "build", "app")]]
            else:
                with open(os.path.join(sdir, "snippet.sh"), "w") as f:
                    f.write(SH_PRELUDE + b.text)
                steps = [["bash", "snippet.sh"]]
            note = ""
            for cmd in steps:
                rc, out = run(cmd, sdir, senv)
                if rc != 0:
                    note = (f"{os.path.basename(cmd[0])} exited {rc}:\n"
                            + textwrap.indent(out[-4000:], "    "))
                    break
            if note:
                report(b.where, b.lang, "FAIL", note)
                failures.append(b.where)
            else:
                report(b.where, b.lang, "PASS")

    # docstring examples
    if python_ok:
        rc, out = run([args.python, "-c", DOCTEST_DRIVER], work, env)
        sys.stdout.write(out)
        if rc != 0:
            failures.append("python/mha docstrings")
    else:
        failures.append("python/mha docstrings (no venv)")

    counts = {}
    for _, _, status, _ in results:
        counts[status] = counts.get(status, 0) + 1
    print(f"readme-snippets: {counts.get('PASS', 0)} passed, {counts.get('FAIL', 0)} failed, "
          f"{counts.get('SKIP', 0)} skipped (of {len(blocks)} fenced blocks; "
          f"{sum(1 for b in blocks if not b.lang)} untagged, not code)")
    for where, lang, status, note in results:
        if status == "SKIP":
            print(f"  skipped {where} ({lang}): {note}")
    if failures:
        print("readme-snippets: FAILED: " + ", ".join(failures))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
