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


def minmax(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Min-max scale [B, ...] to [0, 1] per leading item (an episode, a map); a constant item becomes all zeros.

    ``dtype`` (default: x's) is the result's dtype; the subtraction runs in x's dtype and rounds once into it,
    so the result stays exactly within [0, 1]. Differentiable when x requires a gradient.
    The one min-max of fss_attr: every explainer's ``maps`` and every "minmax" option go through it.
    """
    lo, span = minmax_range(x)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    if x.requires_grad and torch.is_grad_enabled():
        return (x - lo.view(shape)).to(dtype or x.dtype) / span.to(dtype or x.dtype).view(shape)
    out = torch.empty(x.shape, dtype=dtype or x.dtype, device=x.device)
    torch.sub(x, lo.view(shape), out=out)
    return out.div_(span.to(out.dtype).view(shape))


# ---------------------------------------------------------------- the query region of FSS explainers

REGIONS = ("logits", "gt", "all")


def resolve_region(region, logits: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """The query region R [B, H, W] bool from "logits" (predicted foreground), "gt", "all" or a tensor.

    With "logits", an episode whose prediction is empty falls back to the whole image (with a warning).
    """
    b, _, h, w = logits.shape
    if isinstance(region, torch.Tensor):
        return check_mask("region", region, (b, h, w), logits.device)
    if region == "logits":
        r = logits.argmax(1) == 1
        empty = ~r.flatten(1).any(1)
        if bool(empty.any()):
            warnings.warn(f"region='logits': the prediction is empty in episode(s) {empty.nonzero().flatten().tolist()}; "
                          "explaining the whole image there", stacklevel=3)
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
