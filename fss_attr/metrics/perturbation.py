"""Perturbation states of the support set, and their evaluation through a model, many states per forward pass.

A *state* of an episode keeps some support pixels as they are and replaces the others by a zero substrate:
RGB value 0 (the mean colour, since images are normalized) and mask value 0. The query never changes.
Which pixels are kept follows a ranking of the support pixels (n, y, x) by attribution, descending, ties
broken by a stable sort (index order over the flattened [N, H, W] array):

- insertion, k: the top k ranked pixels are kept (moved from the original into the substrate);
- deletion, k: the top k ranked pixels are replaced by the substrate, the others kept.

With ``order="image"`` whole support images (image and mask) are ranked instead, by mean attribution
(descending, stable), and k counts images.

States are evaluated in chunks of ``internal_batch_size`` per forward pass: a chunk is one batched
:class:`Episode` whose batch holds the states, each with its episode's query. ``loop=True`` evaluates one
state per forward pass instead (the reference the batched path is tested against). Model outputs do not
depend on the other members of a batch, so both give the same numbers up to floating-point rounding of
batch-size dependent kernels (see tests/test_metrics_batched.py). The original support and the substrate do
not depend on the ranking: with a ``cache`` dict shared by calls on one episode batch (many explainers'
attributions), their logits are computed once.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Hashable, Iterable, Sequence

import torch

from fss_attr.data.episode import Episode
from fss_attr.metrics.scores import SCORES
from fss_attr.validation import check_choice, check_mask, check_positive_int, check_tensor

MODES = ("insertion", "deletion")
ORDERS = ("pixel", "image")


def check_attributions(attributions: torch.Tensor, episode: Episode) -> torch.Tensor:
    """Attributions must be finite, floating, [B, N, H, W] like the episode's support masks."""
    check_tensor("attributions", attributions, ndim=4, floating=True, finite=True, device=episode.device)
    if tuple(attributions.shape) != tuple(episode.support_masks.shape):
        raise ValueError(f"attributions must have the support masks' shape [B, N, H, W] = "
                         f"{tuple(episode.support_masks.shape)}, got {tuple(attributions.shape)}")
    return attributions


def pixel_ranks(attributions: torch.Tensor) -> torch.Tensor:
    """Rank of every support pixel: [B, N, H, W] attributions -> [B, N, H, W] int64, 0 = most attributed.

    Descending order; ties keep index order over the flattened (n, y, x) array (stable sort).
    """
    b = attributions.shape[0]
    order = torch.sort(attributions.flatten(1), dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand(b, -1))
    return ranks.view(attributions.shape)


def image_ranks(attributions: torch.Tensor) -> torch.Tensor:
    """Rank of every support image by mean attribution (descending, stable), broadcast to [B, N, H, W] int64."""
    b, n = attributions.shape[:2]
    means = attributions.to(torch.float64).flatten(2).mean(2)
    order = torch.sort(means, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=order.device).expand(b, -1))
    return ranks.view(b, n, 1, 1).expand(attributions.shape)


