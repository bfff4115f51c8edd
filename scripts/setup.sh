#!/usr/bin/env bash
# Installs whatever is missing to build and run tinyllava: libtorch (Debian's libtorch-dev, unless LIBTORCH points
# at another libtorch), OpenBLAS (without it libtorch runs matmuls on the reference BLAS, ~20x slower), cmake and
# a C++ compiler, Intel MKL's vector maths (optional, from Debian non-free), the npm dependencies, the native addon and
# the compiled TypeScript. Safe to run repeatedly.
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

# Intel MKL's vector maths library: cos/sin exactly as PyTorch's official x86 builds compute them (float64 reference
# parity depends on it; see native/src/reference.cpp). Debian ships MKL in non-free (Ubuntu: multiverse), which is
# usually not enabled: the packages are fetched through a one-off sources list, leaving the system's apt
# configuration as it was. Optional — without MKL, cos/sin use libtorch's own kernels (last-bit differences).
mkl_pkgs=(libmkl-core libmkl-sequential libmkl-intel-lp64 libmkl-vml-cmpt)
have_mkl() { ldconfig -p | grep -q 'libmkl_intel_lp64\.so ' && ldconfig -p | grep -q 'libmkl_vml_cmpt\.so '; }
if [ -z "${TINYLLAVA_MKL_DIR:-}" ] && [ "${TINYLLAVA_VML:-}" != 0 ] && [ "$(uname -m)" = x86_64 ] && ! have_mkl; then
  component=""
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    case "${ID:-}" in debian) component=non-free ;; ubuntu) component=multiverse ;; esac
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null || [ -z "$component" ] || [ -z "${VERSION_CODENAME:-}" ]; then
    echo "tinyllava setup: Intel MKL not installed (optional: float64 reference parity needs it); on Debian/Ubuntu run" >&2
    echo "  this script as root, or install ${mkl_pkgs[*]} yourself / set TINYLLAVA_MKL_DIR" >&2
  else
    # the archive the system already uses (deb822 .sources or one-line .list), security archives excluded
    uri=$( (grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
            grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}') |
          grep -v security | head -n 1) || true
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    tmp=$(mktemp -d)
    mkdir "$tmp/parts"
    echo "deb $uri $VERSION_CODENAME $component" >"$tmp/mkl.list"
    apt_opts=(-o "Dir::Etc::SourceList=$tmp/mkl.list" -o "Dir::Etc::SourceParts=$tmp/parts")
    echo "tinyllava setup: installing ${mkl_pkgs[*]} from $VERSION_CODENAME $component"
    if DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -o APT::Get::List-Cleanup=0 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${mkl_pkgs[@]}" >/dev/null; then
      :
    else
      echo "tinyllava setup: could not install MKL (optional; cos/sin will use libtorch's kernels)" >&2
    fi
    rm -rf "$tmp"
  fi
fi

# `--test` (npm test): what only the tests need — Debian's Chromium for the web page's browser test
# (test/serving/browser.test.ts, driven by playwright-core). Not root and missing: say so; that test then fails with
# the same instruction.
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "tinyllava setup: /usr/bin/chromium is missing (the browser test needs it); run this script as root, or: sudo apt-get install -y chromium" >&2
  else
    echo "tinyllava setup: installing chromium with apt-get (for the browser test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  fi
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
