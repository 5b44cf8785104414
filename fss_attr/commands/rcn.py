"""``fss-attr rcn train|evaluate|explain``: the Region Comparison Network and its baseline on few-shot
classification episodes (offline controlled classes, or miniImageNet / CIFAR-FS folders)."""
from __future__ import annotations

import json
from pathlib import Path

from fss_attr.validation import option_float, option_int

NAME = "rcn"
HELP = ("Region Comparison Network for few-shot classification: train (episodic), evaluate (accuracy with a "
        "95 percent confidence interval), explain (Region Activation Mapping figure of an episode, with AffEx for "
        "comparison)")


def _data_arguments(p) -> None:
    from fss_attr.backbones.fewshot import MIN_IMAGE_SIDE

    p.add_argument("--data", default="controlled", choices=("controlled", "miniimagenet", "cifarfs"),
                   help="episode source (default controlled: classes rendered offline from bundled photos)")
    p.add_argument("--root", default=None, help="data set folder for miniimagenet / cifarfs")
    p.add_argument("--images-per-class", type=option_int(1), default=600,
                   help="controlled images per class (default 600)")
    p.add_argument("--image-size", type=option_int(MIN_IMAGE_SIDE, what="the few-shot backbones' smallest input"),
                   default=84, help=f"image side in pixels, >= {MIN_IMAGE_SIDE} (default 84)")
    p.add_argument("--cache", default=None,
                   help="cache folder of rendered controlled pools (default: $FSS_ATTR_CACHE/controlled_pools, else "
                        "$XDG_CACHE_HOME/fss_attr/controlled_pools, i.e. ~/.cache/fss_attr/controlled_pools)")
    p.add_argument("--threads", type=option_int(0), default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--way", type=option_int(2), default=5, help="classes per episode (default 5)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="episodic training; writes a checkpoint and a JSON history")
    _data_arguments(t)
    t.add_argument("--method", default="rcn", choices=("rcn", "protonet"),
                   help="rcn: Region Comparison Network; protonet: the prototypical-network baseline (default rcn)")
    t.add_argument("--backbone", default="conv4", choices=("conv4", "resnet12"),
                   help="feature extractor, a 5×5 grid at 84 px (default conv4)")
    t.add_argument("--shots", type=option_int(1), nargs="+", default=[1],
                   help="shots of training episodes, cycled (default 1)")
    t.add_argument("--queries", type=option_int(1), default=6, help="query images per class in training (default 6)")
    t.add_argument("--episodes", type=option_int(1), default=1000, help="training episodes (default 1000)")
    t.add_argument("--lr", type=option_float(0.0, exclusive=True), default=1e-3,
                   help="Adam learning rate (default 1e-3)")
    t.add_argument("--seed", type=option_int(0), default=0,
                   help="training episode and weight initialisation seed (default 0)")
    t.add_argument("--val-every", type=option_int(0), default=250,
                   help="validate every N episodes, keep the best (0: never)")
    t.add_argument("--val-episodes", type=option_int(1), default=200,
                   help="validation episodes per shot count, 15 queries per class (default 200)")
    t.add_argument("--val-images-per-class", type=option_int(1), default=200,
                   help="controlled validation images per class (default 200)")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the backbone (CPU)")
    t.add_argument("--out", default="outputs/rcn/rcn_conv4.pt", help="checkpoint path (.pt; a .json beside it)")
    e = sub.add_parser("evaluate", help="accuracy (%%) with its 95%% confidence interval over test episodes")
    _data_arguments(e)
    e.add_argument("--weights", nargs="+", required=True, help="checkpoints written by `fss-attr rcn train`")
    e.add_argument("--shots", type=option_int(1), nargs="+", default=[1, 5],
                   help="support images per class; one accuracy per value (default 1 5)")
    e.add_argument("--queries", type=option_int(1), default=15, help="query images per class (default 15)")
    e.add_argument("--episodes", type=option_int(1), default=600, help="test episodes (default 600)")
    e.add_argument("--seed", type=option_int(0), default=1, help="test episode seed (default 1)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="class split the episodes come from (default test)")
    e.add_argument("--json", default=None, help="also write the results here")
    x = sub.add_parser("explain", help="RAM figure (PNG) and JSON of one test episode")
    _data_arguments(x)
    x.add_argument("--weights", required=True, help="an RCN checkpoint")
    x.add_argument("--shots", type=option_int(1), default=1, help="support images per class (default 1)")
    x.add_argument("--episode", type=option_int(0), default=0, help="test episode index (default 0)")
    x.add_argument("--query", type=option_int(0), default=0, help="query index within the episode (default 0)")
    x.add_argument("--seed", type=option_int(0), default=1, help="test episode seed (default 1)")
    x.add_argument("--category-episodes", type=option_int(0), default=100,
                   help="episodes for the category-level view of the query's class (0: skip; default 100)")
    x.add_argument("--affex-region", default="evidence", choices=("evidence", "matched", "all", "object"),
                   help="AffEx's query region R: 'evidence' (default): the query cells holding more than a uniform "
                        "share of RAM's query map for the class; 'matched': every query cell a support region "
                        "matched; 'all': the whole query (degenerate: every support position gets 1/|R| up to "
                        "1e-6); 'object': the query's object mask (controlled data only)")
    x.add_argument("--out", default="outputs/rcn/ram.png", help="figure path (a .json beside it)")


def _check_options(args) -> None:
    """Options that argparse cannot check alone, before any data or model loads."""
    from fss_attr.validation import OptionError

    if args.data == "controlled" and args.root is not None:
        raise OptionError("--root does not apply to --data controlled (the classes are rendered offline)")
    if args.data != "controlled" and args.root is None:
        raise OptionError(f"--data {args.data} needs --root, the data set folder")
    if args.root is not None and not Path(args.root).is_dir():
        raise OptionError(f"--root {args.root} is not a folder")
    weights = getattr(args, "weights", None)
    for w in [weights] if isinstance(weights, str) else weights or []:
        if not Path(w).is_file():
            raise OptionError(f"--weights {w} does not exist")
    if args.action == "explain" and args.query >= args.way * 15:
        raise OptionError(f"--query must be in 0..{args.way * 15 - 1} ({args.way}-way episodes, 15 queries per "
                          f"class)")
    out = getattr(args, "out", None)
    if out is not None and Path(out).is_dir():
        raise OptionError(f"--out {out} is a folder; expected a file path")


def run(args) -> int:
    import torch

    _check_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    return {"train": _train, "evaluate": _evaluate, "explain": _explain}[args.action](args)


def _pool(args, split, images_per_class=None):
    from fss_attr.data.classification.sources import open_pool

    from fss_attr.data.classification.controlled import default_cache_dir

    return open_pool(args.data, split, args.root, (args.image_size, args.image_size),
                     images_per_class or args.images_per_class, cache_dir=args.cache or default_cache_dir())


def _train(args) -> int:
    import torch

    from fss_attr.fewshot.checkpoint import build_model
    from fss_attr.fewshot.train import TrainConfig, train_episodic, write_training

    config = TrainConfig(n_way=args.way, shots=tuple(args.shots), n_query=args.queries, episodes=args.episodes,
                         lr=args.lr, seed=args.seed, val_every=args.val_every, val_episodes=args.val_episodes,
                         bf16=args.bf16)
    train_pool = _pool(args, "train")
    val_pool = _pool(args, "val", args.val_images_per_class) if args.val_every else None
    torch.manual_seed(args.seed)
    model = build_model(args.method, backbone=args.backbone)
    result = train_episodic(model, train_pool, config, val_pool)
    path, record = write_training(model, result, config, args.out, data=args.data,
                                  train_classes=list(train_pool.classes))
    n = max(1, len(result.losses) // 10)
    first, last = sum(result.losses[:n]) / n, sum(result.losses[-n:]) / n
    print(f"{args.method} ({args.backbone}) trained on {len(train_pool.classes)} classes, {args.episodes} episodes "
          f"in {result.seconds / 60:.1f} min ({result.cpu_seconds / 60:.1f} CPU min); loss first/last 10%: "
          f"{first:.4f} / {last:.4f}; kept episode {result.best_episode}")
    print(f"checkpoint: {path}")
    print(f"history: {record}")
    return 0


def _evaluate(args) -> int:
    from fss_attr.fewshot.checkpoint import load_checkpoint
    from fss_attr.data.classification.episodes import PoolFeatures
    from fss_attr.fewshot.evaluate import evaluate

    pool = _pool(args, args.split)
    rows = []
    for weights in args.weights:
        model, info = load_checkpoint(weights)
        features = PoolFeatures(model, pool)
        row = {"weights": weights, "method": model.method, "backbone": model.config["backbone"]}
        for k in args.shots:
            acc = evaluate(model, pool, args.way, k, args.queries, args.episodes, args.seed, features)
            row[f"{k}-shot"] = {"mean": acc.mean, "ci95": acc.ci95, "episodes": acc.episodes}
        rows.append(row)
    header = "| model | backbone | " + " | ".join(f"{args.way}-way {k}-shot (%)" for k in args.shots) + " |"
    print(f"{args.data} {args.split} split: {len(pool.classes)} classes, {args.episodes} episodes, "
          f"{args.queries} queries per class, seed {args.seed}")
    print(header)
    print("|" + "---|" * (2 + len(args.shots)))
    for row in rows:
        cells = " | ".join(f"{row[f'{k}-shot']['mean']:.2f} ± {row[f'{k}-shot']['ci95']:.2f}" for k in args.shots)
        print(f"| {row['method']} | {row['backbone']} | {cells} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"data": args.data, "split": args.split, "classes": list(pool.classes),
                                               "rows": rows}, indent=2))
    return 0


