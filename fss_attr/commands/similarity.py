"""``fss-attr similarity``: explain the similarity of a controlled pair under EfficientNet-Lite0 + GAP, offline."""
from __future__ import annotations

import json
from pathlib import Path

NAME = "similarity"
HELP = ("explain the similarity of a controlled pair (EfficientNet-Lite0 + GAP) with SFAM, gradient attention "
        "(pair and triplet), the spatial decomposition and Grad-CAM; writes a PNG and a JSON")


def layer_label(layer) -> str:
    """How a ``layer_arg`` value reads in a table title: "head" or "block i"."""
    return "head" if layer == "head" else f"block {layer}"


def layer_arg(text: str):
    """'head' or a block index 0..15."""
    if text == "head":
        return text
    try:
        block = int(text)
    except ValueError:
        block = -1
    if not 0 <= block <= 15:
        import argparse

        raise argparse.ArgumentTypeError(f"must be 'head' or a block index 0..15, got {text!r}")
    return block


def add_arguments(parser):
    from fss_attr.backbones.efficientnet import MIN_IMAGE_SIDE
    from fss_attr.similarity.measures import SIMILARITIES
    from fss_attr.validation import option_int

    parser.add_argument("--seed", type=option_int(0), default=0, help="triplet seed >= 0 (default 0)")
    parser.add_argument("--size", type=option_int(MIN_IMAGE_SIDE, what="EfficientNet-Lite0's smallest input"),
                        default=192, help=f"image side in pixels, >= {MIN_IMAGE_SIDE} (default 192)")
    parser.add_argument("--layer", type=layer_arg, default="head",
                        help="EfficientNet-Lite0 feature map: 'head' (1280 channels after the head convolution, "
                             "default) or a block index 0..15")
    parser.add_argument("--similarity", default="cosine", choices=SIMILARITIES, help="default cosine")
    parser.add_argument("--out", default="outputs/similarity", help="output folder (default outputs/similarity)")


def run(args) -> int:
    import torch

    from fss_attr.metrics.localisation import pointing_game
    from fss_attr.similarity import controlled_triplets, default_model
    from fss_attr.similarity.evaluation import TRIPLET, pair_maps
    from fss_attr.similarity.measures import similarity
    from fss_attr.similarity.plot import plot_pair
    from fss_attr.validation import check_output_folder

    check_output_folder("--out", args.out)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = default_model(layer=args.layer)
    t = controlled_triplets(1, size=args.size, seed=args.seed)
    maps, scores = pair_maps(model, t["anchor"], t["positive"], t["negative"], args.similarity, whole_triplet=True)
    maps = {name: m[0] for name, m in maps.items()}
    with torch.no_grad():
        e = {role: model(t[role]) for role in ("anchor", "positive", "negative")}
    pair_similarity = {f"{a}_{b}": float(similarity(e[a], e[b], args.similarity)[0])
                       for a, b in (("anchor", "positive"), ("anchor", "negative"), ("positive", "negative"))}
    triplet = [float(v) for v in scores[TRIPLET][0]]
    # every pair method explains the one pair similarity (given once, above); the triplet form its own scores
    explained = {name: {"explains": f"pair_similarity.anchor_positive ({args.similarity})"}
                 for name in maps if name != TRIPLET}
    explained[TRIPLET] = {"explains": "w·e of each image, w = (1 − |e_a − e_p|) ⊙ |e_a − e_n| (held constant)",
                          "score": dict(zip(("anchor", "positive", "negative"), triplet))}
    objects = (t["anchor_mask"][0], t["positive_mask"][0])
    evidence = torch.stack(objects)
    hits = {name: [bool(h) for h in pointing_game(m[:2, None], evidence[:, None])] for name, m in maps.items()}
    shared, negative = t["classes"][0]
    layer = layer_label(args.layer)
    figure = plot_pair(t["anchor"][0], t["positive"][0], maps, out / "similarity.png",
                       {n: (pair_similarity["anchor_positive"] if n != TRIPLET else triplet) for n in maps},
                       objects + (None,), negative=t["negative"][0], score_label=f"{args.similarity}(a, p)",
                       title=f"EfficientNet-Lite0 ({layer}) + GAP, {args.similarity}; shared object: {shared} "
                             f"(outlined); triplet negative: {negative}")
    report = {"shared_class": shared, "negative_class": negative, "seed": args.seed, "size": args.size,
              "layer": args.layer, "similarity": args.similarity, "pair_similarity": pair_similarity,
              "explained_scores": explained, "pointing_game_hits": hits, "figure": str(figure)}
    (out / "similarity.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("shared_class", "pair_similarity", "pointing_game_hits")}, indent=2))
    print(f"figure: {figure}")
    return 0
