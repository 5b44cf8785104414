"""One call computing a chosen set of metrics for a batch of support attributions.

Metric names (all per episode, [B] float64):

=================  ==========================================================================  ========
name               meaning                                                                     better
=================  ==========================================================================  ========
miou               the model's foreground IoU on the unperturbed episode (a mean gives mIoU)   —
iauc, dauc, diff   insertion / deletion AUC of the IoU over 75 steps, and IAUC − DAUC          ↑ ↓ ↑
iauc@P%            confidence insertion AUC over the top P% of pixels in 5 steps (P = 1 …)     ↑
miouloss@P%        IoU(original) − IoU(top P% of pixels inserted)                               ↓
image_iauc, ...    image-level insertion / deletion AUC of the IoU, and their difference       ↑ ↓ ↑
infidelity(_norm)  captum-style infidelity over Gaussian noise on the support RGB               ↓
relevance_mass     share of positive relevance inside ``episode.support_evidence``              ↑
pointing_game      the top pixel lies inside ``episode.support_evidence``                       ↑
=================  ==========================================================================  ========

Definitions: :mod:`fss_attr.metrics.fss`, :mod:`fss_attr.metrics.infidelity`,
:mod:`fss_attr.metrics.localisation`. The states of every perturbation metric asked for are pooled,
deduplicated and run through the model in one batched pass.
"""
from __future__ import annotations

import re

import torch

from fss_attr.data.episode import Episode
from fss_attr.metrics import fss
from fss_attr.metrics.infidelity import infidelity
from fss_attr.metrics.localisation import pointing_game, relevance_mass
from fss_attr.metrics.perturbation import check_attributions

PAPER_METRICS = ("iauc", "dauc", "diff", "iauc@1%", "miouloss@1%", "miouloss@5%")
LOCALISATION_METRICS = ("relevance_mass", "pointing_game")
DEFAULT_METRICS = ("miou",) + PAPER_METRICS + ("image_iauc", "image_dauc", "image_diff", "infidelity",
                                               "infidelity_norm")
FIXED = {"miou", "iauc", "dauc", "diff", "image_iauc", "image_dauc", "image_diff", "infidelity",
         "infidelity_norm", "relevance_mass", "pointing_game"}
_PERCENT = re.compile(r"^(iauc|miouloss)@(\d+(?:\.\d+)?)%$")
HIGHER_IS_BETTER = {"miou": True, "iauc": True, "dauc": False, "diff": True, "image_iauc": True,
                    "image_dauc": False, "image_diff": True, "infidelity": False, "infidelity_norm": False,
                    "relevance_mass": True, "pointing_game": True}


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better."""
    m = _PERCENT.match(name)
    if m:
        return m.group(1) == "iauc"
    return HIGHER_IS_BETTER[name]


def reads_region(name: str) -> bool:
    """Whether metric ``name`` reads the query region R (the confidence metrics iauc@P% and the infidelity, which
    score the mean foreground output over R); the IoU metrics and the localisation metrics do not."""
    m = _PERCENT.match(name)
    if m:
        return m.group(1) == "iauc"
    return name in ("infidelity", "infidelity_norm")


def check_metrics(metrics) -> tuple[str, ...]:
    """Validate metric names (see the module docstring); returns them as a tuple without repeats."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(dict.fromkeys(metrics))
    for m in metrics:
        if m not in FIXED and not _PERCENT.match(m):
            raise ValueError(f"unknown metric {m!r}; known: {sorted(FIXED)} and 'iauc@P%', 'miouloss@P%'")
        pm = _PERCENT.match(m)
        if pm and not 0 < float(pm.group(2)) <= 100:
            raise ValueError(f"metric {m!r}: the percentage must be in (0, 100]")
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    return metrics


