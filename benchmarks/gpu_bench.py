"""GPU benchmark table: per op and size, time (CUDA events, median), achieved GB/s or TFLOP/s and the ratio
to ceilings measured in the same run (device-to-device copy, fp32 and bf16 matrix products); the whole
DCAMA-like explanation on cuda and torch; literal on its 48² level. Run by benchmarks/gpu_suite.sh."""
from __future__ import annotations

import statistics
import sys
import warnings

import torch

warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")

from fss_attr import AffinityExplainer  # noqa: E402
from fss_attr.testing import dcama_like_levels, random_level, random_masks, random_region  # noqa: E402


def cuda_time(fn, warmup=3, reps=20) -> float:
    """Median seconds of fn() by CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def main() -> int:
    dev = "cuda"
    rows = []
    n = 1 << 28  # 1 GiB of float32
    x = torch.empty(n, device=dev)
    y = torch.empty_like(x)
    t = cuda_time(lambda: y.copy_(x))
    copy_bw = 2 * n * 4 / t
    rows.append(("ceiling: device copy 1 GiB", t, f"{copy_bw / 1e9:.0f} GB/s", "1.00"))
    x = y = None  # free the 2 GiB
    ceilings = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a = torch.randn(8192, 8192, device=dev, dtype=dtype)
        t = cuda_time(lambda: a @ a, reps=10)
        ceilings[name] = 2 * 8192 ** 3 / t
        rows.append((f"ceiling: {name} matmul 8192³", t, f"{ceilings[name] / 1e12:.1f} TFLOP/s", "1.00"))
        del a

    g = torch.Generator().manual_seed(0)
    for side in (48, 24, 12):
        q, m = side * side, 5 * side * side
        s = torch.randn(1, q, m, generator=g).to(dev)
        w = torch.rand(1, 2, q, generator=g).to(dev)
        for top_k in (0, 100):
            t = cuda_time(lambda: torch.ops.fss_attr.backproject_scores(s, w, True, top_k))
            bw = q * m * 4 / t  # bytes of reading the scores once
            rows.append((f"backproject_scores {side}² 5-shot top_k={top_k}", t, f"{bw / 1e9:.0f} GB/s",
                         f"{bw / copy_bw:.2f}"))
        t = cuda_time(lambda: torch.bmm(w, torch.softmax(s, -1)))
        rows.append((f"torch softmax+bmm {side}² 5-shot", t, f"{q * m * 4 / t / 1e9:.0f} GB/s",
                     f"{q * m * 4 / t / copy_bw:.2f}"))
    for side, d in ((48, 256), (24, 512), (12, 1024)):
        q, m = side * side, 5 * side * side
        qf = torch.randn(1, q, d, generator=g).to(dev)
        kf = torch.randn(1, m, d, generator=g).to(dev)
        w = torch.rand(1, 2, q, generator=g).to(dev)
        flops = 4 * q * m * d  # two passes over the scores (row statistics, then column sums)
        for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            a, b = qf.to(dtype), kf.to(dtype)
            t = cuda_time(lambda: torch.ops.fss_attr.backproject_features(a, b, w, "dot", 1 / 16, False, True, 0))
            rows.append((f"backproject_features {side}² D={d} {name} (2 passes)", t,
                         f"{flops / t / 1e12:.1f} TFLOP/s", f"{flops / t / ceilings[name]:.2f}"))

    region = random_region(1, (384, 384), device=dev)
    masks = random_masks(1, 5, (384, 384), device=dev)
    for features, dtype in ((False, torch.float32), (True, torch.float32), (True, torch.bfloat16)):
        levels = dcama_like_levels(5, features=features, device=dev, dtype=dtype)
        for backend in ("cuda", "torch"):
            ex = AffinityExplainer("masked", backend=backend)
            t = cuda_time(lambda: ex.explain_levels(levels, region, masks), reps=10)
            source = f"features {str(dtype).removeprefix('torch.')}" if features else "scores float32"
            rows.append((f"DCAMA-like 22 levels 5-shot from {source} [{backend}]", t, "", ""))
    lv = random_level(1, 5, (48, 48), (48, 48), generator=g, device=dev)
    for backend in ("cuda", "torch", "literal"):
        ex = AffinityExplainer("unmasked", backend=backend)
        t = cuda_time(lambda: ex.explain_levels([lv], region, masks), warmup=1, reps=1 if backend == "literal" else 10)
        rows.append((f"one 48² level 5-shot from scores [{backend}]", t, "", ""))

    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("| case | time (ms) | achieved | ratio to ceiling |")
    print("|---|---:|---:|---:|")
    for name, t, ach, ratio in rows:
        print(f"| {name} | {t * 1e3:.3f} | {ach} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
