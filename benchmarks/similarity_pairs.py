"""All B×B pairs of a batch in one call against a per-pair autograd loop (Grad-CAM style), same run.

The loop is what users write today: for each unordered pair (i, j), run both images through the backbone,
take the similarity of the two embeddings as a scalar target, backpropagate to the last feature map, and
build both Grad-CAM maps (relu, upsampling, min-max). Covering all B² ordered maps takes B(B+1)/2 such
pairs; the loop is timed on ``--loop-pairs`` of them and extrapolated (printed as such). Images are random
normalised tensors (timings do not depend on content).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/similarity_pairs.py --batch 64 --size 128
"""
from __future__ import annotations

import argparse
import time

import torch

from fss_attr.similarity import (SFAM, GradCAMSimilarity, GradientAttention, SpatialDecomposition, default_model,
                                 similarity)
from fss_attr.similarity.explainers import finalize


def loop_pair(model, xi, xj, kind):
    """Both Grad-CAM maps [2, H, W] of one pair, autograd through the head (backbone forward per pair)."""
    with torch.no_grad():
        a = model.features(torch.stack([xi, xj]))
    a = a.clone().requires_grad_(True)
    e = model.head(a)
    s = similarity(e[0], e[1], kind)
    (grad,) = torch.autograd.grad(s, a)
    raw = (grad.mean((-2, -1))[..., None, None] * a.detach()).sum(1)
    return raw, finalize(raw, xi.shape[-2:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--block", type=int, default=15)
    p.add_argument("--loop-pairs", type=int, default=32, help="unordered pairs the loop is timed on")
    p.add_argument("--similarity", default="cosine")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = default_model(block=args.block, device=dev)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, batch {args.batch}, {args.size} px, "
          f"EfficientNet-Lite0 block {args.block} + GAP, {args.similarity}")
    methods = {"sfam": SFAM(args.similarity), "gradient_attention": GradientAttention(args.similarity),
               "spatial_decomposition": SpatialDecomposition(args.similarity),
               "gradcam_vmap": GradCAMSimilarity(args.similarity)}
    results = {}
    for name, m in methods.items():
        m.explain_all_pairs(model, x[:4])  # warm-up
        sync()
        t0 = time.perf_counter()
        ex = m.explain_all_pairs(model, x)
        sync()
        results[name] = (time.perf_counter() - t0, ex)
    b = args.batch
    pairs = [(i, j) for i in range(b) for j in range(i, b)]
    step = max(1, len(pairs) // args.loop_pairs)
    subset = pairs[::step][: args.loop_pairs]
    loop_pair(model, x[0], x[1], args.similarity)  # warm-up
    sync()
    t0 = time.perf_counter()
    loop_maps = [loop_pair(model, x[i], x[j], args.similarity) for i, j in subset]
    sync()
    per_pair = (time.perf_counter() - t0) / len(subset)
    loop_total = per_pair * len(pairs)
    ref = results["gradient_attention"][1].raw
    err = max(max(float((raw[0] - ref[i, j]).abs().max()), float((raw[1] - ref[j, i]).abs().max()))
              for (raw, _), (i, j) in zip(loop_maps, subset)) / float(ref.abs().max())
    t0 = time.perf_counter()
    finalize(ref, x.shape[-2:])
    t_final = time.perf_counter() - t0
    print(f"per-pair autograd loop: {per_pair * 1e3:.1f} ms/pair on {len(subset)} pairs -> "
          f"{loop_total:.1f} s extrapolated to all {len(pairs)} unordered pairs ({b * b} maps); "
          f"max |loop raw - all-pairs gradient attention raw| / max |raw| = {err:.1e}")
    print(f"of each all-pairs time, relu + upsampling + min-max of the {b * b} maps to {args.size} px takes "
          f"about {t_final:.3f} s")
    print(f"{'method':<24}{'all pairs, one call (s)':>26}{'speed-up vs loop':>20}")
    for name, (t, _) in results.items():
        print(f"{name:<24}{t:>26.3f}{loop_total / t:>19.0f}x")


if __name__ == "__main__":
    main()