def evaluate(adapter, episode: Episode, attributions: torch.Tensor, metrics=DEFAULT_METRICS, region="logits",
             steps: int = 75, internal_batch_size: int = 16, loop: bool = False, infidelity_perturbations: int = 16,
             infidelity_sigma: float = 0.1, seed: int = 0, return_curves: bool = False,
             cache: dict | None = None, reuse_query: bool = True) -> dict[str, torch.Tensor]:
    """Metrics of support attributions on a batch of episodes.

    Args:
        adapter: a :class:`fss_attr.models.MatchingAdapter` (any ``adapter(episode) -> logits [B, 2, H, W]``).
        episode: B episodes; IoU metrics need ``query_mask``, localisation metrics ``support_evidence``.
        attributions: [B, N, H, W] floating support attributions (e.g. ``explainer.explain(...).maps``).
        metrics: names (module docstring).
        region: the query region R of the confidence metrics (iauc@P%, infidelity): "logits" (the model's
            prediction on the original episode), "gt", "all", or [B, H, W] bool (pass the explanation's
            ``.region`` to score the region that was explained).
        steps: IAUC / DAUC steps (75 in the paper).
        internal_batch_size: support states per forward pass (memory knob); loop: one state per forward pass.
        infidelity_perturbations, infidelity_sigma, seed: the infidelity's noise draws.
        return_curves: also return the curves "curve:iauc" [B, steps], "curve:dauc", "curve:iauc@1%" [B, 6],
            "curve:image_iauc" [B, N + 1], ... of the metrics asked for.
        cache: optional dict to share between calls on the same episode batch and model, e.g. one per episode
            across explainers: the model's logits on support states that do not depend on the attributions
            (the original support, the substrate, the infidelity's noisy supports) are computed once. Give a
            fresh dict for every episode batch. Without it, a dict local to the call still runs the original
            support once for all the metrics. It also keeps the query's features (``reuse_query``).
        reuse_query: encode the query once per episode batch, not once per state (adapters with
            ``query_features``; see :func:`fss_attr.metrics.perturbation.forward_supports`). False: every state
            runs the whole model (the reference; the same numbers up to floating-point rounding).

    Returns:
        {metric name: [B] float64} in the order asked (plus the curves).
    """
    metrics = check_metrics(metrics)
    attributions = check_attributions(attributions, episode)
    cache = {} if cache is None else cache
    n_pixels = episode.n_shots * episode.image_size[0] * episode.image_size[1]
    wanted = set(metrics)
    plans = []
    if "miou" in wanted:
        plans.append(fss.original_iou_plan())
    if wanted & {"iauc", "dauc", "diff"}:
        plans.append(fss.iauc_dauc_plan(n_pixels, steps))
    if wanted & {"image_iauc", "image_dauc", "image_diff"}:
        plans.append(fss.image_plan(episode.n_shots))
    needs_region = bool(wanted & {"infidelity", "infidelity_norm"})
    for m in metrics:
        pm = _PERCENT.match(m)
        if pm:
            p = float(pm.group(2)) / 100
            if pm.group(1) == "iauc":
                plans.append(fss.iauc_at_plan(n_pixels, p, name=m))
                needs_region = True
            else:
                plans.append(fss.miou_loss_plan(n_pixels, p, name=m))
    r = fss.resolve_episode_region(region, adapter, episode) if needs_region else None
    out: dict[str, torch.Tensor] = {}
    if plans:
        out.update(fss.run_plans(adapter, episode, attributions, plans, r, internal_batch_size, loop, cache,
                                   reuse_query))
    if wanted & {"infidelity", "infidelity_norm"}:
        out.update(infidelity(adapter, episode, attributions, r, infidelity_perturbations, infidelity_sigma, seed,
                              internal_batch_size, loop, cache, reuse_query))
    if wanted & set(LOCALISATION_METRICS):
        if episode.support_evidence is None:
            raise ValueError(f"metrics {sorted(wanted & set(LOCALISATION_METRICS))} need the episode's "
                             "support_evidence (controlled episodes carry it)")
        out["relevance_mass"] = relevance_mass(attributions, episode.support_evidence)
        out["pointing_game"] = pointing_game(attributions, episode.support_evidence)
    result = {m: out[m] for m in metrics}
    if return_curves:
        result.update({k: v for k, v in out.items() if k.startswith("curve:") and k[6:] in wanted})
    return result
