#!/usr/bin/env bash
# The benchmark's peers, from PyPI, into .venv-peers/ (git-ignored; nothing
# else on the machine changes): torch (with its CUDA runtime wheels: about
# 2.8 GB downloaded, 5.3 GB on disk; it runs on the CPU), onnxruntime, onnx,
# numpy. Used by scripts/bench.sh --peers only.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-peers
if [[ -x $venv/bin/python ]] && $venv/bin/python -c "import torch, onnxruntime, onnx, numpy" 2>/dev/null; then
  exit 0
fi
echo "setup-peers: installing torch, onnxruntime, onnx, numpy into $venv (about 2.9 GB of downloads)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q numpy onnx onnxruntime torch
