"""``fss-attr evaluate``: explainers × metrics over N episodes, written as per-episode CSV, JSON summary,
a paper-shaped markdown table and a PNG of the mean curves.

Default: LiteMatcher (ImageNet-pretrained EfficientNet-Lite0, installed offline) on controlled 5-shot
episodes (:func:`fss_attr.data.controlled.make_episodes`), no download. ``--dataset pascal|coco --root PATH
--fold F`` reads a benchmark through :func:`fss_attr.data.benchmarks.load_episodes` instead.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Iterable

NAME = "evaluate"
HELP = "explainers × metrics over N episodes: per-episode CSV, JSON summary, markdown table, curve figure"

DEFAULT_EXPLAINERS = ("random", "gaussnoise", "saliency", "ig", "deeplift", "gradientshap", "lime",
                      "affex-unmasked", "affex-masked", "affex-signed")
CURVES = ("iauc", "dauc", "iauc@1%", "image_iauc", "image_dauc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fss_attr.metrics.evaluate import DEFAULT_METRICS

    parser.add_argument("--episodes", type=int, default=100, help="number of episodes (default 100)")
    parser.add_argument("--shots", type=int, default=5, help="support images per episode (default 5)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=42, help="episode and explainer seed (default 42)")
    parser.add_argument("--explainers", default=",".join(DEFAULT_EXPLAINERS),
                        help="comma-separated explainer names (default: all)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metrics (default: %(default)s; localisation metrics are added "
                             "when the episodes carry support evidence)")
    parser.add_argument("--region", default="logits", choices=("logits", "gt", "all"),
                        help="query region R that is explained and scored (default: the prediction)")
    parser.add_argument("--steps", type=int, default=75, help="IAUC/DAUC steps (default 75)")
    parser.add_argument("--internal-batch-size", type=int, default=16,
                        help="perturbation states per forward pass (default 16)")
    parser.add_argument("--loop", action="store_true", help="one state per forward pass (slow; for checking)")
    parser.add_argument("--ig-steps", type=int, default=25,
                        help="Integrated Gradients steps (default 25, as the AffEx paper's code)")
    parser.add_argument("--gradientshap-samples", type=int, default=8, help="GradientShap samples (default 8)")
    parser.add_argument("--lime-samples", type=int, default=64, help="LIME samples (default 64)")
    parser.add_argument("--infidelity-perturbations", type=int, default=16,
                        help="noise draws of the infidelity (default 16)")
    parser.add_argument("--dataset", default="controlled", choices=("controlled", "pascal", "coco"),
                        help="episode source (default: controlled, no download)")
    parser.add_argument("--root", default=None, help="data set root (pascal, coco)")
    parser.add_argument("--fold", type=int, default=0, help="fold (pascal, coco)")
    parser.add_argument("--episode-list", default=None,
                        help="CSV of the episodes (pascal, coco): replayed when it exists, else written with the "
                             "sampled episodes, so later runs repeat them exactly")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", default="outputs/evaluate", help="output folder (default outputs/evaluate)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core). On a machine that other "
                             "jobs keep busy, 1 is often several times faster: threads of one op wait for each other")
    parser.add_argument("--compile", action="store_true",
                        help="run the metrics' forward passes through a torch.compile'd backbone (on CPU about "
                             "1.5x faster after a few minutes of compiling; needs a C++ compiler)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep: stop glibc from unmapping freed blocks (faster batched CPU inference, the "
                             "process keeps its peak memory; see fss_attr.evaluation.allocator); default: leave it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def explainer_options(name: str, args) -> dict:
    """Constructor keywords of an explainer from the command's options."""
    opts = {"ig": {"n_steps": args.ig_steps, "internal_batch_size": args.internal_batch_size},
            "gradientshap": {"n_samples": args.gradientshap_samples, "seed": args.seed},
            "lime": {"n_samples": args.lime_samples, "internal_batch_size": args.internal_batch_size,
                     "seed": args.seed},
            "random": {"seed": args.seed}, "gaussnoise": {"seed": args.seed}}
    return opts.get(name, {})


