"""What every explainer in fss_attr shares: the explainer protocol, the result type, and the primitives that
more than one family uses (min-max scaling, the query region, Grad-CAM, input-gradient saliency).

The protocol (docs/explainers.md): every explainer answers ``explain(model, *inputs, **options)`` and returns
an :class:`Explanation`. The families and their inputs:

- AffEx (:class:`fss_attr.AffinityExplainer`): ``explain(model, episode, region="logits", level_weights="ablation")``;
- FSS baselines (:mod:`fss_attr.baselines`): ``explain(model, episode, region="logits")``;
- similarity (:mod:`fss_attr.similarity`): ``explain(model, x1)`` all pairs, ``explain(model, x1, x2)`` pairs,
  ``explain(model, x1, x2, x3)`` triplets;
- RAM (:mod:`fss_attr.fewshot.ram`): ``explain(model, support, query)``;
- SAT saliency (:mod:`fss_attr.sat.saliency`): ``explain(model, images, target=None)``.

This module imports nothing of fss_attr but :mod:`fss_attr.validation`, so every family can import it.
"""
from __future__ import annotations

import math
import warnings
import dataclasses
from dataclasses import KW_ONLY, dataclass
from typing import Callable, Protocol, runtime_checkable

import torch

from fss_attr.validation import check_choice, check_mask


@dataclass
class Explanation:
    """The result of every explainer's ``explain`` (docs/explainers.md).

    Always set:
        maps: float32 attribution maps in [0, 1] at image resolution, min-max scaled (:func:`minmax`) per
            explained item; a constant map becomes all zeros. Shape and scaling unit by family:

            - AffEx and the FSS baselines: [B, N, H, W] over the N support images of each episode, scaled per
              episode (jointly over its N shots);
            - similarity: [B, B, H, W] (all pairs: [i, j] is image i's map for its similarity to image j),
              [B, 2, H, W] (pairs: image 1 against image 2, image 2 against image 1) or [B, 3, H, W] (triplets:
              anchor, positive, negative), relu'd, upsampled bilinearly and scaled per map;
            - RAM: [Qn, n_way, K, H, W] over the K support images of every class, for every query, upsampled
              bilinearly and scaled per (query, class) jointly over the K shots;
            - SAT saliency: [B, H, W], one map per image, scaled per image.
        raw: the attribution before min-max scaling:

            - AffEx: [B, N, H, W] float64, the aggregated map E = Σ_l w_l A_l (before the masked / signed
              variant's weighting by the blurred support mask, and before min-max);
            - FSS baselines: [B, N, H, W] float32, the method's signed attribution (channel-reduced);
            - similarity: [..., h, w] on the feature grid, before relu and upsampling (feature dtype);
            - RAM: [Qn, n_way, K, h, w], the region terms w_r·s_r / K on the support grid (sum to ``scores``);
            - SAT saliency: [B, H, W] the non-negative map (Grad-CAM: relu'd and upsampled; input gradient:
              |∂score/∂x| summed over RGB), in the input's dtype.

    Set by the families that produce them (None otherwise), keyword-only:
        logits: FSS: [B, 2, H, W] the model's logits (background, foreground) on the episode.
        prediction: FSS: [B, H, W] bool, the predicted query foreground.
        region: FSS: [B, H, W] bool, the query region R that was explained.
        level_weights: AffEx: [B, L] float64, the level weights w_l used.
        scores: what was explained: similarity s (pairs [B], all pairs [B, B], triplets [B, 3] wᵀe of each
            image); RAM the class scores y [Qn, n_way]; SAT the target class's score [B] (log-probability or
            logit).
        target: SAT: [B] int64, the class explained in each image.
        support: RAM: the support region maps [Qn, n_way, K, h, w] (the same tensor as ``raw``; RAM's name).
        query: RAM: [Qn, n_way, K, h, w] the same terms at the query cells they matched (sum to ``scores``).
        degenerate: AffEx: [B] bool, episodes whose map carries no information (:func:`degenerate_maps`: a
            constant map, or R covering the whole image); None when the explainer does not say.
    """

    maps: torch.Tensor
    raw: torch.Tensor | None = None
    _: KW_ONLY
    logits: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    region: torch.Tensor | None = None
    level_weights: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    target: torch.Tensor | None = None
    support: torch.Tensor | None = None
    query: torch.Tensor | None = None
    degenerate: torch.Tensor | None = None

    def __repr__(self) -> str:
        """The fields that are set, as shape and dtype (tensors are not printed)."""
        def show(v):
            return f"[{', '.join(map(str, v.shape))}] {str(v.dtype).removeprefix('torch.')}" \
                if isinstance(v, torch.Tensor) else repr(v)

        fields = ", ".join(f"{f.name}={show(getattr(self, f.name))}" for f in dataclasses.fields(self)
                           if getattr(self, f.name) is not None)
        return f"Explanation({fields})"


