"""``fss-attr demo``: explain a real pretrained matcher on a controlled episode, end to end, offline."""
from __future__ import annotations

import json
import time
from pathlib import Path

NAME = "demo"
HELP = "explain LiteMatcher on a controlled episode with AffEx (3 variants); writes a PNG and a JSON"


def add_arguments(parser):
    from fss_attr.backbones.efficientnet import MIN_IMAGE_SIDE
    from fss_attr.ops import BACKENDS
    from fss_attr.validation import option_int

    parser.add_argument("--seed", type=option_int(0), default=0, help="episode seed >= 0 (default 0)")
    parser.add_argument("--shots", type=option_int(1), default=5, help="support images, >= 1 (default 5)")
    parser.add_argument("--size", type=option_int(MIN_IMAGE_SIDE, what="EfficientNet-Lite0's smallest input"),
                        default=192, help=f"image side in pixels, >= {MIN_IMAGE_SIDE} (default 192)")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS, help="default auto")
    parser.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")


def run(args) -> int:
    import torch

    from fss_attr import AffinityExplainer
    from fss_attr.affex import ExplanationCache
    from fss_attr.data import make_episode
    from fss_attr.metrics.localisation import pointing_game, relevance_mass
    from fss_attr.metrics.scores import foreground_iou
    from fss_attr.models.lite_matcher import LiteMatcher
    from fss_attr.ops import resolve_backend
    from fss_attr.validation import OptionError, check_output_folder
    from fss_attr.viz import plot_explanations, signed_evidence

    check_output_folder("--out", args.out)
    try:
        resolve_backend(args.backend, torch.device("cpu"))
    except (RuntimeError, ValueError) as e:
        raise OptionError(f"--backend: {e}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    episode = make_episode(args.seed, n_shots=args.shots, size=(args.size, args.size))
    timings["episode_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = LiteMatcher()
    timings["load_model_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = model.encode(episode)
    logits = model.decode(state)
    timings["model_forward_s"] = time.perf_counter() - t0
    iou = float(foreground_iou(logits, episode.query_mask, episode.query_ignore)[0])
    backend = resolve_backend(args.backend, episode.device)
    explanations, scores = {}, {}
    cache = ExplanationCache()     # one encode and one set of ablation decodes for the three variants
    for variant in ("unmasked", "masked", "signed"):
        t0 = time.perf_counter()
        ex = AffinityExplainer(variant, backend=backend).explain(model, episode, cache=cache)
        timings[f"affex_{variant}_s"] = time.perf_counter() - t0
        explanations[variant] = ex
        scores[variant] = {"relevance_mass_in_evidence": float(relevance_mass(ex.maps, episode.support_evidence)[0]),
                           "pointing_game_hit": bool(pointing_game(ex.maps, episode.support_evidence)[0])}
    evidence_share = float(episode.support_evidence.sum() / episode.support_evidence[0].numel())
    explainer = AffinityExplainer("signed", backend=backend)
    signed = {"signed": signed_evidence(explanations["unmasked"].maps, episode.support_masks, explainer.blur_kernel,
                                        explainer.blur_sigma)}
    figure = plot_explanations(episode, explanations, out / "figure.png", signed=signed,
                               title=f"LiteMatcher, class '{episode.meta['class_name']}', {args.shots}-shot, "
                                     f"query IoU {iou:.2f}, AffEx on {backend}")
    report = {"class_name": episode.meta["class_name"], "seed": args.seed, "shots": args.shots,
              "image_size": args.size, "backend": backend, "threads": torch.get_num_threads(),
              "query_foreground_iou": iou, "level_weights": explanations["unmasked"].level_weights[0].tolist(),
              "evidence_share_of_support_pixels": evidence_share, "scores": scores,
              "timings_s": timings, "figure": str(figure)}
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("class_name", "backend", "query_foreground_iou", "scores")}, indent=2))
    print(f"figure: {figure}")
    print(f"report: {out / 'demo.json'}")
    return 0
