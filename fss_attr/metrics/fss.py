"""The causal metrics of the AffEx paper for few-shot segmentation (docs/metrics.md), as evaluation plans.

Definitions (support pixels ranked by attribution, descending, ties by a stable sort; a step moves both
the RGB value and the mask value between the original support and the zero substrate; the query never
changes; k_t = ⌊⌊fraction · P⌋ · t/steps⌋ pixels have moved after t steps, P = N·H·W; AUC is the
trapezoid rule on a uniform x over the curve's T points, (Σs − s_first/2 − s_last/2)/(T − 1)):

- IAUC / DAUC (mIoU): insertion / deletion, 75 steps over all pixels (fraction 1), points t = 1..75 (state 0
  skipped), score = foreground IoU of the prediction (argmax of the logits) against the query ground
  truth. Diff = IAUC − DAUC. Per episode; a "mIoU" column is their mean over episodes.
- IAUC@p% (confidence, default p = 1%): insertion of the top p% of pixels in 5 steps, 6 points t = 0..5,
  score = mean softmax probability over the query region R of the class that is top (by that mean) at the
  original state: the foreground unless the model leans to background over R (the paper's code).
- mIoULoss@p (p = 1%, 5%): IoU with the full original support minus IoU with only the top p% of pixels
  inserted into the substrate (k = ⌊p·P⌋). Lower is better.
- Image-level insertion / deletion: whole support images (image and mask) ranked by mean attribution and
  moved one at a time, N + 1 points t = 0..N, IoU score, AUC as above.

Each metric is a :class:`Plan` (the states it needs, the scores, and a reduction), so that
:func:`fss_attr.metrics.evaluate.evaluate` can run the states of many metrics in one batched pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fss_attr.explanation import resolve_region
from fss_attr.data.episode import Episode
from fss_attr.metrics.perturbation import ORIGINAL, State, auc, evaluate_states, make_state, moved_count
from fss_attr.validation import check_mask

Lookup = Callable[[State, str], torch.Tensor]   # (state, score name) -> [B] float64


@dataclass(frozen=True)
class Plan:
    """A metric as data: the states to evaluate, the score names needed, and ``reduce(lookup) -> {name: value}``
    where values are [B] (per-episode metrics) or [B, T] (curves, named "curve:...")."""

    states: tuple[State, ...]
    scores: frozenset
    reduce: Callable[[Lookup], dict[str, torch.Tensor]]


def curve_states(order: str, mode: str, steps: int, fraction: float, total: int, first: int) -> tuple[State, ...]:
    """States t = first..steps of a curve; k_t = ⌊⌊fraction · total⌋ · t/steps⌋ (:func:`moved_count`)."""
    moved_count(0, steps, fraction, total)          # validates steps and fraction
    return tuple(make_state(order, mode, moved_count(t, steps, fraction, total), total)
                 for t in range(first, steps + 1))


def curve_plan(name: str, order: str, mode: str, steps: int, fraction: float, total: int, first: int,
               score: str) -> Plan:
    """One insertion or deletion curve and its AUC, reported as ``name`` and ``curve:name``."""
    states = curve_states(order, mode, steps, fraction, total, first)

    def reduce(lookup):
        curve = torch.stack([lookup(s, score) for s in states], 1)
        return {name: auc(curve), f"curve:{name}": curve}

    return Plan(states, frozenset([score]), reduce)


def iauc_dauc_plan(n_pixels: int, steps: int = 75) -> Plan:
    """IAUC, DAUC and Diff (mIoU), ``steps`` steps over all ``n_pixels`` support pixels, state 0 skipped."""
    ins = curve_plan("iauc", "pixel", "insertion", steps, 1.0, n_pixels, 1, "iou")
    dele = curve_plan("dauc", "pixel", "deletion", steps, 1.0, n_pixels, 1, "iou")

    def reduce(lookup):
        out = {**ins.reduce(lookup), **dele.reduce(lookup)}
        out["diff"] = out["iauc"] - out["dauc"]
        return out

    return Plan(ins.states + dele.states, frozenset(["iou"]), reduce)


def iauc_at_plan(n_pixels: int, p: float = 0.01, steps: int = 5, name: str | None = None) -> Plan:
    """IAUC@p% (confidence): the top p of pixels inserted in ``steps`` steps, points t = 0..steps."""
    return curve_plan(name or f"iauc@{percent(p)}%", "pixel", "insertion", steps, p, n_pixels, 0, "confidence")


def miou_loss_plan(n_pixels: int, p: float, name: str | None = None) -> Plan:
    """mIoULoss@p: IoU(original support) − IoU(only the top ⌊p·P⌋ pixels inserted)."""
    top = make_state("pixel", "insertion", moved_count(1, 1, p, n_pixels), n_pixels)
    name = name or f"miouloss@{percent(p)}%"

    def reduce(lookup):
        return {name: lookup(ORIGINAL, "iou") - lookup(top, "iou")}

    return Plan((ORIGINAL, top), frozenset(["iou"]), reduce)


def image_plan(n_shots: int) -> Plan:
    """Image-level insertion and deletion AUC (IoU), N + 1 points each, and their difference."""
    ins = curve_plan("image_iauc", "image", "insertion", n_shots, 1.0, n_shots, 0, "iou")
    dele = curve_plan("image_dauc", "image", "deletion", n_shots, 1.0, n_shots, 0, "iou")

    def reduce(lookup):
        out = {**ins.reduce(lookup), **dele.reduce(lookup)}
        out["image_diff"] = out["image_iauc"] - out["image_dauc"]
        return out

    return Plan(ins.states + dele.states, frozenset(["iou"]), reduce)


def original_iou_plan() -> Plan:
    """The model's own foreground IoU on the unperturbed episode ("miou" over episodes)."""
    return Plan((ORIGINAL,), frozenset(["iou"]), lambda lookup: {"miou": lookup(ORIGINAL, "iou")})


