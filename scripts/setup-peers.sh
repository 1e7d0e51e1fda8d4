#!/usr/bin/env bash
# The benchmark's peers, from PyPI, into .venv-peers/ (git-ignored; nothing
# else on the machine changes): torch (with its CUDA runtime wheels: about
# 2.8 GB downloaded, 5.3 GB on disk; it runs on the CPU), onnxruntime, onnx,
# openvino (its CPU plugin; about 60 MB downloaded, 180 MB on disk), numpy.
# Used by scripts/bench.sh --peers only. A venv made before openvino joined gets
# it added (the packages it has already are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-peers
if [[ -x $venv/bin/python ]] && $venv/bin/python -c "import torch, onnxruntime, onnx, openvino, numpy" 2>/dev/null; then
  exit 0
fi
echo "setup-peers: installing torch, onnxruntime, onnx, openvino, numpy into $venv (about 3 GB of downloads)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q numpy onnx onnxruntime openvino torch
