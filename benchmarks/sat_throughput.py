"""Throughput of Segment Attribution Table rows: N synthetic saliency maps (default 10,000 of 384×384) with S
named segments each (default 20), streamed in batches through the batched reduction and the dataset aggregate.

Segments come as label maps ([B, H, W] uint8, bincounts) and as overlapping binary masks ([B, S, H, W] bool,
matrix products); see :mod:`fss_attr.sat.reduce` for how each runs on CPU and GPU. Inputs are drawn once into a
pool of ``--pool`` maps (blocky random segments, smooth random saliency; 64 maps with their masks take ~240 MB,
well beyond the caches) and cycled, so the timing measures the SAT, not the random number generator; every batch
is a fresh call (normalisation, reduction, aggregation into the dataset table), and nothing but the aggregate is
kept across batches. Prints one table row per segment form.

    PYTHONPATH=. .venv/bin/python benchmarks/sat_throughput.py [--n 10000] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from fss_attr.sat import SATAccumulator, label_stats, mask_stats, plain_table


def synthetic_pool(pool: int, size: int, segments: int, device, seed: int = 0):
    """maps [P, H, W] float32 >= 0, labels [P, H, W] uint8 in 0..S-1, masks [P, S, H, W] bool (overlapping)."""
    g = torch.Generator().manual_seed(seed)
    cells = max(1, size // 16)
    coarse = torch.rand(pool, 1, cells, cells, generator=g)
    maps = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0] ** 2
    labels = torch.randint(0, segments, (pool, 1, cells, cells), generator=g).float()
    labels = F.interpolate(labels, size=(size, size), mode="nearest")[:, 0].to(torch.uint8)
    field = torch.rand(pool, segments, cells, cells, generator=g)
    masks = F.interpolate(field, size=(size, size), mode="nearest") > 0.8      # ~20% each, overlapping
    masks |= F.one_hot(labels.long(), segments).permute(0, 3, 1, 2).bool()    # every label region too
    return maps.to(device), labels.to(device), masks.to(device)


def run(kind: str, n: int, batch: int, pool, names, classes, device) -> float:
    maps, labels, masks = pool
    p = maps.shape[0]
    acc = SATAccumulator()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        b = min(batch, n - done)
        start = done % p                                   # a view of the pool, no copy (p % batch == 0)
        sl = slice(start, start + b)
        if kind == "labels":
            stats = label_stats(maps[sl], labels[sl], names)
        else:
            stats = mask_stats(maps[sl], masks[sl], names)
        acc.update(stats, [classes[(done + i) % len(classes)] for i in range(b)])
        done += b
    sync()
    elapsed = time.perf_counter() - t0
    assert sum(r["n_images"] for r in acc.summary()) == n * len(names)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="maps (default 10000)")
    ap.add_argument("--size", type=int, default=384, help="map side (default 384)")
    ap.add_argument("--segments", type=int, default=20, help="segments per image (default 20)")
    ap.add_argument("--batch", type=int, default=32, help="maps per batch (default 32)")
    ap.add_argument("--pool", type=int, default=64, help="distinct synthetic maps cycled (default 64)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kinds", default="labels,masks", help="comma list of labels, masks")
    args = ap.parse_args()
    if args.pool % args.batch:
        ap.error("--pool must be a multiple of --batch")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pool = synthetic_pool(args.pool, args.size, args.segments, device)
    names = [f"segment{k:02d}" for k in range(args.segments)]
    classes = [f"class{k}" for k in range(10)]
    table = []
    for kind in args.kinds.split(","):
        run(kind, min(args.n, 2 * args.batch), args.batch, pool, names, classes, device)     # warm-up
        elapsed = run(kind, args.n, args.batch, pool, names, classes, device)
        table.append({"segments as": kind, "device": str(device), "threads": torch.get_num_threads(),
                      "maps": args.n, "size": f"{args.size}x{args.size}", "segments": args.segments,
                      "batch": args.batch, "seconds": round(elapsed, 2), "maps/s": round(args.n / elapsed, 1),
                      "Mpixel/s": round(args.n * args.size * args.size / elapsed / 1e6, 1)})
    print(plain_table(table, digits=2), end="")


if __name__ == "__main__":
    main()
