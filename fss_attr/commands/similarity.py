"""``fss-attr similarity``: explain the similarity of a controlled pair under EfficientNet-Lite0 + GAP, offline."""
from __future__ import annotations

import json
from pathlib import Path

NAME = "similarity"
HELP = ("explain the similarity of a controlled pair (EfficientNet-Lite0 + GAP) with SFAM, gradient attention, "
        "the spatial decomposition and Grad-CAM; writes a PNG and a JSON")


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0, help="pair seed (default 0)")
    parser.add_argument("--size", type=int, default=192, help="image side in pixels (default 192)")
    parser.add_argument("--block", type=int, default=15,
                        help="EfficientNet-Lite0 block whose output is the feature map (0..15, default 15)")
    parser.add_argument("--similarity", default="cosine", help="cosine, dot or neg_sq_euclidean (default cosine)")
    parser.add_argument("--out", default="outputs/similarity", help="output folder (default outputs/similarity)")


def run(args) -> int:
    import torch

    from fss_attr.metrics.localisation import pointing_game
    from fss_attr.similarity import (SFAM, GradCAMSimilarity, GradientAttention, SpatialDecomposition,
                                     controlled_triplets, default_model)
    from fss_attr.similarity.plot import plot_pair

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = default_model(block=args.block)
    t = controlled_triplets(1, size=args.size, seed=args.seed)
    x1, x2, xn = t["anchor"], t["positive"], t["negative"]
    masks = (t["anchor_mask"][0], t["positive_mask"][0])
    methods = {"SFAM": SFAM(args.similarity), "gradient attention": GradientAttention(args.similarity),
               "spatial decomposition": SpatialDecomposition(args.similarity),
               "Grad-CAM (similarity)": GradCAMSimilarity(args.similarity)}
    maps, scores, hits = {}, {}, {}
    for name, method in methods.items():
        ex = method.explain(model, x1, x2)
        maps[name], scores[name] = ex.maps[0], float(ex.scores[0])
    tri = GradientAttention(args.similarity, form="triplet").explain_triplets(model, x1, x2, xn)
    maps["gradient attention (triplet)"] = tri.maps[0, :2]
    evidence = torch.stack(masks)
    for name, m in maps.items():
        hits[name] = [bool(h) for h in pointing_game(m[:, None], evidence[:, None])]
    figure = plot_pair(x1[0], x2[0], maps, out / "similarity.png", scores, masks,
                       title=f"EfficientNet-Lite0 block {args.block} + GAP, class '{t['classes'][0]}', "
                             f"{args.similarity}")
    report = {"class_name": t["classes"][0], "seed": args.seed, "size": args.size, "block": args.block,
              "similarity": args.similarity, "scores": scores, "pointing_game_hits": hits, "figure": str(figure)}
    (out / "similarity.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("class_name", "scores", "pointing_game_hits")}, indent=2))
    print(f"figure: {figure}")
    return 0

