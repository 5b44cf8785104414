"""Times every CPU kernel version of the back-projection ops, and the composite correlation op against the same
ATen composition in Python (docs/ops.md, "Kernel versions" and "correlation"). One torch thread, best of 5.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ops_versions.py
"""
import time

import torch

from fss_attr.ops import torch_twin


def best(f, reps=5):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def forward_backward(fn, q, k):
    def run():
        qq, kk = q.clone().requires_grad_(), k.clone().requires_grad_()
        fn(qq, kk).square().sum().backward()
    return run


def main():
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    for q, m, top_k in [(576, 2880, 0), (576, 2880, 50)]:
        s = torch.randn(1, q, m, generator=gen) * 3
        w = torch.rand(1, 2, q, generator=gen)
        t = {v: best(lambda: torch.ops.fss_attr.backproject_scores(s, w, True, top_k, v)) for v in (1, 2)}
        print(f"backproject_scores float32 Q={q} M={m} top_k={top_k}: version 1 {t[1] * 1e3:.1f} ms, "
              f"version 2 {t[2] * 1e3:.1f} ms")
    for b, c, h, n, top_k, sim, relu in [(1, 512, 24, 1, 0, "cosine", True), (8, 64, 24, 1, 0, "dot", False),
                                         (1, 256, 24, 5, 10, "cosine", False)]:
        q, k = torch.randn(b, c, h, h, generator=gen), torch.randn(b, n, c, h, h, generator=gen)
        op = best(forward_backward(lambda a, s: torch.ops.fss_attr.correlation(a, s, sim, relu, top_k), q, k))
        twin = best(forward_backward(lambda a, s: torch_twin.correlation(a, s, sim, relu, top_k), q, k))
        print(f"correlation fwd+bwd B={b} C={c} {h}x{h} N={n} top_k={top_k} {sim} relu={relu}: "
              f"composite op {op * 1e3:.0f} ms, torch_twin {twin * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