def percent(p: float) -> str:
    """0.01 -> "1", 0.005 -> "0.5"."""
    return f"{100 * float(p):g}"


def run_plans(adapter, episode: Episode, attributions: torch.Tensor, plans: list[Plan], region=None,
              internal_batch_size: int = 16, loop: bool = False, cache: dict | None = None,
              reuse_query: bool = True) -> dict[str, torch.Tensor]:
    """Evaluate the union of the plans' states once (batched; ``cache`` and ``reuse_query`` as in
    :func:`evaluate_states`) and reduce every plan."""
    states = tuple(dict.fromkeys(s for p in plans for s in p.states))
    scores = sorted(set().union(*(p.scores for p in plans)))
    values = evaluate_states(adapter, episode, attributions, states, scores, region, internal_batch_size, loop,
                             cache, reuse_query)
    column = {s: j for j, s in enumerate(states)}

    def lookup(state, score):
        return values[score][:, column[state]]

    out = {}
    for p in plans:
        out.update(p.reduce(lookup))
    return out


def _pixels(episode: Episode) -> int:
    n = episode.n_shots
    h, w = episode.image_size
    return n * h * w


def resolve_episode_region(region, adapter, episode: Episode) -> torch.Tensor:
    """The query region R [B, H, W] bool: a tensor as given, or "logits" / "gt" / "all" as in
    :func:`fss_attr.affex.explainer.resolve_region` ("logits" runs the model on the original episode)."""
    if isinstance(region, torch.Tensor):
        return check_mask("region", region, (episode.batch_size, *episode.image_size), episode.device)
    logits = None
    if region == "logits":
        with torch.no_grad():
            logits = adapter(episode)
    else:
        logits = torch.zeros(episode.batch_size, 2, *episode.image_size, device=episode.device)
    return resolve_region(region, logits, episode.query_mask)


