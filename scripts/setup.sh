#!/usr/bin/env bash
# Installs whatever is missing to build and run tinyllava: libtorch (Debian's libtorch-dev, unless LIBTORCH points
# at another libtorch), OpenBLAS (without it libtorch runs matmuls on the reference BLAS, ~20x slower), cmake and
# a C++ compiler, the npm dependencies, the native addon and the compiled TypeScript. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
if [ -z "${LIBTORCH:-}" ]; then
  [ -f /usr/include/torch/csrc/api/include/torch/version.h ] || need_apt+=(libtorch-dev)
  # the pthread OpenBLAS provides libblas.so.3 through Debian's alternatives; libtorch picks it up from there
  [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] || [ -e /usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3 ] || need_apt+=(libopenblas0-pthread)
fi
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tinyllava setup: missing ${need_apt[*]}; run as root, or: sudo apt-get install -y ${need_apt[*]}" >&2
    echo "  (or set LIBTORCH=/path/to/libtorch to build against another libtorch)" >&2
    exit 1
  fi
  echo "tinyllava setup: installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "tinyllava setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

node scripts/build-native.mjs
# compile the TypeScript for the `tinyllava` command when sources changed
if [ ! -f dist/src/cli/main.js ] || [ -n "$(find src -newer dist/src/cli/main.js -name '*.ts' -print -quit)" ]; then
  npx tsc -p tsconfig.json
fi