@runtime_checkable
class Explainer(Protocol):
    """What every explainer class of fss_attr is: ``explain(model, *inputs, **options) -> Explanation``."""

    def explain(self, model, *inputs, **options) -> Explanation:
        ...


# ---------------------------------------------------------------- scaling

def minmax_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo [B], span [B]) of [B, ...] per leading item: its minimum, and its range (1 where the range is 0, so
    that (x − lo) / span maps a constant item to zeros). amin and amax, not aminmax: over a batch dimension
    aminmax runs several times slower on CPU."""
    flat = x.reshape(x.shape[0], -1)
    lo, hi = flat.amin(1), flat.amax(1)
    span = hi - lo
    return lo, torch.where(span > 0, span, torch.ones_like(span))


CONSTANT_ULPS = 1024


def constant_maps(x: torch.Tensor, resolution: torch.dtype | None = None, scale: float = 0.0) -> torch.Tensor:
    """[B] bool: which episodes of x [B, ...] hold a map whose spread is below the arithmetic's resolution.

    A map is constant when ``max − min <= CONSTANT_ULPS · eps · max(|min|, |max|)``, eps the machine epsilon
    of ``resolution`` (default: x's dtype), i.e. the dtype in which the values were computed: 1024·eps is
    1.2e-4 relative for float32 and 2.3e-13 for float64, far above the few-ulp rounding differences between
    backends and far below any spread that carries information. ``scale`` is a floor on the magnitude, for
    values whose rounding error is relative to a larger quantity than themselves (e.g. a [0, 1] map times a
    mask: errors are relative to 1 even where the mask leaves only small values). An all-zero map and an
    empty one are constant. This is a fss_attr rule: the paper's code divides by ``max − min`` as is.
    """
    b = x.shape[0]
    flat = x.detach().reshape(b, math.prod(x.shape[1:]))
    if flat.shape[1] == 0:
        return torch.ones(b, dtype=torch.bool, device=x.device)
    lo, hi = flat.amin(1), flat.amax(1)
    eps = torch.finfo(resolution or x.dtype).eps
    return (hi - lo) <= CONSTANT_ULPS * eps * torch.maximum(lo.abs(), hi.abs()).clamp_min(scale)


def minmax(x: torch.Tensor, dtype: torch.dtype | None = None, resolution: torch.dtype | None = None,
           scale: float = 0.0) -> torch.Tensor:
    """Min-max scale [B, ...] to [0, 1] per episode; an episode whose map is constant becomes all zeros.

    "Constant" is :func:`constant_maps`' rule: a spread below ``CONSTANT_ULPS`` machine epsilons (of
    ``resolution``, default x's dtype: pass the dtype the values were computed in) of the values' magnitude
    (at least ``scale``) is rounding noise, not information, so every backend returns the same all-zero map
    for it instead of stretching one rounding difference to 1. ``dtype`` (default: x's) is the result's dtype; the
    subtraction runs in x's dtype and rounds once into it, so the result stays exactly within [0, 1].
    Works for B = 0 and for inputs that require grad (the result is differentiable where not constant).
    """
    b = x.shape[0]
    dtype = dtype or x.dtype
    if x.numel() == 0:
        return x.to(dtype, copy=True)
    flat = x.reshape(b, -1)
    lo, hi = flat.amin(1), flat.amax(1)
    constant = constant_maps(x, resolution, scale)
    span = torch.where(constant, torch.ones_like(hi), hi - lo)
    lo = torch.where(constant, hi, lo)                          # x - hi = 0 where x == hi
    shape = (b,) + (1,) * (x.dim() - 1)
    out = (x - lo.view(shape)).to(dtype).div_(span.to(dtype).view(shape))
    if bool(constant.any()):
        out = out.masked_fill(constant.view(shape), 0)
    return out


def degenerate_maps(maps: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """[B] bool: the episodes whose explanation carries no information.

    True where the min-max scaled ``maps`` [B, ...] are all zero (a constant map, see :func:`constant_maps`,
    e.g. one support position, a uniform affinity, or an empty support mask under "masked"), and, when a
    region [B, H, W] is given, where R covers the whole query image: then every support position's
    attribution is 1/|R| by construction (docs/affex.md, step 4), and what is left is the 1e-6 guard and
    rounding. The paper's code drops such episodes, and an evaluation should leave them out of its means.
    """
    b = maps.shape[0]
    flags = ~maps.detach().reshape(b, -1).ne(0).any(1) if maps.numel() else torch.ones(b, dtype=torch.bool,
                                                                                         device=maps.device)
    if region is not None:
        flags = flags | full_regions(region).to(flags.device)
    return flags


def full_regions(region: torch.Tensor) -> torch.Tensor:
    """[B] bool: where the region [B, H, W] covers every pixel (a degenerate R for AffEx)."""
    b = region.shape[0]
    return region.reshape(b, -1).all(1) if region.numel() else torch.zeros(b, dtype=torch.bool,
                                                                            device=region.device)


# ---------------------------------------------------------------- the query region of FSS explainers

REGIONS = ("logits", "gt", "all")


def resolve_region(region, logits: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """The query region R [B, H, W] bool from "logits" (predicted foreground), "gt", "all" or a tensor.

    With "logits", an episode whose prediction is empty falls back to the whole image (with a warning: that R
    is degenerate for AffEx, see :func:`degenerate_maps`).
    """
    b, _, h, w = logits.shape
    if isinstance(region, torch.Tensor):
        return check_mask("region", region, (b, h, w), logits.device)
    if region == "logits":
        r = logits.argmax(1) == 1
        empty = ~r.flatten(1).any(1)
        if bool(empty.any()):
            episodes = empty.nonzero().flatten().tolist()
            warnings.warn(f"region='logits': the prediction is empty in episode(s) {episodes}; "
                          "explaining the whole image there (a degenerate region: the maps carry no information)",
                          stacklevel=3)
            r = r | empty.view(b, 1, 1)
        return r
    if region == "gt":
        if query_mask is None:
            raise ValueError("region='gt' needs the episode's query_mask")
        return query_mask
    if region == "all":
        return torch.ones(b, h, w, dtype=torch.bool, device=logits.device)
    raise ValueError(f"region must be 'logits', 'gt', 'all' or a [B, H, W] tensor, got {region!r}")


# ---------------------------------------------------------------- gradient primitives

def score_gradient(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """∂ Σ score_fn(x) / ∂x (x's shape and dtype), with gradients enabled whatever the caller's mode.

    ``score_fn`` maps x [B, ...] to per-item scores [B]; summing them gives every item's own gradient at once
    when the items do not interact (a model in eval mode).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score_fn(x).sum(), x)
    return grad


def weighted_channel_sum(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The class-activation form Σ_c w_c A_c(p): weights [L, C] or [L, R, C], features A [L, C, h, w] ->
    [L, h, w] or [L, R, h, w] (R partners per image: all-pairs forms)."""
    return torch.einsum("lc,lchw->lhw" if weights.dim() == 2 else "lrc,lchw->lrhw", weights, features)


def grad_cam_map(grad: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017) before its relu: Σ_c α_c A_c(p) with α_c = mean_p ∂score/∂A_c(p).

    grad [L, C, h, w] (or [L, R, C, h, w]: one gradient per partner), features A [L, C, h, w] -> [L, h, w]
    (or [L, R, h, w]). The one Grad-CAM of fss_attr: the SAT saliency (:mod:`fss_attr.sat.saliency`) and the
    similarity Grad-CAM (:class:`fss_attr.similarity.GradCAMSimilarity`) both call it.
    """
    a = features if grad.dim() == features.dim() else features[:, None]
    return (grad.mean((-2, -1), keepdim=True) * a).sum(-3)


def input_gradient_map(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, channel_dim: int = 1,
                       reduce: str = "sum") -> torch.Tensor:
    """Input-gradient saliency (Simonyan et al., 2014): |∂score/∂x| reduced over the channel axis.

    ``score_fn`` maps x to per-item scores (see :func:`score_gradient`); ``reduce`` is "sum" or "mean" over
    ``channel_dim``. The one input gradient of fss_attr: the SAT saliency (sum over RGB) and the FSS baseline
    :class:`fss_attr.baselines.Saliency` (mean over RGB, as every FSS baseline reduces channels) call it.
    """
    check_choice("reduce", reduce, ("sum", "mean"))
    g = score_gradient(score_fn, x).abs()
    return g.sum(channel_dim) if reduce == "sum" else g.mean(channel_dim)
