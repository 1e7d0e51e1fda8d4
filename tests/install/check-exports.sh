#!/usr/bin/env bash
# libmha.so must export the functions include/mha.h declares, and nothing else.
# Usage: check-exports.sh <nm> <cc> <mha.h> <libmha.so>
#
# The declared functions come from the preprocessed header (comments gone,
# macros expanded): every identifier mha_* followed by "(", less the static
# inline functions the header defines. The exports are
# `nm -D --defined-only`. A missing export (a declaration without MHA_API,
# hidden by -fvisibility=hidden) or an extra one (an internal function that
# leaks) fails, with the names printed.
set -euo pipefail
if (($# != 4)); then
  echo "usage: $0 <nm> <cc> <mha.h> <libmha.so>" >&2
  exit 2
fi
nm=$1 cc=$2 header=$3 lib=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the header's static inline functions (the initializers' wrappers) are the
# caller's own code, not exports
"$cc" -E -P -x c "$header" | tr '\n' ' ' |
  grep -oE 'static inline [A-Za-z0-9_ *]*\bmha_[A-Za-z0-9_]+[[:space:]]*\(' |
  grep -oE 'mha_[A-Za-z0-9_]+' | sort -u >"$tmp/inline"
"$cc" -E -P -x c "$header" | grep -oE '\bmha_[A-Za-z0-9_]+[[:space:]]*\(' |
  sed -E 's/[[:space:]]*\($//' | sort -u | comm -23 - "$tmp/inline" >"$tmp/declared"
n_declared=$(wc -l <"$tmp/declared")
if ((n_declared < 10)); then
  echo "check-exports: only $n_declared functions found in $header: the parse is wrong" >&2
  exit 1
fi

# Symbols the linker itself defines in every shared object.
printf '%s\n' _init _fini _edata _end __bss_start | sort >"$tmp/linker"
"$nm" -D --defined-only "$lib" | awk 'NF >= 3 { print $NF }' | sed 's/@.*//' | sort -u |
  comm -23 - "$tmp/linker" >"$tmp/exported"
n_exported=$(wc -l <"$tmp/exported")

status=0
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [[ -n $extra ]]; then
  echo "check-exports: $lib exports symbols that include/mha.h does not declare:" >&2
  sed 's/^/  /' <<<"$extra" >&2
  status=1
fi
if [[ -n $missing ]]; then
  echo "check-exports: functions of include/mha.h that $lib does not export (MHA_API missing?):" >&2
  sed 's/^/  /' <<<"$missing" >&2
  status=1
fi
# Exported functions must be plain functions in the text section.
not_text=$("$nm" -D --defined-only "$lib" | awk 'NF >= 3 && $(NF-1) != "T" { print }' |
           grep -vwF -f "$tmp/linker" || true)
if [[ -n $not_text ]]; then
  echo "check-exports: exports that are not functions:" >&2
  sed 's/^/  /' <<<"$not_text" >&2
  status=1
fi
if ((status == 0)); then
  echo "check-exports: $lib exports the $n_exported functions of $(basename "$header"), nothing else"
fi
exit $status