def moved_count(t: int, steps: int, fraction: float, total: int) -> int:
    """k_t = ⌊⌊total · fraction⌋ · t / steps⌋: the pixels (or images) moved after t of ``steps`` steps.

    This is the AffEx paper's code (``FSSCausalMetric.set_steps``: ``reduced = int(MHW * percentage)``, then
    ``reduced * i // n_steps``): the budget ⌊P·p⌋ is floored first, then each step's share is floored. It is
    computed exactly in rationals, ``fraction`` read as the decimal it prints as (0.01 is exactly 1/100), so
    where the paper's float product lands just under an integer (0.29 · 100 = 28.999…) fss_attr gives the
    exact value. Before issue 16 fss_attr rounded round(t/steps · fraction · total) half up; docs/metrics.md.

    Raises:
        ValueError: ``steps`` not a positive int, or ``fraction`` outside (0, 1].
    """
    check_positive_int("steps", steps)
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    budget = (Fraction(repr(float(fraction))) * total) // 1
    return int((budget * t) // steps)


def auc(scores: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule on a uniform x over the last axis, x spanning [0, 1]: (Σs − s_first/2 − s_last/2)/(T − 1).

    Args:
        scores: [..., T] with T >= 2.

    Returns:
        [...] float64.
    """
    if scores.shape[-1] < 2:
        raise ValueError(f"a curve needs at least 2 points, got {scores.shape[-1]}")
    s = scores.to(torch.float64)
    return (s.sum(-1) - s[..., 0] / 2 - s[..., -1] / 2) / (s.shape[-1] - 1)


@dataclass(frozen=True, order=True)
class State:
    """One support state, canonical so that equal support sets compare equal.

    ``kind`` is "original" (nothing replaced), "substrate" (everything replaced), "pixel" or "image"
    (a ranking decides); for the last two, ``mode`` is "insertion" or "deletion" and ``k`` how many ranked
    pixels (or images) have moved. Build states with :func:`make_state`.
    """

    kind: str
    mode: str = ""
    k: int = 0


ORIGINAL = State("original")
SUBSTRATE = State("substrate")


def make_state(order: str, mode: str, k: int, total: int) -> State:
    """The state after k of ``total`` ranked pixels (order="pixel") or images (order="image") have moved."""
    check_choice("order", order, ORDERS)
    check_choice("mode", mode, MODES)
    if not 0 <= k <= total:
        raise ValueError(f"k must be in [0, {total}], got {k}")
    kept = k if mode == "insertion" else total - k
    if kept == total:
        return ORIGINAL
    if kept == 0:
        return SUBSTRATE
    return State(order, mode, k)


def keep_mask(state: State, ranks: dict[str, torch.Tensor], shape, device) -> torch.Tensor:
    """The [N, H, W] bool mask of the support pixels the state keeps (``ranks[order]`` [N, H, W] of one episode)."""
    if state == ORIGINAL:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if state == SUBSTRATE:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    moved = ranks[state.kind] < state.k
    return moved if state.mode == "insertion" else ~moved


def apply_keep(images: torch.Tensor, masks: torch.Tensor, keep: torch.Tensor):
    """Support images [N, 3, H, W] and masks [N, H, W] with the pixels outside ``keep`` [N, H, W] set to 0."""
    zero = torch.zeros((), dtype=images.dtype, device=images.device)
    return torch.where(keep.unsqueeze(-3), images, zero), masks & keep


def chunks(n: int, size: int) -> Iterable[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def check_batch_size(internal_batch_size) -> int:
    return check_positive_int("internal_batch_size", internal_batch_size)


@torch.no_grad()
def forward_supports(adapter, episode: Episode, n_items: int,
                     build: Callable[[int], tuple[int, torch.Tensor, torch.Tensor]],
                     score: Callable[[torch.Tensor, list[int]], dict[str, torch.Tensor]],
                     internal_batch_size: int = 16, loop: bool = False,
                     key: Callable[[int], Hashable | None] | None = None,
                     cache: dict | None = None, reuse_query: bool = True) -> dict[str, torch.Tensor]:
    """Run ``n_items`` modified support sets through the model, ``internal_batch_size`` per forward pass.

    Args:
        adapter: a model; ``adapter(episode)`` -> logits [b, 2, H, W].
        episode: the batch of B episodes the items come from.
        n_items: how many items.
        build: item i -> (episode index b, support images [N, 3, H, W], support masks [N, H, W] bool).
        score: (logits [c, 2, H, W], the c items' episode indices) -> {name: [c]}.
        internal_batch_size: items per forward pass (memory knob); ignored when ``loop``.
        loop: one item per forward pass (the reference path).
        key: item i -> a hashable name of its support set (None: not cacheable). Only with ``cache``.
        cache: {key: (episode index, logits [2, H, W])} shared between calls on the same episode batch and
            model: items whose key is there skip the forward pass (``build`` is not called for them), and the
            logits of the others are stored.
        reuse_query: encode the query once (the items change only the support): when the adapter's
            ``query_features`` gives the query's features (see :class:`fss_attr.models.MatchingAdapter`), every
            forward pass runs ``adapter.forward_with_query`` on them (kept in ``cache`` when given) instead of
            ``adapter(batch)``. The same numbers up to floating-point rounding of batch-size dependent kernels
            (the query alone in the backbone instead of batched with the supports); False: ``adapter(batch)``.

    Returns:
        {name: [n_items] float64} in item order.
    """
    size = 1 if loop else check_batch_size(internal_batch_size)
    keys = [key(i) for i in range(n_items)] if (key is not None and cache is not None) else [None] * n_items
    hits = [i for i in range(n_items) if keys[i] is not None and keys[i] in cache]
    todo = [i for i in range(n_items) if keys[i] is None or keys[i] not in cache]
    parts: list[tuple[list[int], dict[str, torch.Tensor]]] = []
    features = query_features(adapter, episode, cache) if (reuse_query and todo) else None
    for chunk in chunks(len(todo), size):
        items = [todo[j] for j in chunk]
        built = [build(i) for i in items]
        idx = [b for b, _, _ in built]
        sel = torch.tensor(idx, device=episode.device)
        batch = Episode(episode.query[sel], torch.stack([im for _, im, _ in built]),
                        torch.stack([m for _, _, m in built]),
                        None if episode.query_mask is None else episode.query_mask[sel])
        logits = adapter(batch) if features is None else adapter.forward_with_query(batch, features, sel)
        for j, i in enumerate(items):
            if keys[i] is not None:
                cache[keys[i]] = (idx[j], logits[j].clone())
        parts.append((items, score(logits, idx)))
    if hits:
        stored = [cache[keys[i]] for i in hits]
        parts.append((hits, score(torch.stack([lg for _, lg in stored]), [e for e, _ in stored])))
    order = torch.tensor([i for items, _ in parts for i in items], device=episode.device).argsort()
    names = parts[0][1].keys() if parts else ()
    return {name: torch.cat([v[name].to(torch.float64) for _, v in parts])[order] for name in names}


def query_features(adapter, episode: Episode, cache: dict | None = None):
    """``adapter.query_features(episode.query)`` (None for adapters without it), kept in ``cache`` when given."""
    fn = getattr(adapter, "query_features", None)
    if fn is None or not hasattr(adapter, "forward_with_query"):
        return None
    key = ("query_features", id(adapter))
    if cache is not None and key in cache:
        return cache[key]
    features = fn(episode.query)
    if cache is not None:
        cache[key] = features
    return features


def scorer(names: Sequence[str], episode: Episode, region: torch.Tensor | None):
    """A ``score`` callable for :func:`forward_supports`: any of :data:`fss_attr.metrics.scores.SCORES`,
    "iou" (against episode.query_mask), "confidence" and "logit" (over ``region`` [B, H, W])."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        check_choice("score", name, SCORES)
    if "iou" in names and episode.query_mask is None:
        raise ValueError("the IoU score needs the episode's query_mask (the query ground truth)")
    if set(names) & {"confidence", "logit"}:
        if region is None:
            raise ValueError(f"the scores {sorted(set(names) & {'confidence', 'logit'})} need a region R [B, H, W]")
        region = check_mask("region", region, (episode.batch_size, *episode.image_size), episode.device)

    ignore = episode.query_ignore

    def score(logits, idx):
        sel = torch.tensor(idx, device=logits.device)
        out = {}
        for name in names:
            if name == "iou":     # the query's ignore pixels (PASCAL 255) are left out of the IoU
                out[name] = SCORES[name](logits, episode.query_mask[sel], None if ignore is None else ignore[sel])
            else:
                out[name] = SCORES[name](logits, region[sel])
        return out

    return score


def evaluate_states(adapter, episode: Episode, attributions: torch.Tensor, states: Sequence[State],
                    scores: Sequence[str] = ("iou",), region: torch.Tensor | None = None,
                    internal_batch_size: int = 16, loop: bool = False, cache: dict | None = None,
                    reuse_query: bool = True) -> dict[str, torch.Tensor]:
    """Scores of every episode in every state.

    Args:
        adapter: a :class:`fss_attr.models.MatchingAdapter` (any ``adapter(episode) -> logits [B, 2, H, W]``).
        episode: B episodes.
        attributions: [B, N, H, W] floating, the ranking's source.
        states: S states (:func:`make_state`); repeated states are evaluated once.
        scores: names among "iou" (needs episode.query_mask), "confidence" and "logit" (need ``region``).
            "confidence" is the mean softmax probability over R of the class that is top at the original
            state (mean over R; the foreground unless the model leans to background over R there), as the
            paper's code scores it; the original state is evaluated for that even when not in ``states``.
        region: [B, H, W] bool query region R of the confidence and logit scores.
        internal_batch_size: states per forward pass; loop: one state per forward pass.
        cache: optional dict shared by calls on the same episode batch and model (e.g. one per episode over
            many explainers): the logits of the states that do not depend on the ranking (the original
            support, the substrate) are computed once (see :func:`forward_supports`).
        reuse_query: the query encoded once for all the states (see :func:`forward_supports`).

    Returns:
        {score name: [B, S] float64}.
    """
    attributions = check_attributions(attributions, episode)
    score = scorer(scores, episode, region)
    top_class = "confidence" in scores
    unique = sorted(set(states) | ({ORIGINAL} if top_class else set()))
    kinds = {s.kind for s in unique}
    ranks = {}
    if "pixel" in kinds:
        ranks["pixel"] = pixel_ranks(attributions)
    if "image" in kinds:
        ranks["image"] = image_ranks(attributions)
    b = episode.batch_size
    shape = episode.support_masks.shape[1:]
    items = [(e, s) for e in range(b) for s in unique]

    def build(i):
        e, s = items[i]
        keep = keep_mask(s, {k: r[e] for k, r in ranks.items()}, shape, episode.device)
        images, masks = apply_keep(episode.support_images[e], episode.support_masks[e], keep)
        return e, images, masks

    def key(i):
        e, s = items[i]
        return ("state", s, e) if s in (ORIGINAL, SUBSTRATE) else None

    flat = forward_supports(adapter, episode, len(items), build, score, internal_batch_size, loop, key, cache,
                            reuse_query)
    where = {s: j for j, s in enumerate(unique)}
    if top_class:
        # The class that is top (mean softmax over R) at the original state, as the paper's code scores it
        # (FSSCausalMetric: ``top = argmax(mean_R softmax(original))``, then that class's mean probability in
        # every state). With two classes the background's mean probability is 1 − the foreground's; an exact
        # tie picks the background, as argmax picks the first.
        fg = flat["confidence"].view(b, len(unique))
        top_fg = fg[:, where[ORIGINAL]] > 0.5
        flat["confidence"] = torch.where(top_fg.unsqueeze(1), fg, 1 - fg).flatten()
    cols = torch.tensor([where[s] for s in states], dtype=torch.long)
    return {name: v.view(b, len(unique))[:, cols.to(v.device)] for name, v in flat.items()}
