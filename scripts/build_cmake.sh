#!/usr/bin/env bash
# Configure and build CMakeLists.txt (the libtorch library for C++ users) against the venv's torch.
# A CUDA build of torch makes TorchConfig look for the CUDA toolkit; this script points it at the real
# toolkit behind the nvcc wrapper and at the pip-installed NVRTC. Usage: bash scripts/build_cmake.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build_cmake}
PY=${PYTHON:-.venv/bin/python}
PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
ARGS=(-DCMAKE_PREFIX_PATH="$PREFIX" -Wno-dev)
if [ "$("$PY" -c 'import torch; print(torch.version.cuda or "")')" != "" ]; then
    NVCC=$(command -v nvcc || true)
    CUDA_ROOT=${CUDA_HOME:-}
    if [ -z "$CUDA_ROOT" ] && [ -n "$NVCC" ]; then
        CUDA_ROOT=$(grep -o '/[^ ]*/bin/nvcc' "$NVCC" | head -1 | sed 's#/bin/nvcc##' || true)
        [ -n "$CUDA_ROOT" ] || CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
    fi
    SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    NVRTC=$(ls "$SITE"/nvidia/cu13/lib/libnvrtc.so* 2>/dev/null | head -1 || true)
    ARGS+=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT" -DCMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc"
           -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
    [ -z "$NVRTC" ] || ARGS+=(-DCUDA_nvrtc_LIBRARY="$NVRTC")
fi
cmake -S . -B "$BUILD" "${ARGS[@]}"
cmake --build "$BUILD" -j"${MAX_JOBS:-2}"
"$PY" - "$BUILD" <<'PYEOF'
import sys, glob, torch
lib = glob.glob(f"{sys.argv[1]}/libfss_attr_ops*.so")[0]
torch.ops.load_library(lib)
s = torch.randn(1, 3, 4); w = torch.rand(1, 2, 3)
out = torch.ops.fss_attr.backproject_scores(s, w, True, 0)
ref = torch.bmm(w, torch.softmax(s, -1))
assert torch.allclose(out, ref, atol=1e-6), (out, ref)
print(f"CMake build OK: {lib} loads and computes backproject_scores")
PYEOF
