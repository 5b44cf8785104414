"""What every explainer in fss_attr shares: the result type and the helpers all families use.

The explainer protocol (docs/explainers.md): every explainer answers ``explain(model, *inputs, region=...)``
and returns an :class:`Explanation`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from fss_attr.validation import check_mask


def minmax(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Min-max scale [B, ...] to [0, 1] per episode; an episode with a constant map becomes all zeros.

    ``dtype`` (default: x's) is the result's dtype; the subtraction runs in x's dtype and rounds once into it,
    so the result stays exactly within [0, 1].
    """
    b = x.shape[0]
    lo, hi = torch.aminmax(x.reshape(b, -1), dim=1)
    span = hi - lo
    span = torch.where(span > 0, span, torch.ones_like(span))      # a constant map has x - lo = 0 everywhere
    shape = (b,) + (1,) * (x.dim() - 1)
    out = torch.empty(x.shape, dtype=dtype or x.dtype, device=x.device)
    torch.sub(x, lo.view(shape), out=out)
    return out.div_(span.to(out.dtype).view(shape))


@dataclass
class Explanation:
    """What :meth:`AffinityExplainer.explain` returns.

    Attributes:
        maps: [B, N, H, W] float32 attribution over the support images, in [0, 1].
        logits: [B, 2, H, W] the model's logits (background, foreground).
        prediction: [B, H, W] bool predicted query foreground.
        region: [B, H, W] bool the query region R that was explained.
        level_weights: [B, L] float64 the level weights used.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    prediction: torch.Tensor
    region: torch.Tensor
    level_weights: torch.Tensor


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