def _explain(args) -> int:
    import torch

    from fss_attr.fewshot.checkpoint import load_checkpoint
    from fss_attr.data.classification.episodes import EpisodeSampler, materialize
    from fss_attr.fewshot.plot import plot_ram
    from fss_attr.fewshot.ram import (affex_maps, category_regions, matched_region, region_activation_maps,
                                      upsample_maps)
    from fss_attr.metrics.localisation import relevance_mass
    from fss_attr.fewshot.rcn import RegionComparisonNetwork

    model, _ = load_checkpoint(args.weights)
    if not isinstance(model, RegionComparisonNetwork):
        raise SystemExit(f"{args.weights} holds a {model.method!r} model; RAM needs an RCN checkpoint")
    pool = _pool(args, "test")
    spec = EpisodeSampler(pool, args.way, args.shots, 15, args.seed).spec(args.episode)
    episode = materialize(pool, spec)
    q = args.query
    if not 0 <= q < episode.query.shape[0]:
        raise SystemExit(f"--query must be in 0..{episode.query.shape[0] - 1}")
    with torch.no_grad():
        out = model.explain_features(*model.episode_features(episode.support, episode.query))
    ram = region_activation_maps(out)
    size = episode.image_size
    qn = episode.query.shape[0]
    if args.affex_region == "object" and episode.query_masks is None:
        raise SystemExit("--affex-region object needs query masks (controlled data)")
    affex = {}
    for c in range(episode.n_way):
        labels = torch.full((qn,), c)
        region = {"all": None, "object": episode.query_masks,
                  "evidence": lambda: matched_region(out, labels, size),
                  "matched": lambda: matched_region(out, labels, size, min_share=0.0)}[args.affex_region]
        affex[c] = affex_maps(out, labels, size, region=region() if callable(region) else region)[1][q]
    true, pred = int(episode.query_labels[q]), int(out.scores[q].argmax())
    report = {"weights": args.weights, "episode": args.episode, "seed": args.seed, "query": q, "shots": args.shots,
              "affex_region": args.affex_region,
              "classes": list(episode.class_names), "true": episode.class_names[true],
              "predicted": episode.class_names[pred], "scores": out.scores[q].tolist(),
              "support_map_sums_minus_scores": (ram.support[q].sum((1, 2, 3)) - out.scores[q]).abs().max().item(),
              "query_map_sums_minus_scores": (ram.query[q].sum((1, 2, 3)) - out.scores[q]).abs().max().item()}
    if episode.support_masks is not None:
        masks = episode.support_masks[true][None]
        ram_up = upsample_maps(ram.support[q, true].double(), size)[None]
        report["relevance_mass_on_object"] = {
            "ram_support_map": relevance_mass(ram_up, masks).item(),
            f"affex_unmasked_R_{args.affex_region}": relevance_mass(affex[true][None].double(), masks).item(),
            "object_area_fraction": masks.double().mean().item()}
    category, images = None, None
    if args.category_episodes:
        c = spec.classes[true]
        category = category_regions(model, pool, c, args.category_episodes, args.way, args.shots, 15, args.seed)
        images = [pool.image(c, img) for img, *_ in category.regions]
        report["category"] = {"class": category.class_name, "pairs": category.pairs,
                              "mean_map": category.mean_map.tolist(),
                              "top_regions": [{"image": i, "region": r, "mean_contribution": v, "seen": n}
                                              for i, r, v, n in category.regions]}
    figure = plot_ram(episode, ram, q, args.out, affex, category, images, affex_region=args.affex_region,
                      title=f"RCN ({model.config['backbone']}) {args.way}-way {args.shots}-shot, test episode "
                            f"{args.episode} (seed {args.seed}), query {q}")
    report["figure"] = str(figure)
    Path(figure).with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "category"}, indent=2))
    print(f"figure: {figure}")
    return 0
