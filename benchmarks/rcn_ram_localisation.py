"""Do RAM's maps point at the object? A trained RCN on controlled test episodes, where every image's object
mask is known: for each query and its true class, the share of each map's positive mass on the object
(relevance mass) and whether its maximum lies on it (pointing game), for

- RAM's support map (w_r·s_r / K, upsampled) over the true class's K support images,
- AffEx (unmasked) on RCN's correlation, over the same images, with four query regions R: the whole query
  (degenerate: see fss_attr.fewshot.ram), every query cell a support region matched, the "evidence" cells
  (more than a uniform share of RAM's query map), and the query's object mask (ground truth),
- a uniform map (its relevance mass is the object's area fraction),
- RAM's query map (the true class's terms at the query cells they matched), over the query image;

plus the Spearman rank correlation between RAM's support regions and AffEx's region attribution (R = evidence).

    python benchmarks/rcn_ram_localisation.py --weights outputs/rcn/rcn_conv4_1shot.pt [--shots 1] [--episodes 100]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from fss_attr.fewshot.checkpoint import load_checkpoint
from fss_attr.data.classification.episodes import EpisodeSampler, PoolFeatures
from fss_attr.fewshot.ram import affex_maps, matched_region, region_activation_maps, upsample_maps
from fss_attr.data.classification.sources import open_pool
from fss_attr.metrics.localisation import pointing_game, relevance_mass


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman correlation of [B, n] tensors (ranks by argsort; ties broken by position)."""
    ra = a.argsort(1).argsort(1).double()
    rb = b.argsort(1).argsort(1).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--images-per-class", type=int, default=600)
    parser.add_argument("--cache", default="outputs/rcn/cache")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    model, _ = load_checkpoint(args.weights)
    pool = open_pool("controlled", "test", images_per_class=args.images_per_class, cache_dir=args.cache)
    features = PoolFeatures(model, pool)
    sampler = EpisodeSampler(pool, 5, args.shots, args.queries, args.seed)
    size = pool.image_size
    rows: dict[str, list[torch.Tensor]] = {}

    def add(name, values):
        rows.setdefault(name, []).append(values.double().cpu())

    for e in tqdm(range(args.episodes), desc="episodes"):
        spec = sampler.spec(e)
        out = model.explain_features(*features.gather(spec))
        ram = region_activation_maps(out)
        labels = spec.query_labels
        qn = labels.shape[0]
        s_masks = torch.stack([torch.stack([pool.mask(c, i) for i in ids]) for c, ids in
                               zip(spec.classes, spec.support)])[labels]                  # [Qn, K, H, W]
        q_masks = torch.stack([pool.mask(c, i) for c, ids in zip(spec.classes, spec.query) for i in ids])
        own = torch.arange(qn)
        ram_support = ram.support[own, labels]                                          # [Qn, K, h, w]
        affex = {}
        for where, region in (("whole query", None), ("matched cells", matched_region(out, labels, size, 0.0)),
                              ("evidence cells", matched_region(out, labels, size)), ("query object", q_masks)):
            affex[where] = affex_maps(out, labels, size, region=region)
        attribution = affex["evidence cells"][0]
        ram_up = upsample_maps(ram_support.double(), size)
        query_up = upsample_maps(ram.query[own, labels].sum(1).double(), size)[:, None]
        for name, maps, masks in (("RAM support map", ram_up, s_masks),
                                  *((f"AffEx, R = {w}", m[1], s_masks) for w, m in affex.items()),
                                  ("uniform support map", torch.ones_like(ram_up), s_masks),
                                  ("RAM query map", query_up, q_masks[:, None]),
                                  ("uniform query map", torch.ones_like(query_up), q_masks[:, None])):
            add(f"{name}|mass", relevance_mass(maps, masks))
            if not name.startswith("uniform"):
                add(f"{name}|point", pointing_game(maps, masks))
        add("rank correlation", spearman(ram_support.flatten(1), attribution.flatten(1)))
        add("accuracy", (out.scores.argmax(1) == labels).double())
    mean = {k: torch.cat(v) for k, v in rows.items()}
    n = mean["accuracy"].numel()
    print(f"{args.weights}: 5-way {args.shots}-shot, {args.episodes} controlled test episodes (seed {args.seed}), "
          f"{n} queries, accuracy {100 * mean['accuracy'].mean():.2f}%")
    print("| map (true class) | relevance mass on object ↑ | pointing game ↑ |")
    print("|---|---|---|")
    for name in ("RAM support map", "AffEx, R = whole query", "AffEx, R = matched cells", "AffEx, R = evidence cells",
                 "AffEx, R = query object", "uniform support map", "RAM query map", "uniform query map"):
        m = mean[f"{name}|mass"]
        p = mean.get(f"{name}|point")
        ci = lambda x: 1.96 * x.std().item() / np.sqrt(x.numel())  # noqa: E731
        point = "–" if p is None else f"{p.mean():.3f} ± {ci(p):.3f}"
        print(f"| {name} | {m.mean():.3f} ± {ci(m):.3f} | {point} |")
    r = mean["rank correlation"]
    print(f"Spearman correlation of RAM support regions with AffEx's region attribution (R = evidence cells): "
          f"mean {r.mean():.3f}, "
          f"median {r.median():.3f}")


if __name__ == "__main__":
    main()