def load_model(device: str, compile_backbone: bool = False):
    """(the model, the model the metrics run): LiteMatcher twice, or with ``compile_backbone`` a second
    LiteMatcher around the same backbone compiled by ``torch.compile`` (no-grad use only: the gradient
    explainers keep the eager model, whose modules captum hooks)."""
    import torch

    from fss_attr.models.lite_matcher import LiteMatcher

    model = LiteMatcher().to(device).eval()
    if not compile_backbone:
        return model, model
    fast = LiteMatcher(backbone=torch.compile(model.backbone, dynamic=True), temperature=model.temperature)
    return model, fast.to(device).eval()


def load_episodes(args) -> Iterable:
    size = (args.size, args.size)
    if args.dataset == "controlled":
        from fss_attr.data.controlled import make_episodes

        return make_episodes(args.episodes, seed=args.seed, n_shots=args.shots, size=size, batch_size=1)
    if args.root is None:
        raise SystemExit(f"fss-attr evaluate: --dataset {args.dataset} needs --root PATH")
    from fss_attr.data.benchmarks import load_episodes as load

    return load(args.dataset, args.root, args.fold, n=args.episodes, seed=args.seed, shots=args.shots, size=size,
                episode_list=args.episode_list)


def run_evaluation(adapter, episodes: Iterable, explainers: dict, metrics: tuple[str, ...], out_dir, *,
                   n_episodes: int | None = None, region="logits", steps: int = 75, internal_batch_size: int = 16,
                   loop: bool = False, infidelity_perturbations: int = 16, seed: int = 0, config: dict | None = None,
                   progress: bool = True, device: str = "cpu", metric_adapter=None) -> dict:
    """Explain every episode with every explainer, score the maps, and write the outputs.

    Args:
        adapter: the model; episodes: iterable of batch-1 :class:`fss_attr.data.episode.Episode`.
        explainers: {name: explainer with ``explain(adapter, episode, region) -> .maps``}.
        metrics: metric names (:mod:`fss_attr.metrics.evaluate`); localisation metrics are skipped for
            episodes without support evidence.
        out_dir: folder for episodes.csv, summary.json, table.md, curves.png.
        metric_adapter: the same model, used for the metrics' forward passes (e.g. a compiled copy);
            default ``adapter``.

    Returns:
        The JSON summary as a dict.
    """
    import torch
    from tqdm import tqdm

    from fss_attr.metrics import LOCALISATION_METRICS, evaluate
    from fss_attr.evaluation.report import markdown_table, plot_curves, summarise

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scoring_model = adapter if metric_adapter is None else metric_adapter
    all_metrics = tuple(metrics) + tuple(m for m in LOCALISATION_METRICS if m not in metrics)
    fields = ["episode", "explainer", "class"] + list(all_metrics) + ["explain_s", "evaluate_s", "empty_prediction"]
    rows, curve_sums, curve_counts = [], {}, {}
    times = {name: [0.0, 0.0] for name in explainers}
    start = time.perf_counter()
    empty_predictions = 0
    with open(out_dir / "episodes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        bar = tqdm(episodes, total=n_episodes, desc="evaluate", unit="episode", disable=not progress)
        for i, episode in enumerate(bar):
            episode = episode.to(device)
            use = tuple(m for m in all_metrics if m not in LOCALISATION_METRICS or episode.support_evidence is not None)
            cache: dict = {}           # logits of the attribution-free support states, shared by the explainers
            empty = None
            for name, explainer in explainers.items():
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="region='logits'")
                    explanation = explainer.explain(adapter, episode, region=region)
                t1 = time.perf_counter()
                if empty is None:
                    empty = not bool(explanation.prediction.any())
                    empty_predictions += empty
                values = evaluate(scoring_model, episode, explanation.maps.to(torch.float64), use,
                                  region=explanation.region, steps=steps, internal_batch_size=internal_batch_size,
                                  loop=loop, infidelity_perturbations=infidelity_perturbations,
                                  seed=seed + i * infidelity_perturbations,
                                  return_curves=True, cache=cache)
                t2 = time.perf_counter()
                times[name][0] += t1 - t0
                times[name][1] += t2 - t1
                row = {"episode": i, "explainer": name, "class": episode.meta.get("class_name", ""),
                       "explain_s": round(t1 - t0, 4), "evaluate_s": round(t2 - t1, 4),
                       "empty_prediction": int(empty)}
                row.update({m: float(values[m][0]) for m in use})
                writer.writerow(row)
                rows.append(row)
                for k, v in values.items():
                    if k.startswith("curve:"):
                        kind = k[6:]
                        sums = curve_sums.setdefault(name, {})
                        sums[kind] = v[0].cpu() + sums[kind] if kind in sums else v[0].cpu().clone()
                        curve_counts.setdefault(name, {})[kind] = curve_counts.get(name, {}).get(kind, 0) + 1
            f.flush()
            bar.set_postfix(elapsed=f"{time.perf_counter() - start:.0f}s")
    wall = time.perf_counter() - start
    n_done = len({r["episode"] for r in rows})
    summary_metrics = summarise(rows, all_metrics)
    summary = {"config": dict(config or {}), "episodes": n_done, "wall_time_s": round(wall, 2),
               "episodes_with_empty_prediction": empty_predictions,
               "seconds_per_episode": {n: {"explain": round(t[0] / max(n_done, 1), 4),
                                           "evaluate": round(t[1] / max(n_done, 1), 4)} for n, t in times.items()},
               "metrics": summary_metrics,
               "environment": {"python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    mean_curves = {n: {k: (s / curve_counts[n][k]).tolist() for k, s in kinds.items() if k in CURVES}
                   for n, kinds in curve_sums.items()}
    title = f"{n_done} episodes" + (f", {config.get('model', '')}" if config else "")
    if mean_curves:
        plot_curves(mean_curves, out_dir / "curves.png", title)
    miou = [r["miou"] for r in rows if "miou" in r]
    header = (f"{n_done} episodes, values ×100 (mean over episodes; best per column in bold); "
              f"model mIoU {100 * sum(miou) / len(miou):.2f}; wall time {wall:.0f} s.\n\n" if miou else "")
    (out_dir / "table.md").write_text(header + markdown_table(summary_metrics))
    return summary


def run(args) -> int:
    import torch

    from fss_attr.baselines import make_explainer
    from fss_attr.metrics import check_metrics

    names = [n.strip() for n in args.explainers.split(",") if n.strip()]
    try:
        explainers = {n: make_explainer(n, **explainer_options(n, args)) for n in names}
        metrics = check_metrics([m.strip() for m in args.metrics.split(",") if m.strip()])
    except ValueError as e:
        print(f"fss-attr evaluate: {e}", file=sys.stderr)
        return 2
    if args.episodes < 1 or args.shots < 1 or args.size < 8:
        print("fss-attr evaluate: --episodes and --shots must be >= 1 and --size >= 8", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print("fss-attr evaluate: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    if args.malloc == "keep":
        from fss_attr.evaluation.allocator import keep_freed_memory

        keep_freed_memory()
    torch.manual_seed(args.seed)
    adapter, metric_adapter = load_model(args.device, args.compile)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    config["model"] = type(adapter).__name__
    summary = run_evaluation(adapter, load_episodes(args), explainers, metrics, args.out, n_episodes=args.episodes,
                             region=args.region, steps=args.steps, internal_batch_size=args.internal_batch_size,
                             loop=args.loop, infidelity_perturbations=args.infidelity_perturbations, seed=args.seed,
                             config=config, progress=not args.no_progress, device=args.device,
                             metric_adapter=metric_adapter)
    out = Path(args.out)
    print((out / "table.md").read_text())
    print(f"wrote {out / 'episodes.csv'}, {out / 'summary.json'}, {out / 'table.md'}, {out / 'curves.png'} "
          f"({summary['episodes']} episodes, {summary['wall_time_s']:.0f} s)")
    return 0