def iauc_dauc(adapter, episode: Episode, attributions: torch.Tensor, steps: int = 75,
              internal_batch_size: int = 16, loop: bool = False) -> dict[str, torch.Tensor]:
    """IAUC, DAUC, Diff (mIoU), per episode, [B] float64 each, plus the curves "curve:iauc" / "curve:dauc" [B, steps].

    Args:
        adapter: the model; episode: B episodes with query_mask; attributions: [B, N, H, W].
        steps: curve steps (75 in the paper); internal_batch_size / loop: see :func:`evaluate_states`.
    """
    return run_plans(adapter, episode, attributions, [iauc_dauc_plan(_pixels(episode), steps)], None,
                     internal_batch_size, loop)


def iauc_at(adapter, episode: Episode, attributions: torch.Tensor, region="logits", p: float = 0.01,
            steps: int = 5, internal_batch_size: int = 16, loop: bool = False) -> torch.Tensor:
    """IAUC@p% (confidence over R), [B] float64.

    Args:
        region: the query region R: "logits" (the prediction on the original episode), "gt", "all" or a
            [B, H, W] bool tensor (as in :func:`fss_attr.affex.explainer.resolve_region`).
    """
    plan = iauc_at_plan(_pixels(episode), p, steps, name="value")
    r = resolve_episode_region(region, adapter, episode)
    return run_plans(adapter, episode, attributions, [plan], r, internal_batch_size, loop)["value"]


def miou_loss(adapter, episode: Episode, attributions: torch.Tensor, p: float = 0.01,
              internal_batch_size: int = 16, loop: bool = False) -> torch.Tensor:
    """mIoULoss@p, [B] float64 (lower is better)."""
    plan = miou_loss_plan(_pixels(episode), p, name="value")
    return run_plans(adapter, episode, attributions, [plan], None, internal_batch_size, loop)["value"]


def image_insertion_deletion(adapter, episode: Episode, attributions: torch.Tensor, internal_batch_size: int = 16,
                             loop: bool = False) -> dict[str, torch.Tensor]:
    """Image-level "image_iauc", "image_dauc", "image_diff" [B] float64 (and their curves [B, N + 1])."""
    return run_plans(adapter, episode, attributions, [image_plan(episode.n_shots)], None, internal_batch_size, loop)


def curve_positions(name: str, n_points: int) -> list[float]:
    """Where each point of a mean curve lies: the fraction of the moved units (support pixels, or whole support
    images for "image_*") at each state the curve ``name`` holds, as the plans above define them.

    - "iauc", "dauc": states t = 1..T (state 0 skipped), T = ``n_points``: x = t/T, from 1/T to 1;
    - "iauc@p%" (e.g. "iauc@1%"): states t = 0..S, S = ``n_points`` − 1: x = t/S · p, from 0 to p;
    - "image_iauc", "image_dauc": states t = 0..N: x = t/N (fraction of the support images).

    Fractions are the nominal ones; the plans move round(x · P) pixels.

    Raises:
        ValueError: an unknown curve name, or too few points for it (1 for iauc/dauc, 2 otherwise).
    """
    if isinstance(n_points, bool) or not isinstance(n_points, int):
        raise ValueError(f"n_points must be an int, got {n_points!r}")
    if name in ("iauc", "dauc"):
        if n_points < 1:
            raise ValueError(f"curve {name!r} needs at least 1 point, got {n_points}")
        return [t / n_points for t in range(1, n_points + 1)]
    if name.startswith("iauc@") and name.endswith("%"):
        try:
            p = float(name[5:-1]) / 100
        except ValueError:
            raise ValueError(f"curve name {name!r} must read 'iauc@<percent>%'") from None
        scale = p
    elif name in ("image_iauc", "image_dauc"):
        scale = 1.0
    else:
        raise ValueError(f"unknown curve {name!r}: expected 'iauc', 'dauc', 'iauc@<p>%', 'image_iauc' or "
                         "'image_dauc'")
    if n_points < 2:
        raise ValueError(f"curve {name!r} needs at least 2 points (state 0 and one step), got {n_points}")
    return [scale * t / (n_points - 1) for t in range(n_points)]
