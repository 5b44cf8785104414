"""Deletion/insertion on the similarity score and pointing game on controlled pairs, per method.

Pairs: anchor and positive of :func:`fss_attr.similarity.controlled_triplets` (same object class, distinct
background photos; the negative, of another class, is used only by the triplet form). Both images of each
pair are explained against the other, so every figure averages 2·pairs maps. Model: EfficientNet-Lite0 up to
``--block`` + GAP + L2 normalisation, cosine similarity.

- DAUC / IAUC: area under the cosine similarity as the image's pixels are deleted (set to the zero
  substrate) / inserted in the map's order, ``--steps`` steps (lower DAUC, higher IAUC are better).
- pointing game: share of maps whose maximum lies on the image's object (the shared object);
  mass: share of the positive map on the object (fss_attr.metrics.localisation).
- "random" ranks pixels by uniform noise, "object area" is the share of pixels on the object (what a
  uniform map scores in relevance mass).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/similarity_eval.py --pairs 32 --size 128
"""
from __future__ import annotations

import argparse
import time

import torch

from fss_attr.metrics.localisation import pointing_game, relevance_mass
from fss_attr.metrics.perturbation import auc
from fss_attr.similarity import (SFAM, GradCAMSimilarity, GradientAttention, SpatialDecomposition,
                                 controlled_triplets, default_model, similarity_curves)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--block", type=int, default=15)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model = default_model(block=args.block)
    t = controlled_triplets(args.pairs, size=args.size, seed=args.seed)
    xa, xp, xn = t["anchor"], t["positive"], t["negative"]
    x = torch.cat([xa, xp])                      # the explained images
    partner = torch.cat([xp, xa])
    masks = torch.cat([t["anchor_mask"], t["positive_mask"]])
    maps = {}
    for name, m in {"SFAM": SFAM(), "spatial decomposition (Stylianou)": SpatialDecomposition(),
                    "Grad-CAM on similarity": GradCAMSimilarity(),
                    "gradient attention, pair": GradientAttention()}.items():
        ex = m.explain(model, xa, xp)
        maps[name] = torch.cat([ex.maps[:, 0], ex.maps[:, 1]])
    tri = GradientAttention(form="triplet").explain_triplets(model, xa, xp, xn)
    maps["gradient attention, triplet"] = torch.cat([tri.maps[:, 0], tri.maps[:, 1]])
    maps["random"] = torch.rand(x.shape[0], args.size, args.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s = torch.nn.functional.cosine_similarity(model(xa), model(xp))
    print(f"{args.pairs} controlled pairs at {args.size} px, EfficientNet-Lite0 block {args.block} + GAP, cosine; "
          f"mean pair similarity {float(s.mean()):.3f}; object area {float(masks.float().mean()):.3f} of pixels; "
          f"{args.steps} steps")
    print(f"{'method':<36}{'DAUC':>8}{'IAUC':>8}{'IAUC-DAUC':>11}{'pointing':>10}{'mass':>8}")
    for name, m in maps.items():
        d = auc(similarity_curves(model, x, partner, m, "deletion", args.steps)).mean()
        i = auc(similarity_curves(model, x, partner, m, "insertion", args.steps)).mean()
        pg = pointing_game(m[:, None], masks[:, None]).mean()
        mass = relevance_mass(m[:, None], masks[:, None]).mean()
        print(f"{name:<36}{float(d):>8.3f}{float(i):>8.3f}{float(i - d):>11.3f}{float(pg):>10.3f}{float(mass):>8.3f}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
