"""What every explainer in fss_attr shares: the result type and the helpers all families use.

The explainer protocol (docs/explainers.md): every explainer answers ``explain(model, *inputs, region=...)``
and returns an :class:`Explanation`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from fss_attr.validation import check_mask


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
    attribution is 1/|R| by construction (design.md §1, step 4), and what is left is the 1e-6 guard and
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


@dataclass
class Explanation:
    """What :meth:`AffinityExplainer.explain` returns.

    Attributes:
        maps: [B, N, H, W] float32 attribution over the support images, in [0, 1].
        logits: [B, 2, H, W] the model's logits (background, foreground).
        prediction: [B, H, W] bool predicted query foreground.
        region: [B, H, W] bool the query region R that was explained.
        level_weights: [B, L] float64 the level weights used.
        degenerate: [B] bool, episodes whose map carries no information (:func:`degenerate_maps`: a constant
            map, or R covering the whole image); None when the explainer does not say.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    prediction: torch.Tensor
    region: torch.Tensor
    level_weights: torch.Tensor
    degenerate: torch.Tensor | None = None


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
