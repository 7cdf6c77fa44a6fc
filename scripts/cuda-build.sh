#!/usr/bin/env bash
# Build semroute with `--features cuda` on any x86-64 Linux machine, GPU or not, with the CUDA toolkit
# taken from PyPI (no system CUDA install needed). Extra arguments replace the cargo command line after
# `cargo`, e.g.:
#   scripts/cuda-build.sh                                   # cargo build --release --features cuda
#   scripts/cuda-build.sh clippy --release --all-targets -- -D warnings
# Env: CUDA_COMPUTE_CAP (default 90, H100/H200; set it to your GPU's), SEMROUTE_CUDA_DIR (toolkit and
# venv, default ~/.cache/semroute/cuda), CARGO_TARGET_DIR (default target/cuda).
#
# Why CUDA 13: the CUDA 12 nvcc wheels on PyPI carry ptxas and libnvvm but no `nvcc` driver; the CUDA 13
# wheels carry a whole toolkit tree. cudarc (through candle) knows CUDA up to 13.4. The result needs an
# NVIDIA driver that supports CUDA 13 (R580 or newer) and the CUDA 13 runtime, cuBLAS and cuRAND libraries
# on the GPU host: candle links them at build time, so the binary does not start without them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir="${SEMROUTE_CUDA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/semroute/cuda}"
cuda_version=13.4.92
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"

# 1. The toolkit wheels (about 1.2 GB installed), once per version.
if [ "$(cat "$dir/.version" 2>/dev/null)" != "$cuda_version" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
    "nvidia-cuda-nvcc==$cuda_version" "nvidia-cuda-crt==$cuda_version" "nvidia-nvvm==$cuda_version" \
    "nvidia-cuda-runtime==$cuda_version" "nvidia-cuda-nvrtc==$cuda_version" \
    "nvidia-cuda-cccl==13.3.5.0.6" "nvidia-cublas==13.10.0.20" "nvidia-curand==10.4.5.25"
  echo "$cuda_version" > "$dir/.version"
fi
cu13="$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"

# 2. A CUDA_HOME-shaped tree over the wheels: bin, include, nvvm; lib64 with the unversioned library names
# the linker asks for (the wheels carry only libX.so.N); and lib64/stubs/libcuda.so. libcuda is the
# driver's and no wheel has it, so, as the toolkit's own stub does, a library of every driver entry point
# cudarc declares, each returning CUDA_ERROR_STUB_LIBRARY, satisfies `-lcuda` at link time. The real
# driver's libcuda.so.1 replaces it at run time; never put the stub on a GPU host's library path.
root="$dir/root"
rm -rf "$root" && mkdir -p "$root/lib64/stubs"
for d in bin include nvvm; do ln -s "$cu13/$d" "$root/$d"; done
for f in "$cu13"/lib/*; do
  name="$(basename "$f")"
  ln -s "$f" "$root/lib64/$name"
  case "$name" in *.so.*) [ -e "$root/lib64/${name%%.so.*}.so" ] || ln -s "$name" "$root/lib64/${name%%.so.*}.so" ;; esac
done
cargo fetch --locked --quiet
cudarc="$(awk '/^name = "cudarc"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)"
cudarc_sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc"/src/driver/sys/mod.rs | head -1)"
{
  echo '/* Link-time stand-in for libcuda.so.1: every entry point returns CUDA_ERROR_STUB_LIBRARY (34). */'
  grep -oE '^\s+fn (cu[A-Za-z0-9_]+)\(' "$cudarc_sys" | sed -E 's/^\s+fn ([A-Za-z0-9_]+)\(/\1/' | sort -u |
    while read -r symbol; do echo "int $symbol(void) { return 34; }"; done
} > "$root/lib64/stubs/libcuda_stub.c"
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$root/lib64/stubs/libcuda.so" "$root/lib64/stubs/libcuda_stub.c"

# 3. What the build scripts read: nvcc on PATH (candle's kernels, cudarc's version check), CUDA_HOME for
# cudarc's library search paths, CUDA_COMPUTE_CAP (no GPU to ask here).
export PATH="$root/bin:$PATH" CUDA_HOME="$root" CUDARC_CUDA_VERSION=13040
if [ $# -eq 0 ]; then set -- build --release; fi
sub="$1"; shift
exec cargo "$sub" --locked --features cuda "$@"
