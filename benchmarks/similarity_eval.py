"""Deletion/insertion on the similarity score and pointing game on controlled pairs, per method.

Pairs: anchor and positive of :func:`fss_attr.similarity.controlled_triplets` (the same object class on
different background photos, every distractor of a class no other image of the triplet shows; the negative,
of another class, is used only by the triplet form). Both images of each pair are explained against the
other, so every figure averages 2·pairs maps. Model: EfficientNet-Lite0 (``--layer``) + GAP + L2
normalisation, cosine similarity.

- DAUC / IAUC: area under the cosine similarity as the image's pixels are deleted (set to the zero
  substrate) / inserted in the map's order, ``--steps`` steps (lower DAUC, higher IAUC are better).
- pointing: share of maps whose maximum lies on the image's object (the shared object);
  on distractor: share whose maximum lies on a distractor (an object the partner does not show);
  mass: share of the positive map on the object (fss_attr.metrics.localisation).
- "random" ranks pixels by uniform noise; the object's share of the pixels is printed above the table (what a
  uniform map scores in mass; pointing at random hits the object about that often).

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/similarity_eval.py --pairs 32 --size 192
"""
from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from fss_attr.commands.similarity import layer_arg, layer_label
from fss_attr.similarity import controlled_triplets, default_model, pair_maps, pair_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--layer", type=layer_arg, default="head", help="'head' or an EfficientNet-Lite0 block 0..15")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16, help="pairs explained per call")
    p.add_argument("--same-tol", type=float, default=1e-5,
                   help="maps within this of an earlier method's everywhere reuse its row (default 1e-5)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model = default_model(layer=args.layer)
    t = controlled_triplets(args.pairs, size=args.size, seed=args.seed)
    xa, xp = t["anchor"], t["positive"]
    x, partner = torch.cat([xa, xp]), torch.cat([xp, xa])             # each image against the other
    objects = torch.cat([t["anchor_mask"], t["positive_mask"]])
    distractors = torch.cat([t["anchor_distractors"], t["positive_distractors"]])
    maps, scores = {}, []
    for i in tqdm(range(0, args.pairs, args.batch), desc="explain", leave=False):
        sl = slice(i, i + args.batch)
        m, s = pair_maps(model, xa[sl], xp[sl], t["negative"][sl])
        for name, v in m.items():
            maps.setdefault(name, []).append(v)
        scores.append(s["SFAM"])
    scores = torch.cat(scores)
    maps = {name: torch.cat([c[:, 0], c[:, 1]]) for name, c in ((n, torch.cat(v)) for n, v in maps.items())}
    maps["random"] = torch.rand(x.shape[0], args.size, args.size, generator=torch.Generator().manual_seed(0))
    layer = layer_label(args.layer)
    print(f"{args.pairs} controlled pairs ({2 * args.pairs} maps) at {args.size} px, EfficientNet-Lite0 {layer} "
          f"+ GAP, cosine; mean pair similarity {float(scores.mean()):.3f}; object {float(objects.float().mean()):.3f}"
          f" and distractors {float(distractors.float().mean()):.3f} of the pixels; {args.steps} steps")
    print(f"{'method':<32}{'DAUC':>8}{'IAUC':>8}{'IAUC-DAUC':>11}{'pointing':>10}{'on distr.':>11}{'mass':>8}")
    done = {}
    for name, m in tqdm(maps.items(), desc="evaluate", leave=False):
        same = next((other for other in done if float((maps[other] - m).abs().max()) <= args.same_tol), None)
        if same is None:
            done[name] = {k: float(v.mean()) for k, v in pair_metrics(model, x, partner, m, objects, distractors,
                                                                       args.steps).items()}
        r = done[same or name]
        note = "" if same is None else f"  (maps equal {same}'s within {args.same_tol:g}: row reused)"
        print(f"{name:<32}{r['dauc']:>8.3f}{r['iauc']:>8.3f}{r['iauc'] - r['dauc']:>11.3f}{r['pointing']:>10.3f}"
              f"{r['on_distractor']:>11.3f}{r['mass']:>8.3f}{note}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
