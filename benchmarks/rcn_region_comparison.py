"""RCN's region comparison: one fss_attr correlation call for all (query, support) pairs of an episode
(queries stacked along the grid height) against one call per pair, forward and forward+backward.

    python benchmarks/rcn_region_comparison.py [--threads 1] [--repeats 5]

Prints a markdown table (milliseconds, median of ``--repeats``) and checks that both give the same s_r.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from fss_attr import ops
from fss_attr.fewshot.rcn import compare_regions


def per_pair(query: torch.Tensor, support: torch.Tensor, backend: str) -> torch.Tensor:
    """s [Qn, S, R] with one correlation call per (query, support) pair."""
    rows = []
    for i in range(query.shape[0]):
        row = []
        for j in range(support.shape[0]):
            corr = ops.correlation(query[i:i + 1], support[None, j:j + 1], "cosine", backend=backend)
            row.append(corr.flatten(1, 2).flatten(2).amax(1)[0])              # [R]
        rows.append(torch.stack(row))
    return torch.stack(rows)


def batched(query: torch.Tensor, support: torch.Tensor, backend: str) -> torch.Tensor:
    return compare_regions(query, support, backend).similarity


def timed(fn, repeats: int, backward: bool) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if backward:
            out.sum().backward()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b for b in ops.available_backends() if b != "literal"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, 5×5 grids, backends {backends}")
    print("| episode | C | pairs | backend | batched fwd (ms) | per-pair fwd (ms) | batched fwd+bwd (ms) | "
          "per-pair fwd+bwd (ms) | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for name, qn, s in (("5-way 1-shot, 15 queries/class", 75, 5), ("5-way 5-shot, 15 queries/class", 75, 25)):
        for c in (64, 640):
            query = torch.randn(qn, c, 5, 5, generator=g).relu().requires_grad_(True)
            support = torch.randn(s, c, 5, 5, generator=g).relu().requires_grad_(True)
            for backend in backends:
                diff = (batched(query, support, backend) - per_pair(query, support, backend)).abs().max().item()
                cells = [timed(lambda: f(query, support, backend), args.repeats, bwd)
                         for bwd in (False, True) for f in (batched, per_pair)]
                print(f"| {name} | {c} | {qn * s} | {backend} | " + " | ".join(f"{t:.1f}" for t in cells)
                      + f" | {diff:.1e} |")


if __name__ == "__main__":
    main()
